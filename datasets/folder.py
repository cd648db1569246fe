"""Finds the files of an image folder, recursively, hashes their contents and tells images from other files."""
from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from extractor.errors import InputNotFound

_FILES_PER_TASK = 128  # hashing tasks per thread-pool call: few enough to keep overhead low

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                            ".pgm", ".ppm", ".pbm", ".pnm"})
"""Names that claim an image: such a file that does not decode is a failure, never skipped."""
# The first bytes of the same formats (their specifications' magic numbers), for files named otherwise.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM",
               b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # JPEG, PNG, GIF, BMP, TIFF, BigTIFF
# PBM/PGM/PPM: "P1".."P6", whitespace, optional comments, then the width's digits; PAM: "P7" and a newline.
_PNM = re.compile(rb"P[1-6]\s+(?:#[^\n]*\n\s*)*\d|P7\n")
_HEAD_BYTES = 64


@dataclass(frozen=True)
class FolderFile:
    """One candidate file: where it is, its size and mtime, and the sha256 of its bytes."""

    relative_path: str
    path: Path
    size: int
    mtime_ns: int
    digest: str = ""
    problem: str | None = None
    """Why the file cannot be read (a symlink loop, no permission, gone): the job fails it, never sends it."""


def list_files(root: str | os.PathLike) -> list[FolderFile]:
    """Every regular, non-hidden file under ``root`` (sorted, not yet hashed).

    Images are told from other files later (`looks_like_image`), so every file is included.
    Symbolic links are followed, each folder once, under the first of its paths in name order (a link
    back up the tree is no endless walk). An entry that cannot be stat-ed (a symlink loop, no permission)
    or a folder that cannot be listed is included with its ``problem``: one odd entry never ends a job.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise InputNotFound(f"--images {root_path} is not a directory")
    found: list[FolderFile] = []
    pending = [(str(root_path), "")]
    seen: set[tuple[int, int]] = set()
    while pending:
        folder, prefix = pending.pop()
        try:
            folder_stat = os.stat(folder)
        except OSError as exc:
            found.append(_unreadable(prefix.rstrip("/"), Path(folder), f"cannot stat: {exc.strerror}"))
            continue
        if (folder_stat.st_dev, folder_stat.st_ino) in seen:
            continue
        seen.add((folder_stat.st_dev, folder_stat.st_ino))
        subfolders = []
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            if not prefix:
                raise
            found.append(_unreadable(prefix.rstrip("/"), Path(folder), f"cannot list this folder: {exc.strerror}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    subfolders.append(entry)
                elif entry.is_file():
                    stat = entry.stat()
                    found.append(FolderFile(prefix + entry.name, Path(entry.path), stat.st_size, stat.st_mtime_ns))
            except OSError as exc:
                found.append(_unreadable(prefix + entry.name, Path(entry.path), f"cannot stat: {exc.strerror}"))
        for entry in sorted(subfolders, key=lambda e: e.name, reverse=True):  # popped in name order
            pending.append((entry.path, f"{prefix}{entry.name}/"))
    return sorted(found, key=lambda f: f.relative_path)


def _unreadable(relative_path: str, path: Path, problem: str) -> FolderFile:
    return FolderFile(relative_path, path, -1, -1, problem=problem)


def hash_files(files: list[FolderFile], known: Mapping[str, tuple[int, int, str]],
               workers: int | None = None) -> list[FolderFile]:
    """Fills in each file's digest, reusing ``known[relative_path] = (size, mtime_ns, digest)``
    when size and modification time are unchanged (as git's index does), hashing the rest on a
    thread pool (hashlib releases the GIL). A file that cannot be read gets its ``problem`` instead."""
    digests: list[str | None] = []
    for file in files:
        size, mtime_ns, digest = known.get(file.relative_path, (-1, -1, ""))
        digests.append(digest if (size, mtime_ns) == (file.size, file.mtime_ns) and digest else None)
    stale = [i for i, digest in enumerate(digests) if digest is None and files[i].problem is None]
    chunks = [stale[start:start + _FILES_PER_TASK] for start in range(0, len(stale), _FILES_PER_TASK)]
    problems: dict[int, str] = {}
    if chunks:
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            for chunk, hashed in zip(chunks, pool.map(lambda c: [_digest_or_problem(files[i].path) for i in c],
                                                      chunks)):
                for index, (digest, problem) in zip(chunk, hashed):
                    digests[index] = digest
                    if problem is not None:
                        problems[index] = problem
    return [replace(file, digest=digest or "", problem=problems.get(index, file.problem))
            for index, (file, digest) in enumerate(zip(files, digests))]


def _digest_or_problem(path: Path) -> tuple[str | None, str | None]:
    try:
        return file_sha256(path), None
    except OSError as exc:
        return None, f"unreadable file: {exc.strerror or exc}"


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, the content address of an input (never its path)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def looks_like_image(file: FolderFile) -> bool:
    """Whether a file is an image to label, or another file to skip (a README, notes, a video).

    Decided cheaply, without decoding: by name first (a suffix in ``IMAGE_SUFFIXES``, any case),
    else by the magic number in the file's first 64 bytes (JPEG, PNG, GIF, BMP, TIFF, WebP, PNM),
    so images without an extension, or under another one (``.jfif``), are still found. Whether an
    image really decodes is the decode worker's business: there it is labeled or failed with a reason.
    """
    if file.path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with open(file.path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return True  # unreadable since it was hashed: the decode worker records why
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP") \
        or _PNM.match(head) is not None
