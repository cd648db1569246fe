"""The label store at scale: a synthetic store of N answers (default 1M) in a temp dir, measured against targets.

Targets (issue #14): inserts >= 50k rows/s and reads >= 50k rows/s, export streamed in chunks (peak memory
does not grow with the table), `store stats` under 1 s.

- insert: answers committed the way a label job commits them, one transaction per batch (--batch rows,
  default 64, a teacher batch), with the files they came from;
- cache lookup: `cached_digests` over all N digests (the job's first read);
- read: `labels()`, every answer with its file, as one DataFrame (what `train` reads);
- export: `extractor export` to Parquet and CSV, rows/s and the peak RSS growth of the process that ran it;
- stats: `LabelStore.stats()` (what `extractor store stats` runs).

    python benchmarks/store_scale.py [--rows 1000000] [--classes 10] [--batch 64] [--keep DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractor.store import LabelRow, LabelStore  # noqa: E402

TEACHER = hashlib.sha256(b"teacher").hexdigest()
PREPROCESS = hashlib.sha256(b"preprocess").hexdigest()
TARGET_ROWS_S = 50_000
TARGET_STATS_S = 1.0


def digest(index: int) -> str:
    return hashlib.sha256(index.to_bytes(8, "little")).hexdigest()


def build(path: Path, rows: int, classes: int, batch: int) -> float:
    """Writes ``rows`` answers (and their files) in batches of ``batch``; returns seconds spent committing."""
    rng = np.random.default_rng(0)
    with LabelStore(path) as store:
        store.register(TEACHER, {"type": "synthetic"}, classes, None, PREPROCESS, {"transform": {"size": 48}})
        job = store.begin_job("label", "identity", TEACHER, PREPROCESS, "/images", {})
        seconds = 0.0
        for start in range(0, rows, 10_000):
            count = min(10_000, rows - start)
            soft = rng.random((count, classes), dtype=np.float32)
            soft /= soft.sum(axis=1, keepdims=True)
            labels = soft.argmax(axis=1)
            digests = [digest(start + i) for i in range(count)]
            store.record_files("/images", ((f"{start + i:08d}.jpg", 1000, 0, d) for i, d in enumerate(digests)))
            answers = [LabelRow(d, int(labels[i]), "probs", soft[i]) for i, d in enumerate(digests)]
            clock = time.perf_counter()
            for offset in range(0, count, batch):
                store.commit_batch(job, TEACHER, PREPROCESS, answers[offset:offset + batch])
            seconds += time.perf_counter() - clock
        store.finish_job(job, "done", {})
    return seconds


def timed(function, *args):
    clock = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - clock


def export_in_child(store: Path, fmt: str, out: Path) -> dict:
    """Runs `extractor export` in a fresh process: its own time and peak RSS, not this process's."""
    code = ("import json, resource, sys, time\n"
            "from pathlib import Path\n"
            "from extractor.commands import run_export\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "clock = time.perf_counter()\n"
            f"result = run_export(store=Path({str(store)!r}), out=Path({str(out)!r}), fmt={fmt!r})\n"
            "seconds = time.perf_counter() - clock\n"
            "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(json.dumps({'rows': result.data['rows'], 'seconds': seconds, 'rss_growth_mb': (peak - base) / 1024}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64, help="rows per committed transaction (a teacher batch)")
    parser.add_argument("--keep", type=Path, help="build the store in this folder and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="store_scale_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "labels.db"
    if path.exists():
        raise SystemExit(f"{path} exists; give an empty --keep folder")
    insert_s = build(path, args.rows, args.classes, args.batch)
    figures = {"rows": args.rows, "classes": args.classes, "batch": args.batch,
               "insert_rows_s": args.rows / insert_s}
    with LabelStore(path) as store:
        digests = [digest(i) for i in range(args.rows)]
        found, lookup_s = timed(store.cached_digests, TEACHER, PREPROCESS, digests)
        assert len(found) == args.rows
        figures["lookup_rows_s"] = args.rows / lookup_s
        frame, read_s = timed(store.labels)
        assert len(frame) == args.rows and frame["relative_path"].notna().all()
        figures["read_rows_s"] = args.rows / read_s
        del frame
        stats, stats_s = timed(store.stats)
        assert stats["labels"] == args.rows
        figures["stats_s"] = stats_s
    for fmt in ("parquet", "csv"):
        result = export_in_child(path, fmt, folder / f"labels.{fmt}")
        assert result["rows"] == args.rows
        figures[f"export_{fmt}_rows_s"] = args.rows / result["seconds"]
        figures[f"export_{fmt}_rss_growth_mb"] = result["rss_growth_mb"]
    figures["store_mb"] = path.stat().st_size / 2**20
    print(json.dumps(figures, indent=1))
    checks = [("insert", figures["insert_rows_s"], TARGET_ROWS_S, ">="),
              ("cache lookup", figures["lookup_rows_s"], TARGET_ROWS_S, ">="),
              ("read (labels())", figures["read_rows_s"], TARGET_ROWS_S, ">="),
              ("export parquet", figures["export_parquet_rows_s"], TARGET_ROWS_S, ">="),
              ("export csv", figures["export_csv_rows_s"], TARGET_ROWS_S, ">="),
              ("store stats", figures["stats_s"], TARGET_STATS_S, "<")]
    print(f"\n{args.rows:,} answers, {args.classes} classes, {args.batch} rows per transaction "
          f"({figures['store_mb']:.0f} MB store)")
    for name, value, target, sense in checks:
        ok = value >= target if sense == ">=" else value < target
        unit = "s" if name == "store stats" else "rows/s"
        print(f"  {name:16s} {value:>12,.2f} {unit:6s} target {sense} {target:,} {'ok' if ok else 'MISSED'}")
    print(f"  export peak RSS growth: parquet {figures['export_parquet_rss_growth_mb']:.0f} MB, "
          f"csv {figures['export_csv_rss_growth_mb']:.0f} MB (chunked: independent of the row count)")
    if not args.keep:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
