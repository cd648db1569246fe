"""How a label job stops: interrupted (it stores what is in flight and says so), or refused a busy store."""
import multiprocessing
import signal
import sqlite3
import time

import pytest

from extractor.config import LabelConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.labeling.job import LabelInterrupted, label_dataset
from extractor.store.label_store import LabelStore
from extractor.store.lock import StoreBusy, StoreLock
from extractor.teachers.onnx import OnnxTeacher
from tests.images import write_jpegs
from tests.models import linear_classifier


class InterruptedTeacher:
    """An ONNX teacher during whose ``calls``-th call SIGTERM arrives; the call itself still answers."""

    def __init__(self, path, calls):
        self.inner = OnnxTeacher(path)
        self.fingerprint, self.num_classes = self.inner.fingerprint, self.inner.num_classes
        self.input_format, self.max_batch, self.input_shape = "tensor", None, self.inner.input_shape
        self.calls, self.answered = calls, 0

    def predict(self, batch):
        self.calls -= 1
        if self.calls == 0:
            signal.setitimer(signal.ITIMER_REAL, 0.05)  # the main thread is waiting for this call when it comes
            time.sleep(0.3)
        self.answered += len(batch)
        return self.inner.predict(batch)


def _sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")  # what the CLI's SIGTERM handler raises


@pytest.fixture
def cfg(tmp_path):
    write_jpegs(tmp_path / "images", 24)
    linear_classifier(tmp_path / "t.onnx")
    return LabelConfig(images=tmp_path / "images", store=tmp_path / "labels.db", preprocess=PreprocessSpec(size=16),
                       batch_size=4, workers=0, quiet=True)


def test_an_interrupted_job_keeps_the_answer_in_flight_and_records_why_it_stopped(cfg):
    teacher = InterruptedTeacher(cfg.store.parent / "t.onnx", calls=3)
    previous = signal.signal(signal.SIGALRM, _sigterm)
    try:
        with LabelStore(cfg.store) as store, pytest.raises(LabelInterrupted) as stopped:
            label_dataset(cfg, teacher, store)
    finally:
        signal.signal(signal.SIGALRM, previous)
    summary = stopped.value.summary
    assert stopped.value.args == ("SIGTERM",) and summary.interrupted == "SIGTERM"
    assert summary.labeled == teacher.answered == 12 and summary.pending == 12  # the call in flight was stored
    with sqlite3.connect(cfg.store) as db:
        assert db.execute("SELECT COUNT(*) FROM labels").fetchone() == (12,)
        assert db.execute("SELECT SUM(images_sent), COUNT(*) FROM requests").fetchone() == (12, 3)
        assert db.execute("SELECT status FROM jobs").fetchall() == [("interrupted",)]
    with LabelStore(cfg.store) as store:  # the lock went with the job
        rest = label_dataset(cfg, OnnxTeacher(cfg.store.parent / "t.onnx"), store)
    assert (rest.cached, rest.labeled) == (12, 12)


def _hold(store, ready, release):
    with StoreLock(store, "label"):
        ready.set()
        release.wait(60)


def test_a_busy_store_stops_a_job_before_it_buys_anything(cfg):
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(cfg.store, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        teacher = InterruptedTeacher(cfg.store.parent / "t.onnx", calls=-1)
        with LabelStore(cfg.store) as store, pytest.raises(StoreBusy, match=f"pid {holder.pid}"):
            label_dataset(cfg, teacher, store)
        assert teacher.answered == 0
        dry = LabelConfig(**{**cfg.__dict__, "dry_run": True})  # a dry run reads, and needs no lock
        with LabelStore(cfg.store) as store:
            assert label_dataset(dry, teacher, store).queries == 24
    finally:
        release.set()
        holder.join(10)
