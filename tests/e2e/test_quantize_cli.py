"""E2E: label -> train -> quantize --bits 1, 2, 8 -> report, with the installed console script."""
import json

import pandas as pd
import pytest

from tests.assets import GENDER_FLAGS, GENDER_TEACHER, LFW_LABELS, lfw_subset, requires_assets
from tests.e2e.cli import installed, installed_json

pytestmark = [requires_assets, pytest.mark.slow]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A resnet8 student of the gender teacher on 120 LFW faces, trained 1 epoch (a real run, not a good one)."""
    folder = tmp_path_factory.mktemp("quantize")
    lfw_subset(folder / "faces", 120, start=3000)
    installed("label", "--teacher", GENDER_TEACHER, "--images", "faces", "--store", "labels.db", *GENDER_FLAGS,
              "--workers", "1", "--quiet", cwd=folder)
    installed("train", "--store", "labels.db", "--out", "run", "--student", "resnet8", "--epochs", "1",
              "--batch-size", "32", "--heldout", "0.3", "--workers", "1", "--quiet", cwd=folder)
    return folder / "run"


def test_quantize_1_2_and_8_bits_then_report_lists_every_variant(run_dir):
    cwd = run_dir.parent
    binary = installed_json("quantize", "run", "--bits", "1", "--epochs", "1", cwd=cwd)
    ternary = installed_json("quantize", "run", "--bits", "2", "--epochs", "1", "--activations", "1",
                             "--no-distill", cwd=cwd)
    int8 = installed_json("quantize", "run", "--bits", "8", "--calibration-images", "32", cwd=cwd)

    assert binary["variant"]["kind"] == "binary" and binary["variant"]["init"] == "parent"
    assert ternary["variant"]["name"] == "ternary-a1-nodistill" and ternary["variant"]["init"] == "random"
    assert int8["variant"]["kind"] == "int8"
    fp32_bytes = (run_dir / "student.onnx").stat().st_size
    for result, directory, size_file in ((binary, "binary", "student.packed"),
                                         (ternary, "ternary-a1-nodistill", "student.packed"),
                                         (int8, "int8", "student.onnx")):
        variant_dir = run_dir / directory
        assert result["out"] == f"run/{directory}" and result["heldout_images"] > 0
        for name in ("student.onnx", "heldout.csv", "run.json", size_file):
            assert (variant_dir / name).exists(), (directory, name)
        assert result["variant"]["size_bytes"] == (variant_dir / size_file).stat().st_size < fp32_bytes / 2
        assert list(pd.read_csv(variant_dir / "heldout.csv")["digest"]) == list(
            pd.read_csv(run_dir / "heldout.csv")["digest"])  # the parent's held-out images, no new queries
    assert binary["onnx_max_abs_diff"] < 1e-4  # the dequantized export matches the packed model
    train_steps = [r for r in map(json.loads, (run_dir / "binary" / "metrics.jsonl").read_text().splitlines())
                   if r["split"] == "train"]
    assert train_steps and {"loss", "hard", "soft", "parent"} <= set(train_steps[0])

    report = installed_json("report", "run", "--ground-truth", LFW_LABELS, "--label-column", "gender",
                            "--classes", "female,male", cwd=cwd)
    variants = {row["variant"]: row for row in report["variants"]}
    assert list(variants) == ["fp32", "int8", "ternary-a1-nodistill", "binary"]
    fp32 = variants["fp32"]
    assert fp32["fidelity"] == pytest.approx(report["fidelity"]) and fp32["agreement_with_fp32"] == 1.0
    for row in report["variants"]:
        assert row["size_bytes"] > 0 and row["params"] > 0 and set(row["latency_ms"]) == {"1", "64"}
        assert 0.0 <= row["fidelity"] <= 1.0 and 0.0 <= row["agreement_with_fp32"] <= 1.0
        assert row["accuracy"] is not None  # ground truth was given
    assert variants["binary"]["size_bytes"] < variants["int8"]["size_bytes"] < fp32["size_bytes"]
    assert "| binary | 1/32 |" in (run_dir / "report.md").read_text()
    # a variant is a run of its own: the plain teacher-vs-student report works on it too
    assert installed_json("report", "run/binary", cwd=cwd)["student"]["architecture"] == "resnet8"


def test_quantize_refuses_bad_flags_and_existing_output(run_dir):
    cwd = run_dir.parent
    wrong = installed("quantize", "run", "--bits", "8", "--no-distill", cwd=cwd, check=False)
    assert wrong.returncode == 1 and "--bits 8" in wrong.stderr and "Traceback" not in wrong.stderr
    wrong = installed("quantize", "run", "--bits", "4", cwd=cwd, check=False)
    assert wrong.returncode == 1 and "--bits must be 1, 2 or 8" in wrong.stderr
    wrong = installed("quantize", "nowhere", "--bits", "1", cwd=cwd, check=False)
    assert wrong.returncode == 1 and "extractor train" in wrong.stderr
    installed("quantize", "run", "--bits", "8", "--out", "elsewhere/int8", "--calibration-images", "8", cwd=cwd)
    again = installed("quantize", "run", "--bits", "8", "--out", "elsewhere/int8", cwd=cwd, check=False)
    assert again.returncode == 1 and "--out" in again.stderr
