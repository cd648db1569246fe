"""`extractor demo`: the whole job, label -> train -> report, on a black box made from packaged data."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from extractor.cli.label import format_label_summary
from extractor.cli.options import JsonOption, QuietOption, emit
from extractor.cli.report import run_report
from extractor.cli.train import run_train
from extractor.config import LabelConfig, TrainConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.cli.demo_assets import DEMO_SIZE, build_demo_assets
from extractor.labeling.job import label_dataset
from extractor.result import Result
from extractor.run_dir import RunDir
from extractor.store.label_store import LabelStore
from extractor.students.config import OptimConfig, StudentConfig
from extractor.teachers.source import TeacherSource
from extractor.teachers.onnx import OnnxTeacher


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's teacher, images, store and run.")] = Path("demo-run"),
    epochs: Annotated[int, typer.Option(help="Student training epochs.")] = 12,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Label -> train -> report on a built-in black box (a digits CNN) and images that packages ship."""
    emit(run_demo(out, epochs=epochs, quiet=quiet or as_json), as_json)


def run_demo(out: Path, *, epochs: int, quiet: bool) -> Result:
    """Builds the demo teacher and images under ``out``, then labels, trains and reports."""
    assets = build_demo_assets(out)
    store = out / "labels.db"
    teacher = OnnxTeacher(assets.teacher)
    label_cfg = LabelConfig(images=assets.images, store=store, quiet=quiet,
                            preprocess=PreprocessSpec(size=DEMO_SIZE, channels="gray", std=(255.0,)))
    with LabelStore(store) as label_store:
        labeled = label_dataset(label_cfg, teacher, label_store, source=TeacherSource(str(assets.teacher)).as_data())
    run_dir = out / "run"
    # Mirrored digits are other digits: the invariance probe finds that out, and no flip reaches the student.
    # ResNet-8 learns the digits in about a minute on two cores.
    student = StudentConfig(architecture="resnet8", size=DEMO_SIZE)
    trained = run_train(TrainConfig(store=store, out=run_dir, student=student, quiet=quiet,
                                    resume=RunDir(run_dir).has_checkpoint, optim=OptimConfig(epochs=epochs)))
    report = run_report(run_dir, ground_truth="folders", label_column="label", classes=())
    text = "\n\n".join([
        f"1. label: {assets.teacher.name} (a digits CNN, now a black box) over {assets.images}\n"
        + format_label_summary(labeled, store),
        f"2. train: {trained.data['student']} on hard + soft answers\n{trained.text}",
        f"3. report\n{report.text}",
    ])
    return Result({"label": labeled.as_dict(), "train": trained.data, "report": report.data}, text)
