"""Options that several commands share, and how a command prints its result."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

StoreOption = Annotated[Path, typer.Option("--store", help="SQLite label store file.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def emit(result: object, as_json: bool) -> None:
    """Print a command's result: its text, or with --json its data as one JSON object."""
    if as_json:
        typer.echo(json.dumps(result.as_dict() if hasattr(result, "as_dict") else result, default=str))
    else:
        typer.echo(result if isinstance(result, str) else getattr(result, "text", None) or str(result))

TeacherOption = Annotated[str, typer.Option(help="Teacher: an .onnx file, or an http(s):// URL with --protocol.")]
ImagesOption = Annotated[Path, typer.Option(help="Folder of images, searched recursively by content.")]
SeedOrderOption = Annotated[int, typer.Option("--seed", help="Seeds the fair order of purchases and the student.")]
StrategyOption = Annotated[str, typer.Option(
    help="random | entropy | margin | kcenter | disagreement: how the next images are chosen.")]
