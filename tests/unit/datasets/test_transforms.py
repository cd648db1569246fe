import numpy as np
import pytest
from PIL import Image

from extractor.datasets.transforms import (
    PreprocessSpec,
    crop_and_resize,
    normalize,
    to_pixels,
)


def test_emotion_teacher_spec_gives_48px_gray_in_minus_one_to_one():
    spec = PreprocessSpec(size=48, channels="gray", mean=(127.5,), std=(127.5,), center_crop=0.4)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (250, 250, 3), dtype=np.uint8))
    pixels = to_pixels(crop_and_resize(img, spec), spec)
    assert pixels.shape == (48, 48, 1)
    x = normalize(pixels[None], spec)
    assert x.shape == (1, 1, 48, 48) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_center_crop_keeps_the_middle():
    pixels = np.zeros((100, 100, 3), np.uint8)
    pixels[40:60, 40:60] = 255
    spec = PreprocessSpec(size=None, center_crop=0.2)
    out = to_pixels(crop_and_resize(Image.fromarray(pixels), spec), spec)
    assert out.shape == (20, 20, 3) and out.min() == 255


def test_bgr_reverses_channels_and_per_channel_stats_apply():
    spec = PreprocessSpec(size=8, channels="bgr", mean=(10.0, 20.0, 30.0), std=(1.0, 2.0, 5.0))
    img = Image.new("RGB", (8, 8), (100, 150, 200))
    pixels = to_pixels(crop_and_resize(img, spec), spec)
    assert pixels[0, 0].tolist() == [200, 150, 100]
    assert normalize(pixels[None], spec)[0, :, 0, 0].tolist() == [190.0, 65.0, 14.0]


@pytest.mark.parametrize("kwargs,flag", [
    ({"size": 4}, "--size"), ({"channels": "yuv"}, "--channels"), ({"mean": (1.0, 2.0)}, "--mean"),
    ({"std": (0.0,)}, "--std"), ({"center_crop": 1.5}, "--center-crop"),
])
def test_invalid_specs_name_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        PreprocessSpec(**kwargs)


def test_as_data_drops_defaults_and_versions():
    assert PreprocessSpec().as_data() == {"version": "1"}
    assert PreprocessSpec(size=48, channels="gray").as_data() == {"version": "1", "size": 48, "channels": "gray"}
