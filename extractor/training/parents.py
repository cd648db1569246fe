"""A trained run as a teacher: its student.onnx labels the run's images into the store through the label job.

Every trained student is a white box that can teach the next one at no query cost. Its answers go through
the same adapter (``OnnxTeacher`` on the run's student.onnx, with the run's student preprocessing) and the
same job as a black box's, so they are cached under the student's own fingerprint: a rerun labels nothing,
and the black box is never asked again. The run's black box (``run.json["teacher"]``) stays the reference
that a child's held-out fidelity is measured against, down a chain of any length.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from extractor.config import LabelConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError, InputNotFound
from extractor.labeling.job import label_dataset
from extractor.run_dir import STUDENT_ONNX, RunDir
from extractor.store.label_store import LabelStore
from extractor.teachers.onnx import OnnxTeacher
from extractor.training.answers import student_spec

if TYPE_CHECKING:
    import torch.nn as nn

log = logging.getLogger(__name__)


class RunTeacher(OnnxTeacher):
    """``OnnxTeacher`` on a run's student.onnx (logits out) whose description in the store names the run, so
    that answers of runs are told apart from a black box's (``pool.select_answers``)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir / STUDENT_ONNX, output_policy="logits")
        self.run_dir = run_dir

    def describe(self) -> dict:
        return {**super().describe(), "run": str(self.run_dir.resolve())}


@dataclass(frozen=True)
class ParentRun:
    """A finished run directory read as a teacher."""

    path: Path
    run: dict
    """Its run.json."""

    @classmethod
    def open(cls, path: Path) -> ParentRun:
        """Reads a run directory written by `extractor train`.

        Raises:
            InputNotFound: when it holds no run.json or student.onnx.
        """
        path = Path(path)
        return cls(path, RunDir(path).require_finished("a parent").run())

    def require_same_split(self, child: dict) -> None:
        """A child (its config as data, ``TrainConfig.as_data``) holds out exactly the images its parent held
        out (``--heldout``, ``--split-by``): else its held-out fidelity would be measured on images the parent
        trained on.

        Raises:
            ConfigError: when the child's split differs.
        """
        config = self.run["config"]
        if (config["heldout"], config.get("split_by")) != (child["heldout"], child["split_by"]):
            raise ConfigError(f"--heldout {child['heldout']} / --split-by {child['split_by']} differ from the parent "
                              f"run {self.path} (--heldout {config['heldout']}, --split-by {config.get('split_by')}); "
                              "a child holds out the images its parent held out")

    @property
    def spec(self) -> PreprocessSpec:
        """The run's student preprocessing: its black box's crop and pixel statistics at the student's size."""
        return student_spec(self.run["preprocess"], self.run["student"]["size"])

    @property
    def black_box(self) -> tuple[str, str]:
        """(teacher fingerprint, preprocess fingerprint) of the original black box's answers."""
        return self.run["teacher"]["fingerprint"], self.run["preprocess_fingerprint"]

    def describe(self) -> dict:
        """What a child's run.json says about this parent."""
        student = self.run["student"]
        return {"run": str(self.path), "architecture": student["architecture"], "width": student["width"],
                "size": student["size"], "params": student["params"], "fidelity": self.run["fidelity"],
                "size_bytes": (self.path / "student.onnx").stat().st_size}


def label_with_parent(parent: ParentRun, store: LabelStore, *, workers: int, quiet: bool) -> tuple[str, str]:
    """Labels, with the parent's student, every folder its black box labeled: cached answers are not asked again.

    Returns:
        (teacher fingerprint, preprocess fingerprint) under which the parent's answers are stored.

    Raises:
        ConfigError: when the store holds no label job of the parent's black box, or for a parent trained
            on detected face crops (not supported yet).
        InputNotFound: when none of those image folders is there any more.
    """
    if parent.run["preprocess"].get("faces"):
        raise ConfigError(f"{parent.path} was trained on detected face crops; a face-crop run cannot teach yet")
    teacher_fp, preprocess_fp = parent.black_box
    roots = store.label_roots(teacher_fp, preprocess_fp)
    if not roots:
        raise ConfigError(f"{store.path} holds no label job of {parent.path}'s teacher {teacher_fp[:12]}; "
                          "pass the --store that the parent run was trained from")
    teacher = RunTeacher(parent.path)
    preprocess = ""
    for root in roots:
        if not Path(root).is_dir():
            log.warning("image folder %s is gone; %s labels only the others", root, parent.path)
            continue
        cfg = LabelConfig(images=Path(root), store=store.path, preprocess=parent.spec, batch_size=256,
                          workers=workers, quiet=quiet)
        summary = label_dataset(cfg, teacher, store)
        preprocess = summary.preprocess or ""
        log.info("parent %s labeled %d images of %s (%d cached)", parent.path, summary.labeled, root, summary.cached)
    if not preprocess:
        raise InputNotFound(f"none of the image folders of {parent.path}'s teacher is there any more: {roots}")
    return teacher.fingerprint, preprocess


def load_parent_student(parent: ParentRun, num_classes: int, in_channels: int) -> nn.Module:
    """The parent's student as a frozen torch module in eval mode (its ``best.pt``), for hints.

    Raises:
        ConfigError: for a quantized variant or a slimmable run, whose weights are not a plain zoo student.
    """
    from extractor.students.zoo import build_student

    if "variant" in parent.run or "widths" in parent.run:
        raise ConfigError(f"--hint needs a plain run as parent; {parent.path} is a quantized or slimmable run")
    student = parent.run["student"]
    model = build_student(student["architecture"], num_classes, in_channels, student["width"])
    model.load_state_dict(RunDir(parent.path).best_weights())
    return model.eval().requires_grad_(False)
