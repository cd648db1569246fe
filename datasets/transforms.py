"""The preprocessing a teacher expects, as data: crop, resize, channel order, normalisation."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from PIL import Image

from extractor.errors import ConfigError

Channels = Literal["gray", "rgb", "bgr"]
CHANNELS: tuple[str, ...] = ("gray", "rgb", "bgr")
TRANSFORM_VERSION = "1"  # bump whenever the code below changes what a spec produces


MIN_SIZE, MAX_SIZE = 8, 2048
"""The teacher input sides --size may name: 2048 px keeps a 64-image batch of float32 inputs near 3 GB."""


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes a teacher input.

    Pixel statistics are on the 0-255 scale: ``x = (pixel - mean) / std``.
    """

    size: int | None = None
    """Square side in pixels; None keeps the crop's own size (image-input teachers only)."""
    channels: Channels = "rgb"
    """Channel layout handed to the teacher."""
    mean: tuple[float, ...] = (0.0,)
    """One value, or one per channel, subtracted on the 0-255 scale."""
    std: tuple[float, ...] = (255.0,)
    """One value, or one per channel, divided by on the 0-255 scale."""
    center_crop: float = 1.0
    """Fraction of the shorter side kept as a centred square; 1.0 keeps the whole image."""

    def __post_init__(self) -> None:
        if self.size is not None and not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ConfigError(f"--size must be from {MIN_SIZE} to {MAX_SIZE} pixels, got {self.size}")
        if self.channels not in CHANNELS:
            raise ConfigError(f"--channels must be one of {CHANNELS}, got {self.channels!r}")
        count = 1 if self.channels == "gray" else 3
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, count):
                raise ConfigError(f"--{name} takes 1 or {count} values for {self.channels}, got {len(values)}")
            if not all(math.isfinite(value) for value in values):
                raise ConfigError(f"--{name} must be finite numbers, got {','.join(map(str, values))}")
        if any(value <= 0 for value in self.std):
            raise ConfigError(f"--std must be > 0, got {','.join(map(str, self.std))}")
        if not 0.0 < self.center_crop <= 1.0:
            raise ConfigError(f"--center-crop must be in (0, 1], got {self.center_crop}")

    @property
    def num_channels(self) -> int:
        return 1 if self.channels == "gray" else 3

    def as_data(self) -> dict[str, Any]:
        """The spec as plain data for fingerprinting: default values dropped, version included."""
        data: dict[str, Any] = {"version": TRANSFORM_VERSION}
        for field in fields(self):
            value = getattr(self, field.name)
            if value != field.default:
                data[field.name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> PreprocessSpec:
        """The spec that :meth:`as_data` gave ``data``; a version this code does not know is refused."""
        if data.get("version") != TRANSFORM_VERSION:
            raise ConfigError(f"stored preprocessing has version {data.get('version')!r}; this extractor reads "
                              f"version {TRANSFORM_VERSION}: upgrade extractor or label again")
        values = {key: tuple(value) if isinstance(value, list) else value
                  for key, value in data.items() if key != "version"}
        return cls(**values)

    def with_size(self, size: int) -> PreprocessSpec:
        return PreprocessSpec(size=size, channels=self.channels, mean=self.mean,
                              std=self.std, center_crop=self.center_crop)


def decode_min_side(spec: PreprocessSpec) -> int | None:
    """The smallest shorter side a decoder may reduce an image to without losing detail."""
    if spec.size is None:
        return None
    return int(np.ceil(spec.size / spec.center_crop))


def crop_and_resize(img: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Centre-crops, converts channels and resizes; the geometric half of preprocessing."""
    img = img.convert("L" if spec.channels == "gray" else "RGB")
    if spec.center_crop < 1.0:
        width, height = img.size
        side = max(1, round(min(width, height) * spec.center_crop))
        left, top = (width - side) // 2, (height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if spec.size is not None and img.size != (spec.size, spec.size):
        img = img.resize((spec.size, spec.size), Image.BILINEAR)
    return img


def to_pixels(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """uint8 (H, W, C) pixels in the spec's channel order."""
    pixels = np.asarray(img, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.channels == "bgr":
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels)


def normalize(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 (..., H, W, C) -> float32 (..., C, H, W), ``(pixel - mean) / std``."""
    mean = np.asarray(spec.mean, dtype=np.float32)
    scale = 1.0 / np.asarray(spec.std, dtype=np.float32)
    chw = np.moveaxis(pixels, -1, -3).astype(np.float32)
    shape = (-1, 1, 1)
    return (chw - mean.reshape(shape)) * scale.reshape(shape)
