"""The training loop: batches in, optimizer steps out; what a step computes is the task's, the rest is a hook."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from extractor.students.batches import (
    Batch,
    DistilTensors,
    InputConfig,
    num_batches,
    train_batches,
)
from extractor.students.config import OptimConfig

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
"""``(student_logits, labels, teacher_log_probs, soft_mask) -> {"loss", ...}``, e.g.
``functools.partial(losses.distillation_loss, cfg=distill_config)``: held-out loss parts (``hooks.EvalHook``)."""


def build_optimizer(model: nn.Module, cfg: OptimConfig, steps_per_epoch: int) -> tuple[Optimizer, LRScheduler]:
    """AdamW over ``model``'s trainable parameters and a per-step warmup-then-cosine schedule (step it
    with ``hooks.LRScheduleHook``). Pass the task, so that adapters it owns train too."""
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    others = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": weights, "weight_decay": cfg.weight_decay},
                                   {"params": others, "weight_decay": 0.0}], lr=cfg.lr)
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, round(total * cfg.warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, total - warmup) / max(1, total - warmup)))

    return optimizer, LambdaLR(optimizer, factor)


class HookBase:
    """Something that runs between steps; every method is a no-op unless overridden.

    A hook with state to survive a resume returns it from ``state_dict`` (and takes it back in
    ``load_state_dict``); the trainer stores it under the hook's class name.
    """

    def before_train(self, trainer: Trainer) -> None:
        """Runs once when ``train`` starts, also after a resume."""

    def after_step(self, trainer: Trainer) -> None:
        """Runs after each optimizer step; ``trainer.state`` holds that step's losses."""

    def after_epoch(self, trainer: Trainer) -> None:
        """Runs after each epoch; ``trainer.state.epoch`` already counts it."""

    def after_train(self, trainer: Trainer) -> None:
        """Runs once when the last epoch is done."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what ``state_dict`` returned."""


@dataclass
class TrainState:
    """Where training stands; hooks read it and may add results."""

    epoch: int = 0
    """Epochs completed."""
    step: int = 0
    """Optimizer steps completed; step numbers in messages and metrics count from 1."""
    lr: float = 0.0
    """Learning rate of the last step (of the first parameter group)."""
    losses: dict[str, float] = field(default_factory=dict)
    """The last step's loss parts, e.g. {"loss", "hard", "soft"}."""
    heldout: dict[str, float] = field(default_factory=dict)
    """The latest held-out evaluation, filled by ``hooks.EvalHook``."""


class Trainer:
    """Runs epochs of ``task(batch)`` steps over in-memory tensors and calls hooks in order (after
    detectron2's SimpleTrainer).

    Hooks run in list order; put ``EvalHook`` before ``MetricsHook`` and ``CheckpointHook`` so that
    they see the epoch's evaluation. The caller seeds the initial weights (``torch.manual_seed``).

    Args:
        task: Computes each step's losses (``students.tasks``), already on its device; batches follow
            its parameters.
        optimizer: Optimizes the task's trainable parameters.
        data: Training tensors (on the CPU, or already on the task's device).
        hooks: Called in order.
        epochs: Total epochs, counting any already done before a resume.
        batch_size: Images per step.
        seed: Makes every epoch's order and augmentation reproducible.
        inputs: Normalisation and augmentation.
        mixed_precision: Run the task under bfloat16 autocast (CUDA); bfloat16 keeps float32's range,
            so no loss scaling is needed.
    """

    def __init__(self, task: nn.Module, optimizer: Optimizer, data: DistilTensors, hooks: Sequence[HookBase], *,
                 epochs: int, batch_size: int, seed: int, inputs: InputConfig, mixed_precision: bool = False) -> None:
        self.task = task
        self.optimizer = optimizer
        self.data = data
        self.hooks = list(hooks)
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.inputs = inputs
        self.device = next(task.parameters()).device
        self.mixed_precision = mixed_precision
        self.state = TrainState()

    @property
    def model(self) -> nn.Module:
        """The student: what hooks evaluate and checkpoints keep as ``"model"``."""
        return self.task.student

    @property
    def steps_per_epoch(self) -> int:
        return num_batches(self.data.num_images, self.batch_size)

    def train(self) -> TrainState:
        """Trains from ``state.epoch`` (0, or where a resume left off) up to ``epochs``."""
        self.task.train()
        for hook in self.hooks:
            hook.before_train(self)
        while self.state.epoch < self.epochs:
            for batch in train_batches(self.data, self.batch_size, seed=self.seed, epoch=self.state.epoch,
                                       inputs=self.inputs, device=self.device):
                self.run_step(batch)
                for hook in self.hooks:
                    hook.after_step(self)
            self.state.epoch += 1
            for hook in self.hooks:
                hook.after_epoch(self)
        for hook in self.hooks:
            hook.after_train(self)
        return self.state

    def run_step(self, batch: Batch) -> None:
        """One forward, backward and optimizer step.

        Raises:
            FloatingPointError: If the loss is NaN or infinite; the weights are left untouched.
        """
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision):
            losses = self.task(batch)
        names = list(losses)
        values = torch.stack([losses[name].detach().float() for name in names]).tolist()  # one device sync
        parts = dict(zip(names, values, strict=True))
        if not math.isfinite(parts["loss"]):
            raise FloatingPointError(f"loss is {parts['loss']} at step {self.state.step + 1} "
                                     f"(epoch {self.state.epoch + 1}): {parts}")
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.state.lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.state.step += 1
        self.state.losses = parts

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, progress, hook states, RNG.

        ``"model"`` is the student's state dict alone (what ``best.pt`` is loaded for); ``"task"`` is
        the whole task's (student, adapters, frozen parents), which a resume restores. They share
        tensors, which ``torch.save`` stores once.
        """
        hooks: dict[str, Any] = {}
        for hook in self.hooks:
            state = hook.state_dict()
            if not state:
                continue
            name = type(hook).__name__
            if name in hooks:
                raise ValueError(f"two {name} hooks both have state; a checkpoint can hold only one")
            hooks[name] = state
        # The data order and augmentation are re-derived from (seed, epoch); the global RNG still
        # drives dropout, so it is saved too.
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"model": self.model.state_dict(), "task": self.task.state_dict(), "optimizer": self.optimizer.state_dict(),
                "progress": {"epoch": self.state.epoch, "step": self.state.step}, "hooks": hooks, "rng": rng}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores ``state_dict``'s output; hooks absent from it keep their current state."""
        self.task.load_state_dict(state["task"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.state.epoch = state["progress"]["epoch"]
        self.state.step = state["progress"]["step"]
        for hook in self.hooks:
            if type(hook).__name__ in state["hooks"]:
                hook.load_state_dict(state["hooks"][type(hook).__name__])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
