"""A store and a run directory written by an older extractor (tests/fixtures/make_legacy.py) still label,
train, report and resume with today's."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.cli import installed_json

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
TRAIN = ("--student", "resnet8", "--width", "0.25", "--size", "32", "--augment", "none", "--probe-images", "0",
         "--heldout", "0.3", "--workers", "0", "--quiet")


@pytest.fixture
def legacy(tmp_path) -> Path:
    copy = tmp_path / "legacy2"
    shutil.copytree(LEGACY, copy)
    return copy


def _label(folder: Path) -> dict:
    return installed_json("label", "--teacher", "teacher.onnx", "--images", "images", "--store", "labels.db",
                          "--size", "16", "--workers", "0", "--quiet", cwd=folder)


def test_an_old_store_answers_every_image_without_a_query(legacy):
    result = _label(legacy)
    assert (result["images"], result["cached"], result["labeled"], result["queries"]) == (40, 40, 0, 0)
    stats = installed_json("store", "stats", "--store", "labels.db", cwd=legacy)
    assert stats["labels"] == 40


def test_an_old_run_reports_and_resumes(legacy):
    _label(legacy)  # the images moved with the copy: the store learns where they are now
    recorded = json.loads((legacy / "run" / "run.json").read_text())
    report = installed_json("report", "run", cwd=legacy)
    assert report["fidelity"] == pytest.approx(recorded["fidelity"])
    resumed = installed_json("train", "--store", "labels.db", "--out", "run", "--resume", "--epochs", "2", *TRAIN,
                             cwd=legacy)
    assert resumed["epochs"] == 2
    steps = [json.loads(line) for line in (legacy / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(record["epoch"] for record in steps) == 2


def test_an_old_store_trains_a_new_student(legacy):
    _label(legacy)
    result = installed_json("train", "--store", "labels.db", "--out", "new", "--epochs", "1", *TRAIN, cwd=legacy)
    assert result["train_images"] + result["heldout_images"] == 40
    assert (legacy / "new" / "student.onnx").is_file()
