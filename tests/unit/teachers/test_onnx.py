import numpy as np
import pytest

from extractor.teachers.base import TeacherError
from extractor.teachers.onnx import OnnxTeacher
from tests.models import linear_classifier


def batch(n: int, channels: int = 3, size: int = 16) -> np.ndarray:
    return np.random.default_rng(n).normal(size=(n, channels, size, size)).astype(np.float32)


def test_reads_layout_and_keeps_logits(tmp_path):
    teacher = OnnxTeacher(linear_classifier(tmp_path / "m.onnx"))
    assert (teacher.layout.channels, teacher.layout.height, teacher.num_classes) == (3, 16, 3)
    output = teacher.predict(batch(5))
    assert output.kind == "logits" and output.probs.shape == (5, 3)
    assert np.abs(output.probs.sum(axis=1) - 1).max() > 1e-3  # raw scores kept, not softmaxed


def test_final_softmax_means_probabilities(tmp_path):
    output = OnnxTeacher(linear_classifier(tmp_path / "m.onnx", softmax=True)).predict(batch(4))
    assert output.kind == "probs"
    assert np.allclose(output.probs.sum(axis=1), 1.0, atol=1e-5)


def test_policy_override_and_fingerprint_follow_policy(tmp_path):
    path = linear_classifier(tmp_path / "m.onnx", softmax=True)
    auto, again, forced = OnnxTeacher(path), OnnxTeacher(path), OnnxTeacher(path, output_policy="logits")
    assert forced.predict(batch(2)).kind == "logits"
    assert auto.fingerprint == again.fingerprint != forced.fingerprint


def test_fingerprint_follows_model_bytes(tmp_path):
    first = OnnxTeacher(linear_classifier(tmp_path / "a.onnx", seed=0)).fingerprint
    same = OnnxTeacher(linear_classifier(tmp_path / "b.onnx", seed=0)).fingerprint
    other = OnnxTeacher(linear_classifier(tmp_path / "c.onnx", seed=1)).fingerprint
    assert first == same != other


def test_fixed_batch_one_model_still_answers_every_image(tmp_path):
    reference = OnnxTeacher(linear_classifier(tmp_path / "dyn.onnx"))
    fixed = OnnxTeacher(linear_classifier(tmp_path / "one.onnx", batch=1))
    assert fixed.max_batch == 1
    x = batch(7)
    assert np.allclose(fixed.predict(x).probs, reference.predict(x).probs, atol=1e-5)


def test_fixed_batch_four_pads_the_last_chunk(tmp_path):
    teacher = OnnxTeacher(linear_classifier(tmp_path / "four.onnx", batch=4))
    assert teacher.predict(batch(6)).labels.shape == (6,)


def test_float16_and_channels_last_inputs(tmp_path):
    reference = OnnxTeacher(linear_classifier(tmp_path / "ref.onnx", channels=1))
    half = OnnxTeacher(linear_classifier(tmp_path / "half.onnx", channels=1, dtype="float16"))
    nhwc = OnnxTeacher(linear_classifier(tmp_path / "nhwc.onnx", channels=1, channels_last=True))
    x = batch(3, channels=1)
    assert np.allclose(half.predict(x).probs, reference.predict(x).probs, atol=0.1)
    assert not nhwc.layout.channels_first and nhwc.predict(x).labels.shape == (3,)


def test_wrong_inputs_are_clear_errors(tmp_path):
    teacher = OnnxTeacher(linear_classifier(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match="--channels"):
        teacher.predict(batch(2, channels=1))
    with pytest.raises(ValueError, match="--size"):
        teacher.predict(batch(2, size=8))
    with pytest.raises(TypeError):
        teacher.predict(batch(2).astype(np.float64))
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(TeacherError, match="not a loadable ONNX model"):
        OnnxTeacher(tmp_path / "bad.onnx")
    with pytest.raises(TeacherError, match="cannot read"):
        OnnxTeacher(tmp_path / "missing.onnx")
