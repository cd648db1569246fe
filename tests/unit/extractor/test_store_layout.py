"""The store's layout at scale: counters kept per batch, older stores migrated in place, streamed export."""
import sqlite3

import numpy as np
import pandas as pd
import pytest

from extractor.store.export import export_labels
from extractor.store.keys import STORE_SCHEMA, cache_key
from extractor.store.label_store import LABEL_COLUMNS, LabelRow, LabelStore

TEACHER, PREPROCESS = "t" * 64, "p" * 64

# The layout before counters (extractor up to layout 1): the same tables, indexes by source and by digest.
OLD_LAYOUT = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE labels (
    key TEXT PRIMARY KEY, digest TEXT NOT NULL, teacher TEXT NOT NULL, preprocess TEXT NOT NULL,
    label INTEGER NOT NULL, kind TEXT NOT NULL, soft BLOB, num_classes INTEGER,
    job_id INTEGER, created REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX labels_by_source ON labels (teacher, preprocess, digest);
CREATE TABLE files (
    root TEXT NOT NULL, relative_path TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, seen REAL NOT NULL, PRIMARY KEY (root, relative_path)) WITHOUT ROWID;
CREATE INDEX files_by_digest ON files (digest);
"""

# What a layout-2 extractor does to a store of another layout when it opens it (its counting part), before
# it writes plain rows.
LAYOUT_2_OPENS = """
CREATE TRIGGER IF NOT EXISTS labels_counted AFTER INSERT ON labels BEGIN
    INSERT INTO label_counts VALUES (NEW.teacher, NEW.preprocess, NEW.kind, 1)
    ON CONFLICT (teacher, preprocess, kind) DO UPDATE SET answers = answers + 1;
END;
INSERT OR REPLACE INTO meta VALUES ('layout', '2');
"""


def answers(count, start=0, kind="probs"):
    return [LabelRow(f"{start + i:064x}", i % 3, kind, np.full(3, i, np.float32)) for i in range(count)]


def filled(path, count):
    with LabelStore(path) as store:
        job = store.begin_job("label", "identity", TEACHER, PREPROCESS, "/r", {})
        store.record_files("/r", ((f"{i:04d}.jpg", 1, 0, f"{i:064x}") for i in range(count)))
        store.commit_batch(job, TEACHER, PREPROCESS, answers(count))
    return path


def test_an_older_store_is_migrated_in_place_and_keeps_its_answers(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_LAYOUT)
        db.execute("INSERT INTO meta VALUES ('schema', ?)", (STORE_SCHEMA,))
        db.executemany("INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(cache_key(f"{i:064x}", TEACHER, PREPROCESS), f"{i:064x}", TEACHER, PREPROCESS, 1,
                         "logits", np.zeros(3, np.float32).tobytes(), 3, 1, 0.0) for i in range(5)])
        db.executemany("INSERT INTO files VALUES ('/r', ?, ?, 1, 0, 0.0)",
                       [(f"{i}.jpg", f"{i:064x}") for i in range(5)])
    with LabelStore(path) as store:
        stats = store.stats()
        assert (stats["labels"], stats["images"], stats["files"]) == (5, 5, 5)
        assert store.label_sources() == [(TEACHER, PREPROCESS, 5)]
        assert store.cached_digests(TEACHER, PREPROCESS, [f"{i:064x}" for i in range(7)]) == \
            {f"{i:064x}" for i in range(5)}
    with sqlite3.connect(path) as db:
        schema = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"))
        assert "labels_by_source" not in schema and "files_by_content" in schema
        assert "WITHOUT ROWID" not in schema["labels"] and "labels_counted" not in schema  # appended, counted per batch
        assert db.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone() == ("3",)
        assert db.execute("SELECT COUNT(*) FROM labels").fetchone() == (5,)


def test_counters_stay_right_across_extractor_versions(tmp_path):
    path = filled(tmp_path / "labels.db", 10)
    with sqlite3.connect(path) as db:  # a layout-2 extractor opens the store and writes plain rows
        db.executescript(LAYOUT_2_OPENS)
        db.execute("INSERT INTO labels VALUES (?, ?, ?, ?, 0, 'label', NULL, NULL, 1, 0.0)",
                   (cache_key("e" * 64, TEACHER, "q" * 64), "e" * 64, TEACHER, "q" * 64))
        db.execute("INSERT INTO files VALUES ('/s', 'x.jpg', ?, 1, 0, 0.0)", ("e" * 64,))
    with LabelStore(path) as store:  # drops the trigger again: one count per batch, never two
        store.commit_batch(1, TEACHER, PREPROCESS, answers(4, start=8))  # 2 new, 2 already there: ignored
        store.commit_batch(1, TEACHER, PREPROCESS, answers(2, start=20) + answers(2, start=30, kind="logits"))
        stats = store.stats()
    assert (stats["labels"], stats["images"], stats["files"]) == (17, 17, 11)
    assert sorted((row["kind"], row["labels"]) for row in stats["by_teacher"]) == \
        [("label", 1), ("logits", 2), ("probs", 14)]


def test_export_streams_chunks_and_round_trips(tmp_path):
    path = filled(tmp_path / "labels.db", 10)
    with LabelStore(path) as store:
        assert [len(chunk["digest"]) for chunk in store.label_columns(rows=4)] == [4, 4, 2]
        expected = store.labels().set_index("digest").sort_index()
        assert export_labels(store, tmp_path / "out.parquet", "parquet") == 10
        assert export_labels(store, tmp_path / "out.csv", "csv") == 10
    parquet = pd.read_parquet(tmp_path / "out.parquet").set_index("digest").sort_index()
    assert list(parquet.reset_index().columns) == list(LABEL_COLUMNS)
    assert (parquet["label"] == expected["label"]).all()
    assert (parquet["relative_path"] == expected["relative_path"]).all() and set(parquet["root"]) == {"/r"}
    assert all(np.array_equal(a, b) and a.dtype == np.float32 for a, b in zip(parquet["soft"], expected["soft"]))
    csv = pd.read_csv(tmp_path / "out.csv", dtype={"digest": str}).set_index("digest").sort_index()
    assert csv.loc[f"{7:064x}", "soft"] == "[7, 7, 7]" and (csv["label"] == expected["label"]).all()
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_empty_store_exports_the_columns(tmp_path, fmt):
    with LabelStore(tmp_path / "labels.db") as store:
        assert export_labels(store, tmp_path / f"out.{fmt}", fmt) == 0
    frame = pd.read_parquet(tmp_path / f"out.{fmt}") if fmt == "parquet" else pd.read_csv(tmp_path / f"out.{fmt}")
    assert list(frame.columns) == list(LABEL_COLUMNS) and len(frame) == 0


def test_labels_of_some_contents_are_found_by_key_or_by_digest(tmp_path):
    path = filled(tmp_path / "labels.db", 10)
    wanted = [f"{i:064x}" for i in (2, 5, 99)]
    with LabelStore(path) as store:
        by_key = store.labels(teacher=TEACHER, preprocess=PREPROCESS, digests=wanted)
        by_digest = store.labels(digests=wanted)
    assert sorted(by_key["digest"]) == sorted(by_digest["digest"]) == wanted[:2]
    assert sorted(by_key["relative_path"]) == ["0002.jpg", "0005.jpg"]
