"""Binary and ternary layers trained with straight-through estimators, and the swap that installs them.

Weights (per output channel ``c``, ``w_c`` its ``n`` latent full-precision values):

- binary (1 bit, XNOR-Net, Rastegari et al. 2016, sec. 3.1): ``w_hat = a_c * sign(w)`` with
  ``a_c = mean(|w_c|)``, the scale that minimises ``||w_c - a_c * sign(w_c)||``. ``sign(0) = +1``.
- ternary (2 bits, TWN, Li & Liu 2016, eq. 10-11): ``w_hat = a_c * sign(w) * [|w| > d_c]`` with
  ``d_c = 0.7 * mean(|w_c|)`` (their closed-form approximation of the optimal threshold for
  roughly normal weights) and ``a_c = mean(|w| : |w| > d_c)`` (0 where no weight passes).

Both pass the gradient straight through (``d w_hat / d w := 1``, BinaryConnect, Courbariaux et al.
2015), the scale included. Binary activations (``binary_inputs``) are ``sign(x - t)`` with a learnable
per-channel threshold ``t`` (ReActNet's RSign, Liu et al. 2020): inputs that follow a ReLU are all
>= 0, so ``sign(x)`` alone would be constant. ``t`` starts at the per-channel mean of the first
training batch. Its gradient is the BNN one (Hubara et al. 2016): identity where ``|x - t| <= 1``,
0 elsewhere. No activation scale is used: every quantized convolution in the zoo's ResNets is
followed by BatchNorm, which absorbs it.

BatchNorm, biases and, with ``keep_first_last`` (the default, as in every paper above), the first
and last conv/linear layers stay full precision.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from extractor.errors import ConfigError

TWN_DELTA = 0.7
"""Ternary threshold as a fraction of the mean absolute weight (Li & Liu 2016, eq. 10)."""
WEIGHT_BITS = (1, 2)


def _per_channel_mean(values: torch.Tensor) -> torch.Tensor:
    """(out, ...) -> (out, 1, ...) means over everything but the output channel."""
    return values.mean(dim=tuple(range(1, values.ndim)), keepdim=True)


def _sign(x: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``x >= 0``, else ``-1`` (``torch.sign`` would give 0 at 0), in ``x``'s dtype."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class _StraightThroughWeight(torch.autograd.Function):
    """A weight quantizer whose gradient passes straight through: ``d w_hat / d w := 1`` (BinaryConnect)."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class BinaryWeight(_StraightThroughWeight):
    """``a_c * sign(w)``, ``a_c = mean|w_c|``; the gradient passes straight through."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor) -> torch.Tensor:
        return _per_channel_mean(weight.abs()) * _sign(weight)


class TernaryWeight(_StraightThroughWeight):
    """``a_c * sign(w) * [|w| > 0.7 mean|w_c|]``, ``a_c`` the mean kept magnitude; straight-through gradient."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor) -> torch.Tensor:
        magnitude = weight.abs()
        keep = (magnitude > TWN_DELTA * _per_channel_mean(magnitude)).to(weight.dtype)
        kept = (magnitude * keep).sum(dim=tuple(range(1, weight.ndim)), keepdim=True)
        count = keep.sum(dim=tuple(range(1, weight.ndim)), keepdim=True)
        scale = kept / count.clamp_min(1.0)
        return scale * torch.sign(weight) * keep


class SignActivation(torch.autograd.Function):
    """``+1`` where ``x >= 0``, else ``-1``; gradient ``grad * [|x| <= 1]`` (hardtanh's, Hubara et al. 2016)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


WEIGHT_FUNCTIONS = {1: BinaryWeight, 2: TernaryWeight}
"""The weight quantizer of each bit width."""


class BinaryInput(nn.Module):
    """``sign(x - t)`` per channel (dim 1) with a learnable threshold ``t``, set from the first training batch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.threshold = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if self.training and not self.initialized:
            with torch.no_grad():
                self.threshold.copy_(x.transpose(0, 1).reshape(x.shape[1], -1).mean(dim=1))
                self.initialized.fill_(True)
        return SignActivation.apply(x - self.threshold.view(shape))


class _Quantized:
    """What binary and ternary conv/linear layers share: the weight quantizer, binary inputs, freezing."""

    bits: int
    frozen: bool
    input_sign: BinaryInput | None
    weight: nn.Parameter

    def _setup(self, bits: int, binary_inputs: bool, in_features: int) -> None:
        if bits not in WEIGHT_BITS:
            raise ConfigError(f"--bits for trained quantization must be one of {WEIGHT_BITS}, got {bits}")
        self.bits, self.frozen = bits, False
        self.input_sign = BinaryInput(in_features) if binary_inputs else None

    def quantized_weight(self) -> torch.Tensor:
        """The weight the layer computes with: ``w_hat``, or the stored weight once frozen."""
        return self.weight if self.frozen else WEIGHT_FUNCTIONS[self.bits].apply(self.weight)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_sign is None else self.input_sign(x)

    @torch.no_grad()
    def freeze(self) -> None:
        """Replaces the latent weight by ``w_hat`` for good: the inference, packing and export form.

        Afterwards the forward uses the stored weight as is, so a model rebuilt from its quantized
        values computes exactly what the trained one did (recomputing ``a_c`` would round differently).
        """
        if not self.frozen:
            self.weight.copy_(WEIGHT_FUNCTIONS[self.bits].apply(self.weight))
            self.frozen = True


class QuantConv2d(_Quantized, nn.Conv2d):
    """A ``Conv2d`` whose weights are binary (``bits=1``) or ternary (``bits=2``), optionally on binary inputs."""

    def __init__(self, *args, bits: int, binary_inputs: bool = False, **kwargs) -> None:
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._setup(bits, binary_inputs, self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self._inputs(x), self.quantized_weight(), self.bias)


class QuantLinear(_Quantized, nn.Linear):
    """A ``Linear`` whose weights are binary (``bits=1``) or ternary (``bits=2``), optionally on binary inputs."""

    def __init__(self, *args, bits: int, binary_inputs: bool = False, **kwargs) -> None:
        nn.Linear.__init__(self, *args, **kwargs)
        self._setup(bits, binary_inputs, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self._inputs(x), self.quantized_weight(), self.bias)


@dataclass(frozen=True)
class QuantSpec:
    """Which layers become quantized, and how."""

    bits: int
    """1: binary weights, 2: ternary weights."""
    binary_activations: bool = False
    """Also binarise the inputs of every quantized layer."""
    keep_first_last: bool = True
    """Leave the first and the last conv/linear layer (in registration order) in full precision."""

    def __post_init__(self) -> None:
        if self.bits not in WEIGHT_BITS:
            raise ConfigError(f"--bits for trained quantization must be one of {WEIGHT_BITS}, got {self.bits}")


def _replacement(layer: nn.Module, spec: QuantSpec) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        new: nn.Module = QuantConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                     layer.padding, layer.dilation, layer.groups, layer.bias is not None,
                                     layer.padding_mode, bits=spec.bits, binary_inputs=spec.binary_activations)
    else:
        new = QuantLinear(layer.in_features, layer.out_features, layer.bias is not None,
                          bits=spec.bits, binary_inputs=spec.binary_activations)
    new.load_state_dict(layer.state_dict(), strict=False)  # weight and bias; the threshold starts fresh
    return new.to(layer.weight.device)


def quantize_layers(model: nn.Module, spec: QuantSpec) -> list[str]:
    """Swaps ``model``'s ``Conv2d``/``Linear`` layers, in place, for quantized ones holding the same weights.

    "First" and "last" are by registration order (``named_modules``), which is the data-flow order
    of every network in ``students.zoo``; it is never guessed from tensor shapes.

    Returns:
        The names of the swapped layers, in order.
    """
    names = [name for name, module in model.named_modules() if type(module) in (nn.Conv2d, nn.Linear)]
    if spec.keep_first_last:
        names = names[1:-1]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, _replacement(getattr(parent, child), spec))
    return names


def quantized_layers(model: nn.Module) -> dict[str, QuantConv2d | QuantLinear]:
    """The quantized layers of ``model`` by name, in registration order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, _Quantized)}


def freeze(model: nn.Module) -> nn.Module:
    """Freezes every quantized layer of ``model`` (see ``_Quantized.freeze``) and returns it."""
    for layer in quantized_layers(model).values():
        layer.freeze()
    return model
