"""The shared real teachers and faces (never committed here); tests skip cleanly without them."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
EMOTION_TEACHER = ASSETS / "teacher_emotion_fer2013" / "emotion-fer2013.onnx"
GENDER_TEACHER = ASSETS / "teacher_gender_dlib" / "gender-v1.onnx"
LFW_IMAGES = ASSETS / "lfw_gender_6k" / "images"
LFW_LABELS = ASSETS / "lfw_gender_6k" / "labels.csv"
EMOTION_FLAGS = ["--channels", "gray", "--size", "48", "--mean", "127.5", "--std", "127.5", "--center-crop", "0.4"]
GENDER_FLAGS = ["--channels", "rgb", "--size", "32", "--mean", "122.782,117.001,104.298", "--std", "256",
                "--center-crop", "0.4"]

requires_assets = pytest.mark.skipif(not LFW_IMAGES.is_dir(), reason="../shared/assets is not present")


def lfw_subset(folder: Path, count: int, start: int = 0) -> list[Path]:
    """Copies ``count`` LFW faces (sorted by name) into ``folder``, a test's own working copy."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(LFW_IMAGES.iterdir())[start:start + count]
    return [Path(shutil.copy2(source, folder / source.name)) for source in sources]
