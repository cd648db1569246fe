import subprocess
import sys

import numpy as np
import pytest

from extractor.config import LabelConfig
from extractor.datasets.loading import LoadRequest
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError, QueryBudgetExceeded, UnknownNameError
from extractor.labeling.calls import TeacherCall
from extractor.labeling.executors import LocalExecutor, make_executor
from extractor.ledger import Ledger
from extractor.teachers.onnx import OnnxTeacher
from tests.images import write_jpegs
from tests.models import linear_classifier


class SlowCountingTeacher:
    """A local teacher that counts its calls; each call takes a little while, so later ones queue up."""

    def __init__(self, path):
        self.inner = OnnxTeacher(path)
        self.fingerprint, self.num_classes = self.inner.fingerprint, self.inner.num_classes
        self.input_format, self.max_batch, self.input_shape = "tensor", None, self.inner.input_shape
        self.calls = 0

    def predict(self, batch):
        import time

        self.calls += 1
        time.sleep(0.05)
        return self.inner.predict(batch)


@pytest.fixture
def requests(tmp_path):
    spec = PreprocessSpec(size=16)
    paths = write_jpegs(tmp_path / "images", 12)
    import hashlib

    return [LoadRequest(path, hashlib.sha256(path.read_bytes()).hexdigest(), spec) for path in paths]


def test_local_executor_answers_every_batch_in_order(tmp_path, requests):
    teacher = OnnxTeacher(linear_classifier(tmp_path / "t.onnx"))
    call = TeacherCall(teacher, Ledger(), PreprocessSpec(size=16))
    with LocalExecutor(call, workers=0, concurrency=2).answer(iter(requests), 5) as stream:
        answered = list(stream)
    assert [len(batch.sent) for batch in answered] == [5, 5, 2]
    assert [request for batch in answered for request in batch.sent] == requests
    assert all(batch.output is not None and batch.error is None for batch in answered)


def test_after_a_budget_refusal_queued_calls_are_refused_without_asking_again(tmp_path, requests):
    teacher = SlowCountingTeacher(linear_classifier(tmp_path / "t.onnx"))
    ledger = Ledger(budget=6)
    call = TeacherCall(teacher, ledger, PreprocessSpec(size=16))
    with LocalExecutor(call, workers=0, concurrency=1).answer(iter(requests), 4) as stream:
        answered = list(stream)
    errors = [type(batch.error) for batch in answered]
    assert errors == [type(None), QueryBudgetExceeded, QueryBudgetExceeded]
    assert teacher.calls == 1 and ledger.used == 4
    assert len(ledger.drain()) == 2  # the call made, and the one refused by the budget; the last never asked it


def test_stop_lets_the_calls_in_flight_come_out(tmp_path, requests):
    teacher = SlowCountingTeacher(linear_classifier(tmp_path / "t.onnx"))
    call = TeacherCall(teacher, Ledger(), PreprocessSpec(size=16))
    with LocalExecutor(call, workers=0, concurrency=1).answer(iter(requests), 2) as stream:
        first = next(iter(stream))
        stream.stop()
        rest = list(stream)
    assert first.output is not None and all(batch.output is not None for batch in rest)
    assert 1 + len(rest) < 6 and teacher.calls == 1 + len(rest)


def test_executor_names_are_checked():
    with pytest.raises(ConfigError, match="--executor must be one of local, ray"):
        LabelConfig(images="x", store="y", executor="spark")
    with pytest.raises(ConfigError, match="apply to --executor ray"):
        LabelConfig(images="x", store="y", ray_address="auto")
    cfg = LabelConfig(images="x", store="y")
    object.__setattr__(cfg, "executor", "spark")
    with pytest.raises(UnknownNameError, match="local, ray"):
        make_executor(cfg, None, None)


def test_without_ray_installed_the_ray_executor_says_how_to_install_it(tmp_path):
    """`import ray` fails in a fresh interpreter: one ConfigError naming the extra."""
    probe = ("import sys\n"
             "sys.modules['ray'] = None\n"
             "from extractor.config import LabelConfig\n"
             "from extractor.labeling.executors import make_executor\n"
             "try:\n"
             "    make_executor(LabelConfig(images='x', store='y', executor='ray'), None, None)\n"
             "except Exception as exc:\n"
             "    print(type(exc).__name__, exc)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ConfigError --executor ray needs Ray: pip install 'extractor-distill[ray]'"


def test_the_local_label_path_never_imports_ray():
    probe = ("import sys\n"
             "import extractor.cli.app, extractor.labeling.job, extractor.labeling.executors\n"
             "print('ray' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_teacher_call_normalises_and_charges_a_local_teacher(tmp_path):
    teacher = OnnxTeacher(linear_classifier(tmp_path / "t.onnx"))
    ledger = Ledger(budget=3)
    call = TeacherCall(teacher, ledger, PreprocessSpec(size=16))
    pixels = [np.zeros((16, 16, 3), np.uint8)] * 3
    assert call(pixels).labels.shape == (3,) and ledger.used == 3
    with pytest.raises(QueryBudgetExceeded):
        call(pixels[:1])
    assert [record.charged for record in ledger.drain()] == [3, 0]
