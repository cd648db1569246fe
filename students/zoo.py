"""The student zoo: compact image classifiers built from scratch (nothing downloaded), by name."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torch.nn import init

from extractor.errors import ConfigError, UnknownNameError
from extractor.students.squeezenet import squeezenet1_1


def _channels(base: int, width: float) -> int:
    """``base * width`` rounded to a multiple of 4 (at least 4): cheap on every backend."""
    return max(4, int(round(base * width / 4)) * 4)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            # He et al.'s option B: a 1x1 projection, which exports to ONNX as one plain convolution.
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNets of He et al. 2016 (sec. 4.2): depth 6n+2, three stages of 16/32/64 channels.

    ResNet-8 (n=1, 78k params) and ResNet-20 (n=3, 0.27M) are the students of the teacher-assistant
    papers (Mirzadeh et al. 2020). Any input side works: the head pools globally.

    Args:
        depth: 6n + 2.
        num_classes: Output logits.
        in_channels: 1 for grayscale, 3 for RGB.
        width: Channel multiplier of every stage.
    """

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ConfigError(f"a CIFAR ResNet has depth 6n+2 >= 8, got {depth}")
        blocks = (depth - 2) // 6
        widths = [_channels(c, width) for c in (16, 32, 64)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        channels = widths[0]
        for stage, out_channels in enumerate(widths):
            for index in range(blocks):
                layers.append(BasicBlock(channels, out_channels, 2 if stage and index == 0 else 1))
                channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for block in self.features:
            init.zeros_(block.bn2.weight)  # each block starts as identity: faster, steadier early training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(self.stem(x))), 1))


def resnet8(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    return CifarResNet(8, num_classes, in_channels, width)


def resnet20(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    return CifarResNet(20, num_classes, in_channels, width)


def mobilenet_v3_small(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """torchvision's MobileNetV3-Small with random weights, ``width_mult=width``, and ``in_channels``.

    The stem keeps its stride 2; for inputs under 64 px give a larger ``--size`` (the network
    downsamples 32x in all).
    """
    from torchvision.models import mobilenet_v3_small as tv_mobilenet_v3_small

    model = tv_mobilenet_v3_small(weights=None, num_classes=num_classes, width_mult=width)
    if in_channels != 3:
        first = model.features[0][0]
        model.features[0][0] = nn.Conv2d(in_channels, first.out_channels, first.kernel_size, first.stride,
                                         first.padding, bias=False)
        init.kaiming_normal_(model.features[0][0].weight, mode="fan_out")
    return model


def _squeezenet(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    if width != 1.0:
        raise ConfigError(f"--width applies to mobilenet_v3_small and the ResNets; squeezenet1_1 has none, got {width}")
    return squeezenet1_1(num_classes, in_channels)


STUDENTS: dict[str, Callable[..., nn.Module]] = {
    "squeezenet1_1": _squeezenet,
    "mobilenet_v3_small": mobilenet_v3_small,
    "resnet8": resnet8,
    "resnet20": resnet20,
}
"""Student architectures by name: each factory takes ``(num_classes, in_channels, width)``."""

def build_student(name: str, num_classes: int, in_channels: int, width: float = 1.0) -> nn.Module:
    """Builds the student architecture called ``name`` with random weights.

    Raises:
        UnknownNameError: If ``name`` is not in ``STUDENTS``; the message lists the valid names.
        ConfigError: For a class count under 2, no channels, or a width <= 0.
    """
    if name not in STUDENTS:
        raise UnknownNameError(f"unknown student {name!r}; valid students: {', '.join(STUDENTS)}")
    if num_classes < 2:
        raise ConfigError(f"a student needs >= 2 classes, got {num_classes}")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
    if not 0.0 < width <= 4.0:
        raise ConfigError(f"--width must be in (0, 4], got {width}")
    return STUDENTS[name](num_classes=num_classes, in_channels=in_channels, width=width)


def count_parameters(model: nn.Module) -> int:
    """Trainable and frozen parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
