"""Tests for student.packed: size against the ideal, a bit-exact round trip, ONNX parity of the rebuilt model."""
import numpy as np
import pytest
import torch

from extractor.errors import ConfigError
from extractor.students.export import export_onnx
from extractor.students.packed import Architecture, ideal_bytes, load_packed, pack, unpack_state
from extractor.students.quant import QuantSpec, freeze, quantize_layers, quantized_layers
from extractor.students.zoo import build_student, count_parameters


def trained_like(name: str, spec: QuantSpec, seed: int = 0) -> tuple[torch.nn.Module, Architecture]:
    """A frozen quantized zoo model with non-trivial BatchNorm statistics and input thresholds."""
    torch.manual_seed(seed)
    arch = Architecture(name, num_classes=10, in_channels=3)
    model = build_student(name, 10, 3)
    quantize_layers(model, spec)
    model.train()
    for _ in range(2):
        model(torch.randn(8, 3, 32, 32))  # moves BN running stats, sets thresholds
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)  # the zoo zero-inits some BN scales
    return freeze(model).eval(), arch


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize("keep_first_last", [True, False])
def test_packed_size_is_within_5_percent_of_the_ideal(tmp_path, bits, keep_first_last):
    model, arch = trained_like("resnet20", QuantSpec(bits=bits, keep_first_last=keep_first_last))
    size = pack(model, arch, QuantSpec(bits=bits, keep_first_last=keep_first_last), tmp_path / "student.packed")
    ideal = ideal_bytes(model)
    assert size <= 1.05 * ideal
    quantized = sum(layer.weight.numel() for layer in quantized_layers(model).values())
    assert ideal >= quantized * bits / 8  # the ideal counts the quantized weights at `bits` each, plus the rest
    fp32_bytes = 4 * count_parameters(model)
    assert size < fp32_bytes / (8 if keep_first_last else 12)


@pytest.mark.parametrize("spec", [QuantSpec(bits=1), QuantSpec(bits=2),
                                  QuantSpec(bits=1, binary_activations=True, keep_first_last=False)])
def test_round_trip_is_bit_exact(tmp_path, spec):
    model, arch = trained_like("resnet8", spec)
    pack(model, arch, spec, tmp_path / "student.packed")
    state, arch_back, spec_back = unpack_state(tmp_path / "student.packed")
    assert arch_back == arch and spec_back == spec
    expected = model.state_dict()
    assert list(state) == list(expected)
    for name, tensor in expected.items():
        assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name
    loaded = load_packed(tmp_path / "student.packed")
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("bits", [1, 2])
def test_dequantized_onnx_export_matches_the_packed_model(tmp_path, bits):
    spec = QuantSpec(bits=bits)
    model, arch = trained_like("resnet20", spec)
    pack(model, arch, spec, tmp_path / "student.packed")
    assert export_onnx(load_packed(tmp_path / "student.packed"), tmp_path / "student.onnx", 3, 32) < 1e-4


def test_binary_activations_export_to_onnx_with_the_same_predictions(tmp_path):
    import onnxruntime as ort

    spec = QuantSpec(bits=1, binary_activations=True)
    model, arch = trained_like("resnet8", spec)
    pack(model, arch, spec, tmp_path / "student.packed")
    loaded = load_packed(tmp_path / "student.packed")
    export_onnx(loaded, tmp_path / "student.onnx", 3, 32)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(str(tmp_path / "student.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(["logits"], {"input": x.numpy()})
    with torch.inference_mode():
        torch_logits = loaded(x).numpy()
    # a sign can flip where an activation sits within rounding error of its threshold; nearly all agree
    assert np.mean(np.abs(onnx_logits - torch_logits) < 1e-3) > 0.95
    assert (onnx_logits.argmax(1) == torch_logits.argmax(1)).mean() > 0.9


def test_pack_refuses_a_model_that_is_not_frozen(tmp_path):
    model = build_student("resnet8", 10, 3)
    quantize_layers(model, QuantSpec(bits=1))
    with pytest.raises(ValueError, match="freeze"):
        pack(model, Architecture("resnet8", 10, 3), QuantSpec(bits=1), tmp_path / "student.packed")


def test_a_damaged_file_is_refused(tmp_path):
    (tmp_path / "bad.packed").write_bytes(b"PK\x03\x04 not ours")
    with pytest.raises(ConfigError, match="magic"):
        unpack_state(tmp_path / "bad.packed")
    model, arch = trained_like("resnet8", QuantSpec(bits=2))
    pack(model, arch, QuantSpec(bits=2), tmp_path / "student.packed")
    (tmp_path / "long.packed").write_bytes((tmp_path / "student.packed").read_bytes() + b"\0")
    with pytest.raises(ConfigError, match="damaged"):
        unpack_state(tmp_path / "long.packed")
