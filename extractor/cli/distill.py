"""`extractor distill`: label, train and report in one command, the budget spent in rounds."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from extractor.cli.options import (
    ConcurrencyOption,
    HeaderEnvOption,
    HeldoutOption,
    ImagesOption,
    JsonOption,
    ModelNameOption,
    OutputPolicyOption,
    QuietOption,
    SeedOrderOption,
    StrategyOption,
    StudentLrOption,
    StudentOption,
    TeacherOption,
    WidthOption,
    emit,
    parse_augment,
)
from extractor.students.config import DistillConfig, OptimConfig, StudentConfig


def distill(
    teacher: TeacherOption,
    images: ImagesOption,
    budget: Annotated[int, typer.Option(help="Most images sent to the teacher, held-out images included.")],
    out: Annotated[Path, typer.Option(help="Folder for the rounds' runs, picks and distill.json.")],
    store: Annotated[Path | None, typer.Option(help="SQLite label store file [default: OUT/labels.db].")] = None,
    rounds: Annotated[int, typer.Option(help="Spend the budget in this many rounds of buy -> train -> select.")] = 1,
    strategy: StrategyOption = "random",
    seed: SeedOrderOption = 0,
    size: Annotated[int | None, typer.Option(help="Teacher input side in px [default: from the model].")] = None,
    channels: Annotated[str | None, typer.Option(help="Teacher input: gray | rgb | bgr [default: from the model].")] = None,
    mean: Annotated[str | None, typer.Option(help="Teacher input mean on the 0-255 scale: one or three values.")] = None,
    std: Annotated[str | None, typer.Option(help="Teacher input std on the 0-255 scale: one or three values.")] = None,
    output_policy: OutputPolicyOption = "auto",
    protocol: Annotated[str | None, typer.Option(help="HTTP teachers: the protocol (see `extractor label`).")] = None,
    model_name: ModelNameOption = "",
    header_env: HeaderEnvOption = None,
    concurrency: ConcurrencyOption = 1,
    student: StudentOption = StudentConfig.architecture,
    width: WidthOption = 1.0,
    student_size: Annotated[int | None, typer.Option(help="Student input side in px [default: the teacher's].")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs of each round.")] = OptimConfig.epochs,
    lr: StudentLrOption = None,
    augment: Annotated[str, typer.Option(help="auto | none | a comma list of flip, shift, crop.")] = "auto",
    heldout: HeldoutOption = 0.1,
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
                            device=device, augment=parse_augment(augment),
                            distill=DistillConfig(),
                            optim=OptimConfig(epochs=epochs, seed=seed,
                                              lr=student_cfg.default_lr if lr is None else lr))
    job = DistillJob(source=source, label=LabelConfig(images=images, store=store, workers=workers,
                                                      concurrency=concurrency, quiet=quiet, seed=seed),
                     flags=PreprocessFlags(size, channels, mean, std), train=train_cfg, out=out, budget=budget,
                     rounds=rounds, strategy=strategy)
    emit(run_distill(job), as_json)
