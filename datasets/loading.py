"""One file to one teacher-ready pixel array: read, decode, crop, resize (runs in worker processes)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from datasets.decode import ImageDecodeError, decode_image
from datasets.transforms import PreprocessSpec, crop_and_resize, decode_min_side, to_pixels


@dataclass(frozen=True)
class LoadRequest:
    """Which file to load and how; picklable, so it can cross to a worker process."""

    path: Path
    digest: str
    spec: PreprocessSpec


@dataclass(frozen=True)
class Loaded:
    """A worker's answer: uint8 (H, W, C) pixels, or the one-line reason there are none."""

    request: LoadRequest
    pixels: np.ndarray | None
    reason: str | None = None


def load_pixels(path: Path, spec: PreprocessSpec) -> np.ndarray:
    """Reads and preprocesses one image file into uint8 (H, W, C) pixels.

    Raises:
        ImageDecodeError: with a one-line reason, for anything that is not a usable image.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"unreadable file: {exc.strerror}") from None
    image = decode_image(data, min_side=decode_min_side(spec))
    return to_pixels(crop_and_resize(image, spec), spec)


def load_many(requests: Sequence[LoadRequest]) -> list[Loaded]:
    """Loads a chunk of files, turning per-file failures into reasons (a worker's unit of work)."""
    results = []
    for request in requests:
        try:
            results.append(Loaded(request, load_pixels(request.path, request.spec)))
        except ImageDecodeError as exc:
            results.append(Loaded(request, None, str(exc)))
    return results
