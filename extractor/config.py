"""Frozen, validated configuration for each job; the CLI builds these and calls one function."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from extractor.datasets.faces import FaceSpec
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError


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
