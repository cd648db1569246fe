"""Face alignment: a least-squares similarity warp of five landmarks onto a reference template."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

# ArcFace's five-point template for a 112x112 crop, in pixel-index coordinates: insightface,
# python-package/insightface/utils/face_align.py (`arcface_dst`), the de facto standard for aligned faces.
_ARCFACE_112 = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041))

ARCFACE_TEMPLATE: tuple[tuple[float, float], ...] = tuple(
    (round((x + 0.5) / 112, 6), round((y + 0.5) / 112, 6)) for x, y in _ARCFACE_112)
"""Left eye, right eye, nose, mouth left, mouth right ("left" is the image's left) in the unit square.

Coordinates are continuous (pixel ``i`` covers ``[i, i + 1)``, as in PIL), hence the half-pixel shift
from insightface's index coordinates before dividing by 112.
"""


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The rotation, uniform scale and translation that best maps ``src`` onto ``dst``.

    Least squares without reflection: Umeyama, "Least-squares estimation of transformation
    parameters between two point patterns", IEEE TPAMI 13(4), 1991.

    Args:
        src: (N, 2) points, N >= 2.
        dst: (N, 2) points they should land on.

    Returns:
        (3, 3) homogeneous matrix ``m`` with ``dst ~ m @ [x, y, 1]``.

    Raises:
        ValueError: for mismatched shapes or coincident source points.
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need two (N, 2) point arrays with N >= 2, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    src_var = (src_centred ** 2).sum() / len(src)
    if src_var < 1e-12:
        raise ValueError("source points coincide; no transform is defined")
    u, sigma, vt = np.linalg.svd(dst_centred.T @ src_centred / len(src))
    signs = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = (sigma * signs).sum() / src_var
    matrix = np.eye(3)
    matrix[:2, :2] = scale * rotation
    matrix[:2, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def template_points(size: int, margin: float) -> np.ndarray:
    """(5, 2) template positions in pixels in a ``size`` square whose border adds ``margin`` per side."""
    return (np.asarray(ARCFACE_TEMPLATE) + margin) / (1 + 2 * margin) * size


def align(img: Image.Image, landmarks: np.ndarray, size: int, margin: float = 0.0) -> Image.Image:
    """Warps a face so its five landmarks land on `ARCFACE_TEMPLATE`.

    Args:
        img: the image the landmarks belong to; the output keeps its mode.
        landmarks: (5, 2) pixel positions in ``img`` (continuous coordinates), in template order.
        size: side of the square output in pixels.
        margin: fraction of the template square added on each side (0.2 shows 1.4x the template
            square); pixels from outside ``img`` are black.

    Returns:
        A ``size`` x ``size`` image.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1 pixel, got {size}")
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"landmarks must be (5, 2), got {points.shape}")
    matrix = similarity_transform(points, template_points(size, margin))
    shrink = math.floor(1.0 / math.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
    if shrink >= 2:
        # PIL's affine warp samples without antialiasing; box-reduce first when shrinking 2x or more.
        img = img.reduce(shrink)
        matrix = matrix @ np.diag([shrink, shrink, 1.0])
    inverse = np.linalg.inv(matrix)  # PIL maps each output pixel back to its input position
    return img.transform((size, size), Image.Transform.AFFINE, tuple(inverse[:2].ravel()),
                         resample=Image.Resampling.BILINEAR, fillcolor=0)
