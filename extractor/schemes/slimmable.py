"""Training one slimmable student at several widths: the shared recipe around an ``InplaceDistillTask``,
then BatchNorm recalibration and one checked ONNX file per width."""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import torch

from extractor.config import TrainConfig
from extractor.students.batches import eval_batches
from extractor.students.export import export_onnx
from extractor.students.slimmable import build_slimmable, recalibrate_batchnorm, to_plain
from extractor.students.tasks import InplaceDistillTask
from extractor.students.zoo import count_parameters
from extractor.students.trainer import Trainer
from extractor.training.pipeline import TrainData, TrainResult, finish, onnx_predictions
from extractor.training.recipe import run_scheme


def width_onnx_name(width: float) -> str:
    """The file one width is exported to, e.g. ``student_w0.5.onnx``."""
    return f"student_w{float(width)}.onnx"


def train_slimmable(cfg: TrainConfig) -> TrainResult:
    """Trains the widths ``cfg.slimmable`` names as one student and exports each as ``student_w{width}.onnx``.

    ``student.onnx`` is the widest width, so everything that reads a plain run reads this one too.
    run.json gains ``"slimmable"`` (the settings) and ``"widths"``: one object per width, widest first,
    with ``width, onnx, params, fidelity, onnx_max_abs_diff``; heldout_widths.csv holds each width's
    held-out predictions (column ``w{width}``), in heldout.csv's row order. The checkpoint kept is the
    one with the best held-out fidelity of the widest width.
    """
    if cfg.slimmable is None:
        raise ValueError("train_slimmable needs cfg.slimmable")
    return run_scheme(cfg, SlimmableScheme())


class SlimmableScheme:
    """One switchable-BatchNorm student trained in place at every width; one checked ONNX file per width."""

    def task(self, cfg: TrainConfig, data: TrainData) -> tuple[torch.nn.Module, torch.nn.Module]:
        student = build_slimmable(cfg.student.architecture, data.answers.num_classes, data.spec.num_channels,
                                  cfg.slimmable.widths)
        return InplaceDistillTask(student, cfg.distill, cfg.slimmable), student

    def export(self, cfg: TrainConfig, data: TrainData, student: torch.nn.Module, trainer: Trainer,
               started: float) -> TrainResult:
        slim = cfg.slimmable
        student.cpu()
        recalibrate_batchnorm(student, _calibration_inputs(data, slim.calibration_images, cfg.optim.seed))
        widths, predictions = [], {}
        for width in slim.widths:
            plain = to_plain(student, width)
            path = cfg.out / width_onnx_name(width)
            diff = export_onnx(plain, path, data.spec.num_channels, data.spec.size)
            predicted = onnx_predictions(path, data.heldout, data.inputs)
            predictions[f"w{float(width)}"] = predicted
            widths.append({"width": width, "onnx": path.name, "params": count_parameters(plain),
                           "fidelity": float((predicted == data.heldout.labels.numpy()).mean()),
                           "onnx_max_abs_diff": diff})
        pd.DataFrame({"relative_path": [data.answers.relative_paths[i] for i in data.held_rows],
                      "teacher_label": data.answers.labels[data.held_rows], **predictions}).to_csv(
            cfg.out / "heldout_widths.csv", index=False)
        return finish(cfg, data, to_plain(student, slim.widths[0]), epochs=trainer.state.epoch, started=started,
                      extra={"slimmable": asdict(slim), "widths": widths})


def _calibration_inputs(data: TrainData, count: int, seed: int) -> list[torch.Tensor]:
    """Up to ``count`` training images picked by ``seed``, normalised but not augmented (like held-out inputs)."""
    rows = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))[:count]
    return [batch.inputs for batch in eval_batches(data.train.subset(rows), 256, inputs=data.inputs)]
