"""Training tasks: what one step computes. The trainer calls ``task(batch)`` and minimises ``["loss"]``.

A task is an ``nn.Module`` that owns everything it trains (``task.student`` plus any adapters) and
anything frozen it learns from (a white-box parent). The trainer optimises the task's trainable
parameters, checkpoints its state, and evaluates and exports ``task.student``. A new training scheme
is a new task, never an ``if`` in the loop (after timm's ``DistillationTask`` and detectron2's
``run_step``).
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn as nn

from extractor.students.batches import Batch
from extractor.students.losses import DistillConfig, distillation_loss


class Task(Protocol):
    """The trainer's view of a task (any ``nn.Module`` with a ``student`` and this ``__call__``)."""

    student: nn.Module
    """The network that is evaluated on held-out data, kept as ``best.pt`` and exported."""

    def __call__(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Scalar losses of one batch; ``"loss"`` is minimised, the rest are logged."""
        ...


class DistillTask(nn.Module):
    """Plain distillation from the stored answers of one or more black-box teachers.

    ``L = CE(teacher_label, P_S) + alpha * T^2 * KL(P_T(T) || P_S(T))`` (``losses.distillation_loss``).
    Several teachers reach the task already combined into one target (``losses.combine_teachers``).
    """

    def __init__(self, student: nn.Module, cfg: DistillConfig) -> None:
        super().__init__()
        self.student, self.cfg = student, cfg

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return distillation_loss(self.student(batch.inputs), batch.labels, batch.teacher_log_probs,
                                 batch.soft_mask, self.cfg)
