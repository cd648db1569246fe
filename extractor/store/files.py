"""The files a store is made of, and the output paths that must never be one of them."""
from __future__ import annotations

import os
from pathlib import Path

from extractor.errors import ConfigError


def store_files(path: Path) -> tuple[Path, Path, Path]:
    """The files that make up a store: the database, its write-ahead log and its shared-memory index. The
    ``-wal`` holds committed answers not yet copied into the ``.db``: a copy of the ``.db`` alone can lack them."""
    path = Path(path)
    return path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def refuse_store_paths(out: Path, store: Path, flag: str = "--out") -> None:
    """Raises ConfigError when writing ``out`` would overwrite ``store``, its ``-wal``, its ``-shm`` or its
    lock: by name, through a link, or as the same file under another name (a hard link, a bind mount)."""
    out, store = Path(out), Path(store)
    target = Path(os.path.realpath(out))
    for part in (*store_files(store), store.with_name(store.name + ".lock")):
        same = target == Path(os.path.realpath(part))
        if not same and out.exists() and part.exists():
            same = os.path.samefile(out, part)
        if same:
            raise ConfigError(f"{flag} {out} is {'the store' if part == store else 'part of the store'} {part}; "
                              "writing it would destroy the stored answers: name another file")
