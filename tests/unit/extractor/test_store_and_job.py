import multiprocessing
import os
import signal
import sqlite3

import numpy as np
import pytest

from extractor.config import LabelConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import CacheError
from extractor.labeling.commit import GroupCommit
from extractor.labeling.job import label_dataset
from extractor.ledger import RequestRecord
from extractor.store.label_store import LabelRow, LabelStore
from extractor.teachers.onnx import OnnxTeacher
from tests.images import broken_files, other_files, random_image, write_jpegs
from tests.models import linear_classifier


class CountingTeacher:
    """An ONNX teacher that counts the images it was asked about."""

    def __init__(self, path):
        self.inner = OnnxTeacher(path)
        self.fingerprint, self.num_classes = self.inner.fingerprint, self.inner.num_classes
        self.input_format, self.max_batch = "tensor", None
        self.images_seen = 0

    def predict(self, batch):
        self.images_seen += len(batch)
        return self.inner.predict(batch)


class FailingTeacher(CountingTeacher):
    """Answers ``calls`` requests, then fails the next one: raises ``error``, or is killed (-9) when None."""

    def __init__(self, path, calls, error=None):
        super().__init__(path)
        self.calls, self.error = calls, error

    def predict(self, batch):
        if self.calls == 0:
            if self.error is None:
                os.kill(os.getpid(), signal.SIGKILL)
            raise self.error
        self.calls -= 1
        return super().predict(batch)


@pytest.fixture
def setup(tmp_path):
    write_jpegs(tmp_path / "images", 10)
    teacher = CountingTeacher(linear_classifier(tmp_path / "t.onnx"))
    cfg = LabelConfig(images=tmp_path / "images", store=tmp_path / "labels.db",
                      preprocess=PreprocessSpec(size=16), batch_size=4, workers=0, quiet=True)
    return cfg, teacher


def test_second_run_queries_nothing_and_new_teacher_queries_again(setup, tmp_path):
    cfg, teacher = setup
    with LabelStore(cfg.store) as store:
        first = label_dataset(cfg, teacher, store)
        second = label_dataset(cfg, teacher, store)
        assert (first.labeled, first.queries, teacher.images_seen) == (10, 10, 10)
        assert (second.labeled, second.cached, second.queries, teacher.images_seen) == (0, 10, 0, 10)
        other = CountingTeacher(linear_classifier(tmp_path / "t2.onnx", seed=5))
        assert label_dataset(cfg, other, store).queries == 10 and other.images_seen == 10
        frame = store.labels(teacher=teacher.fingerprint)
    assert len(frame) == 10 and frame["digest"].is_unique
    assert all(soft.shape == (3,) and soft.dtype == np.float32 for soft in frame["soft"])


def test_changed_preprocessing_queries_again(setup):
    cfg, teacher = setup
    with LabelStore(cfg.store) as store:
        label_dataset(cfg, teacher, store)
        crop = LabelConfig(images=cfg.images, store=cfg.store, workers=0, quiet=True,
                           preprocess=PreprocessSpec(size=16, center_crop=0.5))
        assert label_dataset(crop, teacher, store).labeled == 10
        assert len(store.labels()) == 20


def test_duplicates_labeled_once_broken_files_recorded_other_files_skipped(setup):
    cfg, teacher = setup
    images = cfg.images
    (images / "dup_no_extension").write_bytes((images / "img_000.jpg").read_bytes())
    expected = broken_files(images / "broken", images / "img_001.jpg")
    skipped = other_files(images / "docs")
    with LabelStore(cfg.store) as store:
        summary = label_dataset(cfg, teacher, store)
        failures = store.failures(summary.job_id)
        duplicate = store.labels(digests=[store.labels()["digest"][0]])
    assert (summary.images, summary.labeled, summary.duplicates, summary.failed, summary.skipped) == \
        (16, 10, 1, 5, len(skipped))
    assert summary.not_images == 2  # text.jpg and garbage.png: named like images
    assert teacher.images_seen == 10
    reasons = {row.path.rsplit("/", 1)[1]: row.reason for row in failures.itertuples()}
    assert set(reasons) == set(expected)
    for name, prefix in expected.items():
        assert reasons[name].startswith(prefix), (name, reasons[name])
    assert len(duplicate) == 1


def test_budget_caps_images_across_runs_and_dry_run_counts(setup):
    cfg, teacher = setup
    budgeted = LabelConfig(images=cfg.images, store=cfg.store, preprocess=cfg.preprocess, batch_size=4,
                           workers=0, quiet=True, budget=6)
    with LabelStore(cfg.store) as store:
        dry = label_dataset(LabelConfig(images=cfg.images, store=cfg.store, preprocess=cfg.preprocess,
                                        workers=0, quiet=True, dry_run=True), teacher, store)
        assert (dry.queries, teacher.images_seen) == (10, 0)
        first = label_dataset(budgeted, teacher, store)
        again = label_dataset(budgeted, teacher, store)
    assert (first.labeled, first.skipped_budget, again.labeled, again.skipped_budget) == (6, 4, 0, 4)
    assert teacher.images_seen == 6


def test_store_refuses_other_schemas_and_non_databases(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CacheError, match="not a usable label store"):
        LabelStore(bad)
    LabelStore(tmp_path / "ok.db").close()
    with sqlite3.connect(tmp_path / "ok.db") as db:
        db.execute("UPDATE meta SET value = '999' WHERE key = 'schema'")
    with pytest.raises(CacheError, match="schema 999"):
        LabelStore(tmp_path / "ok.db")


def test_a_file_that_breaks_the_decoder_fails_alone(setup):
    """A JPEG cut inside its header made Pillow raise OSError("Truncated File Read") from Image.open."""
    cfg, teacher = setup
    data = (cfg.images / "img_000.jpg").read_bytes()
    for cut in (20, 100, 300, 600):
        (cfg.images / f"cut_{cut}.jpg").write_bytes(data[:cut])
    random_image(99).save(cfg.images / "photo_without_extension", "JPEG")  # an image, found by its content
    with LabelStore(cfg.store) as store:
        summary = label_dataset(cfg, teacher, store)
        reasons = store.failures(summary.job_id)["reason"].tolist()
    assert (summary.images, summary.labeled, summary.failed, summary.skipped) == (15, 11, 4, 0)
    assert all(reason and "\n" not in reason for reason in reasons), reasons


def stored(path):
    """(answers, images sent by the ledger, job statuses) as another process reads them: what is committed."""
    with sqlite3.connect(path) as db:
        answers = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        sent = db.execute("SELECT COALESCE(SUM(images_sent), 0) FROM requests").fetchone()[0]
        statuses = [status for (status,) in db.execute("SELECT status FROM jobs ORDER BY id")]
    return answers, sent, statuses


def test_a_group_commits_its_answers_when_due_and_its_ledger_rows_at_once(tmp_path):
    path = tmp_path / "labels.db"
    answers = [LabelRow(f"{i:064x}", 0, "probs", np.zeros(3, np.float32)) for i in range(16)]
    record = RequestRecord(0.0, 4, 4, "ok", 0.01)
    with LabelStore(path) as store:
        job = store.begin_job("label", "identity", "t" * 64, "p" * 64, "/r", {})
        group = GroupCommit(store, job, rows=8, wait_s=3600)
        group.add("t" * 64, "p" * 64, answers[:4], requests=[record])
        assert stored(path)[:2] == (4, 4)  # no commit for an hour: the first batch goes at once
        group.add("t" * 64, "p" * 64, answers[4:8], requests=[record])
        assert stored(path)[:2] == (4, 8)  # the paid request is on record; its answers wait
        group.add("t" * 64, "p" * 64, answers[8:12])
        assert stored(path)[:2] == (12, 8)  # 8 answers pending: due
        group.add("t" * 64, "p" * 64, answers[12:14])
        group.add("t" * 64, "q" * 64, answers[14:])  # another preprocessing: the pending answers go alone
        assert stored(path)[0] == 14
        group.flush()
        assert stored(path)[0] == 16 and store.label_sources() == [("t" * 64, "p" * 64, 14), ("t" * 64, "q" * 64, 2)]
        every = GroupCommit(store, job, rows=1000, wait_s=0.0)  # each batch comes long enough after the last commit
        every.add("t" * 64, "r" * 64, answers[:2])
        every.add("t" * 64, "r" * 64, answers[2:4])
        assert stored(path)[0] == 20


def test_a_failing_job_stores_every_answer_it_got(setup):
    cfg, _ = setup
    teacher = FailingTeacher(cfg.store.parent / "t.onnx", calls=2, error=RuntimeError("the teacher broke"))
    with LabelStore(cfg.store) as store, pytest.raises(RuntimeError, match="the teacher broke"):
        label_dataset(cfg, teacher, store)
    assert stored(cfg.store) == (8, 10, ["failed"])  # 2 answered batches of 4; the third (2 images) failed


def _killed_job(cfg):
    teacher = FailingTeacher(cfg.store.parent / "t.onnx", calls=2)  # killed (-9) at its third request
    with LabelStore(cfg.store) as store:
        label_dataset(cfg, teacher, store)


def test_a_killed_job_loses_at_most_its_open_group_and_a_rerun_finishes(setup):
    cfg, teacher = setup
    job = multiprocessing.get_context("spawn").Process(target=_killed_job, args=(cfg,))
    job.start()
    job.join(timeout=120)
    assert job.exitcode == -signal.SIGKILL
    answers, sent, statuses = stored(cfg.store)
    # Every request is journalled before it is sent, the killed third one (2 images) included.
    assert answers <= sent and sent == 10 and statuses == ["running"]
    with LabelStore(cfg.store) as store:
        rerun = label_dataset(cfg, teacher, store)
    assert (rerun.cached, rerun.labeled) == (answers, 10 - answers)
    assert stored(cfg.store) == (10, sent + 10 - answers, ["running", "done"])
