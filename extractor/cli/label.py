"""`extractor label`: flags -> a teacher source and a label job; the job's summary as text."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from extractor.cli.options import (
    ConcurrencyOption,
    HeaderEnvOption,
    ImagesOption,
    JsonOption,
    ModelNameOption,
    OutputPolicyOption,
    QuietOption,
    StoreOption,
    TeacherOption,
    emit,
)
from extractor.result import Result
from extractor.teachers.http import DEFAULT_MAX_ANSWER_MB, registry

if TYPE_CHECKING:
    from extractor.datasets.faces import FaceSpec
    from extractor.labeling.job import LabelSummary
    from extractor.teachers.source import TeacherSource


def label(
    teacher: TeacherOption,
    images: ImagesOption,
    store: StoreOption = Path("labels.db"),
    size: Annotated[int | None, typer.Option(help="Square input side in px [default: from the model].")] = None,
    channels: Annotated[str | None, typer.Option(help="gray | rgb | bgr [default: from the model].")] = None,
    mean: Annotated[str | None, typer.Option(help="Mean on the 0-255 scale: one value or three, comma-separated.")] = None,
    std: Annotated[str | None, typer.Option(help="Std on the 0-255 scale: one value or three, comma-separated.")] = None,
    center_crop: Annotated[float, typer.Option(help="Keep this fraction of the shorter side, centred.")] = 1.0,
    faces: Annotated[str, typer.Option(help="none | detect | fallback-center: crop the face (MTCNN) first.")] = "none",
    face_margin: Annotated[float, typer.Option(help="Fraction of the face box added on each side.")] = 0.2,
    face_align: Annotated[bool, typer.Option("--face-align", help="Align the eyes to a fixed template.")] = False,
    face_min_score: Annotated[float, typer.Option(help="Detections below this confidence count as no face.")] = 0.9,
    output_policy: OutputPolicyOption = "auto",
    protocol: Annotated[str | None, typer.Option(help=f"HTTP teachers: {' | '.join(registry.PROTOCOLS)}.")] = None,
    model_name: ModelNameOption = "",
    model_version: Annotated[str | None, typer.Option(help="HTTP teachers: pin this model version.")] = None,
    header: Annotated[list[str] | None, typer.Option(help="'Name: value' request header (secret; repeatable).")] = None,
    header_env: HeaderEnvOption = None,
    classes: Annotated[str | None, typer.Option(help="Class names in index order: comma list or a file.")] = None,
    json_spec: Annotated[Path | None, typer.Option(help="--protocol json: the request/answer spec file.")] = None,
    ca_bundle: Annotated[Path | None, typer.Option(help="HTTP teachers: CA bundle for a private CA.")] = None,
    timeout: Annotated[float, typer.Option(help="HTTP teachers: seconds per connect/read.")] = 30.0,
    retries: Annotated[int, typer.Option(help="HTTP teachers: retries on errors, 429 and 5xx.")] = 4,
    max_rps: Annotated[float | None, typer.Option(help="HTTP teachers: most requests per second.")] = None,
    request_batch: Annotated[int | None, typer.Option(help="HTTP teachers: images per request.")] = None,
    max_answer_mb: Annotated[float, typer.Option(
        help="HTTP teachers: largest answer read, in MiB after decompression.")] = DEFAULT_MAX_ANSWER_MB,
    input_name: Annotated[str | None, typer.Option(
        help="kserve-v2: the input tensor's name [default: from the model's metadata, else input-0].")] = None,
    output_name: Annotated[str | None, typer.Option(
        help="Which named output holds the scores (ONNX, kserve-v2, kserve-v1) [default: the first].")] = None,
    tensor_format: Annotated[str, typer.Option(
        help="kserve-v2: auto | binary | json: tensors as raw bytes (binary tensor data extension) or JSON "
             "numbers; auto: binary unless the server refuses it.")] = "auto",
    concurrency: ConcurrencyOption = 1,
    batch_size: Annotated[int, typer.Option(help="Images per teacher call.")] = 64,
    workers: Annotated[int, typer.Option(help="Decode processes (0: decode inline).")] = os.cpu_count() or 1,
    budget: Annotated[int | None, typer.Option(help="Most images ever sent to the teacher for this job.")] = None,
    order: Annotated[str, typer.Option(
        help="What --budget buys first: digest (a seeded uniform sample of the images) | path (the first "
             "files by path).")] = "digest",
    seed: Annotated[int, typer.Option(help="Seeds the digest order: another seed, another sample.")] = 0,
    only: Annotated[Path | None, typer.Option(
        help="A file of image paths, one per line (`extractor select --out`): label only these.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say how many images would be sent.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help=(
        "Ask again about images whose answer was invalid (NaN scores, ...); else each is paid for once."))] = False,
    wait_for_store: Annotated[float, typer.Option(help=(
        "Seconds to wait while another job writes the store (inf: until it is done); 0 stops at once with "
        "'store is busy', exit 75."))] = 0.0,
    canary: Annotated[int, typer.Option(help="Re-query this many cached images; warn if answers changed.")] = 0,
    views: Annotated[int, typer.Option(
        help="Views per image: the plain image and K-1 deterministic augmented views, each a query (--budget "
             "counts every view) with its own cache key; `extractor train` draws among them.")] = 1,
    view_augment: Annotated[str, typer.Option(
        help="What the augmented views of --views may do: a comma list of flip, shift, crop.")] = "flip,shift",
    executor: Annotated[str, typer.Option(
        help="local | ray: decode and ask the teacher on this machine, or on a Ray cluster (pip install "
             "'extractor-distill[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="--executor ray: the cluster, auto or HOST:PORT [default: start one on this machine].")] = None,
    ray_actors: Annotated[int, typer.Option(
        help="--executor ray: label workers, each loading the teacher once (0: one per cluster CPU).")] = 0,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Send every image the store has no answer for to the teacher, and keep its answers."""
    from extractor.datasets.faces import FaceSpec
    from extractor.teachers.source import TeacherSource, read_classes

    face_spec = FaceSpec(mode=faces, margin=face_margin, align=face_align, min_score=face_min_score)  # type: ignore[arg-type]
    source = TeacherSource(teacher=teacher, protocol=protocol, model_name=model_name, model_version=model_version,
                           headers=tuple(header or ()), header_env=tuple(header_env or ()), timeout_s=timeout,
                           retries=retries, max_rps=max_rps, request_batch=request_batch,
                           classes=read_classes(classes), json_spec=json_spec, output_policy=output_policy,
                           ca_bundle=ca_bundle, input_name=input_name, output_name=output_name,
                           tensor_format=tensor_format, max_answer_mb=max_answer_mb)
    summary = run_label(source, images=images, store=store, size=size, channels=channels, mean=mean, std=std,
                        center_crop=center_crop, faces=face_spec, batch_size=batch_size, workers=workers, concurrency=concurrency,
                        budget=budget, dry_run=dry_run, canary=canary, quiet=quiet or as_json, executor=executor,
                        ray_address=ray_address, ray_actors=ray_actors, views=views,
                        view_augment=tuple(a.strip() for a in view_augment.split(",") if a.strip()),
                        order=order, seed=seed, only=only,
                        retry_failed=retry_failed, wait_for_store=wait_for_store)
    emit(summary, as_json)
    if summary.data.get("stopped"):  # the summary says why; the exit status says the job did not finish
        raise typer.Exit(1)


def run_label(source: TeacherSource, *, images: Path, store: Path, size: int | None, channels: str | None,
              mean: str | None, std: str | None, center_crop: float, faces: FaceSpec, batch_size: int,
              workers: int, concurrency: int, budget: int | None, dry_run: bool, canary: int,
              quiet: bool, executor: str = "local", ray_address: str | None = None, ray_actors: int = 0,
              views: int = 1, view_augment: tuple[str, ...] = ("flip", "shift"), order: str = "digest",
              seed: int = 0, only: Path | None = None,
              retry_failed: bool = False, wait_for_store: float = 0.0) -> Result:
    """Flags -> a label config -> one label job; its summary as a result."""
    from extractor.config import LabelConfig
    from extractor.datasets.views import training_views
    from extractor.labeling.from_source import PreprocessFlags, label_from_source
    from extractor.labeling.job import LabelInterrupted
    from extractor.labeling.picks import read_picks

    extra_views = training_views(views, view_augment)  # checks --views before the teacher is opened
    picked = read_picks(only, images) if only is not None else None
    cfg = LabelConfig(images=images, store=store, faces=faces, batch_size=batch_size,
                      workers=workers, concurrency=concurrency, budget=budget, dry_run=dry_run, canary=canary,
                      quiet=quiet, executor=executor, ray_address=ray_address, ray_actors=ray_actors,
                      views=extra_views, order=order, seed=seed, only_paths=picked,
                      retry_failed=retry_failed, wait_for_store_s=wait_for_store)
    try:
        summary = label_from_source(source, cfg, PreprocessFlags(size, channels, mean, std, center_crop))
    except LabelInterrupted as exc:  # Ctrl-C or SIGTERM: what it stored, on stderr (not mixed into --json output)
        typer.echo(format_label_summary(exc.summary, store), err=True)
        raise
    return Result(summary.as_dict(), format_label_summary(summary, store))


def format_label_summary(summary: LabelSummary, store: Path) -> str:
    """The job's summary as the lines `extractor label` prints."""
    if summary.dry_run:
        text = (f"dry run: {summary.images} images ({summary.skipped} other files skipped), "
                f"{summary.cached} already cached, "
                f"{summary.queries} images would be sent to the teacher"
                + (f" ({summary.skipped_budget} more held back by --budget)" if summary.skipped_budget else "")
                + (f"; {summary.failed} files cannot be read" if summary.failed else ""))
        folders = summary.by_folder or {}
        if len(folders) > 1 or summary.skipped_budget:
            text += "\nby folder: " + ", ".join(f"{name} {count}" for name, count in folders.items())
        return text
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
    notes = (  # (shown when, line)
        (summary.stopped, f"stopped         {summary.stopped}; {summary.pending} images left for the next run"),
        (summary.interrupted,
         f"interrupted     by {summary.interrupted}; {summary.pending} images left for the next run"),
        (summary.skipped_budget,
         f"held back       {summary.skipped_budget} by --budget (re-run with a larger budget)"),
        (summary.skipped_invalid,
         f"not asked again {summary.skipped_invalid} whose answer was invalid (--retry-failed asks)"),
        (summary.canary_checked,
         f"canary          {summary.canary_changed} of {summary.canary_checked} cached answers changed"),
        (summary.failed, f"failures, with reasons: `extractor store stats --store {store}` (job {summary.job_id})"),
    )
    return "\n".join(lines + [line for shown, line in notes if shown])
