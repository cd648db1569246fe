"""Fuzzing `extractor label`: hundreds of truncated and bit-flipped images never end the job.

Every file ends labeled, failed with a one-line reason, or skipped (not an image), and the counts
add up against the store itself.
"""
import hashlib
import io
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from tests.assets import LFW_IMAGES
from tests.e2e.cli import installed, installed_json
from tests.images import other_files
from tests.models import linear_classifier

# extension -> (Pillow format, mode, save options)
FORMATS = {
    "jpg": ("JPEG", "RGB", {"quality": 90}),
    "png": ("PNG", "RGB", {}),
    "webp": ("WEBP", "RGB", {"quality": 80}),
    "gif": ("GIF", "P", {}),
    "bmp": ("BMP", "RGB", {}),
    "tif": ("TIFF", "RGB", {}),
    "pgm": ("PPM", "L", {}),
}
VARIANTS_PER_FILE = 24
HEADER_BYTES = 700  # most formats keep what decoding depends on in the first few hundred bytes


def source_photos(count: int = 2) -> list[Image.Image]:
    """Real faces from the shared assets where present, else pictures drawn here."""
    if LFW_IMAGES.is_dir():
        return [Image.open(path).convert("RGB").resize((96, 96))
                for path in sorted(LFW_IMAGES.iterdir())[::1500][:count]]
    rng = np.random.default_rng(3)
    photos = []
    for _ in range(count):
        img = Image.new("RGB", (96, 96), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(12):
            x0, y0 = (int(v) for v in rng.integers(0, 80, 2))
            draw.ellipse((x0, y0, x0 + int(rng.integers(8, 40)), y0 + int(rng.integers(8, 40))),
                         fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        photos.append(img)
    return photos


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """A truncation or a few bit flips at random offsets, half of them inside the header."""
    kind = ("cut", "flip")[int(rng.integers(2))]
    end = len(data) if rng.random() < 0.5 else min(len(data), HEADER_BYTES)
    if kind == "cut":
        return kind, data[:int(rng.integers(1, end))]
    flipped = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        flipped[int(rng.integers(0, end))] ^= 1 << int(rng.integers(8))
    return kind, bytes(flipped)


def write_fuzzed_folder(folder):
    """Originals in seven formats, their seeded variants, the 600-byte JPEG that once ended a job, and
    files that are no images. Returns the names of the files meant to be skipped."""
    folder.mkdir()
    rng = np.random.default_rng(2024)
    for number, photo in enumerate(source_photos()):
        for ext, (fmt, mode, options) in FORMATS.items():
            buffer = io.BytesIO()
            photo.convert(mode).save(buffer, fmt, **options)
            data = buffer.getvalue()
            (folder / f"photo{number}.{ext}").write_bytes(data)
            for index in range(VARIANTS_PER_FILE):
                kind, variant = mutate(data, rng)
                (folder / f"photo{number}_{index:02d}_{kind}.{ext}").write_bytes(variant)
            if fmt == "JPEG":
                (folder / f"photo{number}_cut600.jpg").write_bytes(data[:600])
    return other_files(folder)


@pytest.mark.slow
def test_fuzzed_images_never_end_the_job_and_every_file_is_accounted_for(tmp_path):
    skipped = write_fuzzed_folder(tmp_path / "images")
    linear_classifier(tmp_path / "teacher.onnx", channels=3, size=16)
    files = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (tmp_path / "images").iterdir()}
    images = {name: digest for name, digest in files.items() if name not in skipped}
    assert len(files) > 300 and {"README.md", "notes.txt"} <= set(skipped)

    args = ["label", "--teacher", "teacher.onnx", "--images", "images", "--store", "labels.db", "--workers", "2"]
    first = installed(*args, "--json", cwd=tmp_path)  # exit 0, or installed() raises with the output
    assert "Traceback" not in first.stderr
    summary = json.loads(first.stdout)
    assert (summary["images"], summary["skipped"]) == (len(images), len(skipped))
    assert summary["images"] == summary["labeled"] + summary["failed"] + summary["duplicates"]
    assert summary["labeled"] + summary["failed"] == len(set(images.values()))
    assert summary["labeled"] > 0 and summary["failed"] > 0 and summary["queries"] == summary["labeled"]

    # Cross-check against the store: each image content is labeled once or failed once, never both.
    stats = installed_json("store", "stats", "--store", "labels.db", cwd=tmp_path)
    failures = pd.DataFrame(stats["last_job_failures"])
    installed("export", "--store", "labels.db", "--format", "parquet", "--out", "labels.parquet", cwd=tmp_path)
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    assert stats["labels"] == len(labels) == summary["labeled"] and len(failures) == summary["failed"]
    assert labels.groupby(["digest", "teacher"]).size().max() == 1
    assert set(labels["digest"]).isdisjoint(failures["digest"]) and failures["digest"].is_unique
    assert set(labels["digest"]) | set(failures["digest"]) == set(images.values())
    assert all(reason and "\n" not in reason and "Traceback" not in reason for reason in failures["reason"])
    failed_names = {path.rsplit("/", 1)[-1] for path in failures["path"]}
    assert failed_names.isdisjoint(skipped)
    assert all(digest in set(labels["digest"]) for name, digest in images.items() if "_" not in name), \
        "an unmodified original failed"
    assert {images[f"photo{n}_cut600.jpg"] for n in (0, 1)} <= set(failures["digest"])
    with sqlite3.connect(tmp_path / "labels.db") as db:
        assert db.execute("SELECT COUNT(*) FROM (SELECT digest, teacher FROM labels GROUP BY digest, teacher "
                          "HAVING COUNT(*) > 1)").fetchone()[0] == 0

    again = installed_json(*args, cwd=tmp_path)
    assert (again["queries"], again["labeled"], again["cached"]) == (0, 0, summary["labeled"])
    assert (again["images"], again["skipped"], again["failed"]) == (len(images), len(skipped), summary["failed"])
