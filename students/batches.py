"""In-memory training tensors and the tensor-side batching, augmentation and normalisation."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from extractor.errors import ConfigError
from extractor.students.losses import SOFT_KINDS, teacher_log_probs


@dataclass(frozen=True)
class InputConfig:
    """How uint8 images become student inputs: normalisation, plus augmentation when training."""

    mean: tuple[float, ...] = (0.0,)
    """One value, or one per channel, subtracted on the 0-255 scale."""
    std: tuple[float, ...] = (255.0,)
    """One value, or one per channel, divided by on the 0-255 scale."""
    flip: bool = True
    """Randomly mirror half of the training images left-right."""
    shift_frac: float = 0.125
    """Largest random translation, as a fraction of the side (edges are replicated)."""
    crop_scale: float = 1.0
    """Smallest random crop side, as a fraction of the side, resized back (nearest pixel); 1.0: no crop."""

    def __post_init__(self) -> None:
        if not self.mean or not self.std:
            raise ConfigError("--mean and --std need at least one value each")
        if any(value == 0 for value in self.std):
            raise ConfigError("--std must not be 0")
        if not 0.0 <= self.shift_frac < 0.5:
            raise ConfigError(f"--shift must be in [0, 0.5), got {self.shift_frac}")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ConfigError(f"--crop-scale must be in (0, 1], got {self.crop_scale}")


@dataclass(frozen=True)
class DistilTensors:
    """Images and what the teacher said about them, all in memory.

    The teacher's outputs are stored already tempered: ``teacher_log_probs`` is
    ``losses.teacher_log_probs(scores, kinds, T)`` computed once at the configured temperature, so no
    step re-tempers them. Build with ``from_teacher``; a different temperature needs a new instance.
    """

    images: torch.Tensor
    """(N, C, H, W) uint8 pixels, decoded and resized once."""
    labels: torch.Tensor
    """(N,) int64 teacher top-1 labels, the hard targets."""
    teacher_log_probs: torch.Tensor
    """(N, K) float32 tempered teacher log-probabilities; finite or -inf, never NaN."""
    soft_mask: torch.Tensor
    """(N,) bool, True where the teacher gave a soft output."""
    truth: torch.Tensor | None = None
    """(N,) int64 ground-truth labels, -1 where unknown; None when there are none at all."""
    group: torch.Tensor | None = None
    """(N,) int64: rows with the same value are views of one image, each with the teacher's own answer about
    it; an epoch visits every image once, through one of its views drawn at random. None: one row per image."""

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise ValueError(f"images must be (N, C, H, W) uint8, got {tuple(self.images.shape)} {self.images.dtype}")
        if self.labels.shape != (n,) or self.labels.dtype != torch.int64:
            raise ValueError(f"labels must be ({n},) int64, got {tuple(self.labels.shape)} {self.labels.dtype}")
        scores = self.teacher_log_probs
        if scores.ndim != 2 or scores.shape[0] != n or scores.dtype != torch.float32:
            raise ValueError(f"teacher_log_probs must be ({n}, K) float32, got {tuple(scores.shape)} {scores.dtype}")
        if self.soft_mask.shape != (n,) or self.soft_mask.dtype != torch.bool:
            raise ValueError(f"soft_mask must be ({n},) bool, got {tuple(self.soft_mask.shape)} {self.soft_mask.dtype}")
        if self.truth is not None and (self.truth.shape != (n,) or self.truth.dtype != torch.int64):
            raise ValueError(f"truth must be ({n},) int64, got {tuple(self.truth.shape)} {self.truth.dtype}")
        if self.group is not None and (self.group.shape != (n,) or self.group.dtype != torch.int64):
            raise ValueError(f"group must be ({n},) int64, got {tuple(self.group.shape)} {self.group.dtype}")
        if n and (self.labels.min() < 0 or self.labels.max() >= scores.shape[1]):
            raise ValueError(f"labels must lie in [0, {scores.shape[1]})")
        if torch.isnan(scores).any() or (scores == math.inf).any():
            raise ValueError("teacher_log_probs must be finite or -inf, never NaN or +inf")

    @classmethod
    def from_teacher(
        cls,
        images: torch.Tensor,
        labels: torch.Tensor,
        scores: torch.Tensor,
        kinds: Sequence[str] | str,
        temperature: float,
        truth: torch.Tensor | None = None,
    ) -> DistilTensors:
        """Tempers stored teacher scores once and derives the soft mask from their kinds.

        Args:
            images: (N, C, H, W) uint8.
            labels: (N,) int64 teacher top-1 labels.
            scores: (N, K) teacher scores as stored (any values in "label" rows).
            kinds: "probs" | "logits" | "topk" | "label", for all rows or per row.
            temperature: The distillation temperature T.
            truth: Optional (N,) int64 ground truth, -1 where unknown.
        """
        kinds = [kinds] * images.shape[0] if isinstance(kinds, str) else list(kinds)
        soft_mask = torch.tensor([kind in SOFT_KINDS for kind in kinds], dtype=torch.bool)
        return cls(images=images, labels=labels, teacher_log_probs=teacher_log_probs(scores, kinds, temperature),
                   soft_mask=soft_mask, truth=truth)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_images(self) -> int:
        """Distinct images (one row each, or one ``group`` of views each): the rows an epoch visits."""
        return len(self) if self.group is None else int(torch.unique(self.group).numel())

    def to(self, device: torch.device | str) -> DistilTensors:
        """The same rows on ``device`` (e.g. the whole uint8 cache on the GPU, so no step copies images)."""
        return DistilTensors(images=self.images.to(device), labels=self.labels.to(device),
                             teacher_log_probs=self.teacher_log_probs.to(device), soft_mask=self.soft_mask.to(device),
                             truth=None if self.truth is None else self.truth.to(device),
                             group=None if self.group is None else self.group.to(device))

    def subset(self, index: torch.Tensor) -> DistilTensors:
        """The rows picked by ``index`` ((M,) int64 or (N,) bool), e.g. a train/held-out split."""
        return DistilTensors(images=self.images[index], labels=self.labels[index],
                             teacher_log_probs=self.teacher_log_probs[index], soft_mask=self.soft_mask[index],
                             truth=None if self.truth is None else self.truth[index],
                             group=None if self.group is None else self.group[index])


@dataclass(frozen=True)
class Batch:
    """One step's worth of tensors, on the training device."""

    inputs: torch.Tensor
    """(B, C, H, W) float32, normalised (and augmented when training)."""
    labels: torch.Tensor
    """(B,) int64 teacher top-1 labels."""
    teacher_log_probs: torch.Tensor
    """(B, K) float32 tempered teacher log-probabilities."""
    soft_mask: torch.Tensor
    """(B,) bool, True where the teacher gave a soft output."""
    truth: torch.Tensor | None
    """(B,) int64 ground truth, -1 where unknown, or None."""


def num_batches(num_samples: int, batch_size: int) -> int:
    """Steps per epoch; the last batch may be smaller, none is dropped."""
    return math.ceil(num_samples / batch_size)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, epoch)``, so a resumed epoch replays exactly."""
    # SeedSequence mixes the pair, so (seed, epoch) and (seed + 1, epoch - 1) give unrelated streams.
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def normalize(images: torch.Tensor, cfg: InputConfig) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 ``(pixel - mean) / std``, as in ``datasets.transforms.normalize``."""
    channels = images.shape[1]
    if len(cfg.mean) not in (1, channels) or len(cfg.std) not in (1, channels):
        raise ConfigError(f"--mean and --std take 1 or {channels} values for {channels}-channel images")
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    scale = 1.0 / torch.tensor(cfg.std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    return (images.float() - mean) * scale


def augment(images: torch.Tensor, generator: torch.Generator, cfg: InputConfig) -> torch.Tensor:
    """Random flip, translation and crop per image, then ``normalize``; one gather for the whole batch.

    The translation equals replicate-padding each side by ``round(side * shift_frac)`` pixels and
    taking a random crop of the original size. The crop (``crop_scale < 1``) takes a square of side
    uniform in [crop_scale, 1] of the image at a random place and resizes it back, nearest pixel, as
    ``datasets.views`` does. Random numbers come from the CPU ``generator`` whatever the images'
    device, so results do not depend on where training runs; only those per-image draws travel (one
    small copy), and the index maps and the gather are built on the images' device.

    Args:
        images: (B, C, H, W) uint8 on any device.
        generator: CPU generator; its state advances.
        cfg: Flip, shift and normalisation settings.

    Returns:
        (B, C, H, W) float32 on the images' device.
    """
    n, channels, height, width = images.shape
    pad_y, pad_x = round(height * cfg.shift_frac), round(width * cfg.shift_frac)
    shift_y = torch.randint(-pad_y, pad_y + 1, (n, 1), generator=generator)
    shift_x = torch.randint(-pad_x, pad_x + 1, (n, 1), generator=generator)
    flip = torch.rand((n, 1), generator=generator) < 0.5 if cfg.flip else torch.zeros((n, 1), dtype=torch.bool)
    draws = [shift_y, shift_x, flip.long()]
    if cfg.crop_scale < 1.0:  # drawn only when used: runs without a crop replay their old random streams
        draws += _crop_boxes(n, height, width, generator, cfg.crop_scale)
    draws = torch.cat(draws, 1).to(images.device)  # (B, 3) or (B, 7) int64: the only host-to-device copy
    shift_y, shift_x, flip = draws[:, 0:1], draws[:, 1:2], draws[:, 2:3].bool()
    cols = torch.arange(width, device=images.device).expand(n, width)
    cols = torch.where(flip, width - 1 - cols, cols)
    rows = (torch.arange(height, device=images.device) + shift_y).clamp_(0, height - 1)  # (B, H)
    cols = (cols + shift_x).clamp_(0, width - 1)  # (B, W)
    if cfg.crop_scale < 1.0:
        top, left, crop_h, crop_w = draws[:, 3:4], draws[:, 4:5], draws[:, 5:6], draws[:, 6:7]
        rows = top + ((2 * rows + 1) * crop_h) // (2 * height)
        cols = left + ((2 * cols + 1) * crop_w) // (2 * width)
    flat = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, height * width)
    moved = images.reshape(n, channels, height * width).gather(2, flat.expand(n, channels, height * width))
    return normalize(moved.view(n, channels, height, width), cfg)


def _crop_boxes(n: int, height: int, width: int, generator: torch.Generator, scale: float) -> list[torch.Tensor]:
    """A random square crop per image, as (B, 1) int64 top, left, crop height and crop width; ``augment`` maps
    output row ``r`` to ``top + ((2r + 1) * crop_h) // (2 * height)`` (nearest pixel), columns alike."""
    u = torch.rand((n, 3), generator=generator, dtype=torch.float64)
    fraction = scale + (1.0 - scale) * u[:, :1]
    crop_h = (fraction * height).round().clamp_(min=1).long()
    crop_w = (fraction * width).round().clamp_(min=1).long()
    top = (u[:, 1:2] * (height - crop_h + 1)).long().clamp_(max=height - crop_h)
    left = (u[:, 2:3] * (width - crop_w + 1)).long().clamp_(max=width - crop_w)
    return [top, left, crop_h, crop_w]


def _batch(data: DistilTensors, index: torch.Tensor | slice, inputs: torch.Tensor, device: torch.device) -> Batch:
    return Batch(inputs=inputs, labels=data.labels[index].to(device),
                 teacher_log_probs=data.teacher_log_probs[index].to(device),
                 soft_mask=data.soft_mask[index].to(device),
                 truth=None if data.truth is None else data.truth[index].to(device))


def train_batches(data: DistilTensors, batch_size: int, *, seed: int, epoch: int, inputs: InputConfig,
                  device: torch.device | str = "cpu") -> Iterator[Batch]:
    """One shuffled, augmented epoch; deterministic given ``(seed, epoch)``.

    Images travel to ``device`` as uint8 and are augmented there, which moves a quarter of the bytes.
    """
    device = torch.device(device)
    generator = epoch_generator(seed, epoch)
    order = torch.randperm(len(data), generator=generator) if data.group is None else \
        _one_view_each(data.group.cpu(), generator)
    order = order.to(data.images.device)  # one copy per epoch; indexing tensors on a GPU with CPU indices copies
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        images = data.images[index].to(device, non_blocking=True)
        yield _batch(data, index, augment(images, generator, inputs), device)


def _one_view_each(group: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Rows of one epoch: the images in random order, each through one of its views drawn at random."""
    _, image = torch.unique(group, return_inverse=True)
    by_image = torch.argsort(image, stable=True)
    counts = torch.bincount(image)
    first = torch.cumsum(counts, 0) - counts
    images = torch.randperm(len(counts), generator=generator)
    pick = (torch.rand(len(counts), generator=generator, dtype=torch.float64) * counts[images]).long()
    return by_image[first[images] + pick.clamp_(max=counts[images] - 1)]


def eval_batches(data: DistilTensors, batch_size: int, *, inputs: InputConfig,
                 device: torch.device | str = "cpu") -> Iterator[Batch]:
    """The rows in order, normalised but never augmented."""
    device = torch.device(device)
    for start in range(0, len(data), batch_size):
        rows = slice(start, start + batch_size)
        yield _batch(data, rows, normalize(data.images[rows].to(device, non_blocking=True), inputs), device)
