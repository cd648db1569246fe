"""What shapes the teacher's input, as data and as fingerprints: the preprocess half of every cache key."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from extractor.config import LabelConfig
from extractor.datasets.faces import FaceDetector
from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.views import ViewSpec
from extractor.errors import ConfigError
from extractor.fingerprint import detector_fingerprint, stable_hash
from extractor.teachers.base import Teacher

K = TypeVar("K")


def parse_floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    """'127.5' or '122.8,117,104.3' -> floats; a clear error names the flag."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise ConfigError(f"{flag} takes one or three numbers, e.g. 127.5 or 123.7,116.3,103.5; got {text!r}") from None
    if len(values) not in (1, 3):
        raise ConfigError(f"{flag} takes one or three numbers, got {len(values)}")
    return values


def resolve_preprocess(teacher: Teacher, size: int | None, channels: str | None, mean: str | None,
                       std: str | None, center_crop: float) -> PreprocessSpec:
    """The teacher's preprocessing: flags where given, else what the model's input shape implies.

    Image-input teachers (they encode images themselves) keep the crop's own size unless --size is given.
    """
    shape = teacher.input_shape or (None, None, None)  # (C, H, W) with None for unknown dims
    default_channels = "gray" if shape[0] == 1 else "rgb"
    default_size = None if teacher.input_format == "image" else shape[1] or 224
    fixed = shape[1] if teacher.input_format != "image" and isinstance(shape[1], int) else None
    if size is not None and fixed is not None and size != fixed:
        raise ConfigError(f"--size {size} does not fit the teacher: its input is fixed at {fixed}x{fixed} pixels "
                          f"(leave --size out, or give --size {fixed})")
    return PreprocessSpec(
        size=default_size if size is None else size,
        channels=channels or default_channels,  # type: ignore[arg-type]
        mean=parse_floats(mean, "--mean") or (0.0,),
        std=parse_floats(std, "--std") or (255.0,),
        center_crop=center_crop,
    )


def spec_data_of(cfg: LabelConfig, detector: FaceDetector | None) -> dict:
    """Everything that shapes the teacher's input, as plain data: its hash keys the cache."""
    data: dict = {"transform": cfg.preprocess.as_data()}
    if cfg.faces.mode != "none":
        if detector is None:
            raise ConfigError(f"--faces {cfg.faces.mode} needs a face detector")
        data.update(faces=cfg.faces.as_data(), detector=detector.as_data())
    return data


def view_spec_data(spec_data: dict, view: ViewSpec | None) -> dict:
    """The spec of one augmented view of the teacher's input: its hash keys the view's answers apart."""
    return spec_data if view is None else {**spec_data, "view": view.as_data()}


def view_fingerprints(spec_data: dict, views: Mapping[K, ViewSpec]) -> dict[K, str]:
    """The preprocessing fingerprint of each view of the teacher's input that ``spec_data`` describes: the
    keys a label job files its answers about those views under."""
    return {name: stable_hash(view_spec_data(spec_data, view)) for name, view in views.items()}


@dataclass(frozen=True)
class JobKeys:
    """The keys of one label job, made once from its configuration: what the store files its answers under.

    Attributes:
        preprocess: the fingerprint of what shapes the teacher's input, the preprocess half of every plain
            answer's cache key.
        views: each augmented view's fingerprint (its answers are keyed apart).
        specs: every preprocessing of the job by fingerprint, the plain one first: what the store registers.
        identity: teacher, preprocessing and folder: one job, one budget, whatever the views.
        detector: the face detector's fingerprint, or None without face cropping.
    """

    preprocess: str
    views: dict[ViewSpec, str]
    specs: dict[str, dict]
    identity: str
    detector: str | None


def job_keys(cfg: LabelConfig, teacher_fingerprint: str, detector: FaceDetector | None) -> JobKeys:
    """The keys of the job that ``cfg`` describes, asking ``teacher_fingerprint`` (see :class:`JobKeys`)."""
    spec_data = spec_data_of(cfg, detector)
    root = str(Path(cfg.images).resolve())
    faces = detector.as_data() if detector is not None and cfg.faces.mode != "none" else None
    views = view_fingerprints(spec_data, {view: view for view in cfg.views})
    preprocess = stable_hash(spec_data)
    return JobKeys(preprocess, views,
                   specs={preprocess: spec_data, **{fp: view_spec_data(spec_data, view) for view, fp in views.items()}},
                   identity=stable_hash([teacher_fingerprint, preprocess, root]),
                   detector=None if faces is None else detector_fingerprint(faces))
