"""A consistent copy of a store, made with SQLite's online backup API while jobs may still be writing it.

Copying the ``.db`` with ``cp`` while a job writes, or without its ``-wal``, can give a file that lacks the
latest answers or is damaged; the backup API copies the pages of one snapshot, the WAL's commits included.
"""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from extractor.errors import CacheError, ConfigError
from extractor.store.files import refuse_store_paths
from extractor.store.schema import connect_read_only, foreign


def backup_store(store: Path, out: Path) -> dict:
    """Copies ``store`` (the ``.db`` and what its ``-wal`` holds) to the one file ``out``, which must not exist.

    The copy is written beside ``out`` and renamed when it is whole and passes SQLite's quick check; it is in
    rollback-journal mode, one self-contained file (an extractor command that writes it switches it back to WAL).

    Returns:
        out, bytes, answers and seconds.
    """
    refuse_store_paths(out, store)
    if out.exists():
        raise ConfigError(f"--out {out} exists; a backup never overwrites a file: name a new one")
    what = foreign(store)
    if what is not None:
        raise CacheError(f"{store} is not a usable label store: {what}; nothing was copied")
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    source = connect_read_only(store)
    try:
        copy = sqlite3.connect(partial, isolation_level=None)
        try:
            source.backup(copy)  # all pages in one step: one snapshot, whatever jobs write meanwhile
            copy.execute("PRAGMA journal_mode=DELETE")
            (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise CacheError(f"the copy of {store} fails SQLite's quick check ({verdict}); the store itself "
                                  "is likely damaged: `extractor store check`")
            (answers,) = copy.execute("SELECT COUNT(*) FROM labels").fetchone()
        finally:
            copy.close()
        with open(partial, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(partial, out)
    finally:
        source.close()
        partial.unlink(missing_ok=True)
    return {"out": str(out), "bytes": out.stat().st_size, "answers": answers,
            "seconds": time.perf_counter() - started}
