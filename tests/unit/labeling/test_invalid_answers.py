"""One bad answer fails its image alone: stored as invalid, never paid for again unless retried, counted apart."""
import hashlib

import numpy as np
import pytest

from extractor.config import LabelConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.labeling.job import label_dataset
from extractor.store.label_store import LabelStore
from extractor.teachers.base import TeacherOutput
from extractor.teachers.onnx import OnnxTeacher
from tests.images import write_jpegs
from tests.models import linear_classifier


class SometimesNaN:
    """An ONNX teacher whose scores are NaN (or Inf) for about one image in four, decided by the image itself."""

    def __init__(self, path):
        self.inner = OnnxTeacher(path)
        self.fingerprint, self.num_classes = self.inner.fingerprint, self.inner.num_classes
        self.input_format, self.max_batch, self.input_shape = "tensor", None, self.inner.input_shape
        self.asked: list[str] = []

    def predict(self, batch):
        output = self.inner.predict(batch)
        scores = output.probs.copy()
        for row, image in enumerate(batch):
            digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
            self.asked.append(digest)
            if int(digest[:2], 16) < 64:
                scores[row, row % scores.shape[1]] = np.nan if row % 2 else np.inf
        return TeacherOutput(labels=output.labels, probs=scores, kind=output.kind)


@pytest.fixture
def job(tmp_path):
    write_jpegs(tmp_path / "images", 40)
    teacher = SometimesNaN(linear_classifier(tmp_path / "t.onnx"))
    cfg = LabelConfig(images=tmp_path / "images", store=tmp_path / "labels.db", preprocess=PreprocessSpec(size=16),
                      batch_size=16, workers=0, quiet=True)
    return cfg, teacher


def test_a_non_finite_score_fails_that_image_alone_and_is_not_bought_again(job):
    cfg, teacher = job
    with LabelStore(cfg.store) as store:
        first = label_dataset(cfg, teacher, store)
        bad = first.failed
        assert 0 < bad < 20 and first.labeled == 40 - bad and first.queries == 40
        reasons = store.failures(first.job_id)
        assert set(reasons["stage"]) == {"answer"}
        assert all(reason.startswith("the teacher's scores for this image are not finite")
                   for reason in reasons["reason"])
        teacher.asked.clear()
        again = label_dataset(cfg, teacher, store)
        assert (again.queries, again.skipped_invalid, again.cached, teacher.asked) == (0, bad, 40 - bad, [])
        stats = store.stats()
        assert stats["invalid_answers"] == bad and stats["failures_by_stage"] == {"answer": bad}
        retried = label_dataset(LabelConfig(**{**cfg.__dict__, "retry_failed": True}), teacher, store)
        assert (retried.queries, retried.failed, len(teacher.asked)) == (bad, bad, bad)  # asked again, NaN again
        assert store.stats()["requests"][0]["images_sent"] == 40 + bad


def test_an_invalid_answer_that_later_comes_right_is_an_answer(job):
    cfg, teacher = job
    with LabelStore(cfg.store) as store:
        bad = label_dataset(cfg, teacher, store).failed
        healed = SometimesNaN(cfg.store.parent / "t.onnx")
        healed.predict = healed.inner.predict  # the teacher was fixed behind the same fingerprint
        retried = label_dataset(LabelConfig(**{**cfg.__dict__, "retry_failed": True}), healed, store)
        assert (retried.labeled, retried.failed) == (bad, 0)
        assert store.stats()["invalid_answers"] == 0 and store.stats()["labels"] == 40
