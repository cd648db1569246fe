"""Trainer hooks: held-out evaluation, metrics, checkpoints and resume, LR schedule, progress."""
from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from extractor.errors import CheckpointError, ConfigError
from extractor.students.batches import DistilTensors, InputConfig, eval_batches
from extractor.students.trainer import HookBase, LossFn, Trainer

log = logging.getLogger(__name__)


def evaluate(model: nn.Module, data: DistilTensors, inputs: InputConfig, batch_size: int,
             loss_fn: LossFn | None = None) -> dict[str, float]:
    """Scores ``model`` on ``data`` without augmentation, in eval mode; the model's mode is restored.

    Returns:
        ``fidelity``: top-1 agreement with the teacher's labels. ``accuracy``: top-1 agreement with
        the ground truth over rows whose truth is >= 0, present only if there is such a row. With
        ``loss_fn``, also its parts computed over the whole of ``data`` at once.
    """
    if len(data) == 0:
        raise ValueError("cannot evaluate on an empty held-out set")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.inference_mode():
            logits = torch.cat([model(batch.inputs) for batch in eval_batches(data, batch_size, inputs=inputs,
                                                                               device=device)])
    finally:
        model.train(was_training)
    predicted = logits.argmax(dim=1).cpu()
    results = {"fidelity": (predicted == data.labels).float().mean().item()}
    if data.truth is not None and (data.truth >= 0).any():
        known = data.truth >= 0
        results["accuracy"] = (predicted[known] == data.truth[known]).float().mean().item()
    if loss_fn is not None:
        losses = loss_fn(logits, data.labels.to(device), data.teacher_log_probs.to(device), data.soft_mask.to(device))
        results.update({name: value.item() for name, value in losses.items()})
    return results


class EvalHook(HookBase):
    """Evaluates on held-out tensors after every epoch into ``trainer.state.heldout`` (see ``evaluate``).

    Args:
        data: Held-out tensors, never trained on.
        inputs: The same normalisation as training (augmentation is not applied).
        batch_size: Images per forward pass.
        loss_fn: Optional; adds the held-out loss parts to the results.
    """

    def __init__(self, data: DistilTensors, inputs: InputConfig, batch_size: int, loss_fn: LossFn | None = None):
        if len(data) == 0:
            raise ValueError("the held-out set is empty; evaluation needs at least one image")
        self.data, self.inputs, self.batch_size, self.loss_fn = data, inputs, batch_size, loss_fn

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.state.heldout = evaluate(trainer.model, self.data, self.inputs, self.batch_size, self.loss_fn)


class MetricsHook(HookBase):
    """Appends one JSON object per step, and one per held-out evaluation, to a JSON-lines file.

    Train records: ``{"step", "epoch", "split": "train", <loss parts>, "lr"}``. Held-out records:
    ``{"step", "epoch", "split": "heldout", "fidelity", ["accuracy"], [<loss parts>]}``. ``epoch`` is
    the 1-based epoch the record belongs to. On resume the file is cut back to where the checkpoint
    was taken, so the steps replayed after a crash are not written twice.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file: IO[str] | None = None
        self._offset = 0

    def before_train(self, trainer: Trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+", encoding="utf-8")
        self._file.truncate(self._offset)
        self._file.seek(self._offset)

    def after_step(self, trainer: Trainer) -> None:
        state = trainer.state
        self._write({"step": state.step, "epoch": state.epoch + 1, "split": "train", **state.losses, "lr": state.lr})

    def after_epoch(self, trainer: Trainer) -> None:
        state = trainer.state
        if state.heldout:
            self._write({"step": state.step, "epoch": state.epoch, "split": "heldout", **state.heldout})
        self._file.flush()

    def after_train(self, trainer: Trainer) -> None:
        self._file.close()
        self._file = None

    def state_dict(self) -> dict[str, Any]:
        if self._file is not None:
            self._file.flush()
            return {"offset": self._file.tell()}
        return {"offset": self._offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._offset = state["offset"]

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")


class CheckpointHook(HookBase):
    """Saves ``last.pt`` after every epoch, and ``best.pt`` when held-out fidelity improves.

    Both hold ``Trainer.state_dict()``: ``torch.load(path)["model"]`` is the student's state dict.
    Files are written to a temporary name and renamed, so a kill never leaves a torn checkpoint.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.best_fidelity = float("-inf")
        self._warned = False

    def before_train(self, trainer: Trainer) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def after_epoch(self, trainer: Trainer) -> None:
        fidelity = trainer.state.heldout.get("fidelity")
        improved = fidelity is not None and fidelity > self.best_fidelity
        if improved:
            self.best_fidelity = fidelity
        if fidelity is None and not self._warned:
            log.warning("no held-out fidelity (add an EvalHook before the CheckpointHook); best.pt is not written")
            self._warned = True
        state = trainer.state_dict()
        # best.pt first: a kill between the two writes then resumes from the previous last.pt and redoes
        # this epoch, whereas the other order would resume believing a best.pt was written that is not.
        if improved:
            _save(state, self.directory / "best.pt")
        _save(state, self.directory / "last.pt")

    def state_dict(self) -> dict[str, Any]:
        return {"best_fidelity": self.best_fidelity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_fidelity = state["best_fidelity"]


def _save(state: dict[str, Any], path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def resume(trainer: Trainer, path: Path) -> None:
    """Loads a ``CheckpointHook`` file into ``trainer``; ``trainer.train()`` then continues exactly.

    The trainer must be built as for the original run (same model, optimizer, hooks, data and seed).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:  # cut short, or not a checkpoint
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"{path} cannot be read ({reason}): delete it to train the run from its start, "
                              "or choose a new --out") from None
    trainer.load_state_dict(state)


class LRScheduleHook(HookBase):
    """Steps a per-step learning-rate scheduler after every optimizer step."""

    def __init__(self, scheduler: LRScheduler):
        self.scheduler = scheduler

    def after_step(self, trainer: Trainer) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class ProgressHook(HookBase):
    """A tqdm bar over all steps, plus a log line every ``log_every`` steps and after each evaluation.

    Args:
        quiet: Hide the bar (``--quiet``); log lines still follow the logging configuration.
        log_every: Steps between human-readable log lines.
    """

    def __init__(self, quiet: bool = False, log_every: int = 50):
        if log_every < 1:
            raise ConfigError(f"--log-every must be >= 1, got {log_every}")
        self.quiet, self.log_every = quiet, log_every
        self._bar: tqdm | None = None

    def before_train(self, trainer: Trainer) -> None:
        total = trainer.epochs * trainer.steps_per_epoch
        self._bar = tqdm(total=total, initial=trainer.state.step, disable=self.quiet, unit="step", desc="train")

    def after_step(self, trainer: Trainer) -> None:
        state = trainer.state
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{state.losses['loss']:.4f}", refresh=False)
        if state.step % self.log_every == 0:
            parts = " ".join(f"{name} {value:.4f}" for name, value in state.losses.items())
            log.info("step %d/%d epoch %d: %s lr %.3g", state.step, self._bar.total, state.epoch + 1, parts, state.lr)

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.state.heldout:
            parts = " ".join(f"{name} {value:.4f}" for name, value in trainer.state.heldout.items())
            log.info("epoch %d/%d held-out: %s", trainer.state.epoch, trainer.epochs, parts)

    def after_train(self, trainer: Trainer) -> None:
        self._bar.close()
        self._bar = None
