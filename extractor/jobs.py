"""The labeling job: image folder -> cache lookup -> parallel decode -> teacher -> label store."""
from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from extractor.config import LabelConfig
from extractor.datasets.faces import FaceDetector
from extractor.datasets.folder import FolderFile, hash_files, list_files, looks_like_image
from extractor.datasets.loading import Loaded, LoadRequest, load_many, load_parallel
from extractor.datasets.transforms import normalize
from extractor.errors import ConfigError
from extractor.face_stage import FaceStage
from extractor.fingerprint import stable_hash
from extractor.ledger import Ledger, RequestRecord
from extractor.store import Failure, LabelRow, LabelStore
from extractor.teachers.base import (
    MalformedAnswer,
    QueryBudgetExceeded,
    Teacher,
    TeacherOutput,
)

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

    @property
    def images_per_s(self) -> float:
        return self.labeled / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def preprocess_fingerprint(spec_data: dict) -> str:
    return stable_hash(spec_data)


def job_identity(teacher_fingerprint: str, preprocess: str, root: Path) -> str:
    """What makes two runs the same job (a resume): teacher, preprocessing and folder."""
    return stable_hash([teacher_fingerprint, preprocess, str(Path(root).resolve())])


def spec_data_of(cfg: LabelConfig, detector: FaceDetector | None) -> dict:
    """Everything that shapes the teacher's input, as plain data: its hash keys the cache."""
    data: dict = {"transform": cfg.preprocess.as_data()}
    if cfg.faces.mode != "none":
        if detector is None:
            raise ConfigError(f"--faces {cfg.faces.mode} needs a face detector")
        data.update(faces=cfg.faces.as_data(), detector=detector.as_data())
    return data


def label_dataset(cfg: LabelConfig, teacher: Teacher, store: LabelStore, *,
                  detector: FaceDetector | None = None) -> LabelSummary:
    """Labels every image under ``cfg.images`` that the store has no answer for.

    The job owns the query ledger: ``cfg.budget`` less what earlier runs of the same job sent (from the
    store) is what this run may send, charged before each request and recorded with each batch.

    Args:
        cfg: the job's configuration.
        teacher: the opaque model.
        store: where answers, failures, request records and face detections land, one transaction
            per answered batch.
        detector: finds faces when ``cfg.faces`` asks for them; detections are stored and reused.
    """
    started = time.perf_counter()
    spec_data = spec_data_of(cfg, detector)
    preprocess = preprocess_fingerprint(spec_data)
    root = Path(cfg.images).resolve()
    known = store.known_files(str(root))
    files = hash_files(list_files(root), known, workers=cfg.workers or 1)
    store.record_files(str(root), ((f.relative_path, f.size, f.mtime_ns, f.digest) for f in files
                                   if known.get(f.relative_path) != (f.size, f.mtime_ns, f.digest)))
    cached = store.cached_digests(teacher.fingerprint, preprocess, {f.digest for f in files})
    images = [f for f in files if f.digest in cached or looks_like_image(f)]  # only misses are sniffed
    unique = list({f.digest: f for f in reversed(images)}.values())[::-1]
    misses = [f for f in unique if f.digest not in cached]
    identity = job_identity(teacher.fingerprint, preprocess, root)
    ledger = Ledger(cfg.budget, used=store.images_sent(identity))
    skipped, allowed = 0, ledger.remaining
    if allowed is not None:
        skipped, misses = max(0, len(misses) - allowed), misses[:allowed]
    summary = dict(images=len(images), skipped=len(files) - len(images), cached=len(cached),
                   duplicates=len(images) - len(unique), skipped_budget=skipped)
    if cfg.dry_run:
        return LabelSummary(labeled=0, failed=0, queries=len(misses), dry_run=True,
                            seconds=time.perf_counter() - started, **summary)
    description = _describe(teacher)
    store.register(teacher.fingerprint, description, teacher.num_classes, description.get("classes") or None,
                   preprocess, spec_data)
    job_id = store.begin_job("label", identity, teacher.fingerprint, preprocess, str(root), cfg.as_data())
    faces = FaceStage(detector, cfg.faces, cfg.preprocess, workers=cfg.workers) \
        if detector and cfg.faces.mode != "none" else None
    run = _LabelRun(cfg, teacher, store, job_id, preprocess, ledger, faces)
    status = "failed"
    try:
        if cfg.canary:
            run.canary([f for f in unique if f.digest in cached][: cfg.canary])
        run.label(misses)
        status = "done" if not skipped else "budget"
    except QueryBudgetExceeded as exc:  # retries used up the rest: stop cleanly, keep what was answered
        log.warning("stopped: %s", exc)
        status = "budget"
        summary["skipped_budget"] += len(misses) - run.labeled - run.failed
    finally:
        result = LabelSummary(labeled=run.labeled, failed=run.failed, queries=run.queries, job_id=job_id,
                              not_images=run.not_images, seconds=time.perf_counter() - started,
                              canary_checked=run.canary_checked, canary_changed=run.canary_changed,
                              faces_detected=faces.detected if faces else 0, **summary)
        store.finish_job(job_id, status, result.as_dict())
    return result


class _LabelRun:
    """The pipelined part of one job: workers decode while the teacher answers."""

    def __init__(self, cfg: LabelConfig, teacher: Teacher, store: LabelStore, job_id: int, preprocess: str,
                 ledger: Ledger, faces: FaceStage | None) -> None:
        self.cfg, self.teacher, self.store, self.faces = cfg, teacher, store, faces
        self.job_id, self.preprocess, self.ledger = job_id, preprocess, ledger
        use_ledger = getattr(teacher, "use_ledger", None)  # a bare predict-only teacher is metered here
        self.teacher_meters = bool(use_ledger(ledger)) if callable(use_ledger) else False
        self.labeled = self.failed = self.queries = self.not_images = 0
        self.canary_checked = self.canary_changed = 0
        self.pending_failures: list[Failure] = []
        self.unit = min(cfg.batch_size, teacher.max_batch or cfg.batch_size)

    def label(self, misses: Sequence[FolderFile]) -> None:
        if not misses:
            return
        requests = self._requests(misses)
        bar = tqdm(total=len(misses), unit="img", desc="labeling", disable=self.cfg.quiet, leave=False)
        in_flight: deque[tuple[list[Loaded], Future[TeacherOutput]]] = deque()
        with load_parallel(requests, self.cfg.workers) as loaded, \
                ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="teacher") as calls:
            try:
                for unit in self._units(loaded, bar):
                    in_flight.append((unit, calls.submit(self._predict, self._inputs(unit))))
                    # One call more than the threads can run: its input is ready the moment a thread is free.
                    while len(in_flight) > self.cfg.concurrency:
                        self._settle(*in_flight.popleft(), bar)
                while in_flight:
                    self._settle(*in_flight.popleft(), bar)
                self._commit([])
            except BaseException:
                self._keep_paid_answers(in_flight, bar)
                raise
            finally:
                bar.close()

    def _keep_paid_answers(self, in_flight: deque, bar: tqdm) -> None:
        """After a failure, cancels the calls not yet started and stores what the started ones bring
        back: an answer that was paid for is never thrown away."""
        for unit, future in in_flight:
            if future.cancel():
                continue
            try:
                self._settle(unit, future, bar)
            except Exception as exc:  # the job is failing already; this call's own error is secondary
                log.debug("a teacher call in flight also failed: %s", exc)
        self._commit([])

    def canary(self, files: Sequence[FolderFile]) -> None:
        """Re-asks the teacher about cached images and warns if its answers changed."""
        stored = self.store.labels(teacher=self.teacher.fingerprint, preprocess=self.preprocess,
                                   digests=[f.digest for f in files]).set_index("digest")
        loaded = [item for item in load_many(list(self._requests(files))) if item.pixels is not None]
        try:
            for start in range(0, len(loaded), self.unit):
                unit = loaded[start:start + self.unit]
                output = self._predict(self._inputs(unit))
                self.queries += len(unit)
                self._commit([])
                for row in _rows(unit, output):
                    before = stored.loc[row.digest]
                    changed = row.label != before["label"] or (
                        row.soft is not None and before["soft"] is not None
                        and not np.allclose(row.soft, before["soft"], rtol=1e-3, atol=1e-4))
                    self.canary_checked += 1
                    self.canary_changed += bool(changed)
        finally:
            self._commit([])  # the ledger rows of a failed call too
        if self.canary_changed:
            log.warning("canary: the teacher now answers differently for %d of %d cached images; its model may "
                        "have changed behind the same fingerprint", self.canary_changed, self.canary_checked)

    def _requests(self, files: Sequence[FolderFile]) -> Iterator[LoadRequest]:
        if self.faces is None:
            return (LoadRequest(f.path, f.digest, self.cfg.preprocess) for f in files)
        known = self.store.detections(self.faces.fingerprint, (f.digest for f in files))
        return self.faces.requests(files, known)

    def _units(self, loaded: Iterator[Loaded], bar: tqdm) -> Iterator[list[Loaded]]:
        """Groups decoded images into teacher calls; failures are set aside for the next commit."""
        unit: list[Loaded] = []
        for item in loaded:
            if item.pixels is None:
                self._fail(item.request, "decode", item.reason or "unknown")
                bar.update(1)
                continue
            unit.append(item)
            if len(unit) == self.unit:
                yield unit
                unit = []
        if unit:
            yield unit

    def _predict(self, inputs: np.ndarray | list[np.ndarray]) -> TeacherOutput:
        """One teacher call (on a teacher thread). A teacher that meters itself charges and records its
        requests; any other is charged here before the call, and the call is recorded."""
        if self.teacher_meters:
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

    def _inputs(self, unit: list[Loaded]) -> np.ndarray | list[np.ndarray]:
        """What the teacher takes: normalised float32 (B, C, H, W), or the uint8 images themselves."""
        pixels = [item.pixels for item in unit]
        if self.teacher.input_format == "image":
            return pixels
        return normalize(np.stack(pixels), self.cfg.preprocess)

    def _settle(self, unit: list[Loaded], future: Future[TeacherOutput], bar: tqdm) -> None:
        """Waits for one teacher call and commits its answers (or its per-image failures)."""
        try:
            output = future.result()
        except MalformedAnswer as exc:
            self.queries += len(unit)
            for item in unit:
                self._fail(item.request, "teacher", str(exc))
            self._commit([])
        except BaseException:
            self._commit([])  # keeps the ledger rows of the failed call (a budget refusal included)
            raise
        else:
            self.queries += len(unit)
            rows = _rows(unit, output)
            self.labeled += len(rows)
            self._commit(rows)
        bar.update(len(unit))

    def _fail(self, request: LoadRequest, stage: str, reason: str) -> None:
        self.failed += 1
        self.not_images += reason.startswith("not an image")
        self.pending_failures.append(Failure(str(request.path), request.digest, stage, reason))
        log.debug("skipped %s: %s", request.path, reason)

    def _commit(self, rows: list[LabelRow]) -> None:
        """Stores answered rows with the failures, ledger records and face detections since the last commit."""
        failures, self.pending_failures = self.pending_failures, []
        requests = self.ledger.drain()
        detections = self.faces.take_detections() if self.faces is not None else []
        if detections:
            self.store.put_detections(self.faces.fingerprint, detections)
        if rows or failures or requests:
            self.store.commit_batch(self.job_id, self.teacher.fingerprint, self.preprocess, rows, failures, requests)


def _rows(unit: list[Loaded], output: TeacherOutput) -> list[LabelRow]:
    if len(output.labels) != len(unit):
        raise MalformedAnswer(f"teacher answered {len(output.labels)} images for {len(unit)} sent")
    soft = output.probs
    return [LabelRow(item.request.digest, int(output.labels[i]), output.kind, None if soft is None else soft[i])
            for i, item in enumerate(unit)]


def _describe(teacher: Teacher) -> dict:
    describe = getattr(teacher, "describe", None)
    return describe() if callable(describe) else {"type": type(teacher).__name__}
