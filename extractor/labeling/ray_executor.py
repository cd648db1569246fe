"""The Ray executor: label workers (Ray actors, each holding its own teacher) decode, preprocess and ask the
teacher; one budget actor charges every request of every worker before it is sent.

The driver (the job) keeps listing, hashing, cache lookups and the one store transaction per answered
batch. A worker that dies is restarted by Ray and its batch answered again; the store keys each answer
by content, so it is stored once. Every node needs extractor installed and the images at the same path.
"""
from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence

from extractor.errors import ConfigError, ExtractionError, QueryBudgetExceeded, TeacherError

try:
    import ray
except ImportError:  # the optional extra
    raise ConfigError("--executor ray needs Ray: pip install 'extractor-distill[ray]'") from None

from extractor.datasets.loading import LoadRequest, load_many
from extractor.datasets.transforms import PreprocessSpec
from extractor.labeling.calls import Answered, Stream, TeacherCall, answer_files
from extractor.ledger import Ledger, RequestRecord
from extractor.teachers.source import TeacherOpener

log = logging.getLogger(__name__)

RESTARTS = 3
"""How often Ray restarts a dead worker, and retries a batch whose worker died."""
_DEPTH = 1
"""Batches queued on each worker beyond those it runs: its next input is there the moment it is free."""


class RayExecutor:
    """Answers file batches on a Ray cluster.

    Args:
        call: the driver's teacher call: its ledger is the job's, its teacher's fingerprint what every
            worker's teacher must have.
        opener: opens the teacher in a worker.
        address: the cluster ("auto", HOST:PORT); None joins the one this process is connected to, or
            starts one on this machine.
        actors: label workers; 0 for one per CPU of the cluster.
        concurrency: batches each worker runs at once (threads; useful for HTTP teachers).
    """

    def __init__(self, call: TeacherCall, opener: TeacherOpener | None, *, address: str | None, actors: int,
                 concurrency: int) -> None:
        if opener is None:
            raise ConfigError("--executor ray needs a teacher that can be opened again in a worker")
        self.call, self.opener = call, opener
        self.address, self.actors, self.concurrency = address, actors, concurrency

    @contextmanager
    def answer(self, requests: Iterable[LoadRequest], unit: int) -> Iterator[Stream]:
        started_here = _connect(self.address)
        budget = workers = None
        try:
            ledger = self.call.ledger
            budget_name = f"extractor-budget-{uuid.uuid4().hex}"  # workers look it up by name, also after a restart
            budget = ray.remote(_Budget).options(num_cpus=0, max_restarts=0, name=budget_name).remote(
                ledger.budget, ledger.used)
            count = self.actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
            worker = ray.remote(_LabelWorker).options(num_cpus=1, max_restarts=RESTARTS, max_task_retries=RESTARTS,
                                                      max_concurrency=self.concurrency)
            workers = [worker.remote(self.opener, self.call.spec, self.call.teacher.fingerprint, budget_name,
                                     threads=1, rate_share=1.0 / count) for _ in range(count)]
            stream = _RayStream(workers, budget, _chunked(requests, unit), self.concurrency + _DEPTH, ledger)
            try:
                yield stream
            finally:
                stream.stop()
        finally:
            for actor in (workers or []) + ([budget] if budget is not None else []):
                ray.kill(actor)
            if started_here:
                ray.shutdown()


class _RayStream:
    """Hands each worker its next batch as it finishes one; yields answers as they arrive."""

    def __init__(self, workers: list, budget: object, chunks: Iterator[list[LoadRequest]], depth: int,
                 ledger: Ledger) -> None:
        self.workers, self.budget, self.chunks, self.depth, self.ledger = workers, budget, chunks, depth, ledger
        self.stopped = False
        self.received = 0  # images charged in the records that came back
        self._batches = self._run()

    def __iter__(self) -> Iterator[Answered]:
        return self._batches

    def stop(self) -> None:
        """Sends no more batches; those queued or running still come out."""
        self.stopped = True

    def _run(self) -> Iterator[Answered]:
        pending: dict = {}
        for _ in range(self.depth):
            for index in range(len(self.workers)):
                self._submit(index, pending)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ref)
            try:
                answered, records = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                raise ExtractionError(f"a Ray label worker died {RESTARTS + 1} times on one batch: "
                                      f"{_first_line(exc)}") from None
            for record in records:
                self.ledger.record(record)
                self.ledger.charged_elsewhere(record.charged)
                self.received += record.charged
            self._submit(index, pending)
            yield answered
        self._count_lost_charges()

    def _submit(self, index: int, pending: dict) -> None:
        if self.stopped:
            return
        chunk = next(self.chunks, None)
        if chunk is not None:
            pending[self.workers[index].answer.remote(chunk)] = index

    def _count_lost_charges(self) -> None:
        """Images charged by a worker that then died, so that its records never came back, are sent for all
        we know: one ledger row keeps them in the job's count (and a resume's budget)."""
        lost = ray.get(self.budget.charged.remote()) - self.received
        if lost > 0:
            log.warning("%d images were charged by Ray workers that died before reporting; counted as sent", lost)
            self.ledger.record(RequestRecord(time.time(), 0, lost, "lost", 0.0,
                                             error="a Ray worker died with requests in flight"))
            self.ledger.charged_elsewhere(lost)


class _Budget:
    """The job's one budget (a Ray actor): every worker charges here before each request it sends."""

    def __init__(self, budget: int | None, used: int) -> None:
        self.ledger = Ledger(budget, used=used)
        self.total = 0

    def charge(self, images: int) -> str | None:
        """Counts ``images`` as sent; returns why not (and counts nothing) when they would pass the budget."""
        try:
            self.ledger.charge(images)
        except QueryBudgetExceeded as exc:
            return str(exc)
        self.total += images
        return None

    def charged(self) -> int:
        return self.total


class _BudgetProxy(Ledger):
    """A worker's view of the job's ledger: charges go to the budget actor (and wait for its yes); request
    records stay here until the batch that made them returns them to the driver."""

    def __init__(self, budget: object) -> None:
        super().__init__()
        self.budget = budget

    def charge(self, images: int) -> None:
        refusal = ray.get(self.budget.charge.remote(images))
        if refusal is not None:
            raise QueryBudgetExceeded(refusal)


class _LabelWorker:
    """Loads the teacher once; then decodes, preprocesses and asks the teacher, a batch per call."""

    def __init__(self, opener: TeacherOpener, spec: PreprocessSpec, fingerprint: str, budget: str, *,
                 threads: int, rate_share: float) -> None:
        teacher = opener(threads=threads, rate_share=rate_share)
        if teacher.fingerprint != fingerprint:
            raise TeacherError(f"the teacher opened on a Ray worker has fingerprint {teacher.fingerprint[:12]}, "
                               f"the job's {fingerprint[:12]}: it changed, or the nodes see different files")
        self.ledger = _BudgetProxy(ray.get_actor(budget))
        self.call = TeacherCall(teacher, self.ledger, spec)

    def answer(self, requests: Sequence[LoadRequest]) -> tuple[Answered, list[RequestRecord]]:
        """The batch's answer, with the request records made since the last batch returned."""
        answered = answer_files(self.call, load_many(requests))
        return answered, self.ledger.drain()


def _connect(address: str | None) -> bool:
    """Joins the cluster (or starts one here); True if this call started the connection."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--ray-address {address}: cannot join the Ray cluster: {_first_line(exc)}") from None
    return True


def _chunked(requests: Iterable[LoadRequest], size: int) -> Iterator[list[LoadRequest]]:
    chunk: list[LoadRequest] = []
    for request in requests:
        chunk.append(request)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
