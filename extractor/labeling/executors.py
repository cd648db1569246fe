"""Where file batches become answered batches: this machine's worker processes and threads, or a Ray cluster.

The labeling job keeps what must be single (listing, hashing, cache lookups, one store transaction per
answered batch); an executor does the rest: decode, preprocess and ask the teacher, each batch charged to
the job's one budget before it is sent. ``EXECUTORS`` names them; ``ray`` is imported only when chosen.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np

from extractor.datasets.loading import Loaded, LoadRequest, load_parallel
from extractor.errors import QueryBudgetExceeded, UnknownNameError
from extractor.labeling.calls import Answered, Executor, Stream, TeacherCall
from extractor.teachers.base import TeacherOutput
from extractor.teachers.source import TeacherOpener

if TYPE_CHECKING:
    from extractor.config import LabelConfig


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
