"""What a budget buys, as a user sees it: a fair sample of class folders, picks bought exactly, and a
distill run that is killed mid-round and resumed without paying twice."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from extractor.cli.demo_assets import build_demo_assets
from extractor.datasets.folder import file_sha256
from extractor.datasets.splits import heldout_mask
from tests.e2e.cli import console_script, installed, installed_json

PREPROCESS = ("--channels", "gray", "--size", "32", "--std", "255")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The demo's digits teacher and its 1,797 images as class folders 0/ ... 9/."""
    folder = tmp_path_factory.mktemp("demo")
    build_demo_assets(folder)
    return folder


def _label(demo: Path, store: Path, *args: object) -> dict:
    return installed_json("label", "--teacher", demo / "teacher.onnx", "--images", demo / "images", "--store", store,
                          *PREPROCESS, "--workers", 0, "--quiet", *args, cwd=demo)


def _answered_folders(demo: Path, store: Path, tmp_path: Path) -> pd.Series:
    out = tmp_path / "answers.csv"
    installed("export", "--store", store, "--out", out, "--format", "csv", cwd=demo)
    return pd.read_csv(out)["relative_path"].str.split("/").str[0]


def test_a_budget_buys_every_class_in_proportion(demo, tmp_path):
    store = tmp_path / "s.db"
    planned = _label(demo, store, "--budget", 300, "--dry-run")
    assert sorted(planned["by_folder"]) == [str(c) for c in range(10)]
    assert sum(planned["by_folder"].values()) == 300 and min(planned["by_folder"].values()) >= 15
    text = installed("label", "--teacher", demo / "teacher.onnx", "--images", demo / "images", "--store", store,
                     *PREPROCESS, "--budget", 300, "--dry-run", cwd=demo).stdout
    assert "by folder: 0 " in text
    _label(demo, store, "--budget", 300)
    counts = _answered_folders(demo, store, tmp_path).value_counts()
    assert len(counts) == 10 and counts.sum() == 300 and counts.to_dict() == planned["by_folder"]


def test_path_order_buys_the_first_folders(demo, tmp_path):
    planned = _label(demo, tmp_path / "s.db", "--budget", 300, "--dry-run", "--order", "path")
    assert planned["by_folder"] == {"0": 178, "1": 122}


def test_a_larger_budget_extends_the_same_sample_and_another_seed_draws_another(demo, tmp_path):
    store = tmp_path / "s.db"
    _label(demo, store, "--budget", 100)
    first = set(pd.read_csv(_export(demo, store, tmp_path))["digest"])
    again = _label(demo, store, "--budget", 150)
    assert again["labeled"] == 50 and again["cached"] == 100
    assert first < set(pd.read_csv(_export(demo, store, tmp_path))["digest"])
    _label(demo, tmp_path / "other.db", "--budget", 100, "--seed", 1)
    other = set(pd.read_csv(_export(demo, tmp_path / "other.db", tmp_path))["digest"])
    assert other != first and len(other & first) < 50


def _export(demo: Path, store: Path, tmp_path: Path) -> Path:
    out = tmp_path / f"{store.stem}.csv"
    installed("export", "--store", store, "--out", out, "--format", "csv", cwd=demo)
    return out


@pytest.mark.slow
def test_select_skips_answered_and_held_out_images_and_label_only_buys_the_picks(demo, tmp_path):
    store = tmp_path / "s.db"
    _label(demo, store, "--budget", 300)
    run = tmp_path / "run"
    installed("train", "--store", store, "--out", run, "--student", "resnet8", "--epochs", 1, "--augment", "none",
              "--probe-images", 0, "--workers", 0, "--quiet", cwd=demo)
    answered = set(pd.read_csv(_export(demo, store, tmp_path))["digest"])
    for strategy in ("random", "entropy", "margin", "kcenter"):
        picks = tmp_path / f"{strategy}.txt"
        result = installed_json("select", run, "--images", demo / "images", "--strategy", strategy, "--count", 5000,
                                "--out", picks, "--workers", 0, cwd=demo)
        digests = [file_sha256(demo / line) for line in picks.read_text().splitlines()]
        assert not set(digests) & answered
        assert not heldout_mask(digests, 0.1).any()
        assert result["picks"] == len(digests) == result["candidates"] > 1000
    picks = tmp_path / "few.txt"
    installed("select", run, "--images", demo / "images", "--strategy", "entropy", "--count", 40, "--out", picks,
              "--workers", 0, cwd=demo)
    bought = _label(demo, store, "--only", picks)
    assert bought["labeled"] == 40 and bought["queries"] == 40


@pytest.mark.slow
def test_distill_killed_mid_round_resumes_and_pays_for_nothing_twice(demo, tmp_path):
    out = tmp_path / "distill"
    command = [console_script(), "distill", "--teacher", demo / "teacher.onnx", "--images", demo / "images",
               "--budget", 400, "--rounds", 2, "--strategy", "margin", "--out", out, "--student", "resnet8",
               "--epochs", 3, "--augment", "none", "--workers", 0, "--quiet", *PREPROCESS]
    job = subprocess.Popen(list(map(str, command)), cwd=demo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "round2" / "last.pt").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.poll() is None, "distill ended before it could be killed in round 2"
    job.send_signal(signal.SIGKILL)
    job.wait()
    result = installed_json(*command[1:], cwd=demo)
    assert [entry["round"] for entry in result["rounds"]] == [1, 2]
    assert result["rounds"][1]["queries"] == 400 and result["rounds"][1]["strategy"] == "margin"
    stats = installed_json("store", "stats", "--store", out / "labels.db", cwd=demo)
    assert stats["labels"] == 400 and sum(row["images_sent"] for row in stats["requests"]) == 400
    assert result["forecast"]["next_round"]["queries"] == 600
    assert (out / "round2" / "report.png").exists()
