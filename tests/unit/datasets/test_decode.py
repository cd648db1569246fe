import io

import numpy as np
import pytest
from PIL import Image

from extractor.datasets.decode import ImageDecodeError, decode_image
from tests.images import png_claiming_size, random_image


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("mode,fmt,expected", [
    ("P", "PNG", "RGB"), ("RGBA", "PNG", "RGB"), ("LA", "PNG", "RGB"), ("CMYK", "JPEG", "RGB"),
    ("L", "JPEG", "L"), ("1", "PNG", "L"), ("RGB", "WEBP", "RGB"), ("RGB", "BMP", "RGB"), ("RGB", "TIFF", "RGB"),
])
def test_modes_become_8bit_rgb_or_gray(mode, fmt, expected):
    img = decode_image(encode(random_image(1, mode=mode), fmt))
    assert img.mode == expected and img.size == (40, 30)


def test_16bit_grayscale_is_scaled_not_clipped():
    pixels = np.full((10, 10), 65535, dtype=np.uint16)
    pixels[0, 0] = 0
    img = decode_image(encode(Image.fromarray(pixels), "PNG"))
    assert img.mode == "L"
    assert np.asarray(img)[1, 1] == 255 and np.asarray(img)[0, 0] == 0


def test_transparent_pixels_composite_on_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(decode_image(encode(rgba, "PNG"))).min() == 255


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    decoded = decode_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (20, 40)


def test_jpeg_draft_keeps_at_least_min_side():
    data = encode(random_image(2, size=(400, 300)), "JPEG")
    img = decode_image(data, min_side=70)
    assert min(img.size) >= 70 and img.size[0] < 400


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"hello, world", "not an image"),
    (png_claiming_size(30000, 30000), "decompression bomb"),
])
def test_broken_inputs_give_one_line_reasons(data, reason):
    with pytest.raises(ImageDecodeError, match=reason) as info:
        decode_image(data)
    assert "\n" not in str(info.value)


def test_truncated_jpeg_is_reported():
    data = encode(random_image(3, size=(200, 200)), "JPEG")
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data[: len(data) // 3])


def test_max_pixels_is_configurable():
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(encode(random_image(4), "PNG"), max_pixels=100)
