"""The labeling job: image folder -> cache lookup -> parallel decode -> teacher -> label store."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from extractor.config import LabelConfig
from extractor.datasets.faces import FaceDetector
from extractor.datasets.folder import hash_files, list_files, looks_like_image
from extractor.errors import CacheError
from extractor.labeling.calls import TeacherCall
from extractor.labeling.executors import make_executor
from extractor.labeling.faces import FaceStage
from extractor.labeling.plan import build_plan
from extractor.labeling.preprocess import job_identity, preprocess_fingerprint, spec_data_of, view_spec_data
from extractor.labeling.run import LabelRun
from extractor.ledger import Ledger
from extractor.store.label_store import LabelStore
from extractor.teachers.base import QueryBudgetExceeded, Teacher, TeacherUnavailable
from extractor.teachers.source import TeacherOpener

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class LabelSummary:
    """What a labeling job did; `--json` prints it."""

    images: int
    """Image files found (duplicates included); other files are ``skipped``."""
    labeled: int
    cached: int
    failed: int
    queries: int
    seconds: float
    duplicates: int = 0
    not_images: int = 0
    """Failures among ``failed`` whose file is named like an image but is not one."""
    skipped: int = 0
    """Files that are not images (README.md, notes.txt, ...): never decoded nor sent, not failures."""
    skipped_budget: int = 0
    job_id: int | None = None
    dry_run: bool = False
    canary_checked: int = 0
    canary_changed: int = 0
    faces_detected: int = 0
    """Images the face detector ran on in this job (0 when every detection was stored)."""
    views: int = 1
    """Views of each image asked about: the plain image and ``views - 1`` augmented ones (--views)."""
    view_cached: int = 0
    """(image, augmented view) answers already stored."""
    tensor_format: str | None = None
    """How kserve-v2 tensors travelled: "binary" or "json"; None for other teachers."""
    stopped: str | None = None
    """Why the job stopped before its end (the teacher down), or None."""
    pending: int = 0
    """Images a stopped job did not get to; the next run asks about them."""
    by_folder: dict[str, int] | None = None
    """--dry-run: the queries per top-level folder of the image tree."""
    skipped_invalid: int = 0
    """Images not asked about because the teacher's answer about them was invalid before (--retry-failed asks)."""
    interrupted: str | None = None
    """The signal that stopped the job ("SIGINT", "SIGTERM"), or None."""

    @property
    def images_per_s(self) -> float:
        return self.labeled / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class LabelInterrupted(KeyboardInterrupt):
    """A label job stopped by Ctrl-C or SIGTERM after it stored what it had received and recorded its summary:
    ``args[0]`` names the signal (the CLI's SIGTERM handler raises ``KeyboardInterrupt("SIGTERM")``)."""

    def __init__(self, signal_name: str, summary: LabelSummary, store: Path) -> None:
        super().__init__(signal_name)
        self.summary, self.store = summary, store


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
        StoreBusy: another job writes to the store (after ``cfg.wait_for_store_s``).
        LabelInterrupted: Ctrl-C or SIGTERM (a KeyboardInterrupt naming it), after the job stored what it
            received and recorded its summary.
    """
    if cfg.dry_run:
        return _label_dataset(cfg, teacher, store, detector, opener, source)
    with store.writer("label", wait_s=cfg.wait_for_store_s):
        return _label_dataset(cfg, teacher, store, detector, opener, source)


def _label_dataset(cfg: LabelConfig, teacher: Teacher, store: LabelStore, detector: FaceDetector | None,
                   opener: TeacherOpener | None, source: dict | None) -> LabelSummary:
    started = time.perf_counter()
    spec_data = spec_data_of(cfg, detector)
    preprocess = preprocess_fingerprint(spec_data)
    root = Path(cfg.images).resolve()
    known = store.known_files(str(root))
    listed = list_files(root)
    if cfg.only_paths is not None:
        picked = set(cfg.only_paths)
        listed = [f for f in listed if f.relative_path in picked]
    files = hash_files(listed, known, workers=cfg.workers or 1)
    unreadable = [f for f in files if f.problem is not None]  # failed with their reason, never the job's end
    files = [f for f in files if f.problem is None]
    if not store.read_only:  # a dry run of a read-only store hashes again next time
        store.record_files(str(root), ((f.relative_path, f.size, f.mtime_ns, f.digest) for f in files
                                       if known.get(f.relative_path) != (f.size, f.mtime_ns, f.digest)))
    if cfg.only is not None:
        wanted = set(cfg.only)
        files = [f for f in files if f.digest in wanted]
    digests = {f.digest for f in files}
    views = {view: preprocess_fingerprint(view_spec_data(spec_data, view)) for view in cfg.views}
    identity = job_identity(teacher.fingerprint, preprocess, root)  # one job, one budget, whatever the views
    ledger = Ledger(cfg.budget, used=store.images_sent(identity))
    cached = store.cached_digests(teacher.fingerprint, preprocess, digests)
    # Paid for once already, with an answer that could not be used: planned as if answered, counted apart.
    invalid = set() if cfg.retry_failed else store.invalid_digests(teacher.fingerprint, preprocess, digests - cached)
    plan = build_plan(files, cached=cached | invalid,
                      view_done={view: _answered_or_invalid(store, teacher.fingerprint, fp, digests, cfg.retry_failed)
                                 for view, fp in views.items()},
                      allowed=ledger.remaining, order=cfg.order, seed=cfg.seed, is_image=looks_like_image)
    planned = plan.queries
    skipped_invalid = len(invalid & {f.digest for f in plan.unique})
    summary = dict(images=plan.images + len(unreadable), skipped=plan.skipped, cached=plan.cached - skipped_invalid,
                   duplicates=plan.duplicates, skipped_budget=plan.held_back, views=1 + len(views),
                   view_cached=plan.view_cached, skipped_invalid=skipped_invalid)
    if cfg.dry_run:
        return LabelSummary(labeled=0, failed=len(unreadable), queries=planned, dry_run=True,
                            by_folder=plan.by_folder(),
                            seconds=time.perf_counter() - started, **summary)
    description = _describe(teacher)
    if source is not None:
        description["source"] = source
    else:
        description.update(_recorded_source(store, teacher.fingerprint))
    for view_preprocess, view_data in [(preprocess, spec_data)] + [
            (fp, view_spec_data(spec_data, view)) for view, fp in views.items()]:
        store.register(teacher.fingerprint, description, teacher.num_classes, description.get("classes") or None,
                       view_preprocess, view_data)
    call = TeacherCall(teacher, ledger, cfg.preprocess)
    executor = make_executor(cfg, call, opener)  # before the job is recorded: a missing extra is a config error
    job_id = store.begin_job("label", identity, teacher.fingerprint, preprocess, str(root), cfg.as_data())
    journal = store.journal(job_id, identity)
    ledger.keep_in(journal)  # from here on, each request is on record before it is sent
    faces = FaceStage(detector, cfg.faces, cfg.preprocess, workers=cfg.workers) \
        if detector and cfg.faces.mode != "none" else None
    run = LabelRun(cfg, teacher, store, job_id, preprocess, faces, call, executor)
    status, interrupted = "failed", None
    try:
        run.fail_unreadable(unreadable)
        if cfg.canary:
            cached = store.cached_digests(teacher.fingerprint, preprocess, digests)
            run.canary([f for f in plan.unique if f.digest in cached][: cfg.canary])
        for purchase in plan.purchases:
            if purchase.view is None:
                run.label(list(purchase.files))
                continue
            # A view only of images with a plain answer: a file that failed is not asked about again.
            answered = store.cached_digests(teacher.fingerprint, preprocess, {f.digest for f in purchase.files})
            run.label_view(purchase.view, views[purchase.view], [f for f in purchase.files if f.digest in answered])
        status = "done" if not plan.held_back else "budget"
    except QueryBudgetExceeded as exc:  # retries used up the rest: stop cleanly, keep what was answered
        log.warning("stopped: %s", exc)
        status = "budget"
        summary["skipped_budget"] += planned - run.labeled - run.failed
    except TeacherUnavailable as exc:  # down: stop with a summary, keep what was answered
        log.warning("stopped: %s", exc)
        status = "stopped"
        summary.update(stopped=str(exc), pending=planned - run.labeled - run.failed)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (the CLI raises it so): stop as the teacher down would
        interrupted = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "SIGINT"
        status = "interrupted"
        summary.update(interrupted=interrupted, pending=planned - run.labeled - run.failed)
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
        raise LabelInterrupted(interrupted, result, cfg.store)
    return result


def _answered_or_invalid(store: LabelStore, teacher: str, preprocess: str, digests: set[str],
                         retry_failed: bool) -> set[str]:
    """The digests with an answer under ``preprocess``, and, unless retried, those whose answer was invalid."""
    done = store.cached_digests(teacher, preprocess, digests)
    return done if retry_failed else done | store.invalid_digests(teacher, preprocess, digests - done)


def _recorded_source(store: LabelStore, fingerprint: str) -> dict:
    """{"source": ...} as an earlier job recorded it for this teacher, or {}."""
    try:
        recorded = store.teacher(fingerprint)
    except CacheError:
        return {}
    return {"source": recorded["source"]} if recorded.get("source") else {}


def _describe(teacher: Teacher) -> dict:
    describe = getattr(teacher, "describe", None)
    return describe() if callable(describe) else {"type": type(teacher).__name__}
