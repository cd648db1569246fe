"""Frozen, validated configuration for each job; the CLI builds these and calls one function."""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from extractor.datasets.faces import FaceSpec
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError
from extractor.students.config import DistillConfig, OptimConfig, SlimmableConfig, StudentConfig


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

    def __post_init__(self) -> None:
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

    def as_data(self) -> dict:
        data = asdict(self)
        return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}


AUGMENTATIONS: tuple[str, ...] = ("flip", "shift")


@dataclass(frozen=True)
class TeacherChoice:
    """One teacher whose stored answers a student learns from, and its weight among several."""

    prefix: str
    """A fingerprint prefix in the store."""
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> TeacherChoice:
        """'PREFIX' or 'PREFIX:WEIGHT' (--teacher)."""
        prefix, _, weight = text.partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"--teacher takes PREFIX or PREFIX:WEIGHT, got {text!r}") from None
        if not prefix or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"--teacher takes PREFIX or PREFIX:WEIGHT with a weight > 0, got {text!r}")
        return cls(prefix, value)


@dataclass(frozen=True)
class TrainConfig:
    """What `extractor train` does."""

    store: Path
    """Label store written by `extractor label`."""
    out: Path
    """Run directory: checkpoints, metrics.jsonl, student.onnx, run.json."""
    teachers: tuple[TeacherChoice, ...] = ()
    """Teachers to learn from; empty takes the store's only one. Several are combined (mean of their
    tempered distributions, weighted)."""
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: tuple[str, ...] = AUGMENTATIONS
    """Label-preserving augmentations applied with the stored answer: any of "flip", "shift"."""
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
    quiet: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.heldout < 1.0:
            raise ConfigError(f"--heldout must be in (0, 1), got {self.heldout}")
        unknown = set(self.augment) - set(AUGMENTATIONS)
        if unknown:
            raise ConfigError(f"--augment takes none or a comma list of {', '.join(AUGMENTATIONS)}; "
                              f"got {', '.join(sorted(unknown))}")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.slimmable is not None and self.student.width != 1.0:
            raise ConfigError("--width and --slimmable exclude each other: the widths of --slimmable are "
                              "multipliers of the full architecture")

    def as_data(self) -> dict:
        data = asdict(self)
        data["split_by"] = [str(self.split_by[0]), self.split_by[1]] if self.split_by else None
        return json.loads(json.dumps(data, default=str))


