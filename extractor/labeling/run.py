"""The pipelined part of a label job: decode, ask the teacher, commit its answers, settle its failures."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from extractor.config import LabelConfig
from extractor.datasets.folder import FolderFile
from extractor.datasets.loading import LoadRequest, load_many
from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.views import ViewSpec
from extractor.errors import ConfigError
from extractor.labeling.calls import Answered, Executor, Stream, TeacherCall
from extractor.labeling.commit import GroupCommit
from extractor.labeling.plan import LabelPlan
from extractor.store.label_store import INVALID_ANSWER, Failure, LabelRow
from extractor.teachers.base import MalformedAnswer, QueryBudgetExceeded, Teacher, TeacherOutput, TeacherUnavailable

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DOWN_AFTER_FAILED_REQUESTS = 8
"""Teacher requests in a row that bring no usable answer, each after its own retries, before a job stops:
the teacher is down, or answers nothing usable. Any one such request only fails its images (the next run
asks about them again; those of a request that ran out of retries are asked once more in this run)."""


_PROB_TOLERANCE = 1e-4
"""How far outside [0, 1] a probability may lie (float rounding of a softmax) before the answer is invalid."""
_SUM_TOLERANCE_PER_CLASS = 0.005
"""How far full probabilities may sum from 1, per class: an API that rounds to 2 decimals moves each by 0.005."""

RequestSource = Callable[[Sequence[FolderFile], ViewSpec | None], Iterator[LoadRequest]]
"""Load requests for a view of some files (None: the plain images): cropped to faces, or as they are."""


def plain_requests(spec: PreprocessSpec) -> RequestSource:
    """The requests of files as they are, preprocessed by ``spec``."""
    return lambda files, view: (LoadRequest(f.path, f.digest, spec, view=view) for f in files)


class LabelRun:
    """The pipelined part of one job: the executor decodes and asks the teacher; answers are committed here."""

    def __init__(self, cfg: LabelConfig, teacher: Teacher, group: GroupCommit, preprocess: str,
                 requests: RequestSource, call: TeacherCall, executor: Executor) -> None:
        self.cfg, self.teacher, self.group, self.requests = cfg, teacher, group, requests
        self.preprocess, self.call, self.executor = preprocess, call, executor
        self.ledger = call.ledger
        self.labeled = self.failed = self.queries = self.not_images = 0
        self.canary_checked = self.canary_changed = 0
        self.answered: set[str] = set()
        """Digests given a plain answer by this run."""
        self.pending_failures: list[Failure] = []
        self.unit = min(cfg.batch_size, teacher.max_batch or cfg.batch_size)
        self.deferred: list[tuple[LoadRequest, str]] = []
        """Images of requests that ran out of retries, with the reason: asked once more after the others."""
        self.unpaid: list[LoadRequest] = []
        """Images a budget refusal left unasked."""
        self.last_try = False
        self.failed_in_a_row = 0
        self.view: ViewSpec | None = None
        """The augmented view being asked about (its answers go under its own preprocessing), or None."""

    def buy(self, plan: LabelPlan, answered: set[str], views: Mapping[ViewSpec, str]) -> None:
        """Makes the plan's purchases in order: the plain images, then each view (its answers stored under its
        fingerprint in ``views``) of the images with a plain answer, stored (``answered``) or from this run."""
        for purchase in plan.purchases:
            if purchase.view is None:
                self.label(purchase.files)
                continue
            # A view only of images with a plain answer: a file that failed is not asked about again.
            self.view, self.preprocess, self.last_try = purchase.view, views[purchase.view], False
            self.label([f for f in purchase.files if f.digest in answered or f.digest in self.answered])

    def label(self, misses: Sequence[FolderFile]) -> None:
        if not misses:
            return
        bar = tqdm(total=len(misses), unit="img", desc="labeling", disable=self.cfg.quiet, leave=False)
        try:
            self._pass(self.requests(misses, self.view), bar)
            again, self.deferred, self.last_try = self.deferred, [], True
            if again:
                log.warning("asking once more about %d images whose requests failed after every retry", len(again))
                self._pass((request for request, _ in again), bar)
        finally:
            for request, reason in self.deferred:  # the job stopped early: failures the next run asks about
                self._fail(request, "teacher", reason)
            self.flush()  # a view's pass reads the plain answers this pass stored
            bar.close()

    def _pass(self, requests: Iterator[LoadRequest], bar: tqdm) -> None:
        try:
            with self.executor.answer(requests, self.unit) as stream:
                try:
                    for answered in stream:
                        self._settle(answered, bar)
                    self._commit([])
                except BaseException:
                    self._keep_paid_answers(stream, bar)
                    raise
        except QueryBudgetExceeded:
            self._spend_the_rest(bar)
            raise

    def _spend_the_rest(self, bar: tqdm) -> None:
        """After a budget refusal, asks about as many refused images as the budget still pays for, one
        request at a time: retries that used a whole batch's share end the job at its budget, not short of it."""
        while self.unpaid and self.ledger.remaining:
            count = min(self.ledger.remaining, self.unit)
            batch, self.unpaid = self.unpaid[:count], self.unpaid[count:]
            with self.executor.answer(iter(batch), count) as stream:
                try:
                    for answered in stream:
                        self._settle(answered, bar)
                except QueryBudgetExceeded:  # its retry found the budget spent; the loop sees it
                    pass
            self._commit([])

    def _keep_paid_answers(self, stream: Stream, bar: tqdm) -> None:
        """After a failure, sends nothing more and stores what the calls in flight bring back: an answer
        that was paid for is never thrown away."""
        stream.stop()
        for answered in stream:
            try:
                self._settle(answered, bar)
            except Exception as exc:  # the job is failing already; this call's own error is secondary
                log.debug("a teacher call in flight also failed: %s", exc)
        self.flush()

    def canary(self, files: Sequence[FolderFile], stored: pd.DataFrame) -> None:
        """Re-asks the teacher about cached images and warns if its answers changed from ``stored`` (the
        store's answers about them, by digest)."""
        loaded = [item for item in load_many(list(self.requests(files, None))) if item.pixels is not None]
        try:
            for start in range(0, len(loaded), self.unit):
                unit = loaded[start:start + self.unit]
                output = self.call([item.pixels for item in unit])
                self.queries += len(unit)
                self._commit([])
                for row in answer_rows([item.request for item in unit], output, self.teacher.num_classes)[0]:
                    before = stored.loc[row.digest]
                    changed = row.label != before["label"] or (
                        row.soft is not None and before["soft"] is not None
                        and not np.allclose(row.soft, before["soft"], rtol=1e-3, atol=1e-4))
                    self.canary_checked += 1
                    self.canary_changed += bool(changed)
        finally:
            self.flush()  # the ledger rows of a failed call too
        if self.canary_changed:
            log.warning("canary: the teacher now answers differently for %d of %d cached images; its model may "
                        "have changed behind the same fingerprint", self.canary_changed, self.canary_checked)

    def _settle(self, answered: Answered, bar: tqdm) -> None:
        """Commits one answered batch (or its per-image failures). A request without a usable answer fails
        its images; a budget refusal, or any other error, stops the job."""
        for request, reason in answered.failed:
            self._fail(request, "decode", reason)
        sent, error = answered.sent, answered.error
        if isinstance(error, (MalformedAnswer, TeacherUnavailable)):
            if self._failed_request(sent, error):
                sent = []  # not done yet: asked once more
        elif error is not None:
            if isinstance(error, QueryBudgetExceeded):
                self.unpaid += sent
            self._commit([])  # keeps the ledger rows of the failed call (a budget refusal included)
            raise error
        elif answered.output is not None:
            self.queries += len(sent)
            rows, invalid = answer_rows(sent, answered.output, self.teacher.num_classes)
            for request, reason in invalid:  # paid for: on record, not asked about again unless retried
                self._fail(request, INVALID_ANSWER, reason)
            if self._not_probabilities(answered, rows, invalid):
                self._commit([])  # the first answers are all "probabilities" that are not: stop paying for more
                raise ConfigError(f"the teacher's answers are not probabilities ({invalid[0][1]}); the "
                                  f"{len(invalid)} images of its first answer are kept as invalid. Label again "
                                  "with --output-policy auto (or logits)")
            self.labeled += len(rows)
            if self.view is None:
                self.answered.update(row.digest for row in rows)
            self.failed_in_a_row = 0
            self._commit(rows)
        bar.update(len(sent) + len(answered.failed))

    def _not_probabilities(self, answered: Answered, rows: list[LabelRow],
                           invalid: list[tuple[LoadRequest, str]]) -> bool:
        """Whether the job's first answer, read as probabilities, has finite scores and not one usable row:
        the teacher gives logits (or some other score) and --output-policy says probs."""
        output = answered.output
        return (output is not None and output.kind == "probs" and output.probs is not None and bool(invalid)
                and not rows and not self.labeled and not self.cfg.retry_failed
                and bool(np.isfinite(output.probs).all()))

    def _failed_request(self, sent: list[LoadRequest], error: TeacherUnavailable | MalformedAnswer) -> bool:
        """Fails the images of a request that brought no usable answer, or, where it ran out of retries, keeps
        them for one more try; stops the job after DOWN_AFTER_FAILED_REQUESTS such requests in a row.

        Returns:
            Whether the images wait for another try.
        """
        self.failed_in_a_row += 1
        again = isinstance(error, TeacherUnavailable) and not self.last_try
        if again:
            self.deferred += [(request, str(error)) for request in sent]
        else:
            self.queries += len(sent) if isinstance(error, MalformedAnswer) else 0
            for request in sent:
                self._fail(request, "teacher", str(error))
        self._commit([])
        if self.failed_in_a_row >= DOWN_AFTER_FAILED_REQUESTS:
            raise TeacherUnavailable(f"{self.failed_in_a_row} teacher requests in a row brought no usable answer "
                                     f"(each after its retries); last: {error}")
        return again

    def fail_unreadable(self, files: Sequence[FolderFile]) -> None:
        """Records files that could not be stat-ed or read (their ``problem``) as failed, without a digest."""
        for file in files:
            self._record_failure(Failure(str(file.path), None, "file", file.problem or "unreadable"))
        self._commit([])

    def _fail(self, request: LoadRequest, stage: str, reason: str) -> None:
        self.not_images += reason.startswith("not an image")
        self._record_failure(Failure(str(request.path), request.digest, stage, reason))

    def _record_failure(self, failure: Failure) -> None:
        self.failed += 1
        self.pending_failures.append(failure)
        log.debug("skipped %s: %s", failure.path, failure.reason)

    def flush(self) -> None:
        """Commits everything held: the open group's answers, failures and ledger records."""
        self._commit([])
        self.group.flush()

    def _commit(self, rows: list[LabelRow]) -> None:
        """Hands answered rows to the group commit, and commits the failures, ledger records and face detections
        since the last call."""
        failures, self.pending_failures = self.pending_failures, []
        self.group.add(self.teacher.fingerprint, self.preprocess, rows, failures, self.ledger.drain())


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
