"""Tests for the ONNX export of students."""
import numpy as np
import onnx
import onnxruntime as ort
import torch

from extractor.students.export import export_onnx
from extractor.students.squeezenet import squeezenet1_1


def test_export_matches_pytorch_for_any_batch_size(tmp_path):
    torch.manual_seed(0)
    model = squeezenet1_1(num_classes=5, in_channels=1)
    path = tmp_path / "nested" / "student.onnx"

    max_diff = export_onnx(model, path, in_channels=1, size=32)

    assert max_diff < 1e-4
    assert model.training  # the caller's model is left alone
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = torch.randn(7, 1, 32, 32)
    with torch.no_grad():
        expected = model.eval()(batch).numpy()
    (actual,) = session.run(["logits"], {"input": batch.numpy()})
    assert actual.shape == (7, 5)
    assert np.abs(actual - expected).max() < 1e-4


def test_reported_difference_is_measured_not_assumed(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = squeezenet1_1(num_classes=3)
    real_run = ort.InferenceSession.run

    def off_by_one(self, *args, **kwargs):
        return [output + 1.0 for output in real_run(self, *args, **kwargs)]

    monkeypatch.setattr(ort.InferenceSession, "run", off_by_one)
    assert abs(export_onnx(model, tmp_path / "student.onnx", in_channels=3, size=32) - 1.0) < 1e-4
