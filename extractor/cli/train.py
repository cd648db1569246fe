"""`extractor train`, `chain` and `quantize`: flags -> a training config -> one library call."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from extractor.cli.options import (
    AlphaOption,
    BatchSizeOption,
    CacheWorkersOption,
    DeviceOption,
    HeldoutOption,
    HintWeightOption,
    JsonOption,
    QuietOption,
    SplitByOption,
    StoreOption,
    StudentLrOption,
    StudentOption,
    TemperatureOption,
    WidthOption,
    emit,
    parse_augment,
)
from extractor.result import Result
from extractor.students.config import DistillConfig, HintConfig, OptimConfig, SlimmableConfig, StudentConfig

if TYPE_CHECKING:
    from extractor.config import TrainConfig


def train(
    store: StoreOption = Path("labels.db"),
    out: Annotated[Path, typer.Option(help="Run directory for checkpoints, metrics and student.onnx.")] = Path("runs/student"),
    teacher: Annotated[list[str] | None, typer.Option(
        help="Teacher fingerprint prefix or run directory, :WEIGHT to weigh it; repeat to combine several.")] = None,
    parent: Annotated[Path | None, typer.Option(
        help="A run directory whose student teaches (no query to the black box); first of the teachers.")] = None,
    hint: Annotated[bool, typer.Option("--hint", help="Add a FitNet hint loss from the parent run's features.")] = False,
    hint_weight: HintWeightOption = HintConfig.weight,
    hint_layer: Annotated[str, typer.Option(
        help="With --hint: CHILD_MODULE[:PARENT_MODULE] whose outputs are matched.")] = HintConfig.student_layer,
    student: StudentOption = StudentConfig.architecture,
    width: WidthOption = 1.0,
    size: Annotated[int | None, typer.Option(help="Student input side in px (>= 32) [default: the teacher's].")] = None,
    targets: Annotated[str, typer.Option(help="joint | hard | soft: what the student learns from.")] = "joint",
    alpha: AlphaOption = DistillConfig.alpha,
    temperature: TemperatureOption = DistillConfig.temperature,
    epochs: Annotated[int, typer.Option(help="Passes over the training images.")] = OptimConfig.epochs,
    batch_size: BatchSizeOption = OptimConfig.batch_size,
    lr: StudentLrOption = None,
    augment: Annotated[str, typer.Option(
        help="auto (the invariance probe chooses), none, or a comma list of flip, shift, crop used with the "
             "stored answer.")] = "auto",
    shift: Annotated[float, typer.Option(help="Largest shift, as a fraction of the side.")] = 0.125,
    crop_scale: Annotated[float, typer.Option(help="Smallest crop side, as a fraction of the side.")] = 0.75,
    teacher_source: Annotated[str | None, typer.Option(
        help="Where the invariance probe reaches the teacher: an .onnx file or http(s) URL [default: as "
             "`extractor label` recorded it].")] = None,
    probe_images: Annotated[int, typer.Option(
        help="Stored images the probe asks the teacher about under each augmentation (0: no probe).")] = 256,
    probe_max_change: Annotated[float, typer.Option(
        help="--augment auto uses augmentations with the stored answer, least changing first, while the "
             "shares of probed images whose answer they change sum to less than this.")] = 0.1,
    probe_budget: Annotated[int | None, typer.Option(
        help="Most images the probe may send [default: within the label job's --budget].")] = None,
    views: Annotated[int | None, typer.Option(
        help="Use at most this many stored views per image (1: the plain image) [default: all stored].")] = None,
    seed: Annotated[int, typer.Option(help="Seed for weights, order and augmentation.")] = 0,
    heldout: HeldoutOption = 0.1,
    split_by: SplitByOption = None,
    device: DeviceOption = "auto",
    slimmable: Annotated[str | None, typer.Option(
        help="Widths, e.g. 1.0,0.75,0.5,0.25: one slimmable student (resnet8 | resnet20 | mobilenet_v1).")] = None,
    inplace: Annotated[str | None, typer.Option(
        help="With --slimmable, narrower widths learn from: none (the teacher) | teacher (the widest) | "
             "ta (the next wider width) [default: ta].")] = None,
    sandwich: Annotated[bool, typer.Option(
        help="With --slimmable: widest, narrowest and one random width per step; off trains all.")] = True,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    workers: CacheWorkersOption = os.cpu_count() or 1,
    log: Annotated[str | None, typer.Option(
        help="tensorboard | mlflow: also send the metrics, the configuration and the final figures there "
             "(optional extras: pip install \"extractor-distill[tensorboard]\" or [mlflow]).")] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a compact student on the teachers' stored hard and soft answers."""
    from extractor.config import ProbeConfig, TeacherChoice, TrainConfig

    teachers = ((TeacherChoice(run=parent),) if parent else ()) + tuple(TeacherChoice.parse(t) for t in teacher or ())
    student_cfg = StudentConfig(architecture=student, width=width, size=size)
    cfg = TrainConfig(store=store, out=out, teachers=teachers, hint=HintConfig.from_flags(hint, hint_weight, hint_layer),
                      student=student_cfg, heldout=heldout,
                      split_by=split_by, resume=resume, workers=workers, quiet=quiet or as_json, device=device,
                      augment=parse_augment(augment),
                      shift_frac=shift, crop_scale=crop_scale, views=views,
                      probe=ProbeConfig(images=probe_images, max_change=probe_max_change, teacher_source=teacher_source,
                                        budget=probe_budget),
                      distill=DistillConfig(targets=targets, alpha=alpha, temperature=temperature),  # type: ignore[arg-type]
                      optim=OptimConfig(epochs=epochs, batch_size=batch_size, seed=seed,
                                        lr=student_cfg.default_lr if lr is None else lr),
                      slimmable=SlimmableConfig.from_flags(slimmable, inplace, sandwich))
    from extractor.training.tracking import tracking

    with tracking(log, cfg):
        emit(run_train(cfg), as_json)


def chain(
    links: Annotated[str, typer.Option(help="Students in order, architecture[:width] comma-separated, e.g. "
                                            "squeezenet1_1,resnet20:0.5,resnet8:0.5.")],
    store: StoreOption = Path("labels.db"),
    out: Annotated[Path, typer.Option(help="Chain directory: one run directory per link, chain.json.")] = Path("runs/chain"),
    children: Annotated[int, typer.Option(help="Children per link (seeds); the best by held-out fidelity teaches on.")] = 1,
    stop_drop: Annotated[float | None, typer.Option(
        help="Stop after the first link more than this many fidelity points below the first link.")] = None,
    teacher: Annotated[list[str] | None, typer.Option(
        help="The first link's teachers, as for `extractor train --teacher`.")] = None,
    hint: Annotated[bool, typer.Option("--hint", help="Add a FitNet hint from each link's parent.")] = False,
    hint_weight: HintWeightOption = HintConfig.weight,
    size: Annotated[int | None, typer.Option(help="Every link's input side in px (>= 32) [default: the teacher's].")] = None,
    targets: Annotated[str, typer.Option(help="joint | hard | soft: what each link learns from.")] = "joint",
    alpha: AlphaOption = DistillConfig.alpha,
    temperature: TemperatureOption = DistillConfig.temperature,
    epochs: Annotated[int, typer.Option(help="Passes over the training images, per link.")] = OptimConfig.epochs,
    batch_size: BatchSizeOption = OptimConfig.batch_size,
    lr: Annotated[float | None, typer.Option(help="Peak AdamW learning rate [default: each student's own].")] = None,
    augment: Annotated[str, typer.Option(
        help="auto (the first link's invariance probe chooses), none, or a comma list of flip, shift, crop.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the first child of each link (the others: seed+1, ...).")] = 0,
    heldout: HeldoutOption = 0.1,
    split_by: SplitByOption = None,
    device: DeviceOption = "auto",
    workers: CacheWorkersOption = os.cpu_count() or 1,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Distil a chain of students, each from the one before (teacher assistants, iterative distillation)."""
    from extractor.config import TeacherChoice, TrainConfig
    from extractor.schemes.chain import ChainConfig, Link, run_chain

    train = TrainConfig(store=store, out=out, teachers=tuple(TeacherChoice.parse(t) for t in teacher or ()),
                        student=StudentConfig(size=size), heldout=heldout, split_by=split_by, workers=workers,
                        quiet=quiet or as_json, device=device,
                        augment=parse_augment(augment),
                        distill=DistillConfig(targets=targets, alpha=alpha, temperature=temperature),  # type: ignore[arg-type]
                        optim=OptimConfig(epochs=epochs, batch_size=batch_size, seed=seed))
    cfg = ChainConfig(train=train, links=Link.parse_list(links), children=children, stop_drop=stop_drop, lr=lr,
                      hint=HintConfig.from_flags(hint, hint_weight, HintConfig.student_layer))
    emit(run_chain(cfg), as_json)


def quantize(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `extractor train` (the fp32 student).")],
    bits: Annotated[int, typer.Option(help="1 binary | 2 ternary weights (trained), 8 int8 (post-training).")],
    out: Annotated[Path | None, typer.Option(help="The variant's directory [default: RUN_DIR/<variant>].")] = None,
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
    from extractor.schemes.quantize import QuantizeConfig, run_quantize

    cfg = QuantizeConfig(run=run_dir, bits=bits, out=out, epochs=epochs, activations=activations,
                         distill=not no_distill, lr=lr, seed=seed, calibration_images=calibration_images,
                         workers=workers, quiet=quiet or as_json)
    emit(run_quantize(cfg), as_json)


def run_train(cfg: TrainConfig) -> Result:
    from extractor.schemes.slimmable import train_slimmable
    from extractor.training.recipe import train_student

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
