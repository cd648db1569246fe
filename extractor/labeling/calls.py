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
from extractor.teachers.base import Teacher, TeacherOutput


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
