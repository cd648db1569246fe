"""A training run's directory, and the one place that reads and writes its files.

A run directory holds ``config.json`` (what was asked), ``last.pt``/``best.pt`` (checkpoints),
``metrics.jsonl``, ``student.onnx``, ``heldout.csv`` and, last of all, ``run.json``: a run is finished
when its ``run.json`` and ``student.onnx`` are there. A chain's directory holds ``chain.json`` instead.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extractor.errors import InputNotFound

if TYPE_CHECKING:
    import pandas as pd

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
CHAIN_FILE = "chain.json"
REPORT_FILE = "report.json"
HELDOUT_FILE = "heldout.csv"
METRICS_FILE = "metrics.jsonl"
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
STUDENT_ONNX = "student.onnx"
RESULT_FILES = (STUDENT_ONNX, BEST_CHECKPOINT, HELDOUT_FILE, METRICS_FILE, CONFIG_FILE, RUN_FILE)
"""What a finished run leaves, ``run.json`` last: copied in this order, it marks a complete copy."""


@dataclass(frozen=True)
class RunDir:
    """One run directory (it may not exist yet)."""

    path: Path

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def is_finished(self) -> bool:
        return (self.path / RUN_FILE).is_file() and (self.path / STUDENT_ONNX).is_file()

    @property
    def is_chain(self) -> bool:
        return (self.path / CHAIN_FILE).is_file()

    @property
    def has_checkpoint(self) -> bool:
        """A training run started here (it may be finished): ``last.pt`` is there."""
        return (self.path / LAST_CHECKPOINT).is_file()

    def require_finished(self, needed_by: str) -> RunDir:
        """This run, or a one-line error saying it is not a finished training run."""
        if not self.is_finished:
            raise InputNotFound(f"{self.path} is not a finished training run (no {RUN_FILE} and {STUDENT_ONNX}); "
                                f"{needed_by} needs one written by `extractor train`")
        return self

    def run(self) -> dict[str, Any]:
        """``run.json``: what the run did and measured."""
        path = self.path / RUN_FILE
        if not path.is_file():
            raise InputNotFound(f"{self.path} holds no {RUN_FILE}: not a finished `extractor train` run")
        return json.loads(path.read_text())

    def write_run(self, data: dict[str, Any]) -> None:
        _write_atomic(self.path / RUN_FILE, json.dumps(data, indent=2, default=str))

    def report(self) -> dict[str, Any]:
        """``report.json``, written by `extractor report`."""
        return json.loads((self.path / REPORT_FILE).read_text())

    def config(self) -> dict[str, Any] | None:
        """``config.json`` as written when the run began, or None."""
        path = self.path / CONFIG_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def write_config(self, data: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.path / CONFIG_FILE, json.dumps(data, indent=2))

    def heldout(self) -> pd.DataFrame:
        """``heldout.csv``: one row per held-out image with the teacher's and the student's answers."""
        import pandas as pd

        return pd.read_csv(self.path / HELDOUT_FILE, dtype={"relative_path": str})

    def best_weights(self) -> dict[str, Any]:
        """The best student's state dict (``best.pt``)."""
        import torch

        path = self.path / BEST_CHECKPOINT
        if not path.is_file():
            raise InputNotFound(f"{path} is missing: the run's torch weights are needed")
        return torch.load(path, map_location="cpu", weights_only=True)["model"]

    def chain_state(self) -> dict[str, Any]:
        return json.loads((self.path / CHAIN_FILE).read_text())

    def runs(self) -> list[RunDir]:
        """The finished runs this directory reports on: a chain's links first to last, else itself."""
        if self.is_chain:
            return [RunDir(self.path / entry["dir"]) for entry in self.chain_state()["links"]]
        return [self] if self.is_finished else []

    def write_chain_state(self, data: dict[str, Any]) -> None:
        _write_atomic(self.path / CHAIN_FILE, json.dumps(data, indent=2))


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
