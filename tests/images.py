"""Real image files made by tests: plain images in many modes, and broken files."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def random_image(seed: int, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def write_jpegs(folder: Path, count: int, *, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"img_{index:03d}.jpg"
        random_image(seed + index).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def broken_files(folder: Path, valid: Path) -> dict[str, str]:
    """Writes one file per way an image can be broken; returns name -> expected reason prefix."""
    folder.mkdir(parents=True, exist_ok=True)
    data = valid.read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "text.jpg").write_text("named like an image, but text\n")
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (folder / "bomb.png").write_bytes(png_claiming_size(30000, 30000))
    return {"empty.jpg": "empty file", "truncated.jpg": "corrupt or truncated", "text.jpg": "not an image",
            "garbage.png": "not an image", "bomb.png": "decompression bomb"}


def other_files(folder: Path) -> list[str]:
    """Writes files that are no images and do not claim to be (skipped, not failed); returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text("# Faces\n\nCollected for testing.\n")
    (folder / "notes.txt").write_text("not an image at all\n")
    (folder / "no_extension").write_bytes(b"\x00\x01binary, but no image" * 8)
    return ["README.md", "notes.txt", "no_extension"]


def png_claiming_size(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    return bytes(data)


def textured_background(rng: np.random.Generator, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A smooth random colour field with pixel noise: texture without faces."""
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB").resize(size, Image.BICUBIC)
    pixels = np.asarray(coarse, dtype=np.float64) + rng.normal(0, 12, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def paste_into_scene(photo: Image.Image, rng: np.random.Generator, size: tuple[int, int] = (640, 480)
                     ) -> tuple[Image.Image, tuple[int, int, int]]:
    """The photo pasted at a random position and scale into a textured scene; returns (scene, (x, y, side))."""
    side = int(rng.integers(260, 400))
    x, y = int(rng.integers(0, size[0] - side)), int(rng.integers(0, size[1] - side))
    scene = textured_background(rng, size)
    scene.paste(photo.convert("RGB").resize((side, side), Image.BILINEAR), (x, y))
    return scene, (x, y, side)
