"""SimulatedTeacher: a local ONNX teacher answering as top-k, rounded, label-only or reverse-sigmoid APIs do."""
from __future__ import annotations

import math

import numpy as np
import pytest

from extractor.errors import ConfigError
from extractor.students.losses import score_decimals
from extractor.teachers.onnx import OnnxTeacher
from extractor.teachers.simulated import ART_REVERSE_SIGMOID, AnswerFormat, SimulatedTeacher, reverse_sigmoid, softmax
from extractor.teachers.source import TeacherSource, open_teacher
from tests.servers.model_server import ModelServer, tiny_classifier

pytestmark = pytest.mark.timeout(60)

PROBS = np.array([[0.6, 0.25, 0.1, 0.04, 0.01], [0.05, 0.1, 0.2, 0.3, 0.35]])
CLASSES = tuple("abcdefg")


def test_top_k_keeps_the_k_best_classes_and_zeroes_the_rest():
    out = AnswerFormat(topk=2).apply(PROBS)
    assert out.kind == "topk"
    np.testing.assert_allclose(out.probs, [[0.6, 0.25, 0, 0, 0], [0, 0, 0, 0.3, 0.35]], rtol=1e-6)
    assert out.labels.tolist() == [0, 4]
    assert AnswerFormat(topk=5).apply(PROBS).kind == "probs"  # k >= C: the full answer


def test_rounding_keeps_the_api_top_1_and_lies_on_the_grid():
    probs = np.array([[0.404, 0.401, 0.195]])  # both round to 0.40: the API still ranks class 0 first
    out = AnswerFormat(decimals=2).apply(probs)
    np.testing.assert_allclose(out.probs, [[0.40, 0.40, 0.20]], rtol=1e-6)
    assert out.labels.tolist() == [0] and out.kind == "probs"
    many = AnswerFormat(decimals=2).apply(softmax(np.random.default_rng(0).normal(0, 3, (32, 10))))
    assert score_decimals(many.probs) == 2


def test_label_only_and_renormalised_answers():
    label = AnswerFormat(label_only=True).apply(PROBS)
    assert label.kind == "label" and label.probs is None and label.labels.tolist() == [0, 4]
    renormalised = AnswerFormat(topk=2, renormalise=True).apply(PROBS)
    assert renormalised.kind == "probs"
    np.testing.assert_allclose(renormalised.probs[0], [0.6 / 0.85, 0.25 / 0.85, 0, 0, 0], rtol=1e-6)


def test_reverse_sigmoid_matches_arts_formula_by_hand():
    # p = [.7, .2, .1], beta = 1, gamma = .1: r(p) = sigmoid(.1 * log(p / (1 - p))) - .5;
    # r(.7) = sigmoid(.0847298) - .5 = .0211699, r(.2) = sigmoid(-.1386294) - .5 = -.0346021,
    # r(.1) = sigmoid(-.2197225) - .5 = -.0547107; p - r = [.6788302, .2346020, .1547107], sum 1.0681429.
    p = np.array([[0.7, 0.2, 0.1]])
    expected = [0.6788302 / 1.0681429, 0.2346020 / 1.0681429, 0.1547107 / 1.0681429]
    np.testing.assert_allclose(reverse_sigmoid(p, *ART_REVERSE_SIGMOID), [expected], rtol=2e-6)
    flattened = AnswerFormat(reverse_sigmoid=ART_REVERSE_SIGMOID).apply(PROBS)
    assert flattened.probs.max(axis=1)[0] < 0.6 and flattened.probs.min() > 0.01
    assert math.isclose(flattened.probs.sum(axis=1)[0], 1.0, rel_tol=1e-6)


@pytest.mark.parametrize(("options", "match"), [
    ({"topk": 0}, "topk"), ({"decimals": -1}, "decimals"), ({"reverse_sigmoid": (0.0, 0.1)}, "reverse_sigmoid"),
    ({"label_only": True, "topk": 3}, "label_only"),
])
def test_answer_format_rejects_invalid_options(options, match):
    with pytest.raises(ConfigError, match=match):
        AnswerFormat(**options)


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_classifier(channels=1, size=48, classes=7))
    return path


def _inputs(count=8, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (count, 48, 48, 1), dtype=np.uint8)
    return pixels, ((pixels.transpose(0, 3, 1, 2).astype(np.float32) - 127.5) / 127.5)


def test_the_simulated_teacher_wraps_an_onnx_teacher_with_its_own_fingerprint(tiny):
    inner = OnnxTeacher(tiny, threads=1)
    top3 = SimulatedTeacher(inner, AnswerFormat(topk=3))
    full = SimulatedTeacher(inner, AnswerFormat())
    assert len({inner.fingerprint, top3.fingerprint, full.fingerprint,
                SimulatedTeacher(inner, AnswerFormat(topk=3, decimals=2)).fingerprint}) == 4
    assert SimulatedTeacher.from_onnx(str(tiny), AnswerFormat(topk=3), threads=1).fingerprint == top3.fingerprint
    _, x = _inputs()
    expected = softmax(inner.predict(x).probs.astype(np.float64))
    out = top3.predict(x)
    assert out.kind == "topk" and ((out.probs > 0).sum(axis=1) == 3).all()
    np.testing.assert_array_equal(out.labels, expected.argmax(axis=1))
    np.testing.assert_allclose(full.predict(x).probs, expected, rtol=1e-5)
    assert top3.describe()["type"] == "onnx" and top3.describe()["simulated"] == {"name": "top3", "topk": 3}
    assert top3.num_classes == 7 and top3.input_shape == inner.input_shape


def test_behind_the_test_http_server_it_answers_as_the_api_would(tiny):
    pixels, x = _inputs(count=4)
    local = SimulatedTeacher(OnnxTeacher(tiny, threads=1), AnswerFormat(topk=3, decimals=2)).predict(x)
    server = ModelServer(tiny, "torchserve", class_names=CLASSES, topk=5, answers=AnswerFormat(topk=3, decimals=2))
    dense = ModelServer(tiny, "kserve-v2", answers=AnswerFormat(decimals=2))
    try:
        server.start()
        dense.start()
        remote = open_teacher(TeacherSource(teacher=server.url, protocol="torchserve", model_name="model",
                                            classes=CLASSES))
        for image, row in zip(pixels, local.probs, strict=True):
            answer = remote.predict([image])
            assert answer.kind == "topk"
            np.testing.assert_allclose(answer.probs[0], row, atol=1e-7)
        rounded = open_teacher(TeacherSource(teacher=dense.url, protocol="kserve-v2", model_name="model",
                                             output_policy="probs")).predict(x)
        assert rounded.kind == "probs"
        np.testing.assert_allclose(rounded.probs, np.round(softmax(OnnxTeacher(tiny, threads=1).predict(x).probs
                                                                   .astype(np.float64)), 2), atol=1e-7)
    finally:
        server.stop()
        dense.stop()
