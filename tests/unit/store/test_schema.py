"""A file that is not a store is never changed; an empty one becomes a store; what a foreign file is, said."""
import hashlib
import sqlite3

import pytest

from extractor.errors import CacheError
from extractor.store.label_store import LabelStore
from extractor.store.schema import foreign, open_read_only


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_another_programs_database_is_named_and_left_as_it_was(tmp_path):
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.executescript("CREATE TABLE customers (id, name); CREATE TABLE orders (id); INSERT INTO customers "
                         "VALUES (1, 'x');")
    db.close()
    before = digest(path)
    with pytest.raises(CacheError, match=r"crm.db is not a usable label store: it is a SQLite database of another "
                                         r"program \(tables: customers, orders\); nothing was changed"):
        LabelStore(path)
    assert digest(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["crm.db"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # no switch to WAL


@pytest.mark.parametrize(("data", "said"), [
    (b"PAR1" + bytes(200), "a Parquet file"),
    (b"id,label\n1,2\n", "text starting 'id,label'"),
    (bytes(range(1, 200)), "binary data starting 01 02 03 04 05 06 07 08"),
])
def test_a_file_that_is_no_database_is_said_to_be_what_it_is(tmp_path, data, said):
    path = tmp_path / "labels.db"
    path.write_bytes(data)
    assert foreign(path) == f"it is not a SQLite database ({said})"
    with pytest.raises(CacheError, match="nothing was changed"):
        LabelStore(path)
    assert path.read_bytes() == data


def test_an_empty_file_or_empty_database_becomes_a_store(tmp_path):
    (tmp_path / "empty.db").write_bytes(b"")
    sqlite3.connect(tmp_path / "blank.db").execute("PRAGMA user_version = 0").close()
    for name in ("empty.db", "blank.db"):
        with LabelStore(tmp_path / name) as store:
            assert store.stats()["labels"] == 0


def test_a_store_opened_read_only_reads_and_refuses_to_write(tmp_path):
    path = tmp_path / "labels.db"
    with LabelStore(path) as store:
        store.record_files("/r", [("a.jpg", 1, 0, "d" * 64)])
    db = open_read_only(path)
    assert db.execute("SELECT COUNT(*) FROM files").fetchone() == (1,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.execute("INSERT INTO meta VALUES ('x', 'y')")
    db.close()
