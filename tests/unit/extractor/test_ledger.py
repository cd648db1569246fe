from concurrent.futures import ThreadPoolExecutor

import pytest

from extractor.config import LabelConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError, QueryBudgetExceeded
from extractor.labeling.job import label_dataset
from extractor.ledger import Ledger, RequestRecord
from extractor.store.label_store import LabelStore
from extractor.teachers.onnx import OnnxTeacher
from tests.images import write_jpegs
from tests.models import linear_classifier


def test_charges_up_to_the_budget_counting_earlier_runs():
    ledger = Ledger(10, used=4)
    assert ledger.remaining == 6
    ledger.charge(5)
    with pytest.raises(QueryBudgetExceeded, match=r"sending 2 more images would exceed --budget 10 \(9 sent, 1 left\)"):
        ledger.charge(2)
    ledger.charge(1)
    assert (ledger.used, ledger.remaining) == (10, 0)


def test_without_a_budget_it_counts_and_never_refuses():
    ledger = Ledger()
    ledger.charge(10**6)
    assert (ledger.used, ledger.remaining) == (10**6, None)


def test_a_budget_below_what_was_sent_leaves_nothing():
    assert Ledger(5, used=8).remaining == 0
    with pytest.raises(ConfigError, match="--budget must be >= 0"):
        Ledger(-1)


def test_drain_hands_each_record_over_once():
    ledger = Ledger()
    first, second = RequestRecord(1.0, 4, 4, 200, 0.1), RequestRecord(2.0, 0, 0, "QueryBudgetExceeded", 0.0)
    ledger.record(first)
    ledger.record(second)
    assert ledger.drain() == [first, second] and ledger.drain() == []


def test_charges_hold_under_concurrency():
    ledger = Ledger(100)

    def charge(_: int) -> bool:
        try:
            ledger.charge(8)
            return True
        except QueryBudgetExceeded:
            return False

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(charge, range(40))) == 12
    assert ledger.used == 96


# --- the ledger through the label job ------------------------------------------------------------

class RetryingTeacher:
    """A teacher that meters itself, as the HTTP teacher does: every call is charged twice (one retry)."""

    def __init__(self, path):
        self.inner = OnnxTeacher(path)
        self.fingerprint, self.num_classes = self.inner.fingerprint, self.inner.num_classes
        self.input_format, self.max_batch, self.input_shape = "tensor", None, self.inner.input_shape
        self.ledger: Ledger | None = None

    def use_ledger(self, ledger):
        self.ledger = ledger
        return True

    def predict(self, batch):
        charged, status = 0, "QueryBudgetExceeded"
        try:
            for _ in range(2):
                self.ledger.charge(len(batch))
                charged += len(batch)
            status = 200
            return self.inner.predict(batch)
        finally:
            self.ledger.record(RequestRecord(0.0, len(batch), charged, status, 0.01, retries=1))


def label_config(tmp_path, **options):
    write_jpegs(tmp_path / "images", 10)
    return LabelConfig(images=tmp_path / "images", store=tmp_path / "labels.db", preprocess=PreprocessSpec(size=16),
                       batch_size=4, workers=0, quiet=True, **options)


def test_the_job_charges_and_records_a_local_teacher_per_call(tmp_path):
    cfg = label_config(tmp_path, budget=9)
    with LabelStore(cfg.store) as store:
        summary = label_dataset(cfg, OnnxTeacher(linear_classifier(tmp_path / "t.onnx")), store)
        ledger = store.stats()["requests"]
    assert (summary.labeled, summary.skipped_budget) == (9, 1)
    assert [(row["requests"], row["images_sent"], row["errors"]) for row in ledger] == [(3, 9, 0)]  # 4 + 4 + 1


def test_a_teacher_that_meters_itself_is_charged_every_attempt_across_runs(tmp_path):
    cfg = label_config(tmp_path, budget=12)
    teacher = RetryingTeacher(linear_classifier(tmp_path / "t.onnx"))
    with LabelStore(cfg.store) as store:
        first = label_dataset(cfg, teacher, store)  # 4 images cost 8; the next 4 are charged once, then refused
        second = label_dataset(cfg, teacher, store)  # 12 of 12 already sent: nothing more
        ledger = store.stats()["requests"]
    assert (first.labeled, first.skipped_budget, second.labeled, second.queries) == (4, 6, 0, 0)
    assert [(row["requests"], row["images_sent"], row["errors"]) for row in ledger] == [(2, 12, 1)]
