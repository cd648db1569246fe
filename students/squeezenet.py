"""SqueezeNet 1.1 students, randomly initialised, for any channel count and inputs of 32 px or more."""
from __future__ import annotations

import torch.nn as nn
from torch.nn import init


def squeezenet1_1(num_classes: int, in_channels: int = 3) -> nn.Module:
    """torchvision's SqueezeNet 1.1 with random weights, adapted for distillation from scratch.

    Two changes to torchvision's network: the first convolution takes ``in_channels`` channels
    (initialised like torchvision's other convolutions), and the ReLU after the final 1x1
    convolution is removed. That ReLU clamps every logit at >= 0; with the final convolution
    initialised at std 0.01, a few large early updates can push every class map below zero, after
    which the whole network gets zero gradient and the loss sits at ln(num_classes) forever (the
    "dead start" that SqueezeNet is known for when trained from scratch without BatchNorm).

    Args:
        num_classes: Number of output logits; the teacher's class count.
        in_channels: Input channels, e.g. 1 for grayscale, 3 for RGB.

    Returns:
        A module mapping float (B, in_channels, H, W) with H, W >= 32 to logits (B, num_classes).

    Raises:
        ValueError: If ``num_classes < 2`` or ``in_channels < 1``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    from torchvision.models import squeezenet as tv_squeezenet  # torchvision loads torch._dynamo: seconds per command

    model = tv_squeezenet.squeezenet1_1(weights=None, num_classes=num_classes)
    if in_channels != 3:
        first = model.features[0]
        conv = nn.Conv2d(in_channels, first.out_channels, kernel_size=first.kernel_size, stride=first.stride)
        init.kaiming_uniform_(conv.weight)  # torchvision's init for every non-final convolution
        init.zeros_(conv.bias)
        model.features[0] = conv
    model.classifier[2] = nn.Identity()  # the logit ReLU: see the docstring
    return model
