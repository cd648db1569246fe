"""`extractor store stats | check | backup` and `extractor export`: look after the label store and read it out."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from extractor.cli.options import JsonOption, StoreOption, emit
from extractor.errors import CacheError, ConfigError, InputNotFound
from extractor.result import Result

_FAILURES_SHOWN = 20
_RECOVER = ("restore it from a backup (`extractor store backup` makes one); `sqlite3 {store} .recover | sqlite3 "
            "salvaged.db` copies out what can still be read")


def export(
    store: StoreOption = Path("labels.db"),
    out: Annotated[Path, typer.Option(help="Output file (never the store itself).")] = Path("labels.parquet"),
    format: Annotated[str, typer.Option("--format", help="parquet | csv")] = "parquet",
) -> None:
    """Export stored answers (one row per image and teacher) with pandas."""
    emit(run_export(store=store, out=out, fmt=format), as_json=False)


def store_stats(store: StoreOption = Path("labels.db"), as_json: JsonOption = False) -> None:
    """Counts of answers, jobs, failures and teacher requests, after `store check` says the store is healthy."""
    result = run_store_stats(store)
    emit(result, as_json)
    if not result.data["health"]["healthy"]:
        raise typer.Exit(1)


def store_check(store: StoreOption = Path("labels.db"), as_json: JsonOption = False) -> None:
    """SQLite's integrity check and the store's own invariants; exits 1 when the store is not healthy."""
    result = run_store_check(store)
    emit(result, as_json)
    if not result.data["healthy"]:
        raise typer.Exit(1)


def store_backup(
    out: Annotated[Path, typer.Option(help="The copy: a new file, one self-contained database.")],
    store: StoreOption = Path("labels.db"),
    as_json: JsonOption = False,
) -> None:
    """Copy the store safely (SQLite's backup API: its -wal included), even while a job writes it."""
    emit(run_store_backup(store=store, out=out), as_json)


def run_export(*, store: Path, out: Path, fmt: str) -> Result:
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"--format must be parquet or csv, got {fmt!r}")
    _require(store)
    from extractor.store.export import export_labels
    from extractor.store.files import refuse_store_paths
    from extractor.store.label_store import LabelStore

    refuse_store_paths(out, store)  # before the store is even opened
    with LabelStore(store) as label_store:
        rows = export_labels(label_store, out, fmt)
    return Result({"rows": rows, "out": str(out)}, f"exported {rows} rows to {out}")


def run_store_check(store: Path) -> Result:
    from extractor.store.check import check_store

    _require(store)
    report = check_store(store)
    return Result(report.as_dict(), _health_text(report))


def run_store_stats(store: Path) -> Result:
    """The store's counts, with its health: the check runs first, so a damaged store is never called healthy."""
    from extractor.reporting.answer_format import store_answer_formats
    from extractor.store.check import check_store
    from extractor.store.label_store import LabelStore

    _require(store)
    report = check_store(store, thorough=False)  # every page and every answer; `store check` adds the indexes
    if report.foreign is not None:
        raise CacheError(f"{store} is not a usable label store: {report.foreign}; nothing was changed")
    if not report.healthy:
        return Result({"path": str(store), "health": report.as_dict()}, _health_text(report))
    with LabelStore(store) as label_store:
        stats = label_store.stats()
        last_job = stats["jobs"][-1]["id"] if stats["jobs"] else None
        failures = label_store.failures(last_job) if last_job is not None else None
        stats["answer_formats"] = store_answer_formats(label_store)  # what each teacher really gave
    stats["health"] = report.as_dict()
    stages = ", ".join(f"{count} {stage}" for stage, count in stats["failures_by_stage"].items())
    lines = [f"{stats['path']}: {stats['labels']} answers for {stats['images']} images, "
             f"{stats['files']} files, {stats['failures']} failures{f' ({stages})' if stages else ''}, "
             f"{len(stats['jobs'])} jobs"]
    if stats["invalid_answers"]:
        lines.append(f"  invalid answers {stats['invalid_answers']}: images the teacher answered unusably (paid "
                     "for; not asked again unless `extractor label --retry-failed`)")
    lines += [f"  teacher {row['teacher'][:12]} preprocess {row['preprocess'][:12]} {row['kind']}: {row['labels']}"
              for row in stats["by_teacher"]]
    lines += [f"  answers {row['teacher'][:12]} preprocess {row['preprocess'][:12]}: {row['line']}"
              + "".join(f"\n    warning: {warning}" for warning in row["warnings"]) for row in stats["answer_formats"]]
    lines += [f"  ledger {row['identity'][:12]}: {row['requests']} requests, {row['images_sent']} images sent, "
              f"{row['retries']} retries, {row['errors']} errors"
              + (f" ({row['lost']} in flight when a job was killed, counted as sent)" if row["lost"] else "")
              + f", mean {row['mean_latency_s'] * 1000:.1f} ms" for row in stats["requests"]]
    if failures is not None and len(failures):
        stats["last_job_failures"] = failures.to_dict("records")
        lines.append(f"  failures of job {last_job}:")
        lines += [f"    {row.path}: {row.reason}" for row in failures.head(_FAILURES_SHOWN).itertuples()]
        if len(failures) > _FAILURES_SHOWN:
            lines.append(f"    ... and {len(failures) - _FAILURES_SHOWN} more (--json lists them all)")
    lines.append(_health_text(report))
    return Result(stats, "\n".join(lines))


def run_store_backup(*, store: Path, out: Path) -> Result:
    from extractor.store.backup import backup_store

    _require(store)
    done = backup_store(store, out)
    return Result(done, f"backed up {store} ({done['answers']} answers) to {out} "
                        f"({done['bytes'] / 2**20:.1f} MiB) in {done['seconds']:.1f} s")


def _health_text(report: object) -> str:
    if report.healthy:
        return (f"healthy: SQLite's {report.check} passed and {report.answers} answers are sound "
                f"({report.seconds:.1f} s)" + "".join(f"\n  note: {note}" for note in report.notes))
    lines = [f"{report.path} is NOT healthy:"]
    lines += [f"  integrity: {line}" for line in report.integrity if line != "ok"]
    lines += [f"  problem: {problem}" for problem in report.problems]
    if report.damaged:
        lines.append("  " + _RECOVER.format(store=report.path))
    return "\n".join(lines)


def _require(store: Path) -> None:
    if not store.exists():
        raise InputNotFound(f"--store {store} does not exist")
    if store.is_dir():
        raise InputNotFound(f"--store {store} is a directory; give the store's .db file")

