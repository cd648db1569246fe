"""Frozen, validated configuration for each job; the CLI builds these and calls one function."""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from extractor.datasets.faces import FaceSpec
from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.views import ViewSpec
from extractor.errors import ConfigError
from extractor.students.config import DistillConfig, HintConfig, OptimConfig, SlimmableConfig, StudentConfig

EXECUTORS: tuple[str, ...] = ("local", "ray")
ORDERS: tuple[str, ...] = ("digest", "path")


@dataclass(frozen=True)
class LabelConfig:
    """What `extractor label` does."""

    images: Path
    """Folder of unlabeled images, searched recursively."""
    store: Path
    """SQLite label store, created if missing."""
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    """How an image becomes a teacher input."""
    faces: FaceSpec = field(default_factory=FaceSpec)
    """Whether the face is found and cropped before preprocessing."""
    batch_size: int = 64
    """Images per teacher call (split further to the teacher's own request limit)."""
    workers: int = os.cpu_count() or 1
    """Decode processes; 0 decodes in the main process."""
    concurrency: int = 1
    """Teacher calls in flight at once (useful for HTTP teachers)."""
    budget: int | None = None
    """Most images ever sent to the teacher by this job, retries included, across resumes."""
    dry_run: bool = False
    """Only count what the job would send, given the cache."""
    canary: int = 0
    """Re-query this many cached images and warn if the teacher's answers changed."""
    quiet: bool = False
    """No progress bar."""
    executor: str = "local"
    """Where decoding and the teacher's calls run: "local" (this machine) or "ray" (a Ray cluster)."""
    ray_address: str | None = None
    """--executor ray: the cluster to join ("auto", or HOST:PORT); None starts one on this machine."""
    ray_actors: int = 0
    """--executor ray: label workers, each loading the teacher once; 0 for one per CPU of the cluster."""
    views: tuple[ViewSpec, ...] = ()
    """Augmented views of each image sent besides the plain one (--views K: K-1 of them), each with its own
    cache key; --budget counts every view."""
    only: tuple[str, ...] | None = None
    """Content digests to label (the invariance probe's sample, a selection's picks); None labels every image
    in ``images``."""
    only_paths: tuple[str, ...] | None = None
    """Relative paths inside ``images`` to label (``--only picks.txt``); None labels every image."""
    order: str = "digest"
    """What a budget buys first: "digest" (a seeded uniform sample) or "path" (the first files by path)."""
    seed: int = 0
    """Seeds the "digest" order; not part of the job's identity."""
    retry_failed: bool = False
    """Ask again about images whose earlier answer was invalid (NaN scores, ...); else each is paid for once."""
    wait_for_store_s: float = 0.0
    """How long to wait for another job that writes the store (--wait-for-store): 0 stops at once, inf waits."""

    def __post_init__(self) -> None:
        if not self.wait_for_store_s >= 0:
            raise ConfigError(f"--wait-for-store must be >= 0 seconds (or inf), got {self.wait_for_store_s}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.executor != "ray" and (self.ray_address is not None or self.ray_actors):
            raise ConfigError("--ray-address and --ray-actors apply to --executor ray")
        if self.ray_actors < 0:
            raise ConfigError(f"--ray-actors must be >= 0, got {self.ray_actors}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.budget is not None and self.budget < 0:
            raise ConfigError(f"--budget must be >= 0, got {self.budget}")
        if self.canary < 0:
            raise ConfigError(f"--canary must be >= 0, got {self.canary}")
        if self.order not in ORDERS:
            raise ConfigError(f"--order must be one of {', '.join(ORDERS)}, got {self.order!r}")

    def as_data(self) -> dict:
        data = asdict(self)
        data["only"] = None if self.only is None else len(self.only)  # a count: the digests are the job's rows
        data["only_paths"] = None if self.only_paths is None else len(self.only_paths)
        data["views"] = [view.as_data() for view in self.views]
        return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}


AUGMENTATIONS: tuple[str, ...] = ("flip", "shift", "crop")
AUTO = "auto"
"""--augment auto: the invariance probe chooses (``extractor.training.invariance``)."""


@dataclass(frozen=True)
class ProbeConfig:
    """The invariance probe `extractor train` runs before training when --augment is auto."""

    images: int = 256
    """Stored images the teacher is asked about under each augmentation (0: no probe, the safe default)."""
    max_change: float = 0.1
    """Budget of wrong targets: augmentations are used with the stored answer, least changing first, while
    the shares of probed images whose answer they changed sum to less than this; the others only through
    bought views, if any."""
    teacher_source: str | None = None
    """Where to reach the teacher (an .onnx file or an http(s) URL); None: as recorded by `extractor label`."""
    budget: int | None = None
    """Most images the probe may send; None: the label job's own --budget, if it had one."""

    def __post_init__(self) -> None:
        if self.images < 0:
            raise ConfigError(f"--probe-images must be >= 0, got {self.images}")
        if not 0.0 < self.max_change <= 1.0:
            raise ConfigError(f"--probe-max-change must be in (0, 1], got {self.max_change}")
        if self.budget is not None and self.budget < 0:
            raise ConfigError(f"--probe-budget must be >= 0, got {self.budget}")


@dataclass(frozen=True)
class TeacherChoice:
    """One teacher whose stored answers a student learns from, and its weight among several: a black box's
    answers by fingerprint prefix, or a trained run, whose student labels the same images at no query cost."""

    prefix: str = ""
    """A fingerprint prefix in the store; empty when ``run`` is given."""
    weight: float = 1.0
    run: Path | None = None
    """A run directory written by `extractor train` (a white-box parent)."""

    def __post_init__(self) -> None:
        if isinstance(self.run, str):  # from a config.json
            object.__setattr__(self, "run", Path(self.run))
        if bool(self.prefix) == (self.run is not None):
            raise ConfigError(f"--teacher names a fingerprint prefix or a run directory, got {self.prefix!r} "
                              f"and {self.run}")
        if not math.isfinite(self.weight) or self.weight <= 0:
            raise ConfigError(f"--teacher takes a weight > 0, got {self.weight}")

    @classmethod
    def parse(cls, text: str) -> TeacherChoice:
        """'PREFIX', 'RUN_DIR', 'PREFIX:WEIGHT' or 'RUN_DIR:WEIGHT' (--teacher); an existing directory is a run."""
        name, colon, weight = text.rpartition(":")
        if not colon:
            name, weight = text, ""
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            name, value = text, 1.0  # a colon inside a path
        if not name or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"--teacher takes PREFIX, RUN_DIR, PREFIX:WEIGHT or RUN_DIR:WEIGHT with a weight > 0, "
                              f"got {text!r}")
        return cls(run=Path(name), weight=value) if Path(name).is_dir() else cls(name, value)


@dataclass(frozen=True)
class TrainConfig:
    """What `extractor train` does."""

    store: Path
    """Label store written by `extractor label`."""
    out: Path
    """Run directory: checkpoints, metrics.jsonl, student.onnx, run.json."""
    teachers: tuple[TeacherChoice, ...] = ()
    """Teachers to learn from; empty takes the store's only black box. Several are combined (mean of their
    tempered distributions, weighted). Held-out fidelity is to the first one's black box."""
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: tuple[str, ...] = (AUTO,)
    """Augmentations applied with the stored answer: any of "flip", "shift", "crop", or ("auto",) for the
    invariance probe's choice."""
    shift_frac: float = 0.125
    """Largest translation of "shift", as a fraction of the side."""
    crop_scale: float = 0.75
    """Smallest crop side of "crop", as a fraction of the side (resized back)."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    views: int | None = None
    """Use at most this many stored views per training image (1: the plain image only); None: all stored."""
    heldout: float = 0.1
    """Fraction held out (by content digest, or by group with split_by)."""
    split_by: tuple[Path, str] | None = None
    """(CSV, column): hold out whole groups, e.g. people, to measure generalisation to new data."""
    resume: bool = False
    """Continue the run in ``out`` from its last checkpoint."""
    workers: int = os.cpu_count() or 1
    """Decode processes for the one-time tensor cache."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N; auto takes CUDA when present."""
    slimmable: SlimmableConfig | None = None
    """Train one slimmable student at several widths (in-place distillation); None trains one plain student."""
    hint: HintConfig | None = None
    """Add a FitNet hint from the first teacher that is a run (its student as a white box); None adds none."""
    quiet: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.heldout < 1.0:
            raise ConfigError(f"--heldout must be in (0, 1), got {self.heldout}")
        if isinstance(self.probe, dict):  # from a config.json
            object.__setattr__(self, "probe", ProbeConfig(**self.probe))
        unknown = set(self.augment) - set(AUGMENTATIONS)
        if unknown and (tuple(self.augment) != (AUTO,)):
            raise ConfigError(f"--augment takes auto, none or a comma list of {', '.join(AUGMENTATIONS)}; "
                              f"got {', '.join(sorted(unknown))}")
        if not 0.0 < self.shift_frac < 0.5:
            raise ConfigError(f"--shift must be in (0, 0.5), got {self.shift_frac}")
        if not 0.0 < self.crop_scale < 1.0:
            raise ConfigError(f"--crop-scale must be in (0, 1), got {self.crop_scale}")
        if self.views is not None and self.views < 1:
            raise ConfigError(f"--views must be >= 1 (1: the plain image only), got {self.views}")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.hint is not None and not any(choice.run for choice in self.teachers):
            raise ConfigError("--hint needs a parent run: --parent RUN_DIR or --teacher RUN_DIR")
        if self.hint is not None and self.slimmable is not None:
            raise ConfigError("--hint and --slimmable exclude each other")
        if self.slimmable is not None and self.student.width != 1.0:
            raise ConfigError("--width and --slimmable exclude each other: the widths of --slimmable are "
                              "multipliers of the full architecture")

    def as_data(self) -> dict:
        data = asdict(self)
        data["split_by"] = [str(self.split_by[0]), self.split_by[1]] if self.split_by else None
        return json.loads(json.dumps(data, default=str))


