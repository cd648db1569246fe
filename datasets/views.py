"""Deterministic augmented views of preprocessed pixels: the same image and view always give the same pixels.

A view is a geometric change (mirror, translation, crop resized back) of the uint8 pixels a teacher is
sent. Its random draws come from the image's content digest and the view's own description, so the label
job (what the teacher answered for) and the training job (what the student sees) make the same pixels
without storing them: byte for byte when both work at the same size.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from extractor.errors import ConfigError
from extractor.fingerprint import stable_hash

VIEW_VERSION = "1"  # bump whenever the code below changes what a view produces
VIEW_AUGMENTATIONS: tuple[str, ...] = ("flip", "shift", "crop")


@dataclass(frozen=True)
class ViewSpec:
    """One augmented view of every image, as data: part of the cache key of the answers about it."""

    augment: tuple[str, ...]
    """What the view may do: any of flip, shift, crop."""
    index: int = 1
    """Which view (1, 2, ...): another index draws other changes. View 0 is the plain image (no ViewSpec)."""
    shift_frac: float = 0.125
    """Largest translation as a fraction of the side, edges replicated (as training's "shift")."""
    crop_scale: float = 0.75
    """Smallest crop side as a fraction of the side; the crop is resized back (nearest pixel)."""
    probe: bool = False
    """A probe view makes each of its changes for sure: always mirrored, never an unmoved shift, never the
    whole image as the crop; a training view draws them as training does (a mirror half of the time)."""
    shift_px: int = 0
    """With ``probe``: translate by exactly this many pixels along one axis (1: the one-pixel shift)."""

    def __post_init__(self) -> None:
        unknown = set(self.augment) - set(VIEW_AUGMENTATIONS)
        if unknown or not self.augment:
            raise ConfigError(f"a view takes a comma list of {', '.join(VIEW_AUGMENTATIONS)}; got "
                              f"{', '.join(self.augment) or 'nothing'}")
        if self.index < 1:
            raise ConfigError(f"view index must be >= 1 (0 is the plain image), got {self.index}")
        if not 0.0 < self.shift_frac < 0.5:
            raise ConfigError(f"--shift must be in (0, 0.5), got {self.shift_frac}")
        if not 0.0 < self.crop_scale < 1.0:
            raise ConfigError(f"--crop-scale must be in (0, 1), got {self.crop_scale}")
        if self.shift_px < 0 or (self.shift_px and not self.probe):
            raise ConfigError("shift_px applies to probe views and must be >= 0")

    def as_data(self) -> dict[str, Any]:
        """The view as plain data for the cache key: defaults dropped, version included."""
        data: dict[str, Any] = {"version": VIEW_VERSION, "augment": sorted(self.augment)}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name != "augment" and value != field.default:
                data[field.name] = value
        return data

    @property
    def name(self) -> str:
        """Short name for messages: "flip", "shift1", "view3", ..."""
        if self.probe:
            return "+".join(self.augment) + (str(self.shift_px) if self.shift_px else "")
        return f"view{self.index}"


@dataclass(frozen=True)
class ViewParams:
    """The changes drawn for one image, in pixels of one image size."""

    flip: bool
    dy: int
    """Output row i takes source row i + dy (clamped at the edges)."""
    dx: int
    crop: tuple[int, int, int, int] | None
    """(top, left, height, width) of the source crop resized back to the full size, or None."""


def training_views(count: int, augment: tuple[str, ...], *, shift_frac: float = 0.125,
                   crop_scale: float = 0.75) -> tuple[ViewSpec, ...]:
    """The ``count - 1`` extra views (indices 1 .. count-1) that ``extractor label --views COUNT`` buys."""
    if count < 1:
        raise ConfigError(f"--views must be >= 1 (1: the plain image only), got {count}")
    return tuple(ViewSpec(tuple(augment), index, shift_frac=shift_frac, crop_scale=crop_scale)
                 for index in range(1, count))


def view_params(view: ViewSpec, digest: str, height: int, width: int) -> ViewParams:
    """Draws the view's changes for the image with content ``digest`` at ``height`` x ``width``.

    Training views draw fractions of the side, rounded at the given size, so a student at another input
    size sees the same change scaled; probe views draw whole pixels.
    """
    seed = hashlib.sha256(f"{digest}|{stable_hash(view.as_data())}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(seed[:8], "little"))
    u = rng.random(8)  # a fixed number of draws, whatever the view uses
    flip = "flip" in view.augment and (view.probe or u[0] < 0.5)
    dy = dx = 0
    if "shift" in view.augment:
        dy, dx = _shift(view, u, height, width)
    crop = None
    if "crop" in view.augment:
        scale = view.crop_scale + (1.0 - view.crop_scale) * u[5]  # [scale, 1)
        crop_h, crop_w = max(1, round(scale * height)), max(1, round(scale * width))
        if view.probe and (crop_h, crop_w) == (height, width):
            crop_h, crop_w = max(1, height - 1), max(1, width - 1)
        top = min(height - crop_h, int(u[6] * (height - crop_h + 1)))
        left = min(width - crop_w, int(u[7] * (width - crop_w + 1)))
        crop = (top, left, crop_h, crop_w)
    return ViewParams(flip, dy, dx, crop)


def _shift(view: ViewSpec, u: np.ndarray, height: int, width: int) -> tuple[int, int]:
    if view.probe and view.shift_px:
        step = view.shift_px
        return [(step, 0), (-step, 0), (0, step), (0, -step)][int(u[4] * 4) % 4]
    pad_y, pad_x = round(height * view.shift_frac), round(width * view.shift_frac)
    if not view.probe:
        dy = min(pad_y, max(-pad_y, round((2 * u[1] - 1) * view.shift_frac * height)))
        dx = min(pad_x, max(-pad_x, round((2 * u[2] - 1) * view.shift_frac * width)))
        return dy, dx
    choices = [(y, x) for y in range(-pad_y, pad_y + 1) for x in range(-pad_x, pad_x + 1) if (y, x) != (0, 0)]
    if not choices:
        return 0, 0
    return choices[int(u[3] * len(choices)) % len(choices)]


def source_index(params: ViewParams, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(H,) rows and (W,) columns of the source pixels each output pixel takes."""
    rows = np.clip(np.arange(height) + params.dy, 0, height - 1)
    cols = np.arange(width)
    if params.flip:
        cols = width - 1 - cols
    cols = np.clip(cols + params.dx, 0, width - 1)
    if params.crop is not None:
        top, left, crop_h, crop_w = params.crop
        rows = top + ((2 * rows + 1) * crop_h) // (2 * height)  # nearest pixel of the crop
        cols = left + ((2 * cols + 1) * crop_w) // (2 * width)
    return rows, cols


def apply_view(pixels: np.ndarray, view: ViewSpec, digest: str) -> np.ndarray:
    """The view of one image: uint8 (H, W, C) in, uint8 (H, W, C) out."""
    if pixels.ndim != 3:
        raise ValueError(f"expected (H, W, C) pixels, got shape {pixels.shape}")
    height, width = pixels.shape[:2]
    rows, cols = source_index(view_params(view, digest, height, width), height, width)
    return np.ascontiguousarray(pixels[rows[:, None], cols[None, :]])


def apply_view_chw(images: np.ndarray, view: ViewSpec, digests: list[str]) -> np.ndarray:
    """The view of many images at once: uint8 (N, C, H, W) in and out, one digest per image."""
    if images.ndim != 4 or len(digests) != len(images):
        raise ValueError(f"expected (N, C, H, W) images with one digest each, got {images.shape}, {len(digests)}")
    out = np.empty_like(images)
    height, width = images.shape[2:]
    for index, digest in enumerate(digests):
        rows, cols = source_index(view_params(view, digest, height, width), height, width)
        out[index] = images[index][:, rows[:, None], cols[None, :]]
    return out
