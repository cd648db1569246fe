"""One library function per CLI command: resolve flags into configs, run the job, shape the result."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from extractor.config import LabelConfig
from extractor.datasets.faces import FaceDetector, FaceSpec
from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.views import training_views
from extractor.errors import ConfigError, InputNotFound
from extractor.jobs import LabelSummary, label_dataset
from extractor.result import Result
from extractor.store import LabelStore
from extractor.teacher_source import TeacherOpener, TeacherSource, open_teacher
from extractor.teachers.base import Teacher

if TYPE_CHECKING:
    from extractor.training import TrainConfig

_FAILURES_SHOWN = 20


def parse_floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    """'127.5' or '122.8,117,104.3' -> floats; a clear error names the flag."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise ConfigError(f"{flag} takes one or three numbers, e.g. 127.5 or 123.7,116.3,103.5; got {text!r}") from None
    if len(values) not in (1, 3):
        raise ConfigError(f"{flag} takes one or three numbers, got {len(values)}")
    return values


def resolve_preprocess(teacher: Teacher, size: int | None, channels: str | None, mean: str | None,
                       std: str | None, center_crop: float) -> PreprocessSpec:
    """The teacher's preprocessing: flags where given, else what the model's input shape implies.

    Image-input teachers (they encode images themselves) keep the crop's own size unless --size is given.
    """
    shape = teacher.input_shape or (None, None, None)  # (C, H, W) with None for unknown dims
    default_channels = "gray" if shape[0] == 1 else "rgb"
    default_size = None if teacher.input_format == "image" else shape[1] or 224
    return PreprocessSpec(
        size=size or default_size,
        channels=channels or default_channels,  # type: ignore[arg-type]
        mean=parse_floats(mean, "--mean") or (0.0,),
        std=parse_floats(std, "--std") or (255.0,),
        center_crop=center_crop,
    )


def run_label(source: TeacherSource, *, images: Path, store: Path, size: int | None, channels: str | None,
              mean: str | None, std: str | None, center_crop: float, faces: FaceSpec, batch_size: int,
              workers: int, concurrency: int, budget: int | None, dry_run: bool, canary: int,
              quiet: bool, executor: str = "local", ray_address: str | None = None, ray_actors: int = 0,
              views: int = 1, view_augment: tuple[str, ...] = ("flip", "shift")) -> Result:
    extra_views = training_views(views, view_augment)  # checks --views before the teacher is opened
    model = open_teacher(source)
    spec = resolve_preprocess(model, size, channels, mean, std, center_crop)
    cfg = LabelConfig(images=images, store=store, preprocess=spec, faces=faces, batch_size=batch_size,
                      workers=workers, concurrency=concurrency, budget=budget, dry_run=dry_run, canary=canary,
                      quiet=quiet, executor=executor, ray_address=ray_address, ray_actors=ray_actors,
                      views=extra_views)
    detector = FaceDetector() if faces.mode != "none" else None
    with LabelStore(store) as label_store:
        summary = label_dataset(cfg, model, label_store, detector=detector, opener=TeacherOpener.of(source),
                                source=source.as_data())
    return Result(summary.as_dict(), format_label_summary(summary, store))


def format_label_summary(summary: LabelSummary, store: Path) -> str:
    if summary.dry_run:
        return (f"dry run: {summary.images} images ({summary.skipped} other files skipped), "
                f"{summary.cached} already cached, "
                f"{summary.queries} images would be sent to the teacher"
                + (f" ({summary.skipped_budget} more held back by --budget)" if summary.skipped_budget else ""))
    lines = [
        f"images found    {summary.images}" + (f" ({summary.duplicates} duplicate files)" if summary.duplicates else ""),
        f"labeled now     {summary.labeled}",
        f"already cached  {summary.cached}",
        *([f"views           {summary.views} per image ({summary.view_cached} augmented views already cached)"]
          if summary.views > 1 else []),
        *([f"faces detected  {summary.faces_detected}"] if summary.faces_detected else []),
        f"skipped         {summary.skipped} (not images)",
        f"failed          {summary.failed}"
        + (f" ({summary.not_images} named like images but not images)" if summary.not_images else ""),
        f"teacher queries {summary.queries}"
        + (f" (tensors in {summary.tensor_format})" if summary.tensor_format else ""),
        f"time            {summary.seconds:.1f} s ({summary.images_per_s:.0f} img/s)",
    ]
    if summary.stopped:
        lines.append(f"stopped         {summary.stopped}; {summary.pending} images left for the next run")
    if summary.skipped_budget:
        lines.append(f"held back       {summary.skipped_budget} by --budget (re-run with a larger budget)")
    if summary.canary_checked:
        lines.append(f"canary          {summary.canary_changed} of {summary.canary_checked} cached answers changed")
    if summary.failed:
        lines.append(f"failures, with reasons: `extractor store stats --store {store}` (job {summary.job_id})")
    return "\n".join(lines)


def run_export(*, store: Path, out: Path, fmt: str) -> Result:
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"--format must be parquet or csv, got {fmt!r}")
    if not store.exists():
        raise InputNotFound(f"--store {store} does not exist")
    from extractor.export import export_labels

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


def run_train(cfg: TrainConfig) -> Result:
    from extractor.slimmable_training import train_slimmable
    from extractor.training import train_student

    result = (train_slimmable if cfg.slimmable else train_student)(cfg)
    text = (f"student trained: {result.fidelity:.1%} held-out fidelity on {result.heldout_images} images "
            f"({result.train_images} trained on, {result.epochs} epochs, {result.seconds / 60:.1f} min)\n"
            + (f"agreement with the parent run's student {result.fidelity_to_parent:.1%} (fidelity above: to the "
               "original black-box teacher)\n" if result.fidelity_to_parent is not None else "")
            + f"ONNX export {result.out / 'student.onnx'} matches torch within {result.onnx_max_abs_diff:.1e}\n"
            + format_augment_policy(result.augment_policy, result.invariance)
            + (f"slimmable widths {', '.join(map(str, cfg.slimmable.widths))}: student_w{{width}}.onnx each\n"
               if cfg.slimmable else "")
            + f"next: extractor report {result.out}")
    return Result(result.as_dict(), text)


def format_augment_policy(policy: dict[str, str] | None, probe: dict | None) -> str:
    """One line: what each augmentation did, and what the invariance probe measured."""
    if not policy:
        return ""
    changed = (probe or {}).get("changed") or {}
    parts = [f"{name} {use}" + (f" ({changed[name]:.0%} changed)" if name in changed else "")
             for name, use in policy.items()]
    note = (probe or {}).get("note")
    return ("augmentations   " + ", ".join(parts) + (f"; probe of {probe['images']} images" if changed else "")
            + (f"; {note}" if note else "") + "\n")


def run_reports(run_dirs: list[Path], *, ground_truth: str | None, label_column: str, classes: tuple[str, ...],
                price_per_1000: float | None = None) -> Result:
    """One run's report; or each run's report (report.png plots the runs that share its teacher and
    preprocessing by queries) and one comparison table in the first run's directory."""
    if len(run_dirs) == 1:
        return run_report(run_dirs[0], ground_truth=ground_truth, label_column=label_column, classes=classes,
                          price_per_1000=price_per_1000)
    from extractor.compare import compare_runs

    for run_dir in run_dirs:
        if not (run_dir / "run.json").exists():
            raise InputNotFound(f"{run_dir} is not a training run (no run.json); run `extractor train` first")
    reports = [run_report(run_dir, ground_truth=ground_truth, label_column=label_column, classes=classes,
                          price_per_1000=price_per_1000, peers=run_dirs).data for run_dir in run_dirs]
    return compare_runs(reports, run_dirs[0])


def run_report(run_dir: Path, *, ground_truth: str | None, label_column: str, classes: tuple[str, ...],
               price_per_1000: float | None = None, peers: list[Path] | None = None) -> Result:
    import pandas as pd

    from extractor.chain import CHAIN_FILE, chain_runs
    from extractor.datasets.ground_truth import from_csv, from_folders
    from extractor.report import build_report

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
