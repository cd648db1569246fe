"""The `extractor` command line: parse flags, build a config, call one library function."""
from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from extractor.errors import ExtractionError
from extractor.students.config import DistillConfig, HintConfig, OptimConfig, SlimmableConfig, StudentConfig

# rich_markup_mode=None: plain click help and usage errors; rendering them with rich costs ~0.15 s of imports.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Black-box model extraction: label images with an opaque teacher, train a compact "
                       "student on its answers, report what you got.")
store_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Inspect and export the label store.")
app.add_typer(store_app, name="store")

StoreOption = Annotated[Path, typer.Option("--store", help="SQLite label store file.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


@app.command()
def label(
    teacher: Annotated[str, typer.Option(help="Teacher: an .onnx file, or an http(s):// URL with --protocol.")],
    images: Annotated[Path, typer.Option(help="Folder of images, searched recursively by content.")],
    store: StoreOption = Path("labels.db"),
    size: Annotated[Optional[int], typer.Option(help="Square input side in px [default: from the model].")] = None,
    channels: Annotated[Optional[str], typer.Option(help="gray | rgb | bgr [default: from the model].")] = None,
    mean: Annotated[Optional[str], typer.Option(help="Mean on the 0-255 scale: one value or three, comma-separated.")] = None,
    std: Annotated[Optional[str], typer.Option(help="Std on the 0-255 scale: one value or three, comma-separated.")] = None,
    center_crop: Annotated[float, typer.Option(help="Keep this fraction of the shorter side, centred.")] = 1.0,
    faces: Annotated[str, typer.Option(help="none | detect | fallback-center: crop the face (MTCNN) first.")] = "none",
    face_margin: Annotated[float, typer.Option(help="Fraction of the face box added on each side.")] = 0.2,
    face_align: Annotated[bool, typer.Option("--face-align", help="Align the eyes to a fixed template.")] = False,
    face_min_score: Annotated[float, typer.Option(help="Detections below this confidence count as no face.")] = 0.9,
    output_policy: Annotated[str, typer.Option(help="auto | logits | probs: what the teacher's scores are.")] = "auto",
    protocol: Annotated[Optional[str], typer.Option(help="HTTP teachers: kserve-v2 | kserve-v1 | torchserve | json.")] = None,
    model_name: Annotated[str, typer.Option(help="HTTP teachers: the model's name on the server.")] = "",
    model_version: Annotated[Optional[str], typer.Option(help="HTTP teachers: pin this model version.")] = None,
    header: Annotated[Optional[list[str]], typer.Option(help="'Name: value' request header (secret; repeatable).")] = None,
    header_env: Annotated[Optional[list[str]], typer.Option(help="'Name=ENVVAR': header value from the environment.")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Class names in index order: comma list or a file.")] = None,
    json_spec: Annotated[Optional[Path], typer.Option(help="--protocol json: the request/answer spec file.")] = None,
    ca_bundle: Annotated[Optional[Path], typer.Option(help="HTTP teachers: CA bundle for a private CA.")] = None,
    timeout: Annotated[float, typer.Option(help="HTTP teachers: seconds per connect/read.")] = 30.0,
    retries: Annotated[int, typer.Option(help="HTTP teachers: retries on errors, 429 and 5xx.")] = 4,
    max_rps: Annotated[Optional[float], typer.Option(help="HTTP teachers: most requests per second.")] = None,
    request_batch: Annotated[Optional[int], typer.Option(help="HTTP teachers: images per request.")] = None,
    input_name: Annotated[Optional[str], typer.Option(
        help="kserve-v2: the input tensor's name [default: from the model's metadata, else input-0].")] = None,
    output_name: Annotated[Optional[str], typer.Option(
        help="Which named output holds the scores (ONNX, kserve-v2, kserve-v1) [default: the first].")] = None,
    tensor_format: Annotated[str, typer.Option(
        help="kserve-v2: auto | binary | json: tensors as raw bytes (binary tensor data extension) or JSON "
             "numbers; auto: binary unless the server refuses it.")] = "auto",
    concurrency: Annotated[int, typer.Option(help="Teacher calls in flight at once.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Images per teacher call.")] = 64,
    workers: Annotated[int, typer.Option(help="Decode processes (0: decode inline).")] = os.cpu_count() or 1,
    budget: Annotated[Optional[int], typer.Option(help="Most images ever sent to the teacher for this job.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say how many images would be sent.")] = False,
    canary: Annotated[int, typer.Option(help="Re-query this many cached images; warn if answers changed.")] = 0,
    views: Annotated[int, typer.Option(
        help="Views per image: the plain image and K-1 deterministic augmented views, each a query (--budget "
             "counts every view) with its own cache key; `extractor train` draws among them.")] = 1,
    view_augment: Annotated[str, typer.Option(
        help="What the augmented views of --views may do: a comma list of flip, shift, crop.")] = "flip,shift",
    executor: Annotated[str, typer.Option(
        help="local | ray: decode and ask the teacher on this machine, or on a Ray cluster (pip install "
             "'extractor-distill[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(
        help="--executor ray: the cluster, auto or HOST:PORT [default: start one on this machine].")] = None,
    ray_actors: Annotated[int, typer.Option(
        help="--executor ray: label workers, each loading the teacher once (0: one per cluster CPU).")] = 0,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Send every image the store has no answer for to the teacher, and keep its answers."""
    from extractor.commands import run_label
    from extractor.datasets.faces import FaceSpec
    from extractor.teacher_source import TeacherSource, read_classes

    face_spec = FaceSpec(mode=faces, margin=face_margin, align=face_align, min_score=face_min_score)  # type: ignore[arg-type]
    source = TeacherSource(teacher=teacher, protocol=protocol, model_name=model_name, model_version=model_version,
                           headers=tuple(header or ()), header_env=tuple(header_env or ()), timeout_s=timeout,
                           retries=retries, max_rps=max_rps, request_batch=request_batch,
                           classes=read_classes(classes), json_spec=json_spec, output_policy=output_policy,
                           ca_bundle=ca_bundle, input_name=input_name, output_name=output_name,
                           tensor_format=tensor_format)
    summary = run_label(source, images=images, store=store, size=size, channels=channels, mean=mean, std=std,
                        center_crop=center_crop, faces=face_spec, batch_size=batch_size, workers=workers, concurrency=concurrency,
                        budget=budget, dry_run=dry_run, canary=canary, quiet=quiet or as_json, executor=executor,
                        ray_address=ray_address, ray_actors=ray_actors, views=views,
                        view_augment=tuple(a.strip() for a in view_augment.split(",") if a.strip()))
    _emit(summary, as_json)
    if summary.data.get("stopped"):  # the summary says why; the exit status says the job did not finish
        raise typer.Exit(1)


@app.command()
def train(
    store: StoreOption = Path("labels.db"),
    out: Annotated[Path, typer.Option(help="Run directory for checkpoints, metrics and student.onnx.")] = Path("runs/student"),
    teacher: Annotated[Optional[list[str]], typer.Option(
        help="Teacher fingerprint prefix or run directory, :WEIGHT to weigh it; repeat to combine several.")] = None,
    parent: Annotated[Optional[Path], typer.Option(
        help="A run directory whose student teaches (no query to the black box); first of the teachers.")] = None,
    hint: Annotated[bool, typer.Option("--hint", help="Add a FitNet hint loss from the parent run's features.")] = False,
    hint_weight: Annotated[float, typer.Option(help="With --hint: weight of the hint loss.")] = HintConfig.weight,
    hint_layer: Annotated[str, typer.Option(
        help="With --hint: CHILD_MODULE[:PARENT_MODULE] whose outputs are matched.")] = HintConfig.student_layer,
    student: Annotated[str, typer.Option(
        help="squeezenet1_1 | mobilenet_v3_small | resnet8 | resnet20")] = StudentConfig.architecture,
    width: Annotated[float, typer.Option(help="Channel multiplier (mobilenet_v3_small, resnets).")] = 1.0,
    size: Annotated[Optional[int], typer.Option(help="Student input side in px (>= 32) [default: the teacher's].")] = None,
    targets: Annotated[str, typer.Option(help="joint | hard | soft: what the student learns from.")] = "joint",
    alpha: Annotated[float, typer.Option(help="Weight of the soft (KL) term.")] = DistillConfig.alpha,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = DistillConfig.temperature,
    epochs: Annotated[int, typer.Option(help="Passes over the training images.")] = OptimConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = OptimConfig.batch_size,
    lr: Annotated[Optional[float], typer.Option(help="Peak AdamW learning rate [default: the student's].")] = None,
    augment: Annotated[str, typer.Option(
        help="auto (the invariance probe chooses), none, or a comma list of flip, shift, crop used with the "
             "stored answer.")] = "auto",
    shift: Annotated[float, typer.Option(help="Largest shift, as a fraction of the side.")] = 0.125,
    crop_scale: Annotated[float, typer.Option(help="Smallest crop side, as a fraction of the side.")] = 0.75,
    teacher_source: Annotated[Optional[str], typer.Option(
        help="Where the invariance probe reaches the teacher: an .onnx file or http(s) URL [default: as "
             "`extractor label` recorded it].")] = None,
    probe_images: Annotated[int, typer.Option(
        help="Stored images the probe asks the teacher about under each augmentation (0: no probe).")] = 256,
    probe_max_change: Annotated[float, typer.Option(
        help="--augment auto uses augmentations with the stored answer, least changing first, while the "
             "shares of probed images whose answer they change sum to less than this.")] = 0.1,
    probe_budget: Annotated[Optional[int], typer.Option(
        help="Most images the probe may send [default: within the label job's --budget].")] = None,
    views: Annotated[Optional[int], typer.Option(
        help="Use at most this many stored views per image (1: the plain image) [default: all stored].")] = None,
    seed: Annotated[int, typer.Option(help="Seed for weights, order and augmentation.")] = 0,
    heldout: Annotated[float, typer.Option(help="Fraction of images held out for fidelity.")] = 0.1,
    split_by: Annotated[Optional[tuple[Path, str]], typer.Option(help="CSV COLUMN: hold out whole groups (people).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N (auto: CUDA when present).")] = "auto",
    slimmable: Annotated[Optional[str], typer.Option(
        help="Widths, e.g. 1.0,0.75,0.5,0.25: one slimmable student (resnet8 | resnet20 | mobilenet_v1).")] = None,
    inplace: Annotated[Optional[str], typer.Option(
        help="With --slimmable, narrower widths learn from: none (the teacher) | teacher (the widest) | "
             "ta (the next wider width) [default: ta].")] = None,
    sandwich: Annotated[bool, typer.Option(
        help="With --slimmable: widest, narrowest and one random width per step; off trains all.")] = True,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    workers: Annotated[int, typer.Option(help="Decode processes for the one-time tensor cache.")] = os.cpu_count() or 1,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a compact student on the teachers' stored hard and soft answers."""
    from extractor.commands import run_train
    from extractor.config import ProbeConfig, TeacherChoice, TrainConfig

    teachers = ((TeacherChoice(run=parent),) if parent else ()) + tuple(TeacherChoice.parse(t) for t in teacher or ())
    student_cfg = StudentConfig(architecture=student, width=width, size=size)
    cfg = TrainConfig(store=store, out=out, teachers=teachers, hint=HintConfig.from_flags(hint, hint_weight, hint_layer),
                      student=student_cfg, heldout=heldout,
                      split_by=split_by, resume=resume, workers=workers, quiet=quiet or as_json, device=device,
                      augment=tuple(a.strip() for a in augment.split(",") if a.strip() and augment != "none"),
                      shift_frac=shift, crop_scale=crop_scale, views=views,
                      probe=ProbeConfig(images=probe_images, max_change=probe_max_change, teacher_source=teacher_source,
                                        budget=probe_budget),
                      distill=DistillConfig(targets=targets, alpha=alpha, temperature=temperature),  # type: ignore[arg-type]
                      optim=OptimConfig(epochs=epochs, batch_size=batch_size, seed=seed,
                                        lr=student_cfg.default_lr if lr is None else lr),
                      slimmable=SlimmableConfig.from_flags(slimmable, inplace, sandwich))
    _emit(run_train(cfg), as_json)


@app.command()
def chain(
    links: Annotated[str, typer.Option(help="Students in order, architecture[:width] comma-separated, e.g. "
                                            "squeezenet1_1,resnet20:0.5,resnet8:0.5.")],
    store: StoreOption = Path("labels.db"),
    out: Annotated[Path, typer.Option(help="Chain directory: one run directory per link, chain.json.")] = Path("runs/chain"),
    children: Annotated[int, typer.Option(help="Children per link (seeds); the best by held-out fidelity teaches on.")] = 1,
    stop_drop: Annotated[Optional[float], typer.Option(
        help="Stop after the first link more than this many fidelity points below the first link.")] = None,
    teacher: Annotated[Optional[list[str]], typer.Option(
        help="The first link's teachers, as for `extractor train --teacher`.")] = None,
    hint: Annotated[bool, typer.Option("--hint", help="Add a FitNet hint from each link's parent.")] = False,
    hint_weight: Annotated[float, typer.Option(help="With --hint: weight of the hint loss.")] = HintConfig.weight,
    size: Annotated[Optional[int], typer.Option(help="Every link's input side in px (>= 32) [default: the teacher's].")] = None,
    targets: Annotated[str, typer.Option(help="joint | hard | soft: what each link learns from.")] = "joint",
    alpha: Annotated[float, typer.Option(help="Weight of the soft (KL) term.")] = DistillConfig.alpha,
    temperature: Annotated[float, typer.Option(help="Distillation temperature T.")] = DistillConfig.temperature,
    epochs: Annotated[int, typer.Option(help="Passes over the training images, per link.")] = OptimConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = OptimConfig.batch_size,
    lr: Annotated[Optional[float], typer.Option(help="Peak AdamW learning rate [default: each student's own].")] = None,
    augment: Annotated[str, typer.Option(
        help="auto (the first link's invariance probe chooses), none, or a comma list of flip, shift, crop.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the first child of each link (the others: seed+1, ...).")] = 0,
    heldout: Annotated[float, typer.Option(help="Fraction of images held out for fidelity.")] = 0.1,
    split_by: Annotated[Optional[tuple[Path, str]], typer.Option(help="CSV COLUMN: hold out whole groups (people).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N (auto: CUDA when present).")] = "auto",
    workers: Annotated[int, typer.Option(help="Decode processes for the one-time tensor cache.")] = os.cpu_count() or 1,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Distil a chain of students, each from the one before (teacher assistants, iterative distillation)."""
    from extractor.chain import ChainConfig, Link, run_chain
    from extractor.config import TeacherChoice, TrainConfig

    train = TrainConfig(store=store, out=out, teachers=tuple(TeacherChoice.parse(t) for t in teacher or ()),
                        student=StudentConfig(size=size), heldout=heldout, split_by=split_by, workers=workers,
                        quiet=quiet or as_json, device=device,
                        augment=tuple(a.strip() for a in augment.split(",") if a.strip() and augment != "none"),
                        distill=DistillConfig(targets=targets, alpha=alpha, temperature=temperature),  # type: ignore[arg-type]
                        optim=OptimConfig(epochs=epochs, batch_size=batch_size, seed=seed))
    cfg = ChainConfig(train=train, links=Link.parse_list(links), children=children, stop_drop=stop_drop, lr=lr,
                      hint=HintConfig.from_flags(hint, hint_weight, HintConfig.student_layer))
    _emit(run_chain(cfg), as_json)


@app.command()
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
    from extractor.commands import run_reports
    from extractor.teacher_source import read_classes

    _emit(run_reports(run_dir, ground_truth=ground_truth, label_column=label_column,
                     classes=read_classes(classes), price_per_1000=price_per_1000), as_json)


@app.command()
def quantize(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `extractor train` (the fp32 student).")],
    bits: Annotated[int, typer.Option(help="1 binary | 2 ternary weights (trained), 8 int8 (post-training).")],
    out: Annotated[Optional[Path], typer.Option(help="The variant's directory [default: RUN_DIR/<variant>].")] = None,
    epochs: Annotated[int, typer.Option(help="--bits 1|2: training epochs.")] = 4,
    activations: Annotated[int, typer.Option(help="--bits 1|2: 1 binarises activations too, 32 keeps them.")] = 32,
    no_distill: Annotated[bool, typer.Option("--no-distill", help="Baseline: random init, teacher labels only.")] = False,
    lr: Annotated[float, typer.Option(help="--bits 1|2: peak AdamW learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed for weights, order and augmentation.")] = 0,
    calibration_images: Annotated[int, typer.Option(help="--bits 8: training images that calibrate ranges.")] = 256,
    workers: Annotated[int, typer.Option(help="Decode processes, should the tensor cache be gone.")] = 1,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Derive a binary, ternary or int8 variant of a trained student from the stored answers (no new queries)."""
    from extractor.quantize import QuantizeConfig, run_quantize

    cfg = QuantizeConfig(run=run_dir, bits=bits, out=out, epochs=epochs, activations=activations,
                         distill=not no_distill, lr=lr, seed=seed, calibration_images=calibration_images,
                         workers=workers, quiet=quiet or as_json)
    _emit(run_quantize(cfg), as_json)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's teacher, images, store and run.")] = Path("demo-run"),
    epochs: Annotated[int, typer.Option(help="Student training epochs.")] = 12,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Label -> train -> report on a built-in black box (a digits CNN) and images that packages ship."""
    from extractor.demo import run_demo

    _emit(run_demo(out, epochs=epochs, quiet=quiet or as_json), as_json)


@app.command()
def export(
    store: StoreOption = Path("labels.db"),
    out: Annotated[Path, typer.Option(help="Output file.")] = Path("labels.parquet"),
    format: Annotated[str, typer.Option("--format", help="parquet | csv")] = "parquet",
) -> None:
    """Export stored answers (one row per image and teacher) with pandas."""
    from extractor.commands import run_export

    _emit(run_export(store=store, out=out, fmt=format), as_json=False)


@store_app.command("stats")
def store_stats(store: StoreOption = Path("labels.db"), as_json: JsonOption = False) -> None:
    """Counts of answers, jobs, failures and teacher requests."""
    from extractor.commands import run_store_stats

    _emit(run_store_stats(store), as_json)


def _emit(result: object, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.as_dict() if hasattr(result, "as_dict") else result, default=str))
    else:
        typer.echo(result if isinstance(result, str) else getattr(result, "text", None) or str(result))


def main() -> None:
    """Entry point and the one error boundary.

    Typer itself handles usage errors (its usage message, exit 2). Our user errors print one line and
    exit 1; anything else is a bug in extractor and says how to see its traceback.
    """
    debug = os.environ.get("EXTRACTOR_DEBUG") == "1"
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except (ExtractionError, OSError) as exc:  # OSError: a path the user named, a full disk, a closed pipe
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"internal error (a bug in extractor): {type(exc).__name__}: {exc}\n"
                   "run again with EXTRACTOR_DEBUG=1 to see the traceback, and please report it", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
