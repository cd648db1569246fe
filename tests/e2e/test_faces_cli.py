import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.assets import (
    EMOTION_TEACHER,
    GENDER_FLAGS,
    GENDER_TEACHER,
    LFW_IMAGES,
    LFW_LABELS,
    requires_assets,
)
from tests.e2e.cli import extractor, extractor_json
from tests.images import paste_into_scene, textured_background

pytestmark = requires_assets
EMOTION_FACE_FLAGS = ["--channels", "gray", "--size", "48", "--mean", "127.5", "--std", "127.5"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """24 LFW photos pasted into 640x480 textured scenes, plus 2 scenes with no face."""
    folder = tmp_path_factory.mktemp("scenes") / "images"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for path in sorted(LFW_IMAGES.iterdir())[::250][:24]:
        scene, _ = paste_into_scene(Image.open(path), rng)
        scene.save(folder / f"scene_{path.stem}.jpg", quality=92)
    for index in range(2):
        textured_background(rng).save(folder / f"empty_{index}.jpg", quality=92)
    return folder


def label(images, store, *extra):
    return extractor_json("label", "--teacher", EMOTION_TEACHER, "--images", images, "--store", store,
                          *EMOTION_FACE_FLAGS, *extra)


def test_detect_skips_faceless_images_and_never_detects_twice(scenes, tmp_path):
    store = tmp_path / "labels.db"
    first = label(scenes, store, "--faces", "detect")
    assert (first["labeled"], first["failed"], first["faces_detected"]) == (24, 2, 26)
    with sqlite3.connect(store) as db:
        reasons = [r for (r,) in db.execute("SELECT reason FROM failures")]
        detections = db.execute("SELECT COUNT(*), COUNT(detection) FROM detections").fetchone()
    assert reasons == ["no face found"] * 2 and detections == (26, 24)

    with_margin = label(scenes, store, "--faces", "detect", "--face-margin", "0.4")  # new crop: new key
    assert (with_margin["labeled"], with_margin["faces_detected"]) == (24, 0)
    fallback = label(scenes, store, "--faces", "fallback-center")
    assert (fallback["labeled"], fallback["failed"], fallback["faces_detected"]) == (26, 0, 0)
    aligned = label(scenes, store, "--faces", "detect", "--face-align")
    assert (aligned["labeled"], aligned["faces_detected"]) == (24, 0)


def test_face_crops_change_what_the_teacher_says(scenes, tmp_path):
    store = tmp_path / "labels.db"
    label(scenes, store, "--faces", "detect")
    label(scenes, store)  # the whole scene, squashed to 48x48
    extractor("export", "--store", store, "--format", "csv", "--out", tmp_path / "labels.csv")
    frame = pd.read_csv(tmp_path / "labels.csv")
    by_crop = frame.pivot_table(index="digest", columns="preprocess", values="label").dropna()
    assert len(by_crop) == 24
    differ = (by_crop.iloc[:, 0] != by_crop.iloc[:, 1]).mean()
    assert differ >= 0.3, f"labels on face crops and whole scenes differ for only {differ:.0%}"


def test_pubfig_style_tree_trains_on_stored_crops_and_reports_folder_accuracy(tmp_path):
    """root/<class>/<image> with the gender teacher: ground truth comes from the folders."""
    labels = pd.read_csv(LFW_LABELS).iloc[3000:3160]
    for row in labels.itertuples():
        target = tmp_path / "people" / row.gender / row.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(LFW_IMAGES / row.filename, target)
    store = tmp_path / "labels.db"
    flags = [f for f in GENDER_FLAGS if f not in ("--center-crop", "0.4")]
    first = extractor_json("label", "--teacher", GENDER_TEACHER, "--images", tmp_path / "people", "--store", store,
                           *flags, "--faces", "detect")
    assert first["labeled"] >= 150
    with sqlite3.connect(store) as db:
        before = db.execute("SELECT COUNT(*), MAX(created) FROM detections").fetchone()
    extractor("train", "--store", store, "--out", tmp_path / "run", "--size", "32", "--epochs", "1",
              "--heldout", "0.3", "--quiet", "--workers", "1")
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*), MAX(created) FROM detections").fetchone() == before  # no re-detection
    report = extractor_json("report", tmp_path / "run", "--ground-truth", "folders", "--classes", "female,male")
    assert report["ground_truth_images"] == report["eval_images"] > 0
    assert report["teacher"]["accuracy"] > 0.6 and report["accuracy"] is not None  # noisy name-derived labels
