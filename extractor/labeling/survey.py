"""What a label job finds before it plans: the folder's files, and what the store already holds about them.

The survey is the job's one read of the store: every later step (the plan, the run) works from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from extractor.config import LabelConfig
from extractor.datasets.folder import FolderFile, hash_files, list_files
from extractor.labeling.preprocess import JobKeys
from extractor.store.holdings import Holdings
from extractor.store.label_store import LabelStore


@dataclass(frozen=True)
class Survey:
    """The job's files and the store's holdings about them, read once, before anything is paid for."""

    root: Path
    files: list[FolderFile]
    """Readable files, hashed, in path order; ``--only`` and ``--only-paths`` applied."""
    unreadable: list[FolderFile]
    """Files that could not be stat-ed or read (their ``problem`` says why): failed, never the job's end."""
    held: Holdings


def survey(cfg: LabelConfig, keys: JobKeys, store: LabelStore, teacher: str) -> Survey:
    """Lists and hashes ``cfg.images`` (reusing the store's known digests, recording new ones), then reads what
    ``store`` holds about those images for ``teacher`` under each of the job's fingerprints."""
    root = Path(cfg.images).resolve()
    known = store.known_files(str(root))
    listed = list_files(root)
    if cfg.only_paths is not None:
        picked = set(cfg.only_paths)
        listed = [f for f in listed if f.relative_path in picked]
    hashed = hash_files(listed, known, workers=cfg.workers or 1)
    files = [f for f in hashed if f.problem is None]
    if cfg.only is not None:
        wanted = set(cfg.only)
        files = [f for f in files if f.digest in wanted]
    if not store.read_only:  # a dry run of a read-only store hashes again next time
        store.record_files(str(root), ((f.relative_path, f.size, f.mtime_ns, f.digest) for f in hashed
                                       if f.problem is None
                                       and known.get(f.relative_path) != (f.size, f.mtime_ns, f.digest)))
    held = store.holdings(teacher, keys.identity, keys.specs, dict.fromkeys(f.digest for f in files),
                          retry_failed=cfg.retry_failed, detector=keys.detector, canary=cfg.canary)
    return Survey(root, files, [f for f in hashed if f.problem is not None], held)
