"""A teacher call on decoded images, what became of one batch, and the protocol that executors follow.

The label job and every executor (``executors``: this machine; ``ray_executor``: a Ray cluster) share these.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ContextManager, Iterable, Iterator, Protocol, Sequence

import numpy as np

from extractor.datasets.loading import Loaded, LoadRequest
from extractor.datasets.transforms import PreprocessSpec, normalize
from extractor.errors import QueryBudgetExceeded
from extractor.ledger import Ledger, RequestRecord
from extractor.store.label_store import LabelRow
from extractor.teachers.base import MalformedAnswer, Teacher, TeacherOutput

_PROB_TOLERANCE = 1e-4
"""How far outside [0, 1] a probability may lie (float rounding of a softmax) before the answer is invalid."""
_SUM_TOLERANCE_PER_CLASS = 0.005
"""How far full probabilities may sum from 1, per class: an API that rounds to 2 decimals moves each by 0.005."""


@dataclass(frozen=True)
class Answered:
    """One batch and what became of it: the job commits it in one transaction."""

    sent: list[LoadRequest]
    """The images the teacher was asked about, in the order of ``output``'s rows."""
    output: TeacherOutput | None
    """The teacher's answer about ``sent``; None when the call failed or nothing was sent."""
    error: Exception | None = None
    """Why the call failed; the job decides what follows (a malformed answer fails these images, a budget
    refusal stops the job, ...)."""
    failed: list[tuple[LoadRequest, str]] = field(default_factory=list)
    """Images that never reached the teacher, with one-line reasons (unreadable, not an image, ...)."""


class TeacherCall:
    """One teacher call on decoded images, charged to the budget before it is made and recorded.

    A teacher that meters itself (HTTP: every attempt, retries included) charges and records its own
    requests in ``ledger``; any other is charged here, one charge per call.

    Args:
        teacher: the model.
        ledger: the job's budget and request records (or a worker's proxy of them).
        spec: the preprocessing, for normalising tensor inputs.
    """

    def __init__(self, teacher: Teacher, ledger: Ledger, spec: PreprocessSpec) -> None:
        self.teacher, self.ledger, self.spec = teacher, ledger, spec
        use_ledger = getattr(teacher, "use_ledger", None)  # a bare predict-only teacher is metered here
        self.meters = bool(use_ledger(ledger)) if callable(use_ledger) else False

    def __call__(self, pixels: Sequence[np.ndarray]) -> TeacherOutput:
        """Asks about uint8 (H, W, C) images: normalised to float32 (B, C, H, W), or as they are for an
        image-input teacher."""
        inputs = list(pixels) if self.teacher.input_format == "image" else normalize(np.stack(pixels), self.spec)
        if self.meters:
            return self.teacher.predict(inputs)
        images, started, clock = len(inputs), time.time(), time.perf_counter()
        try:
            self.ledger.charge(images)
        except QueryBudgetExceeded as exc:
            self.ledger.record(RequestRecord(started, images, 0, type(exc).__name__, 0.0, error=str(exc)))
            raise
        status, error = "ok", None
        try:
            return self.teacher.predict(inputs)
        except BaseException as exc:
            status, error = type(exc).__name__, str(exc)
            raise
        finally:
            self.ledger.record(RequestRecord(started, images, images, status, time.perf_counter() - clock,
                                             error=error))


class Stream(Protocol):
    """Answered batches as they come; :meth:`stop` sends nothing more, and what is in flight still comes out."""

    def __iter__(self) -> Iterator[Answered]: ...

    def stop(self) -> None: ...


class Executor(Protocol):
    def answer(self, requests: Iterable[LoadRequest], unit: int) -> ContextManager[Stream]:
        """Decodes ``requests`` and asks the teacher about them, at most ``unit`` images per call."""
        ...




def answer_files(call: TeacherCall, loaded: Sequence[Loaded]) -> Answered:
    """One batch done in one place (a Ray worker): the decoded images asked about in one call."""
    ok = [item for item in loaded if item.pixels is not None]
    failed = [(item.request, item.reason or "unknown") for item in loaded if item.pixels is None]
    sent = [item.request for item in ok]
    if not ok:
        return Answered(sent, None, failed=failed)
    try:
        return Answered(sent, call([item.pixels for item in ok]), failed=failed)
    except Exception as exc:
        return Answered(sent, None, error=exc, failed=failed)


def answer_rows(sent: list[LoadRequest], output: TeacherOutput,
                num_classes: int) -> tuple[list[LabelRow], list[tuple[LoadRequest, str]]]:
    """The answer's rows, one per image sent, and the images whose own row cannot be used, with why: one
    image's NaN fails that image, not its batch."""
    if len(output.labels) != len(sent):
        raise MalformedAnswer(f"teacher answered {len(output.labels)} images for {len(sent)} sent")
    labels, soft = output.labels, output.probs  # (B,), (B, C) or None
    classes = soft.shape[1] if soft is not None else num_classes
    reasons: dict[int, str] = {}
    if classes:
        for i in np.flatnonzero((labels < 0) | (labels >= classes)):
            reasons[int(i)] = f"the teacher's label {labels[i]} for this image is not one of its {classes} classes"
    if soft is not None:
        if output.kind in ("probs", "topk"):
            for i in np.flatnonzero(((soft < -_PROB_TOLERANCE) | (soft > 1 + _PROB_TOLERANCE)).any(axis=1)):
                reasons[int(i)] = (f"the teacher's {output.kind} for this image lie outside [0, 1] "
                                   f"(min {soft[i].min():g}, max {soft[i].max():g})")
        if output.kind == "probs":
            sums = soft.sum(axis=1)
            for i in np.flatnonzero(np.abs(sums - 1) > _PROB_TOLERANCE + _SUM_TOLERANCE_PER_CLASS * classes):
                reasons.setdefault(int(i), f"the teacher's probs for this image sum to {sums[i]:g}, not 1 "
                                           "(logits? try --output-policy auto or logits)")
        finite = np.isfinite(soft)
        for i in np.flatnonzero(~finite.all(axis=1)):
            reasons[int(i)] = (f"the teacher's scores for this image are not finite "
                               f"({int((~finite[i]).sum())} NaN or Inf)")
    rows = [LabelRow(request.digest, int(labels[i]), output.kind, None if soft is None else soft[i])
            for i, request in enumerate(sent) if i not in reasons]
    return rows, [(sent[i], reason) for i, reason in sorted(reasons.items())]
