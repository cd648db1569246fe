"""How stored answers are read back: the labels query, its filters and its columns."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from extractor.store.keys import cache_keys

if TYPE_CHECKING:
    import pandas as pd

LABEL_COLUMNS: tuple[str, ...] = ("digest", "teacher", "preprocess", "label", "kind", "soft", "created", "root",
                                  "relative_path")
# The first path seen for each content, from one search of the (digest, relative_path, root) index per answer:
# the table is read in its own order (no sort, no temporary table), so the cursor streams.
LABELS_QUERY = (
    "SELECT l.digest, l.teacher, l.preprocess, l.label, l.kind, l.soft, l.created, "
    "(SELECT relative_path || char(0) || root FROM files WHERE digest = l.digest "
    "ORDER BY relative_path LIMIT 1) AS seen FROM labels l"
)


def labels_query(teacher: str | None, preprocess: str | None,
                 digests: Sequence[str] | None) -> tuple[str, list[str]]:
    """The labels query with its filters. Contents of one teacher and preprocessing are found by their keys
    (the primary key); the table has no index by content alone, which would slow every insert."""
    if digests is None or not (teacher and preprocess):
        clause, params = _where(teacher=teacher, preprocess=preprocess)
        if digests is not None:
            marks = ",".join("?" * len(digests))
            clause += (" AND " if clause else " WHERE ") + f"l.digest IN ({marks})"
            params = [*params, *digests]
        return LABELS_QUERY + clause, params
    keys = cache_keys(digests, teacher, preprocess)
    return keyed_query(keys), keys


def keyed_query(keys: Sequence[str]) -> str:
    """The labels query for the answers with these cache keys (the primary key), one parameter a key."""
    return LABELS_QUERY + f" WHERE l.key IN ({','.join('?' * len(keys))})"


def shaped(frame: pd.DataFrame) -> pd.DataFrame:
    """The query's rows as :meth:`LabelStore.labels` returns them: soft as float32 arrays, the path split."""
    frame["soft"] = [None if blob is None else np.frombuffer(blob, dtype=np.float32) for blob in frame["soft"]]
    seen = [(None, None) if text is None else text.split("\0", 1) for text in frame.pop("seen").tolist()]
    frame["root"] = [root for _, root in seen]
    frame["relative_path"] = [relative for relative, _ in seen]
    return frame


def _where(**filters: str | None) -> tuple[str, list[str]]:
    clauses = [f"l.{name} = ?" for name, value in filters.items() if value]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), [v for v in filters.values() if v]
