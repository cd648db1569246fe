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


def test_int8_export_is_qdq_per_channel_smaller_and_close_to_float(tmp_path):
    from extractor.students.export import export_int8
    from extractor.students.zoo import build_student

    torch.manual_seed(0)
    model = build_student("resnet8", 10, 3)
    model.train()
    for _ in range(3):
        model(torch.randn(32, 3, 32, 32))  # non-trivial BatchNorm statistics
    export_onnx(model, tmp_path / "fp32.onnx", 3, 32)
    inputs = np.random.default_rng(0).normal(size=(128, 3, 32, 32)).astype(np.float32)
    export_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", inputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32.onnx", "int8.onnx"]  # no temporary files left
    ops = {node.op_type for node in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [init for init in onnx.load(str(tmp_path / "int8.onnx")).graph.initializer
               if init.data_type == onnx.TensorProto.INT8 and len(init.dims) == 4]
    assert weights  # conv weights stored as int8 ...
    scales = {init.name: init for init in onnx.load(str(tmp_path / "int8.onnx")).graph.initializer}
    assert any(len(scales[name].dims) == 1 and scales[name].dims[0] > 1 for name in scales
               if name.endswith("_scale"))  # ... with one scale per output channel
    assert (tmp_path / "int8.onnx").stat().st_size < 0.5 * (tmp_path / "fp32.onnx").stat().st_size
    fp32 = ort.InferenceSession(str(tmp_path / "fp32.onnx")).run(["logits"], {"input": inputs[:64]})[0]
    int8 = ort.InferenceSession(str(tmp_path / "int8.onnx")).run(["logits"], {"input": inputs[:64]})[0]
    assert (fp32.argmax(1) == int8.argmax(1)).mean() > 0.8
