"""`extractor report`: read what training runs wrote, shape it for the user."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from extractor.cli.options import JsonOption, emit
from extractor.cli.store import run_export, run_store_stats  # noqa: F401  (moved; benchmarks import them here)
from extractor.errors import ConfigError, InputNotFound
from extractor.result import Result


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


def run_reports(run_dirs: list[Path], *, ground_truth: str | None, label_column: str, classes: tuple[str, ...],
                price_per_1000: float | None = None) -> Result:
    """One run's report; or each run's report (report.png plots the runs that share its teacher and
    preprocessing by queries) and one comparison table in the first run's directory."""
    if len(run_dirs) == 1:
        return run_report(run_dirs[0], ground_truth=ground_truth, label_column=label_column, classes=classes,
                          price_per_1000=price_per_1000)
    from extractor.reporting.compare import compare_runs
    from extractor.run_dir import RunDir

    for run_dir in run_dirs:
        RunDir(run_dir).require_finished("a comparison")
    reports = [run_report(run_dir, ground_truth=ground_truth, label_column=label_column, classes=classes,
                          price_per_1000=price_per_1000, peers=run_dirs).data for run_dir in run_dirs]
    return compare_runs(reports, run_dirs[0])


def run_report(run_dir: Path, *, ground_truth: str | None, label_column: str, classes: tuple[str, ...],
               price_per_1000: float | None = None, peers: list[Path] | None = None) -> Result:
    from extractor.datasets.ground_truth import from_csv, from_folders
    from extractor.reporting.report import build_report
    from extractor.run_dir import RunDir

    runs = RunDir(run_dir).runs()
    if not runs:
        raise InputNotFound(f"{run_dir} is not a training run (no run.json) nor a chain with a finished link; "
                            "run `extractor train` or `extractor chain` first")
    truth = None
    if ground_truth:
        run = runs[0].run()
        paths = sorted({path for directory in runs for path in directory.heldout()["relative_path"]})
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
