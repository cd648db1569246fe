"""Finds the files of an image folder, recursively, and hashes their contents."""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from extractor.errors import InputNotFound

_FILES_PER_TASK = 128  # hashing tasks per thread-pool call: few enough to keep overhead low


@dataclass(frozen=True)
class FolderFile:
    """One candidate file: where it is, its size and mtime, and the sha256 of its bytes."""

    relative_path: str
    path: Path
    size: int
    mtime_ns: int
    digest: str = ""


def list_files(root: str | os.PathLike) -> list[FolderFile]:
    """Every regular, non-hidden file under ``root`` (sorted, not yet hashed).

    Images are told by content later, so files without an extension are included.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise InputNotFound(f"--images {root_path} is not a directory")
    found: list[FolderFile] = []
    pending = [(str(root_path), "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    pending.append((entry.path, f"{prefix}{entry.name}/"))
                elif entry.is_file():
                    stat = entry.stat()
                    found.append(FolderFile(prefix + entry.name, Path(entry.path), stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda f: f.relative_path)


def hash_files(files: list[FolderFile], known: Mapping[str, tuple[int, int, str]],
               workers: int | None = None) -> list[FolderFile]:
    """Fills in each file's digest, reusing ``known[relative_path] = (size, mtime_ns, digest)``
    when size and modification time are unchanged (as git's index does), hashing the rest on a
    thread pool (hashlib releases the GIL)."""
    def with_digest(file: FolderFile, digest: str) -> FolderFile:
        return FolderFile(file.relative_path, file.path, file.size, file.mtime_ns, digest)

    digests: list[str | None] = []
    for file in files:
        size, mtime_ns, digest = known.get(file.relative_path, (-1, -1, ""))
        digests.append(digest if (size, mtime_ns) == (file.size, file.mtime_ns) and digest else None)
    stale = [i for i, digest in enumerate(digests) if digest is None]
    chunks = [stale[start:start + _FILES_PER_TASK] for start in range(0, len(stale), _FILES_PER_TASK)]
    if chunks:
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            for chunk, hashed in zip(chunks, pool.map(lambda c: [file_sha256(files[i].path) for i in c], chunks)):
                for index, digest in zip(chunk, hashed):
                    digests[index] = digest
    return [with_digest(file, digest or "") for file, digest in zip(files, digests)]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, the content address of an input (never its path)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
