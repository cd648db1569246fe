"""What a label job buys, in what order: files -> images -> unique -> not cached -> views -> budget order.

The plan is pure: it takes what the folder and the store hold and returns the purchases. A selection
strategy plugs in upstream (``only``: the digests it picked); the budget order decides what a budget
smaller than the misses buys.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Mapping

from extractor.datasets.folder import FolderFile
from extractor.datasets.views import ViewSpec
from extractor.store.label_store import storable_name

Order = Literal["digest", "path"]


@dataclass(frozen=True)
class Purchase:
    """The images to send for one view (None: the plain image), in buying order."""

    view: ViewSpec | None
    files: tuple[FolderFile, ...]


@dataclass(frozen=True)
class LabelPlan:
    """What a job found, what the store already answers, and what it will buy."""

    images: int
    """Image files found, duplicates included."""
    skipped: int
    """Files that are not images."""
    duplicates: int
    cached: int
    """Unique images with a plain answer already stored."""
    view_cached: int
    """(image, augmented view) answers already stored."""
    unique: tuple[FolderFile, ...]
    """One file per content digest, in path order."""
    purchases: tuple[Purchase, ...]
    """Plain images first, then view 1 of each image, and so on: a budget buys plain answers first."""
    held_back: int
    """Queries the budget does not cover."""

    @property
    def queries(self) -> int:
        return sum(len(purchase.files) for purchase in self.purchases)

    def by_folder(self) -> dict[str, int]:
        """Queries per top-level folder of the image tree ("." for files at its root), sorted by folder."""
        counts = Counter(storable_name(_top_folder(f.relative_path))  # printable, whatever the folder's bytes
                         for purchase in self.purchases for f in purchase.files)
        return dict(sorted(counts.items()))


def buying_order(files: Iterable[FolderFile], order: Order, seed: int) -> list[FolderFile]:
    """``files`` in buying order. "digest": a seeded pseudo-random order of the content digests, so every
    prefix is a uniform sample and a file's rank never depends on which other files are present;
    "path": the files' relative paths, sorted."""
    if order == "path":
        return sorted(files, key=lambda f: f.relative_path)
    return sorted(files, key=lambda f: rank(f.digest, seed))


def rank(digest: str, seed: int) -> str:
    """A digest's place in the seeded buying order."""
    return hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()


def build_plan(files: list[FolderFile], *, cached: set[str], view_done: Mapping[ViewSpec, set[str]],
               allowed: int | None, order: Order = "digest", seed: int = 0,
               is_image: Callable[[FolderFile], bool]) -> LabelPlan:
    """The purchases for ``files`` (already hashed and filtered), given the stored answers.

    Args:
        files: the job's files, in path order.
        cached: digests with a plain answer.
        view_done: per augmented view, the digests with that view's answer.
        allowed: queries the budget still allows, or None for no budget.
        order: the budget order; see :func:`buying_order`.
        seed: seeds the "digest" order.
        is_image: whether a file is an image (only files without an answer are sniffed).
    """
    images = [f for f in files if f.digest in cached or is_image(f)]
    unique = tuple({f.digest: f for f in reversed(images)}.values())[::-1]
    ordered = buying_order(unique, order, seed)
    wanted = [Purchase(None, tuple(f for f in ordered if f.digest not in cached))]
    wanted += [Purchase(view, tuple(f for f in ordered if f.digest not in done)) for view, done in view_done.items()]
    total = sum(len(purchase.files) for purchase in wanted)
    purchases = wanted if allowed is None else _within(wanted, allowed)
    return LabelPlan(images=len(images), skipped=len(files) - len(images), duplicates=len(images) - len(unique),
                     cached=sum(1 for f in unique if f.digest in cached),
                     view_cached=sum(len(done & {f.digest for f in unique}) for done in view_done.values()),
                     unique=unique, purchases=tuple(purchases),
                     held_back=0 if allowed is None else max(0, total - allowed))


def _within(purchases: list[Purchase], allowed: int) -> list[Purchase]:
    """The purchases cut to the first ``allowed`` queries, in order."""
    kept = []
    for purchase in purchases:
        kept.append(Purchase(purchase.view, purchase.files[:max(allowed, 0)]))
        allowed -= len(kept[-1].files)
    return kept


def _top_folder(relative_path: str) -> str:
    head, sep, _ = relative_path.replace("\\", "/").partition("/")
    return head if sep else "."
