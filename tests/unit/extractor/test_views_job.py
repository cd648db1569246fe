"""`extractor label --views K`: every view is a query with its own cache key, within one budget; the student
trains on exactly the pixels the teacher was sent."""
import numpy as np
import pytest

from extractor.config import LabelConfig, ProbeConfig, TrainConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.views import training_views
from extractor.labeling.job import label_dataset
from extractor.training.answers import select_answers, stored_views
from extractor.store.label_store import LabelStore
from extractor.teachers.onnx import OnnxTeacher
from tests.images import write_jpegs
from tests.models import linear_classifier

IMAGES, SIZE = 30, 32


class RecordingTeacher:
    """An ONNX teacher that keeps a copy of every input it was sent."""

    def __init__(self, path):
        self.inner = OnnxTeacher(path)
        self.fingerprint, self.num_classes = self.inner.fingerprint, self.inner.num_classes
        self.input_format, self.max_batch, self.input_shape = "tensor", None, self.inner.input_shape
        self.sent: list[np.ndarray] = []

    def predict(self, batch):
        self.sent += [np.array(x) for x in batch]
        return self.inner.predict(batch)


@pytest.fixture
def job(tmp_path):
    write_jpegs(tmp_path / "images", IMAGES)
    teacher = RecordingTeacher(linear_classifier(tmp_path / "t.onnx", size=SIZE))
    # mean 0, std 1: the teacher is sent the uint8 pixel values themselves, as float32
    spec = PreprocessSpec(size=SIZE, mean=(0.0,), std=(1.0,))
    return tmp_path, teacher, spec


def config(tmp_path, spec, views, budget=None):
    return LabelConfig(images=tmp_path / "images", store=tmp_path / "labels.db", preprocess=spec, batch_size=8,
                       workers=0, quiet=True, views=training_views(views, ("flip", "shift", "crop")), budget=budget)


def test_views_cost_k_queries_per_image_and_a_rerun_costs_nothing(job):
    tmp_path, teacher, spec = job
    with LabelStore(tmp_path / "labels.db") as store:
        first = label_dataset(config(tmp_path, spec, 3), teacher, store)
        again = label_dataset(config(tmp_path, spec, 3), teacher, store)
        more = label_dataset(config(tmp_path, spec, 4), teacher, store)  # one more view: only it is asked
        answers = select_answers(store, None)  # the plain answers, views apart
        views = stored_views(store, answers)
    assert (first.queries, first.labeled, len(teacher.sent) - IMAGES) == (3 * IMAGES, 3 * IMAGES, 3 * IMAGES)
    assert (again.queries, again.view_cached) == (0, 2 * IMAGES)
    assert more.queries == IMAGES
    assert len(answers.digests) == IMAGES and [view.index for view, _ in views] == [1, 2, 3]
    assert all(len(view_answers.digests) == IMAGES for _, view_answers in views)


@pytest.mark.parametrize("budget", [IMAGES + 7, 2 * IMAGES + 1])
def test_the_budget_counts_every_view_and_stops_exactly(job, budget):
    tmp_path, teacher, spec = job
    with LabelStore(tmp_path / "labels.db") as store:
        summary = label_dataset(config(tmp_path, spec, 3, budget), teacher, store)
        again = label_dataset(config(tmp_path, spec, 3, budget), teacher, store)
        answers = select_answers(store, None)
        stats = store.stats()
    assert summary.queries == len(teacher.sent) == budget
    assert summary.skipped_budget == 3 * IMAGES - budget
    assert again.queries == 0 and len(teacher.sent) == budget
    assert len(answers.digests) == IMAGES  # the plain images are bought first
    assert sum(row["images_sent"] for row in stats["requests"]) == budget


def test_the_student_sees_exactly_the_pixels_the_teacher_was_sent(job):
    from extractor.training.pipeline import prepare_data

    tmp_path, teacher, spec = job
    with LabelStore(tmp_path / "labels.db") as store:
        label_dataset(config(tmp_path, spec, 4), teacher, store)
    data = prepare_data(TrainConfig(store=tmp_path / "labels.db", out=tmp_path / "run", augment=(), workers=0,
                                    quiet=True, heldout=0.3, probe=ProbeConfig(images=0)))
    sent = {x.astype(np.uint8).tobytes() for x in teacher.sent}
    assert all(np.array_equal(x, x.astype(np.uint8)) for x in teacher.sent)  # whole pixel values
    train = data.train
    assert data.views == 4 and data.view_answers == 3 * len(data.train_rows)
    assert len(train) == 4 * len(data.train_rows) and train.num_images == len(data.train_rows)
    assert {image.numpy().tobytes() for image in train.images} <= sent  # every training row was sent as is
    assert len({image.numpy().tobytes() for image in train.images}) > 2 * len(data.train_rows)
    held = set(data.held_rows.tolist())
    assert held.isdisjoint(train.group.tolist())  # held-out images: the plain view only, never a bought view
    assert len(data.heldout) == len(data.held_rows)


def test_a_view_is_asked_only_of_images_with_a_plain_answer(job):
    tmp_path, teacher, spec = job
    (tmp_path / "images" / "broken.jpg").write_bytes((tmp_path / "images" / "img_000.jpg").read_bytes()[:300])
    with LabelStore(tmp_path / "labels.db") as store:
        first = label_dataset(config(tmp_path, spec, 2), teacher, store)
    # the broken file fails in the plain pass and is not sent again for its view: one failure, one view each
    assert (first.images, first.failed, first.labeled, first.queries) == (IMAGES + 1, 1, 2 * IMAGES, 2 * IMAGES)
    assert len(teacher.sent) == 2 * IMAGES
