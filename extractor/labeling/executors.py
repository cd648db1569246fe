"""Where file batches become answered batches: this machine's worker processes and threads, or a Ray cluster.

The labeling job keeps what must be single (listing, hashing, cache lookups, one store transaction per
answered batch); an executor does the rest: decode, preprocess and ask the teacher, each batch charged to
the job's one budget before it is sent. ``EXECUTORS`` names them; ``ray`` is imported only when chosen.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ContextManager, Iterable, Iterator, Protocol, Sequence

import numpy as np

from extractor.datasets.loading import Loaded, LoadRequest, load_parallel
from extractor.datasets.transforms import PreprocessSpec, normalize
from extractor.errors import QueryBudgetExceeded, UnknownNameError
from extractor.ledger import Ledger, RequestRecord
from extractor.store.label_store import LabelRow
from extractor.teachers.base import MalformedAnswer, Teacher, TeacherOutput

if TYPE_CHECKING:
    from extractor.config import LabelConfig

_PROB_TOLERANCE = 1e-4
"""How far outside [0, 1] a probability may lie (float rounding of a softmax) before the answer is invalid."""


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


TeacherOpener = Callable[..., Teacher]
"""Opens the job's teacher again in another process: ``opener(threads=..., rate_share=...)``."""


class LocalExecutor:
    """Decodes in ``workers`` processes while ``concurrency`` threads of this process ask the teacher."""

    def __init__(self, call: TeacherCall, workers: int, concurrency: int) -> None:
        self.call, self.workers, self.concurrency = call, workers, concurrency

    @contextmanager
    def answer(self, requests: Iterable[LoadRequest], unit: int) -> Iterator[Stream]:
        with load_parallel(requests, self.workers) as loaded, \
                ThreadPoolExecutor(self.concurrency, thread_name_prefix="teacher") as calls:
            stream = _LocalStream(self.call, _units(loaded, unit), calls, self.concurrency)
            try:
                yield stream
            finally:
                stream.stop()


class _LocalStream:
    def __init__(self, call: TeacherCall, units: Iterator[tuple[list[Loaded], list[tuple[LoadRequest, str]]]],
                 calls: ThreadPoolExecutor, concurrency: int) -> None:
        self.call, self.units, self.calls, self.concurrency = call, units, calls, concurrency
        self.stopped = False
        self.refusal: str | None = None
        self.in_flight: deque[tuple[list[Loaded], list[tuple[LoadRequest, str]], Future[TeacherOutput]]] = deque()
        self._batches = self._run()

    def __iter__(self) -> Iterator[Answered]:
        return self._batches

    def stop(self) -> None:
        """Cancels the calls not yet started; the started ones still come out, also when an interrupt (Ctrl-C,
        SIGTERM) ended the iteration while it waited for one: a call stays in flight until it is settled."""
        self.stopped = True
        for _, _, future in self.in_flight:
            future.cancel()
        self._batches = self._rest()

    def _run(self) -> Iterator[Answered]:
        while not self.stopped:
            unit, failed = next(self.units, (None, []))
            if unit is None:
                break
            if not unit:
                yield Answered([], None, failed=failed)
                continue
            self.in_flight.append((unit, failed, self.calls.submit(self._call, [item.pixels for item in unit])))
            # One call more than the threads can run: its input is ready the moment a thread is free.
            while len(self.in_flight) > self.concurrency and not self.stopped:
                yield from self._settle_first()
        yield from self._rest()

    def _rest(self) -> Iterator[Answered]:
        while self.in_flight:
            yield from self._settle_first()

    def _settle_first(self) -> Iterator[Answered]:
        """The oldest call's outcome, taken off ``in_flight`` only once it is done."""
        unit, failed, future = self.in_flight[0]
        if not future.cancelled():
            wait([future])
        self.in_flight.popleft()
        yield from _settled(unit, failed, future)

    def _call(self, pixels: list[np.ndarray]) -> TeacherOutput:
        """On a teacher thread: once the budget refused a call, the calls already queued are refused too,
        without asking the budget again (their images wait for the next run, or a larger budget)."""
        if self.refusal is not None:
            raise QueryBudgetExceeded(self.refusal)
        try:
            return self.call(pixels)
        except QueryBudgetExceeded as exc:
            self.refusal = str(exc)
            raise


def _settled(unit: list[Loaded], failed: list[tuple[LoadRequest, str]],
             future: Future[TeacherOutput]) -> Iterator[Answered]:
    """The call's answer or error, once it is done; nothing for a call cancelled before it started."""
    if future.cancelled():
        return
    sent = [item.request for item in unit]
    try:
        output = future.result()
    except Exception as exc:
        yield Answered(sent, None, error=exc, failed=failed)
    else:
        yield Answered(sent, output, failed=failed)


def _units(loaded: Iterator[Loaded], size: int) -> Iterator[tuple[list[Loaded], list[tuple[LoadRequest, str]]]]:
    """Groups decoded images into teacher calls of ``size``, each with the failures met since the last."""
    unit: list[Loaded] = []
    failed: list[tuple[LoadRequest, str]] = []
    for item in loaded:
        if item.pixels is None:
            failed.append((item.request, item.reason or "unknown"))
            continue
        unit.append(item)
        if len(unit) == size:
            yield unit, failed
            unit, failed = [], []
    if unit or failed:
        yield unit, failed


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
        finite = np.isfinite(soft)
        for i in np.flatnonzero(~finite.all(axis=1)):
            reasons[int(i)] = (f"the teacher's scores for this image are not finite "
                               f"({int((~finite[i]).sum())} NaN or Inf)")
    rows = [LabelRow(request.digest, int(labels[i]), output.kind, None if soft is None else soft[i])
            for i, request in enumerate(sent) if i not in reasons]
    return rows, [(sent[i], reason) for i, reason in sorted(reasons.items())]


def _local(cfg: LabelConfig, call: TeacherCall, opener: TeacherOpener | None) -> Executor:
    return LocalExecutor(call, cfg.workers, cfg.concurrency)


def _ray(cfg: LabelConfig, call: TeacherCall, opener: TeacherOpener | None) -> Executor:
    from extractor.labeling.ray_executor import RayExecutor  # imports ray, only here

    return RayExecutor(call, opener, address=cfg.ray_address, actors=cfg.ray_actors, concurrency=cfg.concurrency)


EXECUTORS: dict[str, Callable[[LabelConfig, TeacherCall, TeacherOpener | None], Executor]] = {
    "local": _local, "ray": _ray}


def make_executor(cfg: LabelConfig, call: TeacherCall, opener: TeacherOpener | None) -> Executor:
    """The executor ``cfg.executor`` names.

    Raises:
        UnknownNameError: naming the valid executors.
    """
    try:
        factory = EXECUTORS[cfg.executor]
    except KeyError:
        raise UnknownNameError(f"--executor must be one of {', '.join(EXECUTORS)}, got {cfg.executor!r}") from None
    return factory(cfg, call, opener)
