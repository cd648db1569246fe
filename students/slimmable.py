"""Slimmable students: one network whose sub-networks run at several widths, each on the first
``round(width * C)`` channels of every layer, with one BatchNorm per width (Yu et al. 2019, "Slimmable
Neural Networks").

Written from the paper, not from its reference code (CC BY-NC 4.0). ``to_plain`` turns one width into an
ordinary network for export; ``recalibrate_batchnorm`` re-estimates each width's statistics after training.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import init

from extractor.errors import ConfigError, UnknownNameError


def slim_channels(channels: int, width: float) -> int:
    """How many of ``channels`` are active at ``width``: ``round(width * channels)``, at least one."""
    return max(1, round(width * channels))


class SlimmableConv2d(nn.Conv2d):
    """A bias-free convolution that runs on the first ``slim_channels(C, width)`` input and output channels.

    Args:
        slim_in: Slim the input channels; False for a layer that sees the image.
        slim_out: Slim the output channels.
        depthwise: One filter per channel (``groups == channels``); the groups slim with the channels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, *,
                 slim_in: bool = True, slim_out: bool = True, depthwise: bool = False) -> None:
        if depthwise and (in_channels != out_channels or slim_in != slim_out):
            raise ValueError("a depthwise convolution has as many outputs as inputs, slimmed alike")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding,
                         groups=in_channels if depthwise else 1, bias=False)
        self.slim_in, self.slim_out = slim_in, slim_out
        self.width = 1.0

    def active(self) -> tuple[int, int, int]:
        """(input channels, output channels, groups) at the current width."""
        ins = slim_channels(self.in_channels, self.width) if self.slim_in else self.in_channels
        outs = slim_channels(self.out_channels, self.width) if self.slim_out else self.out_channels
        return ins, outs, ins if self.groups > 1 else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ins, outs, groups = self.active()
        return F.conv2d(x, self.weight[:outs, :ins // groups], None, self.stride, self.padding, self.dilation, groups)

    def plain(self) -> nn.Conv2d:
        """The ``nn.Conv2d`` this layer computes at the current width (a copy of the active weights)."""
        ins, outs, groups = self.active()
        conv = nn.Conv2d(ins, outs, self.kernel_size, self.stride, self.padding, self.dilation, groups, bias=False)
        conv.weight.data.copy_(self.weight.data[:outs, :ins // groups])
        return conv


class SlimmableLinear(nn.Linear):
    """A linear head on the first ``slim_channels(in_features, width)`` inputs; its outputs (classes) stay whole."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.width = 1.0

    def active(self) -> int:
        """Input features at the current width."""
        return slim_channels(self.in_features, self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, :self.active()], self.bias)

    def plain(self) -> nn.Linear:
        """The ``nn.Linear`` this layer computes at the current width."""
        linear = nn.Linear(self.active(), self.out_features)
        linear.weight.data.copy_(self.weight.data[:, :self.active()])
        linear.bias.data.copy_(self.bias.data)
        return linear


class SwitchableBatchNorm2d(nn.Module):
    """One BatchNorm (statistics and affine parameters) per width.

    The sub-networks' features have different means and variances, so one shared set of running
    statistics is right for at most one width (Yu et al. 2019, sec. 3.2); private ones cost a few
    parameters per channel.
    """

    def __init__(self, channels: int, widths: Sequence[float]) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.norms = nn.ModuleList(nn.BatchNorm2d(slim_channels(channels, width)) for width in self.widths)
        self.width = self.widths[0]

    def active(self) -> nn.BatchNorm2d:
        """The BatchNorm of the current width."""
        return self.norms[self.widths.index(self.width)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.active()(x)

    def plain(self) -> nn.BatchNorm2d:
        """A copy of the current width's BatchNorm."""
        return copy.deepcopy(self.active())


SLIMMABLE_LAYERS = (SlimmableConv2d, SlimmableLinear, SwitchableBatchNorm2d)


class SlimmableNet(nn.Module):
    """A network whose slimmable layers all run at one of ``widths`` at a time (``set_width``).

    Args:
        widths: Channel multipliers in (0, 1] of the full architecture; kept widest first.
    """

    def __init__(self, widths: Sequence[float]) -> None:
        super().__init__()
        if not widths or any(not 0.0 < width <= 1.0 for width in widths) or len(set(widths)) != len(widths):
            raise ConfigError(f"--slimmable takes distinct widths in (0, 1], got {list(widths)}")
        self.widths = tuple(sorted(widths, reverse=True))
        self.width = self.widths[0]

    def _add_head(self, channels: int, num_classes: int) -> None:
        """Ends the network with global average pooling and a slimmable linear layer on ``channels``
        features, then gives every convolution He (fan-out) initialisation, as the zoo's networks do."""
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = SlimmableLinear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def set_width(self, width: float) -> None:
        """Runs every slimmable layer at ``width`` from now on.

        Raises:
            ValueError: If ``width`` is not one of ``widths`` (each has its own BatchNorm).
        """
        if width not in self.widths:
            raise ValueError(f"width {width} is not one of this network's widths {self.widths}")
        for module in self.modules():
            if isinstance(module, SLIMMABLE_LAYERS):
                module.width = width
        self.width = width


def to_plain(model: SlimmableNet, width: float) -> nn.Module:
    """A copy of ``model`` at ``width`` in which every slimmable layer is replaced by the ordinary torch
    layer it computes there: same outputs, only that width's parameters, exportable like any network.
    The copy no longer switches (its ``widths`` is just ``(width,)``); ``model`` is left as it was."""
    plain = copy.deepcopy(model)
    plain.set_width(width)
    _replace_slimmable(plain)
    plain.widths = (width,)
    return plain


def _replace_slimmable(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, SLIMMABLE_LAYERS):
            setattr(module, name, child.plain())
        else:
            _replace_slimmable(child)


def recalibrate_batchnorm(model: SlimmableNet, batches: Sequence[torch.Tensor]) -> None:
    """Re-estimates every width's BatchNorm statistics with the final weights.

    The running averages collected during training mix statistics of weights that kept changing; after
    training each width's are reset and recomputed as the plain average over ``batches``, forwarded in
    train mode without gradients (Yu & Huang 2019, "Universally Slimmable Networks", sec. 3.2). The
    model's width and mode are restored.

    Args:
        model: The trained network.
        batches: (B, C, H, W) inputs, normalised like training inputs (a few hundred images in all).
    """
    if not batches:
        raise ValueError("recalibrating BatchNorm needs at least one batch of images")
    was_training, width = model.training, model.width
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches, not an exponential one
    model.train()
    try:
        with torch.no_grad():
            for each in model.widths:
                model.set_width(each)
                for inputs in batches:
                    model(inputs)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.set_width(width)
        model.train(was_training)


class SlimmableBasicBlock(nn.Module):
    """The CIFAR ResNet block (``zoo.BasicBlock``) with slimmable convolutions and switchable BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, widths: Sequence[float]) -> None:
        super().__init__()
        self.conv1 = SlimmableConv2d(in_channels, out_channels, 3, stride, 1)
        self.bn1 = SwitchableBatchNorm2d(out_channels, widths)
        self.conv2 = SlimmableConv2d(out_channels, out_channels, 3, 1, 1)
        self.bn2 = SwitchableBatchNorm2d(out_channels, widths)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(SlimmableConv2d(in_channels, out_channels, 1, stride),
                                          SwitchableBatchNorm2d(out_channels, widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SlimmableCifarResNet(SlimmableNet):
    """``zoo.CifarResNet`` (depth 6n+2, stages of 16/32/64 channels) as one slimmable network.

    Modules carry the zoo's names, so ``to_plain(model, w).state_dict()`` loads into
    ``zoo.CifarResNet(depth, ..., width=w)`` wherever both give the same channel counts (e.g. widths
    1, 0.75, 0.5 and 0.25).

    Args:
        depth: 6n + 2.
        num_classes: Output logits.
        in_channels: 1 for grayscale, 3 for RGB (never slimmed).
        widths: Channel multipliers in (0, 1].
    """

    def __init__(self, depth: int, num_classes: int, in_channels: int, widths: Sequence[float]) -> None:
        super().__init__(widths)
        if (depth - 2) % 6 or depth < 8:
            raise ConfigError(f"a CIFAR ResNet has depth 6n+2 >= 8, got {depth}")
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(SlimmableConv2d(in_channels, 16, 3, 1, 1, slim_in=False),
                                  SwitchableBatchNorm2d(16, self.widths), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        channels = 16
        for stage, out_channels in enumerate((16, 32, 64)):
            for index in range(blocks):
                layers.append(SlimmableBasicBlock(channels, out_channels, 2 if stage and index == 0 else 1,
                                                  self.widths))
                channels = out_channels
        self.features = nn.Sequential(*layers)
        self._add_head(channels, num_classes)
        for block in self.features:
            for norm in block.bn2.norms:
                init.zeros_(norm.weight)  # each block starts as identity at every width, as in the zoo
        self.set_width(self.widths[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(self.stem(x))), 1))


MOBILENET_V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *((512, 1),) * 5, (1024, 2), (1024, 1))
"""(output channels, stride) of MobileNet v1's 13 depthwise-separable blocks (Howard et al. 2017, table 1)."""


class SlimmableMobileNetV1(SlimmableNet):
    """MobileNet v1 (Howard et al. 2017), the network the slimmable and IPKD-TA papers slim, for small inputs.

    The stem keeps stride 1 (the CIFAR variant), so a 32 px input ends at 2x2 after four stride-2
    blocks; 3.2M parameters at full width.

    Args:
        num_classes: Output logits.
        in_channels: 1 for grayscale, 3 for RGB (never slimmed).
        widths: Channel multipliers in (0, 1].
    """

    def __init__(self, num_classes: int, in_channels: int, widths: Sequence[float]) -> None:
        super().__init__(widths)
        layers: list[nn.Module] = [SlimmableConv2d(in_channels, 32, 3, 1, 1, slim_in=False),
                                   SwitchableBatchNorm2d(32, self.widths), nn.ReLU(inplace=True)]
        channels = 32
        for out_channels, stride in MOBILENET_V1_BLOCKS:
            layers += [SlimmableConv2d(channels, channels, 3, stride, 1, depthwise=True),
                       SwitchableBatchNorm2d(channels, self.widths), nn.ReLU(inplace=True),
                       SlimmableConv2d(channels, out_channels, 1),
                       SwitchableBatchNorm2d(out_channels, self.widths), nn.ReLU(inplace=True)]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self._add_head(channels, num_classes)
        self.set_width(self.widths[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


SLIMMABLE_STUDENTS: dict[str, Callable[[int, int, Sequence[float]], SlimmableNet]] = {
    "resnet8": lambda num_classes, in_channels, widths: SlimmableCifarResNet(8, num_classes, in_channels, widths),
    "resnet20": lambda num_classes, in_channels, widths: SlimmableCifarResNet(20, num_classes, in_channels, widths),
    "mobilenet_v1": SlimmableMobileNetV1,
}
"""Slimmable architectures by name: each factory takes ``(num_classes, in_channels, widths)``."""


def build_slimmable(name: str, num_classes: int, in_channels: int, widths: Sequence[float]) -> SlimmableNet:
    """Builds the slimmable architecture called ``name`` with random weights, at its widest width.

    Raises:
        UnknownNameError: If ``name`` has no slimmable version; the message lists those that do.
        ConfigError: For a class count under 2, no channels, or widths outside (0, 1].
    """
    if name not in SLIMMABLE_STUDENTS:
        raise UnknownNameError(f"--student {name} has no slimmable version; slimmable students: "
                               f"{', '.join(SLIMMABLE_STUDENTS)}")
    if num_classes < 2:
        raise ConfigError(f"a student needs >= 2 classes, got {num_classes}")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
    return SLIMMABLE_STUDENTS[name](num_classes, in_channels, widths)
