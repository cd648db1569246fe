"""`extractor distill`: label, train and report in one command, the budget spent in rounds."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from extractor.cli.options import (
    ImagesOption,
    JsonOption,
    QuietOption,
    SeedOrderOption,
    StrategyOption,
    TeacherOption,
    emit,
)
from extractor.students.config import DistillConfig, OptimConfig, StudentConfig


def distill(
    teacher: TeacherOption,
    images: ImagesOption,
    budget: Annotated[int, typer.Option(help="Most images sent to the teacher, held-out images included.")],
    out: Annotated[Path, typer.Option(help="Folder for the rounds' runs, picks and distill.json.")],
    store: Annotated[Optional[Path], typer.Option(help="SQLite label store file [default: OUT/labels.db].")] = None,
    rounds: Annotated[int, typer.Option(help="Spend the budget in this many rounds of buy -> train -> select.")] = 1,
    strategy: StrategyOption = "random",
    seed: SeedOrderOption = 0,
    size: Annotated[Optional[int], typer.Option(help="Teacher input side in px [default: from the model].")] = None,
    channels: Annotated[Optional[str], typer.Option(help="Teacher input: gray | rgb | bgr [default: from the model].")] = None,
    mean: Annotated[Optional[str], typer.Option(help="Teacher input mean on the 0-255 scale: one or three values.")] = None,
    std: Annotated[Optional[str], typer.Option(help="Teacher input std on the 0-255 scale: one or three values.")] = None,
    output_policy: Annotated[str, typer.Option(help="auto | logits | probs: what the teacher's scores are.")] = "auto",
    protocol: Annotated[Optional[str], typer.Option(help="HTTP teachers: the protocol (see `extractor label`).")] = None,
    model_name: Annotated[str, typer.Option(help="HTTP teachers: the model's name on the server.")] = "",
    header_env: Annotated[Optional[list[str]], typer.Option(help="'Name=ENVVAR': header value from the environment.")] = None,
    concurrency: Annotated[int, typer.Option(help="Teacher calls in flight at once.")] = 1,
    student: Annotated[str, typer.Option(
        help="squeezenet1_1 | mobilenet_v3_small | resnet8 | resnet20")] = StudentConfig.architecture,
    width: Annotated[float, typer.Option(help="Channel multiplier (mobilenet_v3_small, resnets).")] = 1.0,
    student_size: Annotated[Optional[int], typer.Option(help="Student input side in px [default: the teacher's].")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs of each round.")] = OptimConfig.epochs,
    lr: Annotated[Optional[float], typer.Option(help="Peak AdamW learning rate [default: the student's].")] = None,
    augment: Annotated[str, typer.Option(help="auto | none | a comma list of flip, shift, crop.")] = "auto",
    heldout: Annotated[float, typer.Option(help="Fraction of images held out for fidelity.")] = 0.1,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    workers: Annotated[int, typer.Option(help="Decode processes.")] = os.cpu_count() or 1,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Label -> train -> report in one command; with --rounds, buy a fair sample, then let the student choose."""
    from extractor.config import LabelConfig, TrainConfig
    from extractor.labeling.from_source import PreprocessFlags
    from extractor.schemes.distill import DistillJob, run_distill
    from extractor.teachers.source import TeacherSource

    quiet = quiet or as_json
    store = store or out / "labels.db"
    source = TeacherSource(teacher=teacher, protocol=protocol, model_name=model_name,
                           header_env=tuple(header_env or ()), output_policy=output_policy)
    student_cfg = StudentConfig(architecture=student, width=width, size=student_size)
    train_cfg = TrainConfig(store=store, out=out, student=student_cfg, heldout=heldout, workers=workers, quiet=quiet,
                            device=device, augment=tuple(a.strip() for a in augment.split(",")
                                                         if a.strip() and augment != "none"),
                            distill=DistillConfig(),
                            optim=OptimConfig(epochs=epochs, seed=seed,
                                              lr=student_cfg.default_lr if lr is None else lr))
    job = DistillJob(source=source, label=LabelConfig(images=images, store=store, workers=workers,
                                                      concurrency=concurrency, quiet=quiet, seed=seed),
                     flags=PreprocessFlags(size, channels, mean, std), train=train_cfg, out=out, budget=budget,
                     rounds=rounds, strategy=strategy)
    emit(run_distill(job), as_json)
