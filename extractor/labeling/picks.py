"""A picks file: the images a selection chose, one path per line, read back as paths inside the image tree."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from extractor.errors import ConfigError, InputNotFound


def write_picks(path: Path, images: Path, relative_paths: Iterable[str]) -> int:
    """Writes ``images / relative_path`` per line (atomically); returns how many."""
    lines = [str(Path(images) / relative) for relative in relative_paths]
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8", errors="surrogateescape")
    os.replace(partial, path)
    return len(lines)


def read_picks(path: Path, images: Path) -> tuple[str, ...]:
    """The picks' paths relative to ``images``: each line absolute, relative to the working directory, or
    relative to ``images``. A pick outside the tree is an error that names it."""
    if not Path(path).is_file():
        raise InputNotFound(f"--only: no picks file at {path}")
    root = Path(images).resolve()
    picked, outside = [], []
    for line in Path(path).read_text(encoding="utf-8", errors="surrogateescape").splitlines():
        if not line.strip():
            continue
        candidate = Path(line.strip())
        absolute = candidate if candidate.is_absolute() else Path.cwd() / candidate
        if not absolute.exists():
            absolute = root / candidate
        try:
            picked.append(absolute.resolve().relative_to(root).as_posix())
        except ValueError:
            outside.append(line.strip())
    if outside:
        raise ConfigError(f"--only: {len(outside)} picks are not under {images}, e.g. {outside[0]}")
    return tuple(dict.fromkeys(picked))
