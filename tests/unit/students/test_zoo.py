"""Tests for the student zoo: shapes, widths, grayscale, registry errors and ONNX parity."""
import pytest
import torch

from extractor.errors import ConfigError
from extractor.students.export import export_onnx
from extractor.students.zoo import STUDENTS, build_student, count_parameters

SIDES = {"squeezenet1_1": 32, "mobilenet_v3_small": 64, "resnet8": 32, "resnet20": 32}


@pytest.mark.parametrize("name", sorted(STUDENTS))
@pytest.mark.parametrize("in_channels", [1, 3])
def test_every_student_gives_one_logit_per_class_for_gray_and_rgb(name, in_channels):
    model = build_student(name, num_classes=7, in_channels=in_channels).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, in_channels, SIDES[name], SIDES[name]))
    assert logits.shape == (2, 7)


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_onnx_export_matches_torch(name, tmp_path):
    model = build_student(name, num_classes=5, in_channels=1)
    diff = export_onnx(model, tmp_path / f"{name}.onnx", 1, SIDES[name])
    assert diff < 1e-4


def test_cifar_resnets_have_the_papers_parameter_counts():
    # He et al. 2016 table 6: ResNet-20 has 0.27M parameters; option B projections add a few thousand.
    assert 270_000 <= count_parameters(build_student("resnet20", 10, 3)) <= 280_000
    assert 75_000 <= count_parameters(build_student("resnet8", 10, 3)) <= 80_000


@pytest.mark.parametrize("name", ["resnet8", "resnet20", "mobilenet_v3_small"])
def test_width_scales_the_parameter_count(name):
    full = count_parameters(build_student(name, 10, 3))
    half = count_parameters(build_student(name, 10, 3, width=0.5))
    double = count_parameters(build_student(name, 10, 3, width=2.0))
    assert half < 0.45 * full and double > 2.5 * full  # convolutions scale with width squared


def test_squeezenet_refuses_a_width():
    with pytest.raises(ConfigError, match="--width"):
        build_student("squeezenet1_1", 10, 3, width=0.5)


def test_unknown_student_name_lists_the_valid_ones():
    with pytest.raises(KeyError, match="resnet20"):
        build_student("resnet9000", num_classes=5, in_channels=3)


@pytest.mark.parametrize(("kwargs", "match"), [({"num_classes": 1}, "2 classes"), ({"width": 0.0}, "--width")])
def test_bad_sizes_are_config_errors(kwargs, match):
    args = {"name": "resnet8", "num_classes": 10, "in_channels": 3, **kwargs}
    with pytest.raises(ConfigError, match=match):
        build_student(**args)
