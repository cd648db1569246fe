"""`extractor report`, `export` and `store stats`: read what jobs wrote, shape it for the user."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from extractor.cli.options import JsonOption, QuietOption, StoreOption, emit
from extractor.errors import ConfigError, InputNotFound
from extractor.result import Result
from extractor.store.label_store import LabelStore

_FAILURES_SHOWN = 20


def report(
    run_dir: Annotated[list[Path], typer.Argument(
        help="A run directory written by `extractor train`; several: each one's report and one comparison "
             "table (written to the first).")],
    ground_truth: Annotated[Optional[str], typer.Option(help="LABELS.csv, or 'folders' for class-per-folder trees.")] = None,
    label_column: Annotated[str, typer.Option(help="Ground-truth column of the CSV.")] = "label",
    classes: Annotated[Optional[str], typer.Option(help="Names of the teacher's classes: comma list or file.")] = None,
    price_per_1000: Annotated[Optional[float], typer.Option(
        help="The teacher's price per 1000 images sent: reports what the queries cost.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Measure teacher vs student: size, latency, fidelity, accuracy; write report.{md,json,csv,png}."""
    from extractor.teachers.source import read_classes

    emit(run_reports(run_dir, ground_truth=ground_truth, label_column=label_column,
                     classes=read_classes(classes), price_per_1000=price_per_1000), as_json)


def export(
    store: StoreOption = Path("labels.db"),
    out: Annotated[Path, typer.Option(help="Output file.")] = Path("labels.parquet"),
    format: Annotated[str, typer.Option("--format", help="parquet | csv")] = "parquet",
) -> None:
    """Export stored answers (one row per image and teacher) with pandas."""
    emit(run_export(store=store, out=out, fmt=format), as_json=False)


def store_stats(store: StoreOption = Path("labels.db"), as_json: JsonOption = False) -> None:
    """Counts of answers, jobs, failures and teacher requests."""
    emit(run_store_stats(store), as_json)


def run_export(*, store: Path, out: Path, fmt: str) -> Result:
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"--format must be parquet or csv, got {fmt!r}")
    if not store.exists():
        raise InputNotFound(f"--store {store} does not exist")
    from extractor.store.export import export_labels

    with LabelStore(store) as label_store:
        rows = export_labels(label_store, out, fmt)
    return Result({"rows": rows, "out": str(out)}, f"exported {rows} rows to {out}")


def run_store_stats(store: Path) -> Result:
    if not store.exists():
        raise InputNotFound(f"--store {store} does not exist")
    with LabelStore(store) as label_store:
        stats = label_store.stats()
        last_job = stats["jobs"][-1]["id"] if stats["jobs"] else None
        failures = label_store.failures(last_job) if last_job is not None else None
    lines = [f"{stats['path']}: {stats['labels']} answers for {stats['images']} images, "
             f"{stats['files']} files, {stats['failures']} failures, {len(stats['jobs'])} jobs"]
    lines += [f"  teacher {row['teacher'][:12]} preprocess {row['preprocess'][:12]} {row['kind']}: {row['labels']}"
              for row in stats["by_teacher"]]
    lines += [f"  ledger {row['identity'][:12]}: {row['requests']} requests, {row['images_sent']} images sent, "
              f"{row['retries']} retries, {row['errors']} errors, mean {row['mean_latency_s'] * 1000:.1f} ms"
              for row in stats["requests"]]
    if failures is not None and len(failures):
        stats["last_job_failures"] = failures.to_dict("records")
        lines.append(f"  failures of job {last_job}:")
        lines += [f"    {row.path}: {row.reason}" for row in failures.head(_FAILURES_SHOWN).itertuples()]
        if len(failures) > _FAILURES_SHOWN:
            lines.append(f"    ... and {len(failures) - _FAILURES_SHOWN} more (--json lists them all)")
    return Result(stats, "\n".join(lines))


def run_reports(run_dirs: list[Path], *, ground_truth: str | None, label_column: str, classes: tuple[str, ...],
                price_per_1000: float | None = None) -> Result:
    """One run's report; or each run's report (report.png plots the runs that share its teacher and
    preprocessing by queries) and one comparison table in the first run's directory."""
    if len(run_dirs) == 1:
        return run_report(run_dirs[0], ground_truth=ground_truth, label_column=label_column, classes=classes,
                          price_per_1000=price_per_1000)
    from extractor.reporting.compare import compare_runs

    for run_dir in run_dirs:
        if not (run_dir / "run.json").exists():
            raise InputNotFound(f"{run_dir} is not a training run (no run.json); run `extractor train` first")
    reports = [run_report(run_dir, ground_truth=ground_truth, label_column=label_column, classes=classes,
                          price_per_1000=price_per_1000, peers=run_dirs).data for run_dir in run_dirs]
    return compare_runs(reports, run_dirs[0])


def run_report(run_dir: Path, *, ground_truth: str | None, label_column: str, classes: tuple[str, ...],
               price_per_1000: float | None = None, peers: list[Path] | None = None) -> Result:
    import pandas as pd

    from extractor.schemes.chain import CHAIN_FILE, chain_runs
    from extractor.datasets.ground_truth import from_csv, from_folders
    from extractor.reporting.report import build_report

    runs = chain_runs(run_dir) if (run_dir / CHAIN_FILE).exists() else [run_dir]
    if not runs or not (runs[0] / "run.json").exists():
        raise InputNotFound(f"{run_dir} is not a training run (no run.json) nor a chain with a finished link; "
                            "run `extractor train` or `extractor chain` first")
    truth = None
    if ground_truth:
        run = json.loads((runs[0] / "run.json").read_text())
        paths = sorted({path for directory in runs for path in pd.read_csv(
            directory / "heldout.csv", dtype={"relative_path": str})["relative_path"]})
        truth = (from_folders(Path("."), paths) if ground_truth == "folders"
                 else from_csv(Path(ground_truth), label_column, paths))
        if not truth:
            raise ConfigError(f"--ground-truth {ground_truth} names none of the {len(paths)} held-out images "
                             f"(teacher {run['teacher']['fingerprint'][:12]})")
    if price_per_1000 is not None and not price_per_1000 >= 0:
        raise ConfigError(f"--price-per-1000 must be >= 0, got {price_per_1000}")
    report = build_report(run_dir, ground_truth=truth, class_names=classes or None, price_per_1000=price_per_1000,
                          peers=peers or ())
    return Result(report.data, report.text + f"\nwritten: {run_dir}/report.md, report.json, report.csv, report.png")
