"""`extractor select`: which unanswered images a trained student would buy next."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from extractor.cli.options import ImagesOption, JsonOption, SeedOrderOption, StrategyOption, emit


def select(
    run: Annotated[Path, typer.Argument(help="A run directory written by `extractor train`.")],
    images: ImagesOption,
    count: Annotated[int, typer.Option(help="How many images to pick.")],
    out: Annotated[Path, typer.Option(help="Picks file: one image path per line, for `extractor label --only`.")],
    strategy: StrategyOption = "entropy",
    other: Annotated[Optional[Path], typer.Option(
        help="--strategy disagreement: the second student's run [default: the run's parent].")] = None,
    seed: SeedOrderOption = 0,
    workers: Annotated[int, typer.Option(help="Decode processes (0: decode inline).")] = os.cpu_count() or 1,
    as_json: JsonOption = False,
) -> None:
    """Score the images the store has no answer for with a trained student; write the best to --out."""
    from extractor.selection.job import SelectConfig, select_images

    emit(select_images(SelectConfig(run=run, images=images, strategy=strategy, count=count, out=out,
                                    other=other, seed=seed, workers=workers)), as_json)
