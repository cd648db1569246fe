"""`store backup`: one consistent, self-contained copy, the -wal's commits included; never over the store."""
import sqlite3

import pytest

from extractor.errors import CacheError, ConfigError
from extractor.store.backup import backup_store
from extractor.store.files import refuse_store_paths
from extractor.store.label_store import LabelRow, LabelStore

TEACHER, PREPROCESS = "t" * 64, "p" * 64


def test_a_backup_holds_what_only_the_wal_holds_and_is_one_file(tmp_path):
    path = tmp_path / "labels.db"
    store = LabelStore(path)  # kept open: its last commits are in labels.db-wal, not yet in labels.db
    job = store.begin_job("label", "identity", TEACHER, PREPROCESS, "/r", {})
    store.commit_batch(job, TEACHER, PREPROCESS, [LabelRow(f"{i:064x}", 0, "label", None) for i in range(50)])
    assert (tmp_path / "labels.db-wal").stat().st_size > 0
    done = backup_store(path, tmp_path / "copy.db")
    store.close()
    assert done["answers"] == 50
    with sqlite3.connect(tmp_path / "copy.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert db.execute("SELECT COUNT(*) FROM labels").fetchone() == (50,)
    with LabelStore(tmp_path / "copy.db") as copy:
        assert copy.stats()["labels"] == 50


def test_a_backup_never_overwrites(tmp_path):
    path = tmp_path / "labels.db"
    LabelStore(path).close()
    (tmp_path / "old.db").write_text("precious")
    with pytest.raises(ConfigError, match="a backup never overwrites"):
        backup_store(path, tmp_path / "old.db")
    with pytest.raises(ConfigError, match="is the store"):
        backup_store(path, path)
    (tmp_path / "crm.db").write_bytes(b"not sqlite")
    with pytest.raises(CacheError, match="nothing was copied"):
        backup_store(tmp_path / "crm.db", tmp_path / "x.db")
    assert (tmp_path / "old.db").read_text() == "precious" and not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("name", ["labels.db", "labels.db-wal", "labels.db-shm", "labels.db.lock", "./labels.db"])
def test_no_output_may_be_part_of_the_store(tmp_path, name):
    store = tmp_path / "labels.db"
    with pytest.raises(ConfigError, match="would destroy the stored answers"):
        refuse_store_paths(tmp_path / name, store)


def test_no_output_may_reach_the_store_through_a_link(tmp_path):
    store = tmp_path / "labels.db"
    LabelStore(store).close()
    (tmp_path / "soft.parquet").symlink_to(store)
    (tmp_path / "hard.parquet").hardlink_to(store)
    for name in ("soft.parquet", "hard.parquet"):
        with pytest.raises(ConfigError, match="is the store"):
            refuse_store_paths(tmp_path / name, store)
    refuse_store_paths(tmp_path / "labels.parquet", store)  # any other name is fine
