"""Options that several commands share, and how a command prints its result."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

StoreOption = Annotated[Path, typer.Option("--store", help="SQLite label store file.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
TeacherOption = Annotated[str, typer.Option(help="Teacher: an .onnx file, or an http(s):// URL with --protocol.")]
ImagesOption = Annotated[Path, typer.Option(help="Folder of images, searched recursively by content.")]
SeedOrderOption = Annotated[int, typer.Option("--seed", help="Seeds the fair order of purchases and the student.")]
StrategyOption = Annotated[str, typer.Option(
    help="random | entropy | margin | kcenter | disagreement: how the next images are chosen.")]
OutputPolicyOption = Annotated[str, typer.Option(help="auto | logits | probs: what the teacher's scores are.")]
ModelNameOption = Annotated[str, typer.Option(help="HTTP teachers: the model's name on the server.")]
HeaderEnvOption = Annotated[list[str] | None, typer.Option(help="'Name=ENVVAR': header value from the environment.")]
ConcurrencyOption = Annotated[int, typer.Option(help="Teacher calls in flight at once.")]

StudentOption = Annotated[str, typer.Option(help="squeezenet1_1 | mobilenet_v3_small | resnet8 | resnet20")]
WidthOption = Annotated[float, typer.Option(help="Channel multiplier (mobilenet_v3_small, resnets).")]
StudentLrOption = Annotated[float | None, typer.Option(help="Peak AdamW learning rate [default: the student's].")]
HeldoutOption = Annotated[float, typer.Option(help="Fraction of images held out for fidelity.")]
AlphaOption = Annotated[float, typer.Option(help="Weight of the soft (KL) term.")]
TemperatureOption = Annotated[float, typer.Option(help="Distillation temperature T.")]
BatchSizeOption = Annotated[int, typer.Option(help="Images per step.")]
HintWeightOption = Annotated[float, typer.Option(help="With --hint: weight of the hint loss.")]
SplitByOption = Annotated[tuple[Path, str] | None, typer.Option(help="CSV COLUMN: hold out whole groups (people).")]
DeviceOption = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N (auto: CUDA when present).")]
CacheWorkersOption = Annotated[int, typer.Option(help="Decode processes for the one-time tensor cache.")]


def parse_augment(augment: str) -> tuple[str, ...]:
    """--augment as the training config takes it: "none" is no augmentation, else a comma list (auto included)."""
    return tuple(a.strip() for a in augment.split(",") if a.strip() and augment != "none")


def emit(result: object, as_json: bool) -> None:
    """Print a command's result: its text, or with --json its data as one JSON object."""
    if as_json:
        typer.echo(json.dumps(result.as_dict() if hasattr(result, "as_dict") else result, default=str))
    else:
        typer.echo(result if isinstance(result, str) else getattr(result, "text", None) or str(result))

