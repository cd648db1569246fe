"""One library function per CLI command: resolve flags into configs, run the job, shape the result."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets.transforms import PreprocessSpec
from extractor.config import LabelConfig
from extractor.jobs import LabelSummary, label_dataset
from extractor.store import LabelStore
from teachers.onnx import OnnxTeacher


@dataclass(frozen=True)
class Result:
    """A command's outcome: data for `--json`, and text for people."""

    data: dict
    text: str

    def as_dict(self) -> dict:
        return self.data


def parse_floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    """'127.5' or '122.8,117,104.3' -> floats; a clear error names the flag."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise ValueError(f"{flag} takes one or three numbers, e.g. 127.5 or 123.7,116.3,103.5; got {text!r}") from None
    if len(values) not in (1, 3):
        raise ValueError(f"{flag} takes one or three numbers, got {len(values)}")
    return values


def resolve_preprocess(teacher: OnnxTeacher, size: int | None, channels: str | None, mean: str | None,
                       std: str | None, center_crop: float) -> PreprocessSpec:
    """The teacher's preprocessing: flags where given, else what the model's input shape implies."""
    layout = teacher.layout
    default_channels = "gray" if layout.channels == 1 else "rgb"
    return PreprocessSpec(
        size=size or layout.height or 224,
        channels=channels or default_channels,  # type: ignore[arg-type]
        mean=parse_floats(mean, "--mean") or (0.0,),
        std=parse_floats(std, "--std") or (255.0,),
        center_crop=center_crop,
    )


def run_label(*, teacher: str, images: Path, store: Path, size: int | None, channels: str | None,
              mean: str | None, std: str | None, center_crop: float, output_policy: str, batch_size: int,
              workers: int, budget: int | None, dry_run: bool, quiet: bool) -> Result:
    model = OnnxTeacher(teacher, output_policy=output_policy)  # type: ignore[arg-type]
    spec = resolve_preprocess(model, size, channels, mean, std, center_crop)
    cfg = LabelConfig(images=images, store=store, preprocess=spec, batch_size=batch_size, workers=workers,
                      budget=budget, dry_run=dry_run, quiet=quiet)
    with LabelStore(store) as label_store:
        summary = label_dataset(cfg, model, label_store)
    return Result(summary.as_dict(), format_label_summary(summary, store))


def format_label_summary(summary: LabelSummary, store: Path) -> str:
    if summary.dry_run:
        return (f"dry run: {summary.images} files, {summary.cached} already cached, "
                f"{summary.queries} images would be sent to the teacher"
                + (f" ({summary.skipped_budget} more held back by --budget)" if summary.skipped_budget else ""))
    lines = [
        f"images found    {summary.images}" + (f" ({summary.duplicates} duplicate files)" if summary.duplicates else ""),
        f"labeled now     {summary.labeled}",
        f"already cached  {summary.cached}",
        f"failed          {summary.failed}" + (f" ({summary.not_images} not images)" if summary.not_images else ""),
        f"teacher queries {summary.queries}",
        f"time            {summary.seconds:.1f} s ({summary.images_per_s:.0f} img/s)",
    ]
    if summary.skipped_budget:
        lines.append(f"held back       {summary.skipped_budget} by --budget (re-run with a larger budget)")
    if summary.failed:
        lines.append(f"failures are listed by `extractor store stats --store {store}` (job {summary.job_id})")
    return "\n".join(lines)


def run_export(*, store: Path, out: Path, fmt: str) -> Result:
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"--format must be parquet or csv, got {fmt!r}")
    if not store.exists():
        raise FileNotFoundError(f"--store {store} does not exist")
    with LabelStore(store) as label_store:
        frame = label_store.labels()
    frame["soft"] = [None if soft is None else soft.tolist() for soft in frame["soft"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    return Result({"rows": len(frame), "out": str(out)}, f"exported {len(frame)} rows to {out}")


def run_store_stats(store: Path) -> Result:
    if not store.exists():
        raise FileNotFoundError(f"--store {store} does not exist")
    with LabelStore(store) as label_store:
        stats = label_store.stats()
    lines = [f"{stats['path']}: {stats['labels']} answers for {stats['images']} images, "
             f"{stats['files']} files, {stats['failures']} failures, {len(stats['jobs'])} jobs"]
    lines += [f"  teacher {row['teacher'][:12]} preprocess {row['preprocess'][:12]} {row['kind']}: {row['labels']}"
              for row in stats["by_teacher"]]
    lines += [f"  ledger {row['identity'][:12]}: {row['requests']} requests, {row['images_sent']} images sent, "
              f"{row['retries']} retries, {row['errors']} errors, mean {row['mean_latency_s'] * 1000:.1f} ms"
              for row in stats["requests"]]
    return Result(stats, "\n".join(lines))
