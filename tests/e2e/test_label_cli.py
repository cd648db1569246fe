import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd

from tests.assets import EMOTION_FLAGS, EMOTION_TEACHER, lfw_subset, requires_assets
from tests.e2e.cli import extractor, extractor_json
from tests.images import broken_files, other_files

pytestmark = requires_assets


def label_args(images, store, *extra):
    return ["label", "--teacher", EMOTION_TEACHER, "--images", images, "--store", store, *EMOTION_FLAGS, *extra]


def test_label_then_rerun_is_free_and_exports(tmp_path):
    lfw_subset(tmp_path / "faces", 120)
    store = tmp_path / "labels.db"
    first = extractor_json(*label_args(tmp_path / "faces", store))
    assert {k: first[k] for k in ("images", "labeled", "cached", "failed", "queries")} == \
        {"images": 120, "labeled": 120, "cached": 0, "failed": 0, "queries": 120}
    assert first["seconds"] > 0
    second = extractor_json(*label_args(tmp_path / "faces", store))
    assert (second["labeled"], second["cached"], second["queries"]) == (0, 120, 0)

    extractor("export", "--store", store, "--format", "parquet", "--out", tmp_path / "labels.parquet")
    extractor("export", "--store", store, "--format", "csv", "--out", tmp_path / "labels.csv")
    frame = pd.read_parquet(tmp_path / "labels.parquet")
    assert len(frame) == 120 and frame["digest"].is_unique
    assert set(frame["kind"]) == {"logits"} and all(len(soft) == 7 for soft in frame["soft"])
    assert set(frame["label"]) <= set(range(7)) and frame["label"].nunique() >= 3
    assert len(pd.read_csv(tmp_path / "labels.csv")) == 120
    stats = extractor_json("store", "stats", "--store", store)
    assert stats["labels"] == 120 and len(stats["jobs"]) == 2


def test_human_summary_counts_broken_files(tmp_path):
    faces = lfw_subset(tmp_path / "faces", 20)
    expected = broken_files(tmp_path / "faces" / "junk", faces[0])
    skipped = other_files(tmp_path / "faces")
    result = extractor(*label_args(tmp_path / "faces", tmp_path / "labels.db", "--quiet"))
    assert f"images found    {20 + len(expected)}" in result.stdout
    assert "labeled now     20" in result.stdout
    assert f"skipped         {len(skipped)} (not images)" in result.stdout
    assert f"failed          {len(expected)}" in result.stdout
    stats = extractor("store", "stats", "--store", tmp_path / "labels.db").stdout
    for name, reason in expected.items():
        assert any(name in line and reason in line for line in stats.splitlines()), (name, stats)
    assert not any(name in stats for name in skipped), stats


def test_kill_minus_nine_mid_job_then_resume_loses_and_duplicates_nothing(tmp_path):
    lfw_subset(tmp_path / "faces", 1500)
    store = tmp_path / "labels.db"
    command = [sys.executable, "-m", "extractor.cli",
               *map(str, label_args(tmp_path / "faces", store, "--batch-size", "8", "--workers", "1", "--quiet"))]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        done = wait_for_rows(store, minimum=40, timeout_s=120)
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
    with sqlite3.connect(store) as db:
        kept, sent = db.execute("SELECT (SELECT COUNT(*) FROM labels), "
                                "(SELECT SUM(images_sent) FROM requests)").fetchone()
    assert kept < 1500, "the job finished before it could be killed; make the folder larger"
    assert done <= kept <= sent  # committed groups stay; every paid request is on the ledger, lost answers too
    resumed = extractor_json(*label_args(tmp_path / "faces", store))
    assert (resumed["cached"], resumed["labeled"]) == (kept, 1500 - kept)
    with sqlite3.connect(store) as db:
        rows, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT digest) FROM labels").fetchone()
        statuses = [status for (status,) in db.execute("SELECT status FROM jobs ORDER BY id")]
    assert rows == distinct == 1500
    assert statuses == ["running", "done"]  # the killed job never finished; the resume did


def test_bad_input_is_one_line_error_exit_1(tmp_path):
    result = extractor("label", "--teacher", tmp_path / "missing.onnx", "--images", tmp_path, check=False)
    assert result.returncode == 1 and result.stderr.startswith("error: cannot read teacher model")
    assert "Traceback" not in result.stderr
    result = extractor(*label_args(tmp_path / "nope", tmp_path / "l.db"), check=False)
    assert result.returncode == 1 and "is not a directory" in result.stderr
    result = extractor(*label_args(tmp_path, tmp_path / "l.db", "--mean", "1,2"), check=False)
    assert result.returncode == 1 and "--mean" in result.stderr


def wait_for_rows(store, minimum: int, timeout_s: float) -> int:
    """Waits until a job's ledger shows ``minimum`` images sent (each request's record is committed at once,
    answers in groups), and returns the answers stored then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if store.exists():
            try:
                with sqlite3.connect(store, timeout=1) as db:
                    sent, answers = db.execute("SELECT (SELECT COALESCE(SUM(images_sent), 0) FROM requests), "
                                               "(SELECT COUNT(*) FROM labels)").fetchone()
                if sent >= minimum:
                    return answers
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"fewer than {minimum} images were sent in {timeout_s} s")
