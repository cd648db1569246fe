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
import torch.nn.functional as F

from extractor.students.batches import Batch
from extractor.students.config import SlimmableConfig
from extractor.students.losses import DistillConfig, distillation_loss
from extractor.students.slimmable import SlimmableNet


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


class InplaceDistillTask(nn.Module):
    """Trains several widths of one slimmable student per step and sums their losses (in-place distillation).

    The widest width learns from the black-box teacher's stored answers (``distillation_loss``). Each
    narrower width learns, by ``slim.inplace``, from: ``"none"`` the teacher's answers too; ``"teacher"``
    the widest width's logits (IPKD, Yu & Huang 2019); ``"ta"`` the logits of the next wider width
    trained in the same step, which is its teacher assistant (IPKD-TA, Ozerov & Duong 2021). Those
    targets are detached and matched as ``T^2 * KL(P_src(T) || P_w(T))``, the soft term of
    ``distillation_loss`` at the same temperature. Under the sandwich rule a step trains the widest,
    the narrowest and ``slim.random_widths`` widths drawn between them (Yu & Huang 2019, sec. 3.1),
    from the global torch RNG, which checkpoints keep. The student is left at its widest width, the
    one evaluated and checkpointed as best.

    Returns per step: ``"loss"`` (the sum), ``"hard"`` and ``"soft"`` of the widest width against the
    teacher, and ``"loss_w{width}"`` for each width trained.
    """

    def __init__(self, student: SlimmableNet, cfg: DistillConfig, slim: SlimmableConfig) -> None:
        super().__init__()
        self.student, self.cfg, self.slim = student, cfg, slim
        self.follow = DistillConfig(targets="soft", alpha=1.0, temperature=cfg.temperature)

    def step_widths(self) -> tuple[float, ...]:
        """The widths this step trains, widest first."""
        widths = self.student.widths
        if not self.slim.sandwich or len(widths) <= 2:
            return widths
        between = widths[1:-1]
        picked = torch.randperm(len(between))[:self.slim.random_widths].sort().values.tolist()
        return (widths[0], *(between[i] for i in picked), widths[-1])

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        parts: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=batch.inputs.device)
        source: torch.Tensor | None = None  # detached logits the next narrower width learns from
        try:
            for width in self.step_widths():
                self.student.set_width(width)
                logits = self.student(batch.inputs)  # (B, K)
                if source is None or self.slim.inplace == "none":
                    losses = distillation_loss(logits, batch.labels, batch.teacher_log_probs, batch.soft_mask, self.cfg)
                    if source is None:
                        parts.update(hard=losses["hard"], soft=losses["soft"])
                else:
                    losses = self._from_wider(logits, source)
                if source is None or self.slim.inplace == "ta":
                    source = logits.detach().float()
                parts[f"loss_w{width}"] = losses["loss"]
                total = total + losses["loss"]
        finally:
            self.student.set_width(self.student.widths[0])
        return {"loss": total, **parts}

    def _from_wider(self, logits: torch.Tensor, source: torch.Tensor) -> dict[str, torch.Tensor]:
        every = torch.ones(source.shape[0], dtype=torch.bool, device=source.device)
        return distillation_loss(logits, source.argmax(dim=1), F.log_softmax(source / self.cfg.temperature, dim=1),
                                 every, self.follow)


class QuantizeTask(nn.Module):
    """A quantized student distilled from its frozen full-precision parent (a white box) and the stored answers.

    ``L = CE(teacher_label, P_S) + alpha * T^2 * KL(P_T(T) || P_S(T)) + parent_weight * T^2 * KL(P_P(T) || P_S(T))``:
    the black box's stored hard and soft answers exactly as in ``DistillTask`` (``cfg``), plus the
    parent's tempered outputs ``P_P`` on the same augmented batch, which cost no query. Alizadeh &
    Lane 2018 distil a binary/ternary network from its full-precision self alone; the stored answers
    keep the variant anchored to the black box, whose agreement is what the report measures. The
    parent stays frozen and in eval mode (its BatchNorm statistics fixed) whatever mode the task is in.

    Returns ``{"loss", "hard", "soft", "parent"}``; ``parent`` includes ``T^2`` but not ``parent_weight``.
    """

    def __init__(self, student: nn.Module, parent: nn.Module, cfg: DistillConfig, parent_weight: float = 1.0) -> None:
        super().__init__()
        self.student, self.parent, self.cfg, self.parent_weight = student, parent.requires_grad_(False), cfg, parent_weight
        self.follow = DistillConfig(targets="soft", alpha=1.0, temperature=cfg.temperature)
        self.parent.eval()

    def train(self, mode: bool = True) -> QuantizeTask:
        super().train(mode)
        self.parent.eval()
        return self

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.student(batch.inputs)  # (B, K)
        with torch.no_grad():
            parent_logits = self.parent(batch.inputs).float()  # (B, K)
        losses = distillation_loss(logits, batch.labels, batch.teacher_log_probs, batch.soft_mask, self.cfg)
        every = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
        parent = distillation_loss(logits, parent_logits.argmax(dim=1),
                                   F.log_softmax(parent_logits / self.cfg.temperature, dim=1), every, self.follow)["soft"]
        return {**losses, "loss": losses["loss"] + self.parent_weight * parent, "parent": parent}
