"""The one training recipe every scheme shares: prepare the data, build the task, fit, load the best
student, export. A scheme (plain, slimmable, quantize) says only what it trains and what it exports."""
from __future__ import annotations

import time
from typing import Protocol

import torch

from extractor.config import TrainConfig
from extractor.errors import ConfigError
from extractor.run_dir import RunDir
from extractor.students.tasks import DistillTask, HintTask
from extractor.students.trainer import Trainer
from extractor.students.zoo import build_student
from extractor.training.parents import load_parent_student
from extractor.training.pipeline import TrainData, TrainResult, finish, fit, prepare_data


class Scheme(Protocol):
    """What one kind of training run trains, and what it leaves in the run directory."""

    def task(self, cfg: TrainConfig, data: TrainData) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(the task the trainer runs, the student inside it whose best weights are kept)."""
        ...

    def export(self, cfg: TrainConfig, data: TrainData, student: torch.nn.Module, trainer: Trainer,
               started: float) -> TrainResult:
        """Exports the best ``student`` and records the run."""
        ...


def run_scheme(cfg: TrainConfig, scheme: Scheme, data: TrainData | None = None) -> TrainResult:
    """prepare -> task -> fit (resumable) -> best weights -> the scheme's export."""
    started = time.perf_counter()
    data = data or prepare_data(cfg)
    torch.manual_seed(cfg.optim.seed)
    task, student = scheme.task(cfg, data)
    trainer = fit(cfg, task, data)
    student.load_state_dict(RunDir(cfg.out).best_weights())
    return scheme.export(cfg, data, student, trainer, started)


class PlainScheme:
    """Distillation of one student from the teachers' answers, with a FitNet hint when ``cfg.hint`` asks."""

    def __init__(self) -> None:
        self._task: torch.nn.Module | None = None

    def task(self, cfg: TrainConfig, data: TrainData) -> tuple[torch.nn.Module, torch.nn.Module]:
        student = build_student(cfg.student.architecture, data.answers.num_classes, data.spec.num_channels,
                                cfg.student.width)
        self._task = DistillTask(student, cfg.distill) if cfg.hint is None else _hint_task(cfg, data, student)
        return self._task, student

    def export(self, cfg: TrainConfig, data: TrainData, student: torch.nn.Module, trainer: Trainer,
               started: float) -> TrainResult:
        extra = None
        if isinstance(self._task, HintTask):
            extra = {"hint": {**self._task.describe(), "parent": str(data.parents[0][0].path),
                              "last_step_hint": trainer.state.losses.get("hint")}}
        return finish(cfg, data, student, epochs=trainer.state.epoch, started=started, extra=extra)


def train_student(cfg: TrainConfig) -> TrainResult:
    """Trains a student on the teachers' stored answers and exports it to ``cfg.out/student.onnx``."""
    return run_scheme(cfg, PlainScheme())


def _hint_task(cfg: TrainConfig, data: TrainData, student: torch.nn.Module) -> HintTask:
    """The first parent run's student as a frozen white box, hinting ``student`` (``cfg.hint``)."""
    parent = data.parents[0][0]
    if parent.run["student"]["size"] != data.spec.size:
        raise ConfigError(f"--hint: the parent {parent.path} sees {parent.run['student']['size']} px inputs, this "
                          f"student {data.spec.size} px; pass --size {parent.run['student']['size']}")
    module = load_parent_student(parent, data.answers.num_classes, data.spec.num_channels)
    return HintTask(student, module, cfg.distill, cfg.hint,
                    input_shape=(data.spec.num_channels, data.spec.size, data.spec.size))
