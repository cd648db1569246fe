"""Odd files, bad values and bad resumes, run through the installed command: each is one line, never a lost job."""
from __future__ import annotations

import json
import os
import sqlite3

import pytest

from tests.e2e.cli import installed, installed_json
from tests.images import write_jpegs
from tests.models import linear_classifier

LABEL = ["label", "--teacher", "teacher.onnx", "--images", "images", "--store", "labels.db", "--mean", "127.5",
         "--std", "127.5", "--workers", "1", "--quiet"]
TRAIN = ["train", "--store", "labels.db", "--out", "run", "--size", "32", "--epochs", "1", "--batch-size", "8",
         "--heldout", "0.3", "--workers", "1", "--quiet"]


@pytest.fixture
def folder(tmp_path):
    write_jpegs(tmp_path / "images", 12)
    linear_classifier(tmp_path / "teacher.onnx", size=16)
    return tmp_path


def one_line_error(result) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_symlink_loop_and_a_name_that_is_not_utf8_fail_alone_and_are_kept(folder):
    images = folder / "images"
    os.symlink("b.jpg", images / "a.jpg")
    os.symlink("a.jpg", images / "b.jpg")
    odd = os.fsencode(images) + b"/caf\xe9.jpg"  # Latin-1, not UTF-8
    with open(odd, "wb") as handle:
        handle.write((images / "img_000.jpg").read_bytes()[:-200])  # an image cut short, too
    assert "2 files cannot be read" in installed(*LABEL, "--dry-run", cwd=folder).stdout
    summary = installed_json(*LABEL, cwd=folder)
    assert (summary["labeled"], summary["failed"]) == (12, 3)
    with sqlite3.connect(folder / "labels.db") as db:
        reasons = dict(db.execute("SELECT path, reason FROM failures"))
    assert {os.path.basename(path) for path in reasons} == {"a.jpg", "b.jpg", "caf\\xe9.jpg"}
    assert all("symbolic links" in reason for path, reason in reasons.items() if path.endswith(("a.jpg", "b.jpg")))
    stats = installed("store", "stats", "--store", "labels.db", cwd=folder).stdout
    assert "caf\\xe9.jpg" in stats and "2 file" in stats
    assert installed_json(*LABEL, cwd=folder)["queries"] == 0  # the readable images are all answered


@pytest.mark.parametrize("flags, says", [
    (["--size", "0"], "--size 0 does not fit the teacher: its input is fixed at 16x16"),
    (["--size", "64"], "--size 64 does not fit the teacher"),
    (["--std", "-1"], "--std must be > 0"),
    (["--mean", "nan"], "--mean must be finite"),
    (["--std", "inf"], "--std must be finite"),
])
def test_bad_preprocessing_values_are_refused_before_anything_is_paid(folder, flags, says):
    result = installed(*LABEL, *flags, cwd=folder, check=False)
    assert says in one_line_error(result)
    if (folder / "labels.db").exists():
        with sqlite3.connect(folder / "labels.db") as db:
            assert db.execute("SELECT COUNT(*) FROM requests").fetchone() == (0,)


def test_probabilities_that_are_not_probabilities_stop_the_job_after_its_first_answer(folder):
    """A logits model labeled with --output-policy probs: the first answer is kept as invalid, nothing more is
    bought, and the error says which flag to use."""
    says = one_line_error(installed(*LABEL, "--output-policy", "probs", "--batch-size", "4", cwd=folder,
                                    check=False))
    assert "not probabilities" in says and "--output-policy auto" in says
    with sqlite3.connect(folder / "labels.db") as db:
        reasons = [reason for (reason,) in db.execute("SELECT reason FROM failures")]
        sent = db.execute("SELECT SUM(images_sent) FROM requests").fetchone()[0]
        assert db.execute("SELECT COUNT(*) FROM labels").fetchone() == (0,)
    assert len(reasons) == sent < 12  # only what was already asked for was paid for
    assert all("outside [0, 1]" in r or "sum to" in r for r in reasons)
    assert installed_json(*LABEL, cwd=folder)["labeled"] == 12  # auto: a new teacher fingerprint, all answered


@pytest.mark.slow
def test_resume_refuses_another_store_or_student_and_a_cut_checkpoint_is_one_line(folder):
    installed(*LABEL, cwd=folder)
    installed(*TRAIN, "--student", "resnet8", cwd=folder)
    config = (folder / "run" / "config.json").read_text()
    (folder / "other.db").write_bytes((folder / "labels.db").read_bytes())
    other_store = [flag if flag != "labels.db" else "other.db" for flag in TRAIN]
    says = one_line_error(installed(*other_store, "--student", "resnet8", "--resume", cwd=folder, check=False))
    assert "--store other.db" in says and "--resume" in says
    says = one_line_error(installed(*TRAIN, "--student", "resnet20", "--resume", cwd=folder, check=False))
    assert "--student" in says and "resnet8" in says
    assert (folder / "run" / "config.json").read_text() == config  # the run's record is untouched

    last = folder / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    says = one_line_error(installed(*TRAIN, "--student", "resnet8", "--resume", "--epochs", "2", cwd=folder,
                                    check=False))
    assert "last.pt cannot be read" in says and "delete it" in says
    assert json.loads(config)["student"]["architecture"] == "resnet8"
