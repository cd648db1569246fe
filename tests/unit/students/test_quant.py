"""Tests for binary/ternary layers (quantizer values and STE gradients by hand, the layer swap, freezing) and
for ``tasks.QuantizeTask``, which trains them."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from extractor.errors import ConfigError
from extractor.students.batches import Batch
from extractor.students.config import DistillConfig
from extractor.students.quant import (
    BinaryInput,
    BinaryWeight,
    QuantConv2d,
    QuantLinear,
    QuantSpec,
    SignActivation,
    TernaryWeight,
    freeze,
    quantize_layers,
    quantized_layers,
)
from extractor.students.tasks import DistillTask, QuantizeTask
from extractor.students.zoo import build_student


def test_binary_weight_is_the_channel_mean_magnitude_times_the_sign():
    weight = torch.tensor([[0.5, -1.0, 1.5, -3.0], [0.0, -0.2, 0.2, 0.4]])
    # row 0: mean |w| = 6 / 4 = 1.5; row 1: 0.8 / 4 = 0.2, and sign(0) = +1
    expected = torch.tensor([[1.5, -1.5, 1.5, -1.5], [0.2, -0.2, 0.2, 0.2]])
    torch.testing.assert_close(BinaryWeight.apply(weight), expected)


def test_ternary_weight_follows_the_twn_threshold_and_scale():
    weight = torch.tensor([[0.1, -0.5, 1.0, -2.0], [0.0, 0.0, 0.0, 0.0]])
    # row 0: mean |w| = 0.9, delta = 0.63: only 1.0 and -2.0 survive, scale = (1 + 2) / 2 = 1.5
    expected = torch.tensor([[0.0, 0.0, 1.5, -1.5], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(TernaryWeight.apply(weight), expected)


@pytest.mark.parametrize("function", [BinaryWeight, TernaryWeight])
def test_weight_gradient_passes_straight_through(function):
    weight = torch.tensor([[0.1, -0.5, 1.0, -2.0], [3.0, -0.2, 0.0, 0.4]], requires_grad=True)
    upstream = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, -3.0, -4.0]])
    function.apply(weight).backward(upstream)
    torch.testing.assert_close(weight.grad, upstream)  # d w_hat / d w := 1, even where |w| > 1 or w_hat = 0


def test_sign_activation_gradient_is_clipped_to_the_unit_interval():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    out = SignActivation.apply(x)
    torch.testing.assert_close(out, torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]))
    out.backward(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]))
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]))


def test_binary_input_threshold_starts_at_the_channel_mean_and_learns():
    sign = BinaryInput(2).train()
    x = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])  # (1, 2, 1, 2): channel means 1 and 1
    out = sign(x)
    torch.testing.assert_close(sign.threshold.detach(), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor([[[[-1.0, 1.0]], [[1.0, 1.0]]]]))
    out.sum().backward()
    # d/dt sign(x - t) = -[|x - t| <= 1]: channel 0 has x - t = -1, +1 (both pass), channel 1 has 0, 0
    torch.testing.assert_close(sign.threshold.grad, torch.tensor([-2.0, -2.0]))
    sign(x + 5)  # later batches do not move the threshold
    torch.testing.assert_close(sign.threshold.detach(), torch.tensor([1.0, 1.0]))


@pytest.mark.parametrize("bits", [1, 2])
def test_quantized_conv_is_a_plain_conv_on_the_quantized_weight_with_ste_gradients(bits):
    torch.manual_seed(0)
    layer = QuantConv2d(3, 4, 3, padding=1, bias=True, bits=bits)
    x = torch.randn(2, 3, 5, 5)
    w_hat = (BinaryWeight if bits == 1 else TernaryWeight).apply(layer.weight.detach()).requires_grad_()
    torch.testing.assert_close(layer(x), F.conv2d(x, w_hat, layer.bias, padding=1))
    layer(x).square().sum().backward()
    F.conv2d(x, w_hat, layer.bias.detach(), padding=1).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, w_hat.grad)


def test_freezing_stores_the_quantized_weight_and_keeps_the_output_exactly():
    torch.manual_seed(0)
    layer = QuantLinear(6, 3, bits=2, binary_inputs=True)
    layer(torch.randn(8, 6))  # sets the input thresholds
    layer.eval()
    x = torch.randn(4, 6)
    before = layer(x)
    freeze(layer)
    magnitude = layer.weight.detach().abs()
    assert layer.frozen and ((magnitude == 0) | (magnitude == magnitude.amax(dim=1, keepdim=True))).all()
    assert torch.equal(layer(x), before)
    freeze(layer)  # idempotent
    assert torch.equal(layer(x), before)


def test_swap_keeps_the_first_and_last_layers_and_batchnorm_in_full_precision():
    model = build_student("resnet8", 10, 3)
    swapped = quantize_layers(model, QuantSpec(bits=1))
    assert "stem.0" not in swapped and "fc" not in swapped
    assert swapped[0] == "features.0.conv1" and "features.2.shortcut.0" in swapped
    assert type(model.stem[0]) is nn.Conv2d and type(model.fc) is nn.Linear
    assert all(isinstance(m, nn.BatchNorm2d) for n, m in model.named_modules() if "bn" in n.rsplit(".", 1)[-1])
    assert list(quantized_layers(model)) == swapped
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_swap_can_quantize_every_layer_and_keeps_the_weights():
    model = build_student("resnet8", 10, 3)
    original = {name: p.detach().clone() for name, p in model.named_parameters()}
    swapped = quantize_layers(model, QuantSpec(bits=2, keep_first_last=False, binary_activations=True))
    assert swapped[0] == "stem.0" and swapped[-1] == "fc"
    assert isinstance(model.fc, QuantLinear) and model.fc.input_sign is not None
    for name, p in model.named_parameters():
        if not name.endswith("threshold"):
            assert torch.equal(p, original[name]), name


def test_only_one_and_two_bit_weights_are_trained():
    with pytest.raises(ConfigError, match="--bits"):
        QuantSpec(bits=8)


def _batch(n: int = 6, classes: int = 3) -> Batch:
    generator = torch.Generator().manual_seed(0)
    return Batch(inputs=torch.randn(n, 3, 32, 32, generator=generator),
                 labels=torch.randint(0, classes, (n,), generator=generator),
                 teacher_log_probs=F.log_softmax(torch.randn(n, classes, generator=generator) / 4, dim=1),
                 soft_mask=torch.ones(n, dtype=torch.bool), truth=None)


def test_quantize_task_adds_the_parents_tempered_kl_to_the_stored_answers_terms():
    torch.manual_seed(0)
    parent = build_student("resnet8", 3, 3).eval()
    student = copy.deepcopy(parent)
    quantize_layers(student, QuantSpec(bits=1))
    cfg = DistillConfig(alpha=0.5, temperature=2.0)
    task = QuantizeTask(student, parent, cfg, parent_weight=0.25).train()
    batch = _batch()
    parts = task(batch)
    plain = DistillTask(student, cfg)(batch)
    with torch.no_grad():
        parent_p = F.softmax(parent(batch.inputs) / 2.0, dim=1)
    student_log_p = F.log_softmax(student(batch.inputs) / 2.0, dim=1)
    expected_parent = 4.0 * (parent_p * (parent_p.log() - student_log_p)).sum(dim=1).mean()  # T^2 * KL, by hand
    torch.testing.assert_close(parts["parent"], expected_parent)
    torch.testing.assert_close(parts["loss"], plain["loss"] + 0.25 * expected_parent)
    torch.testing.assert_close(parts["hard"], plain["hard"])


def test_quantize_task_keeps_the_parent_frozen_and_in_eval_mode():
    parent = build_student("resnet8", 3, 3)
    student = copy.deepcopy(parent)
    quantize_layers(student, QuantSpec(bits=2))
    task = QuantizeTask(student, parent, DistillConfig()).train()
    assert task.student.training and not task.parent.training
    task(_batch())["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in parent.parameters())
    assert any(p.grad is not None for p in student.parameters())
    running = parent.stem[1].running_mean.clone()
    task(_batch())
    assert torch.equal(parent.stem[1].running_mean, running)  # BatchNorm statistics untouched


def test_an_unquantized_copy_of_the_parent_has_no_parent_term():
    parent = build_student("resnet8", 3, 3).eval()
    task = QuantizeTask(copy.deepcopy(parent).eval(), parent, DistillConfig())
    assert task(_batch())["parent"].abs().item() < 1e-6
