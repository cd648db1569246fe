import json

import pandas as pd
import pytest

from tests.assets import (
    EMOTION_FLAGS,
    EMOTION_TEACHER,
    GENDER_FLAGS,
    GENDER_TEACHER,
    LFW_LABELS,
    lfw_subset,
    requires_assets,
)
from tests.e2e.cli import extractor, extractor_json

pytestmark = requires_assets

REPORT_KEYS = ["teacher.size_mb", "teacher.params", "teacher.latency_ms", "student.size_mb", "student.params",
               "student.latency_ms", "compression", "fidelity", "accuracy", "eval_images", "queries"]


@pytest.fixture(scope="module")
def emotion_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("emotion")
    lfw_subset(folder / "faces", 240)
    store = folder / "labels.db"
    extractor("label", "--teacher", EMOTION_TEACHER, "--images", folder / "faces", "--store", store,
              *EMOTION_FLAGS, "--quiet")
    return store


def train_args(store, out, *extra):
    return ["train", "--store", store, "--out", out, "--size", "32", "--batch-size", "32", "--workers", "1", *extra]


def test_train_then_report_writes_every_artifact(emotion_store, tmp_path):
    out = tmp_path / "run"
    result = extractor_json(*train_args(emotion_store, out, "--epochs", "2"))
    assert result["epochs"] == 2 and result["heldout_images"] > 0
    assert result["onnx_max_abs_diff"] < 1e-4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == list(range(1, len(train_steps) + 1)) and len(train_steps) >= 2
    assert {"loss", "hard", "soft", "lr"} <= set(records[0])
    assert sum(r["split"] == "heldout" for r in records) == 2
    for name in ("student.onnx", "best.pt", "last.pt", "run.json", "config.json", "heldout.csv"):
        assert (out / name).exists(), name

    report = extractor_json("report", out)
    for key in REPORT_KEYS:
        section, _, field = key.partition(".")
        assert (report[section][field] if field else report[section]) is not None or key == "accuracy", key
    assert report["accuracy"] is None  # no ground truth given
    assert report["teacher"]["size_mb"] == pytest.approx(11.0, abs=0.1)
    assert report["student"]["size_mb"] < 3.0 and report["compression"] > 3
    assert set(report["teacher"]["latency_ms"]) == {"1", "64"}
    heldout = pd.read_csv(out / "heldout.csv")
    assert report["fidelity"] == pytest.approx((heldout.student_label == heldout.teacher_label).mean())
    assert report["queries"] == 240 and report["eval_images"] == len(heldout)
    for name in ("report.md", "report.json", "report.csv", "report.png"):
        assert (out / name).stat().st_size > 0, name
    assert list(pd.read_csv(out / "report.csv")["model"]) == ["teacher", "student"]


def test_resume_continues_from_the_last_epoch(emotion_store, tmp_path):
    out = tmp_path / "run"
    extractor(*train_args(emotion_store, out, "--epochs", "1", "--quiet"))
    again = extractor(*train_args(emotion_store, out, "--epochs", "1"), check=False)
    assert again.returncode == 1 and "--resume" in again.stderr
    resumed = extractor_json(*train_args(emotion_store, out, "--epochs", "2", "--resume"))
    assert resumed["epochs"] == 2
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(epochs)) == [1, 2]


def test_split_by_person_holds_out_whole_people(emotion_store, tmp_path):
    out = tmp_path / "run"
    extractor(*train_args(emotion_store, out, "--epochs", "1", "--quiet", "--split-by", LFW_LABELS, "person",
                          "--heldout", "0.3"))
    heldout = pd.read_csv(out / "heldout.csv")
    labels = pd.read_csv(LFW_LABELS).set_index("filename")
    held_people = set(labels.loc[heldout["relative_path"], "person"])
    trained = set(labels.loc[[p.name for p in (emotion_store.parent / "faces").iterdir()], "person"]) - held_people
    assert held_people and trained and not held_people & trained


def test_gender_teacher_reports_accuracy_against_labels_csv(tmp_path):
    lfw_subset(tmp_path / "faces", 200, start=2000)
    store = tmp_path / "labels.db"
    extractor("label", "--teacher", GENDER_TEACHER, "--images", tmp_path / "faces", "--store", store,
              *GENDER_FLAGS, "--quiet")
    extractor(*train_args(store, tmp_path / "run", "--epochs", "1", "--quiet", "--heldout", "0.3"))
    report = extractor_json("report", tmp_path / "run", "--ground-truth", LFW_LABELS, "--label-column", "gender",
                            "--classes", "female,male")
    assert report["ground_truth_images"] == report["eval_images"] > 0
    assert 0.0 <= report["accuracy"] <= 1.0
    assert report["teacher"]["accuracy"] > 0.75  # the gender teacher itself agrees ~92% with labels.csv
    wrong = extractor("report", tmp_path / "run", "--classes", "a,b,c", check=False)
    assert wrong.returncode == 1 and "--classes" in wrong.stderr


@pytest.mark.parametrize(("student", "extra"), [("squeezenet1_1", []), ("mobilenet_v3_small", ["--size", "64"]),
                                               ("resnet8", ["--width", "0.5"]), ("resnet20", [])])
def test_every_zoo_student_trains_exports_and_reports(emotion_store, tmp_path, student, extra):
    out = tmp_path / student
    result = extractor_json(*train_args(emotion_store, out, "--epochs", "1", "--student", student, *extra))
    assert result["student"] == student and result["onnx_max_abs_diff"] < 1e-4
    run = json.loads((out / "run.json").read_text())
    assert run["student"]["architecture"] == student and run["device"] == "cpu"
    assert run["student"]["size"] == (64 if extra[:1] == ["--size"] else 32)
    report = extractor_json("report", out)
    # The report counts the ONNX file's initializers, where the exporter folds some BatchNorms away.
    assert report["student"]["params"] == pytest.approx(run["student"]["params"], rel=0.01)
