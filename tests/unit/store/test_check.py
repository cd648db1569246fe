"""`store check`: SQLite's integrity check, then the answers' own invariants, on stores broken in known ways."""
import os
import sqlite3

import numpy as np
import pytest

from extractor.store.check import check_store
from extractor.store.label_store import LabelRow, LabelStore

TEACHER, PREPROCESS = "t" * 64, "p" * 64


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "labels.db"
    rows = [LabelRow(f"{i:064x}", i % 3, "probs", np.full(3, 1 / 3, np.float32)) for i in range(2000)]
    with LabelStore(path) as opened:
        job = opened.begin_job("label", "identity", TEACHER, PREPROCESS, "/r", {})
        opened.record_files("/r", ((f"{i}.jpg", 1, 0, f"{i:064x}") for i in range(2000)))
        opened.commit_batch(job, TEACHER, PREPROCESS, rows)
    return path


def test_a_sound_store_is_healthy(store):
    report = check_store(store)
    assert report.healthy and report.integrity == ["ok"] and report.answers == 2000 and not report.notes


@pytest.mark.parametrize(("damage", "problem"), [
    ("UPDATE labels SET soft = ? WHERE rowid <= 2", "2 answers have NaN or infinite scores"),
    ("UPDATE labels SET label = 7 WHERE rowid = 5", "1 answers have a label outside their classes"),
    ("UPDATE labels SET digest = 'e' || substr(digest, 2) WHERE rowid = 9", "stored under a key that is not theirs"),
    ("DELETE FROM label_counts", "the answer counters say 0 answers, the table holds 2000"),
])
def test_a_broken_invariant_is_named(store, damage, problem):
    with sqlite3.connect(store) as db:
        db.execute(damage, (np.array([np.nan, 0, 1], np.float32).tobytes(),) if "?" in damage else ())
    report = check_store(store)
    assert not report.healthy and not report.damaged
    assert any(problem in line for line in report.problems), report.problems


def test_random_bytes_in_the_middle_make_the_store_damaged(store):
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = store.stat().st_size
    with open(store, "r+b") as file:
        file.seek(size // 2)
        file.write(np.random.default_rng(0).bytes(8192))
    report = check_store(store)
    assert not report.healthy and report.damaged


def test_a_foreign_file_is_not_checked_as_a_store(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("hello\n")
    report = check_store(path)
    assert report.foreign == "it is not a SQLite database (text starting 'hello')" and not report.healthy
    assert path.read_text() == "hello\n" and os.listdir(tmp_path) == ["notes.db"]
