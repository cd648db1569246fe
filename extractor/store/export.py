"""Stored answers to a Parquet or CSV file, streamed a chunk at a time: memory stays flat whatever the store's size.

Each chunk becomes one Arrow table, whole columns at a time (the soft vectors straight from their stored
float32 bytes), written by Arrow's Parquet or CSV writer.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from extractor.errors import ConfigError
from extractor.store.files import refuse_store_paths
from extractor.store.label_store import LABEL_COLUMNS, LabelStore

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS: tuple[str, ...] = ("parquet", "csv")


def export_labels(store: LabelStore, out: Path, fmt: str) -> int:
    """Writes every stored answer (``LABEL_COLUMNS``, one row per image and teacher) to ``out``.

    Parquet keeps ``soft`` as a list of float32; CSV writes it as ``[p0, p1, ...]`` (shortest float32
    text). The file appears whole or not at all: it is written beside ``out`` and renamed when complete;
    ``out`` is never the store itself, its ``-wal`` or its ``-shm``.

    Returns:
        The rows written.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    refuse_store_paths(out, store.path)
    import pyarrow as pa

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    schema = _schema(pa, csv=fmt == "csv")
    rows = 0
    try:
        with _writer(fmt, partial, schema) as writer:
            for columns in store.label_columns():
                writer.write_table(_table(columns, schema, pa))
                rows += len(columns["digest"])
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def _schema(pa: object, csv: bool) -> pa.Schema:
    soft = pa.string() if csv else pa.list_(pa.float32())
    return pa.schema([("digest", pa.string()), ("teacher", pa.string()), ("preprocess", pa.string()),
                      ("label", pa.int64()), ("kind", pa.string()), ("soft", soft), ("created", pa.float64()),
                      ("root", pa.string()), ("relative_path", pa.string())])


def _writer(fmt: str, path: Path, schema: pa.Schema) -> object:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # Dictionary-encode the columns that repeat; digests and paths are unique, and trying costs time.
        return pq.ParquetWriter(path, schema, use_dictionary=["teacher", "preprocess", "kind", "root"])
    import pyarrow.csv as pcsv

    return pcsv.CSVWriter(path, schema)


def _table(columns: dict[str, list], schema: pa.Schema, pa: object) -> pa.Table:
    arrays = [_soft(columns["soft"], schema.field("soft").type, pa) if name == "soft"
              else pa.array(columns[name], type=schema.field(name).type) for name in LABEL_COLUMNS]
    return pa.Table.from_arrays(arrays, schema=schema)


def _soft(blobs: list[bytes | None], kind: pa.DataType, pa: object) -> pa.Array:
    """Stored float32 bytes -> list<float32> (Parquet), or its text ``[p0, p1, ...]`` (CSV), one column at once."""
    import pyarrow.compute as pc

    missing = np.array([blob is None for blob in blobs])
    lengths = np.array([0 if blob is None else len(blob) // 4 for blob in blobs], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.frombuffer(b"".join(blob for blob in blobs if blob is not None), dtype=np.float32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), mask=pa.array(missing))
    if kind == pa.list_(pa.float32()):
        return lists
    text = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pc.cast(pa.array(values), pa.string()),
                                                   mask=pa.array(missing)), ", ")
    return pc.binary_join_element_wise("[", text, "]", "")
