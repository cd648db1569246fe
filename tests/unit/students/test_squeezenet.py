"""Tests for the SqueezeNet student and the student registry."""
import pytest
import torch

from extractor.students.squeezenet import squeezenet1_1
from extractor.students.zoo import build_student, count_parameters


@pytest.mark.parametrize(("size", "in_channels"), [(32, 1), (32, 3), (48, 3), (64, 1), (112, 3), (224, 1)])
def test_any_input_of_32_px_or_more_gives_one_logit_per_class(size, in_channels):
    model = squeezenet1_1(num_classes=7, in_channels=in_channels).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, in_channels, size, size))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_parameter_count_matches_squeezenet_1_1():
    # torchvision's squeezenet1_1 with 1000 classes has 1,235,496 parameters; a 1-channel first conv
    # has 64 * 1 * 3 * 3 weights instead of 64 * 3 * 3 * 3, i.e. 1,152 fewer.
    assert count_parameters(squeezenet1_1(num_classes=1000)) == 1_235_496
    assert count_parameters(squeezenet1_1(num_classes=1000, in_channels=1)) == 1_235_496 - 1_152


def test_logits_are_not_clamped_at_zero():
    # A final ReLU would pin these logits at 0 with zero gradient: SqueezeNet's dead start.
    model = squeezenet1_1(num_classes=4, in_channels=1).eval()
    final_conv = model.classifier[1]
    torch.nn.init.constant_(final_conv.bias, -1.0)
    torch.nn.init.zeros_(final_conv.weight)
    logits = model(torch.randn(2, 1, 32, 32))
    logits.sum().backward()
    assert torch.allclose(logits, torch.full((2, 4), -1.0))
    assert final_conv.bias.grad.abs().sum() > 0


def test_weights_are_random_not_pretrained():
    torch.manual_seed(0)
    first = squeezenet1_1(num_classes=3).features[0].weight
    second = squeezenet1_1(num_classes=3).features[0].weight
    assert not torch.equal(first, second)


def test_build_student_uses_the_registry():
    model = build_student("squeezenet1_1", num_classes=5, in_channels=1)
    assert model.features[0].in_channels == 1
    assert model.classifier[1].out_channels == 5


def test_unknown_student_name_lists_the_valid_ones():
    with pytest.raises(KeyError, match="squeezenet1_1"):
        build_student("resnet9000", num_classes=5, in_channels=3)


@pytest.mark.parametrize(("num_classes", "in_channels"), [(1, 3), (5, 0)])
def test_invalid_sizes_are_rejected(num_classes, in_channels):
    with pytest.raises(ValueError):
        squeezenet1_1(num_classes=num_classes, in_channels=in_channels)
