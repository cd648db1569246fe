"""The teacher contract: an opaque model that answers batches of inputs.

Outputs are numpy arrays rather than torch tensors (STYLE.md's sketch): labeling with an ONNX or
HTTP teacher then never imports torch, which keeps `extractor label` fast to start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from extractor.errors import (
    MalformedAnswer,
    QueryBudgetExceeded,
    TeacherError,
    TeacherUnavailable,
    UnreadableAnswer,
)

if TYPE_CHECKING:
    from extractor.ledger import Ledger

OutputKind = Literal["probs", "logits", "topk", "label"]
OutputPolicy = Literal["auto", "logits", "probs"]
OUTPUT_POLICIES: tuple[str, ...] = ("auto", "logits", "probs")
OUTPUT_KINDS: tuple[str, ...] = ("probs", "logits", "topk", "label")
InputFormat = Literal["tensor", "image"]


@dataclass(frozen=True)
class TeacherOutput:
    """What a teacher said about a batch.

    Attributes:
        labels: (B,) int64, the teacher's top-1 class: the "hard" target.
        probs: (B, C) float32, or None for a label-only teacher. Logits are kept as
            logits (``kind == "logits"``); for a top-k teacher the hidden classes are 0.
        kind: what the teacher really gave.
    """

    labels: np.ndarray
    probs: np.ndarray | None
    kind: OutputKind

    def __post_init__(self) -> None:
        if self.kind not in OUTPUT_KINDS:
            raise ValueError(f"kind must be one of {OUTPUT_KINDS}, got {self.kind!r}")
        if self.labels.ndim != 1 or self.labels.dtype != np.int64:
            raise ValueError(f"labels must be (B,) int64, got {tuple(self.labels.shape)} {self.labels.dtype}")
        if self.kind == "label":
            if self.probs is not None:
                raise ValueError("a label-only output carries no soft vector")
        elif self.probs is None or self.probs.ndim != 2 or self.probs.shape[0] != self.labels.shape[0]:
            raise ValueError(f"kind {self.kind!r} needs probs of shape (B, C) matching labels")


@runtime_checkable
class Teacher(Protocol):
    """An opaque model. Batching, caching, budget and progress live in the job, not here.

    ``input_format == "tensor"``: ``predict`` takes float32 (B, C, H, W) already normalised by
    the preprocessing spec. ``input_format == "image"``: it takes a sequence of uint8 (H, W, C)
    images (cropped and resized, not normalised) and encodes them itself.
    """

    fingerprint: str
    num_classes: int
    input_format: InputFormat
    max_batch: int | None
    input_shape: tuple[int | None, int | None, int | None] | None
    """(C, H, W) the model takes, None for a dimension it leaves open; None when it does not say."""

    def predict(self, batch: np.ndarray | Sequence[np.ndarray]) -> TeacherOutput: ...

    def use_ledger(self, ledger: Ledger) -> bool:
        """Charges and records this teacher's own requests in ``ledger`` from now on.

        Returns:
            True if the teacher does (HTTP: every attempt, retries included, charged before it is
            sent); False if a ``predict`` call is all there is to count (a local model): the job
            then charges and records each call itself.
        """
        ...


def output_from_scores(scores: np.ndarray, kind: OutputKind) -> TeacherOutput:
    """Wraps (B, C) scores the teacher gave as ``kind`` in a shape-checked TeacherOutput.

    Rows with NaN or infinite scores pass through: they are about single images, which the label job
    records as failed one by one (``labeling.run.answer_rows``) instead of losing the whole batch.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise MalformedAnswer(f"expected scores of shape (batch, classes>=2), got {scores.shape}")
    probs = np.ascontiguousarray(scores)
    return TeacherOutput(labels=probs.argmax(axis=1).astype(np.int64), probs=probs, kind=kind)


def guess_kind(scores: np.ndarray) -> OutputKind:
    """"probs" when every finite row is non-negative and sums to 1, else "logits" (for output policy "auto")."""
    scores = scores[np.isfinite(scores).all(axis=1)]
    rows_sum_to_one = np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)
    return "probs" if rows_sum_to_one and (scores >= 0).all() else "logits"


__all__ = ["InputFormat", "MalformedAnswer", "OutputKind", "OutputPolicy", "QueryBudgetExceeded", "Teacher",
           "TeacherError", "TeacherOutput", "TeacherUnavailable", "UnreadableAnswer", "guess_kind", "output_from_scores"]
