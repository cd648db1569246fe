"""Runs as teachers, end to end through the installed `extractor` script: `train --parent` (with a hint), and
`chain` killed mid-way, resumed and reported. A tiny ONNX black box labels random images in class folders."""
import json
import os
import signal
import subprocess
import time

import pytest

from tests.e2e.cli import console_script, installed, installed_json
from tests.images import write_jpegs
from tests.models import linear_classifier

COMMON = ["--size", "32", "--batch-size", "16", "--workers", "1"]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    """A working folder holding teacher.onnx, images/<class>/*.jpg and labels.db (the black box's answers)."""
    root = tmp_path_factory.mktemp("chain")
    for index in range(3):
        write_jpegs(root / "images" / str(index), 20, seed=100 * index)
    linear_classifier(root / "teacher.onnx", size=16)
    installed("label", "--teacher", "teacher.onnx", "--images", "images", "--store", "labels.db", "--quiet", cwd=root)
    return root


def black_box_ledger(root):
    stats = installed_json("store", "stats", "--store", "labels.db", cwd=root)
    black_box = next(row["teacher"] for row in stats["by_teacher"])
    jobs = [job for job in stats["jobs"] if job["kind"] == "label"]
    return black_box, {row["identity"]: row["requests"] for row in stats["requests"]}, len(jobs)


@pytest.mark.slow
def test_a_parent_run_teaches_with_a_hint_at_no_query_cost(labeled):
    root = labeled
    installed("train", "--store", "labels.db", "--out", "parent", "--student", "resnet8", "--epochs", "1",
              "--quiet", *COMMON, cwd=root)
    _, requests_before, _ = black_box_ledger(root)
    child = installed_json("train", "--store", "labels.db", "--out", "child", "--parent", "parent", "--student",
                           "resnet8", "--width", "0.5", "--hint", "--hint-weight", "0.5", "--epochs", "2", *COMMON,
                           cwd=root)
    _, requests_after, _ = black_box_ledger(root)
    assert {k: v for k, v in requests_after.items() if k in requests_before} == requests_before  # black box: 0 new
    assert len(requests_after) == len(requests_before) + 1  # the parent's own, local, requests
    run = json.loads((root / "child" / "run.json").read_text())
    assert run["fidelity"] == child["fidelity"] and run["fidelity_to_parent"] == child["fidelity_to_parent"]
    assert run["parents"][0]["run"] == "parent" and run["parents"][0]["architecture"] == "resnet8"
    assert run["teacher"]["path"].endswith("teacher.onnx")  # fidelity is to the original black box
    assert run["hint"]["weight"] == 0.5 and run["hint"]["student_map"] == [32, 8, 8] \
        and run["hint"]["parent_map"] == [64, 8, 8]
    records = [json.loads(line) for line in (root / "child" / "metrics.jsonl").read_text().splitlines()]
    assert all("hint" in record for record in records if record["split"] == "train")
    again = installed("train", "--store", "labels.db", "--out", "child2", "--teacher", "parent", "--teacher",
                      f"{run['teacher']['fingerprint'][:12]}:2", "--student", "resnet8", "--width", "0.25",
                      "--epochs", "1", *COMMON, cwd=root)
    assert "agreement with the parent run's student" in again.stdout
    assert black_box_ledger(root)[1] == requests_after  # a rerun labels nothing


@pytest.mark.slow
def test_a_killed_chain_resumes_at_its_link_and_reports_every_link(labeled):
    root = labeled
    args = ["chain", "--store", "labels.db", "--out", "chain", "--links", "resnet8:0.5,resnet8:0.25",
            "--epochs", "8", "--stop-drop", "100", "--quiet", *COMMON]
    process = subprocess.Popen([console_script(), *args], cwd=root, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    link1 = root / "chain" / "link1_resnet8_w0.25" / "seed0"
    deadline = time.monotonic() + 300
    while not (link1 / "last.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert (link1 / "last.pt").exists() and not (link1 / "run.json").exists(), "not killed inside link 1"
    link0 = root / "chain" / "link0_resnet8_w0.5" / "run.json"
    finished = link0.stat().st_mtime_ns

    summary = installed_json(*args, cwd=root)
    assert link0.stat().st_mtime_ns == finished  # link 0 was not trained again
    assert summary["status"] == "done" and [link["dir"] for link in summary["links"]] == [
        "link0_resnet8_w0.5", "link1_resnet8_w0.25"]
    records = [json.loads(line) for line in (link1 / "metrics.jsonl").read_text().splitlines()]
    steps = [record["step"] for record in records if record["split"] == "train"]
    assert steps == list(range(1, len(steps) + 1))  # resumed from its checkpoint: no step twice, none missing
    assert [record["epoch"] for record in records if record["split"] == "heldout"] == list(range(1, 9))

    report = installed_json("report", "chain", "--ground-truth", "folders", cwd=root)
    rows = report["chain"]
    assert [row["link"] for row in rows] == [0, 1] and [row["parent"] for row in rows] == ["teacher",
                                                                                           "link0_resnet8_w0.5"]
    for row in rows:
        assert row["size_mb"] > 0 and row["params"] > 0 and 0 <= row["fidelity"] <= 1
        assert 0 <= row["fidelity_to_parent"] <= 1 and 0 <= row["accuracy"] <= 1 and row["train_minutes"] > 0
    assert rows[1]["size_reduction_vs_first"] > 2 and rows[0]["size_reduction_vs_teacher"] is not None
    assert report["teacher"]["accuracy"] is not None
    for name in ("report.json", "report.md", "report.csv", "report.png"):
        assert (root / "chain" / name).stat().st_size > 0
    assert "drop from first" in installed("report", "chain", cwd=root).stdout
