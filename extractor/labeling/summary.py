"""What a label job reports: its summary, and the interruption that carries it."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabelSummary:
    """What a labeling job did; `--json` prints it."""

    images: int
    """Image files found (duplicates included); other files are ``skipped``."""
    labeled: int
    cached: int
    failed: int
    queries: int
    seconds: float
    duplicates: int = 0
    not_images: int = 0
    """Failures among ``failed`` whose file is named like an image but is not one."""
    skipped: int = 0
    """Files that are not images (README.md, notes.txt, ...): never decoded nor sent, not failures."""
    skipped_budget: int = 0
    job_id: int | None = None
    dry_run: bool = False
    canary_checked: int = 0
    canary_changed: int = 0
    faces_detected: int = 0
    """Images the face detector ran on in this job (0 when every detection was stored)."""
    views: int = 1
    """Views of each image asked about: the plain image and ``views - 1`` augmented ones (--views)."""
    view_cached: int = 0
    """(image, augmented view) answers already stored."""
    tensor_format: str | None = None
    """How kserve-v2 tensors travelled: "binary" or "json"; None for other teachers."""
    stopped: str | None = None
    """Why the job stopped before its end (the teacher down), or None."""
    pending: int = 0
    """Images a stopped job did not get to; the next run asks about them."""
    by_folder: dict[str, int] | None = None
    """--dry-run: the queries per top-level folder of the image tree."""
    skipped_invalid: int = 0
    """Images not asked about because the teacher's answer about them was invalid before (--retry-failed asks)."""
    interrupted: str | None = None
    """The signal that stopped the job ("SIGINT", "SIGTERM"), or None."""
    preprocess: str | None = None
    """The preprocessing fingerprint the job's plain answers are stored under (with the teacher's: the key)."""

    @property
    def images_per_s(self) -> float:
        return self.labeled / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class LabelInterrupted(KeyboardInterrupt):
    """A label job stopped by Ctrl-C or SIGTERM after it stored what it had received and recorded its summary:
    ``args[0]`` names the signal (the CLI's SIGTERM handler raises ``KeyboardInterrupt("SIGTERM")``)."""

    def __init__(self, signal_name: str, summary: LabelSummary, store: Path) -> None:
        super().__init__(signal_name)
        self.summary, self.store = summary, store
