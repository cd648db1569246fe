"""A label job from a teacher's address: open the teacher, resolve its preprocessing, run the job."""
from __future__ import annotations

from dataclasses import dataclass, replace

from extractor.config import LabelConfig
from extractor.labeling.job import LabelSummary, label_dataset
from extractor.labeling.preprocess import resolve_preprocess
from extractor.store.label_store import LabelStore
from extractor.teachers.source import TeacherOpener, TeacherSource, open_teacher


@dataclass(frozen=True)
class PreprocessFlags:
    """The preprocessing flags as given; what is not given comes from the teacher's input shape."""

    size: int | None = None
    channels: str | None = None
    mean: str | None = None
    std: str | None = None
    center_crop: float = 1.0


def label_from_source(source: TeacherSource, cfg: LabelConfig, flags: PreprocessFlags) -> LabelSummary:
    """Labels ``cfg.images`` with the teacher ``source`` names (``cfg.preprocess`` is replaced by ``flags``
    resolved against that teacher)."""
    teacher = open_teacher(source)
    spec = resolve_preprocess(teacher, flags.size, flags.channels, flags.mean, flags.std, flags.center_crop)
    detector = None
    if cfg.faces.mode != "none":
        from extractor.datasets.faces import FaceDetector  # facenet-pytorch: only for face jobs

        detector = FaceDetector()
    with LabelStore(cfg.store, wait_s=cfg.wait_for_store_s) as store:
        return label_dataset(replace(cfg, preprocess=spec), teacher, store, detector=detector,
                             opener=TeacherOpener.of(source), source=source.as_data())
