"""`extractor train --slimmable` end to end: one ONNX file per width, a report row per width, kill and resume."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from tests.e2e.cli import extractor, extractor_json
from tests.images import write_jpegs
from tests.models import linear_classifier

WIDTHS = ["1.0", "0.75", "0.5", "0.25"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slimmable")
    teacher = linear_classifier(folder / "teacher.onnx", channels=3, size=16, classes=3)
    write_jpegs(folder / "images", 96)
    store = folder / "labels.db"
    extractor("label", "--teacher", teacher, "--images", folder / "images", "--store", store, "--workers", "1",
              "--quiet")
    return store


def train_args(store, out, *extra):
    return ["train", "--store", store, "--out", out, "--student", "resnet8", "--size", "32", "--batch-size", "16",
            "--workers", "1", "--heldout", "0.25", "--slimmable", ",".join(WIDTHS), *extra]


def test_every_width_is_exported_checked_and_reported(store, tmp_path):
    out = tmp_path / "run"
    result = extractor_json(*train_args(store, out, "--epochs", "2", "--inplace", "ta"))
    assert result["epochs"] == 2 and result["onnx_max_abs_diff"] < 1e-4
    run = json.loads((out / "run.json").read_text())
    assert [entry["width"] for entry in run["widths"]] == [float(w) for w in WIDTHS]
    assert run["slimmable"]["inplace"] == "ta" and run["slimmable"]["sandwich"] is True
    params = [entry["params"] for entry in run["widths"]]
    assert params == sorted(params, reverse=True) and params[0] == run["student"]["params"]
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    for entry in run["widths"]:
        assert entry["onnx_max_abs_diff"] < 1e-4 and (out / f"student_w{entry['width']}.onnx").exists()
    widest = [ort.InferenceSession(str(out / name)).run(None, {"input": x})[0]
              for name in ("student.onnx", "student_w1.0.onnx")]
    np.testing.assert_array_equal(*widest)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert all({"loss", "hard", "soft", "loss_w1.0", "loss_w0.25"} <= set(r) for r in train)
    assert all(sum(key.startswith("loss_w") for key in r) == 3 for r in train)  # the sandwich: 3 of 4 widths

    report = extractor_json("report", out)
    assert [row["width"] for row in report["widths"]] == [float(w) for w in WIDTHS]
    sizes = [row["size_mb"] for row in report["widths"]]
    assert sizes == sorted(sizes, reverse=True) and all(set(row["latency_ms"]) == {"1", "64"} for row in report["widths"])
    heldout = pd.read_csv(out / "heldout_widths.csv")
    for row in report["widths"]:
        assert row["fidelity"] == pytest.approx((heldout[f"w{row['width']}"] == heldout.teacher_label).mean())
    assert report["widths"][0]["fidelity"] == report["fidelity"]
    assert list(pd.read_csv(out / "report.csv")["model"]) == ["teacher", "student", *(f"student w{w}" for w in WIDTHS)]
    assert "| student w0.25 |" in (out / "report.md").read_text()


@pytest.mark.slow
def test_a_run_killed_after_an_epoch_resumes_to_the_same_students(store, tmp_path):
    args = train_args(store, tmp_path / "straight", "--epochs", "2", "--quiet")
    extractor(*args)
    killed_args = train_args(store, tmp_path / "killed", "--epochs", "2", "--quiet")
    process = subprocess.Popen([sys.executable, "-m", "extractor.cli", *map(str, killed_args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (tmp_path / "killed" / "last.pt").exists() and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    epoch = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["progress"]["epoch"]
    assert process.returncode == -signal.SIGKILL and epoch < 2, "the run ended before it could be killed"
    extractor(*killed_args, "--resume")
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["model"]
    assert straight.keys() == resumed.keys()
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
    for name in ("run.json", "heldout_widths.csv"):
        a, b = ((tmp_path / run / name).read_text() for run in ("straight", "killed"))
        if name == "run.json":
            a, b = (json.loads(text)["widths"] for text in (a, b))
        assert a == b, name


def test_slimmable_flags_are_checked(store, tmp_path):
    alone = extractor("train", "--store", store, "--out", tmp_path / "a", "--inplace", "ta", check=False)
    assert alone.returncode == 1 and "--slimmable" in alone.stderr
    squeeze = extractor(*train_args(store, tmp_path / "b", "--student", "squeezenet1_1"), check=False)
    assert squeeze.returncode == 1 and "resnet20" in squeeze.stderr
    wide = extractor(*train_args(store, tmp_path / "c", "--slimmable", "1.0,2.0"), check=False)
    assert wide.returncode == 1 and "--slimmable" in wide.stderr
