"""Per-image values known from outside the teacher: class labels, or group keys for splitting (e.g. person)."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Iterable

from extractor.errors import ConfigError

KEY_COLUMNS: tuple[str, ...] = ("path", "filename")
"""CSV columns that name an image, most specific first: a path relative to the images root, or a file name."""


def from_folders(root: str | Path, paths: Iterable[str | Path]) -> dict[str, str]:
    """Classes of a PubFig83-style tree ``root/<class>/.../<image>``: the first folder under ``root``.

    Args:
        root: the images root.
        paths: image paths, relative to ``root`` or absolute under it.

    Returns:
        Relative POSIX path -> class name; images directly under ``root`` have no class and are left out.

    Raises:
        ValueError: for an absolute path outside ``root``.
    """
    root = Path(root)
    classes: dict[str, str] = {}
    for path in paths:
        relative = _relative(Path(path), root)
        if len(relative.parts) > 1:
            classes[relative.as_posix()] = relative.parts[0]
    return classes


def from_csv(csv_path: str | Path, column: str, paths: Iterable[str | Path]) -> dict[str, str]:
    """One CSV column's value for each image: a ground-truth label, or a group such as "person".

    Rows are matched to images by a ``path`` column (relative to the images root) when there is one,
    else by a ``filename`` column. Rows whose value is empty are left out, as are images with no row.

    Args:
        csv_path: a CSV file with a header row.
        column: the column holding the value.
        paths: the images' paths relative to the images root.

    Returns:
        Relative POSIX path -> value.

    Raises:
        ValueError: when the key or value column is missing (naming the columns present), when a key
            has two different values, or when a file name matches several images.
    """
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        present = reader.fieldnames or []
        key = next((name for name in KEY_COLUMNS if name in present), None)
        if key is None:
            raise ConfigError(f"{csv_path}: needs a {' or '.join(map(repr, KEY_COLUMNS))} column to name images; "
                             f"columns present: {', '.join(present) or 'none'}")
        if column not in present:
            raise ConfigError(f"{csv_path}: no column {column!r}; columns present: {', '.join(present)}")
        values: dict[str, str] = {}
        for line, row in enumerate(reader, start=2):
            name, value = _posix(row[key] or ""), (row[column] or "").strip()
            if not name or not value:
                continue
            if values.setdefault(name, value) != value:
                raise ConfigError(f"{csv_path}:{line}: {key} {name!r} has two {column} values, "
                                 f"{values[name]!r} and {value!r}")
    relative = [_posix(str(path)) for path in paths]
    if key == "path":
        return {path: values[path] for path in relative if path in values}
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in relative:
        by_name[PurePosixPath(path).name].append(path)
    matched: dict[str, str] = {}
    for name, value in values.items():
        candidates = by_name.get(name, [])
        if len(candidates) > 1:
            raise ConfigError(f"{csv_path}: file name {name!r} matches {len(candidates)} images "
                             f"({', '.join(candidates[:3])}); key the CSV by a 'path' column instead")
        if candidates:
            matched[candidates[0]] = value
    return matched


def _relative(path: Path, root: Path) -> PurePosixPath:
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(root.resolve())
        except ValueError:
            raise ConfigError(f"{path} is not under the images root {root}") from None
    return PurePosixPath(path.as_posix())


def _posix(text: str) -> str:
    """A relative path as written in a CSV (either slash, optional ./), in normal POSIX form."""
    text = text.strip().replace("\\", "/")
    return PurePosixPath(text).as_posix() if text else ""
