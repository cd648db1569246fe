"""Deterministic augmented views: the same image and view always give the same pixels."""
import numpy as np
import pytest

from extractor.datasets.views import ViewSpec, apply_view, apply_view_chw, training_views, view_params
from extractor.errors import ConfigError
from extractor.fingerprint import stable_hash

DIGEST = "ab" * 32


def pixels(seed: int = 0, size: int = 16, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, channels), dtype=np.uint8)


def test_same_image_and_view_give_the_same_pixels_another_index_others():
    image, view = pixels(), ViewSpec(("flip", "shift", "crop"), index=1)
    first = apply_view(image, view, DIGEST)
    assert first.dtype == np.uint8 and first.shape == image.shape
    assert np.array_equal(first, apply_view(image.copy(), ViewSpec(("flip", "shift", "crop"), index=1), DIGEST))
    others = [apply_view(image, ViewSpec(("flip", "shift", "crop"), index=i), DIGEST) for i in range(2, 6)]
    assert any(not np.array_equal(first, other) for other in others)
    assert any(not np.array_equal(first, apply_view(image, view, f"{i:064x}")) for i in range(4))


def test_view_fingerprints_same_same_different():
    h1 = stable_hash(ViewSpec(("shift", "flip"), index=2).as_data())
    h2 = stable_hash(ViewSpec(("shift", "flip"), index=3).as_data())
    h3 = stable_hash(ViewSpec(("flip", "shift"), index=2).as_data())  # order does not matter
    assert h1 == h3 != h2
    assert stable_hash(ViewSpec(("flip",), probe=True).as_data()) != stable_hash(ViewSpec(("flip",)).as_data())


def test_probe_views_always_make_their_change():
    image = pixels()
    for index in range(20):
        digest = f"{index:064x}"
        assert np.array_equal(apply_view(image, ViewSpec(("flip",), probe=True), digest), image[:, ::-1])
        params = view_params(ViewSpec(("shift",), probe=True, shift_px=1), digest, 16, 16)
        assert sorted((abs(params.dy), abs(params.dx))) == [0, 1]
        shift = view_params(ViewSpec(("shift",), probe=True, shift_frac=0.125), digest, 16, 16)
        assert (shift.dy, shift.dx) != (0, 0) and max(abs(shift.dy), abs(shift.dx)) <= 2
        crop = view_params(ViewSpec(("crop",), probe=True, crop_scale=0.5), digest, 16, 16).crop
        assert crop is not None and 8 <= crop[2] < 16 and crop[0] + crop[2] <= 16 and crop[1] + crop[3] <= 16


def test_one_pixel_shift_moves_content_by_one_pixel_edges_replicated():
    image = pixels(3)
    view = ViewSpec(("shift",), probe=True, shift_px=1)
    params = view_params(view, DIGEST, 16, 16)
    moved = apply_view(image, view, DIGEST)
    rows = np.clip(np.arange(16) + params.dy, 0, 15)
    cols = np.clip(np.arange(16) + params.dx, 0, 15)
    assert np.array_equal(moved, image[rows][:, cols])


def test_batch_views_match_single_views():
    images = np.stack([pixels(i, channels=1) for i in range(5)])  # (N, H, W, C)
    digests = [f"{i:064x}" for i in range(5)]
    view = ViewSpec(("flip", "shift", "crop"), index=4)
    batch = apply_view_chw(images.transpose(0, 3, 1, 2), view, digests)
    for image, digest, out in zip(images, digests, batch, strict=True):
        assert np.array_equal(out.transpose(1, 2, 0), apply_view(image, view, digest))


def test_training_views_and_bad_specs():
    assert [v.index for v in training_views(4, ("flip",))] == [1, 2, 3]
    assert training_views(1, ("flip",)) == ()
    for bad in (lambda: training_views(0, ("flip",)), lambda: ViewSpec(("rotate",)), lambda: ViewSpec(()),
                lambda: ViewSpec(("flip",), index=0), lambda: ViewSpec(("shift",), shift_px=1)):
        with pytest.raises(ConfigError):
            bad()
