"""The labeling job: image folder -> cache lookup -> parallel decode -> teacher -> label store."""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext

from extractor.config import LabelConfig
from extractor.datasets.faces import FaceDetector
from extractor.datasets.folder import looks_like_image
from extractor.labeling.calls import TeacherCall
from extractor.labeling.commit import GROUP_WAIT_S, GroupCommit
from extractor.labeling.executors import make_executor
from extractor.labeling.faces import FaceStage
from extractor.labeling.plan import build_plan
from extractor.labeling.preprocess import job_keys
from extractor.labeling.run import LabelRun, plain_requests
from extractor.labeling.summary import LabelInterrupted, LabelSummary
from extractor.labeling.survey import survey
from extractor.ledger import Ledger
from extractor.store.label_store import LabelStore
from extractor.teachers.base import QueryBudgetExceeded, Teacher, TeacherUnavailable
from extractor.teachers.source import TeacherOpener

log = logging.getLogger(__name__)


def label_dataset(cfg: LabelConfig, teacher: Teacher, store: LabelStore, *,
                  detector: FaceDetector | None = None, opener: TeacherOpener | None = None,
                  source: dict | None = None) -> LabelSummary:
    """Labels every image under ``cfg.images`` that the store has no answer for, then each of ``cfg.views``
    of every image with an answer (each view under its own preprocessing fingerprint).

    The job holds the store's write lock (:meth:`LabelStore.writer`) from listing to its summary, so that it
    plans with every answer another job bought, and two jobs never pay for one image; a dry run reads only.
    The job owns the query ledger: ``cfg.budget`` less what earlier runs of the same job sent (from the
    store, requests killed in flight included) is what this run may send, each request on record in the
    store before it is sent. An image whose answer was invalid (NaN scores, ...) is not asked about again
    unless ``cfg.retry_failed``.

    Args:
        cfg: the job's configuration.
        teacher: the opaque model.
        store: where answers, failures, request records and face detections land: each answered batch's
            failures and request records at once, its answers in groups (:class:`GroupCommit`, at most
            GROUP_ROWS answers or about a second's), every group flushed before the job returns or raises.
        detector: finds faces when ``cfg.faces`` asks for them; detections are stored and reused.
        opener: opens the same teacher in another process (``cfg.executor == "ray"`` needs it).
        source: how to reach the teacher again (``TeacherSource.as_data()``), recorded with it so that
            `extractor train` can probe it; None keeps what an earlier job recorded.

    Raises:
        StoreBusy: another job writes to the store (after the store handle's ``wait_s``).
        LabelInterrupted: Ctrl-C or SIGTERM (a KeyboardInterrupt naming it), after the job stored what it
            received and recorded its summary.
    """
    started = time.perf_counter()
    keys = job_keys(cfg, teacher.fingerprint, detector)
    with nullcontext() if cfg.dry_run else store.writer("label"):
        found = survey(cfg, keys, store, teacher.fingerprint)
        ledger = Ledger(cfg.budget, used=found.held.sent)
        plan = build_plan(found.files, cached=found.held.done(keys.preprocess),
                          view_done={view: found.held.done(fp) for view, fp in keys.views.items()},
                          allowed=ledger.remaining, order=cfg.order, seed=cfg.seed, is_image=looks_like_image)
        skipped_invalid = len(found.held.invalid[keys.preprocess] & {f.digest for f in plan.unique})
        summary = {"images": plan.images + len(found.unreadable), "skipped": plan.skipped,
                   "cached": plan.cached - skipped_invalid, "duplicates": plan.duplicates,
                   "skipped_budget": plan.held_back, "views": 1 + len(keys.views), "view_cached": plan.view_cached,
                   "skipped_invalid": skipped_invalid, "preprocess": keys.preprocess}
        if cfg.dry_run:
            return LabelSummary(labeled=0, failed=len(found.unreadable), queries=plan.queries, dry_run=True,
                                by_folder=plan.by_folder(), seconds=time.perf_counter() - started, **summary)
        recorded = source or found.held.source
        description = {**_describe(teacher), **({"source": recorded} if recorded else {})}
        call = TeacherCall(teacher, ledger, cfg.preprocess)
        executor = make_executor(cfg, call, opener)  # before the job is recorded: a missing extra is a config error
        config = cfg.as_data()
        for preprocess, spec_data in keys.specs.items():
            store.register(teacher.fingerprint, description, teacher.num_classes, description.get("classes") or None,
                           preprocess, spec_data)
        job_id = store.begin_job("label", keys.identity, teacher.fingerprint, keys.preprocess, str(found.root), config)
        journal = store.journal(job_id, keys.identity)
        ledger.keep_in(journal)  # from here on, each request is on record before it is sent
        # A teacher that meters itself (HTTP) is paid per image and answers slowly: each answer is committed as it
        # comes, so a kill loses only the requests in flight. A local model's answers are grouped (cheap to ask
        # again, and thousands a second to commit).
        group = GroupCommit(store, job_id, wait_s=0.0 if call.meters else GROUP_WAIT_S, detector=keys.detector)
        faces = FaceStage(detector, cfg.faces, cfg.preprocess, known=found.held.detections,
                          keep=group.hold_detections, workers=cfg.workers) \
            if detector is not None and keys.detector else None
        requests = faces.requests if faces else plain_requests(cfg.preprocess)
        run = LabelRun(cfg, teacher, group, keys.preprocess, requests, call, executor)
        status, interrupted = "failed", None
        try:
            run.fail_unreadable(found.unreadable)
            if found.held.canary is not None:
                run.canary([f for f in plan.unique if f.digest in found.held.canary.index], found.held.canary)
            run.buy(plan, found.held.answered[keys.preprocess], keys.views)
            status = "done" if not plan.held_back else "budget"
        except QueryBudgetExceeded as exc:  # retries used up the rest: stop cleanly, keep what was answered
            log.warning("stopped: %s", exc)
            status = "budget"
            summary["skipped_budget"] += plan.queries - run.labeled - run.failed
        except TeacherUnavailable as exc:  # down: stop with a summary, keep what was answered
            log.warning("stopped: %s", exc)
            status = "stopped"
            summary.update(stopped=str(exc), pending=plan.queries - run.labeled - run.failed)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (the CLI raises it so): stop as the teacher down would
            interrupted = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "SIGINT"
            status = "interrupted"
            summary.update(interrupted=interrupted, pending=plan.queries - run.labeled - run.failed)
        finally:
            try:
                run.flush()  # every exit path: the answers of the open group were paid for
            finally:
                ledger.close()
                journal.close()
            summary["tensor_format"] = getattr(teacher, "tensor_format", None)
            result = LabelSummary(labeled=run.labeled, failed=run.failed, queries=run.queries, job_id=job_id,
                                  not_images=run.not_images, seconds=time.perf_counter() - started,
                                  canary_checked=run.canary_checked, canary_changed=run.canary_changed,
                                  faces_detected=faces.detected if faces else 0, **summary)
            store.finish_job(job_id, status, result.as_dict())
    if interrupted is not None:
        raise LabelInterrupted(interrupted, result, store.path)
    return result


def _describe(teacher: Teacher) -> dict:
    describe = getattr(teacher, "describe", None)
    return describe() if callable(describe) else {"type": type(teacher).__name__}
