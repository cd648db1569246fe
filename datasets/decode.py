"""Robust image decoding: bytes in, an oriented 8-bit RGB or L PIL image out, or a one-line reason."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default bomb limit (~ 0.25 GB of 24-bit pixels)


class ImageDecodeError(ValueError):
    """A file that cannot be used as an image; the message is a one-line reason."""


def decode_image(data: bytes, *, min_side: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decodes image bytes, applies EXIF orientation and converts to mode "RGB" or "L".

    Args:
        data: the file's bytes.
        min_side: if given, JPEGs may be decoded at a reduced DCT scale as long as the
            shorter side stays >= min_side (a large speed-up for small targets).
        max_pixels: images with more pixels are refused as decompression bombs.
    """
    if not data:
        raise ImageDecodeError("empty file")
    with warnings.catch_warnings():
        # Broken files make Pillow warn (e.g. "Tag data larger than file"): the reason we raise says it
        # once, where the warning would print from every worker. A bomb's warning becomes our refusal.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return _decode(data, min_side, max_pixels)


def _decode(data: bytes, min_side: int | None, max_pixels: int) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised content)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"decompression bomb refused: {exc}") from None
    except Exception as exc:  # a plug-in recognised the header, then hit broken bytes (OSError, struct.error, ...)
        raise ImageDecodeError(f"corrupt or truncated image: {one_line(exc)}") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageDecodeError(f"decompression bomb refused: {width}x{height} exceeds {max_pixels} pixels")
    if width == 0 or height == 0:
        raise ImageDecodeError("image has zero size")
    try:
        if min_side and img.format == "JPEG":
            scale = max(1, min(width, height) // min_side)
            if scale > 1:
                img.draft(img.mode if img.mode in ("L", "RGB") else "RGB", (width // scale, height // scale))
        img.load()
        img = ImageOps.exif_transpose(img)
        return _to_8bit(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"decompression bomb refused: {exc}") from None
    except Exception as exc:  # whatever a decoder raises on broken bytes: OSError, SyntaxError, EOFError, ...
        raise ImageDecodeError(f"corrupt or truncated image: {one_line(exc)}") from None


def _to_8bit(img: Image.Image) -> Image.Image:
    """Maps palette, alpha, CMYK, 1-bit and 16/32-bit modes onto "RGB" or "L"."""
    if img.mode in ("RGB", "L"):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "1":
        return img.convert("L")
    return img.convert("RGB")


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name where it has none), for a failure's reason."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
