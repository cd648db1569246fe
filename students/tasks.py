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

from extractor.errors import ConfigError
from extractor.students.batches import Batch
from extractor.students.config import HintConfig, SlimmableConfig
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
    Several teachers reach the task already combined into one target (``losses.combine_teachers``). A top-k
    answer's KL is over its k + 1 outcomes, the visible classes and the rest, on both sides; the target rows
    say which (``losses.teacher_log_probs``), so the task needs no switch for it.
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


class HintTask(nn.Module):
    """Distillation plus a FitNet hint from a frozen white-box parent (Romero et al. 2015, "FitNets").

    ``L = distillation_loss(...) + hint.weight * mean((r(F_S) - F_P)^2)``: the stored answers exactly as in
    ``DistillTask``, plus the child's feature map ``F_S`` (the output of ``hint.student_layer``) regressed onto
    the parent's ``F_P`` (``hint.parent_layer``) on the same augmented batch. Both maps are taken with forward
    hooks that live only during ``forward``, so neither model's code changes and the exported student
    carries no hook. ``r`` (``adapter``) is a 1x1 convolution from the child's channels to the parent's,
    trained with the child and never exported; where the maps' sides differ, ``r(F_S)`` is resized
    (bilinear) to the parent's. FitNets trains the hint first and distils second; here both terms train
    together, in one stage. The parent stays frozen and in eval mode whatever mode the task is in.

    Returns ``{"loss", "hard", "soft", "hint"}``; ``hint`` is the mean squared error before ``hint.weight``.
    """

    def __init__(self, student: nn.Module, parent: nn.Module, cfg: DistillConfig, hint: HintConfig, *,
                 input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.student, self.parent, self.cfg, self.hint = student, parent.requires_grad_(False), cfg, hint
        self.parent.eval()
        probe = torch.zeros(2, *input_shape)  # (2, C, H, W): batch 2 keeps BatchNorm in train mode happy
        was_training = student.training
        student.eval()
        with torch.no_grad():
            child_map, parent_map = self._maps(probe)
        student.train(was_training)
        self.student_shape, self.parent_shape = tuple(child_map.shape[1:]), tuple(parent_map.shape[1:])
        self.adapter = nn.Conv2d(child_map.shape[1], parent_map.shape[1], kernel_size=1, bias=False)

    def train(self, mode: bool = True) -> HintTask:
        super().train(mode)
        self.parent.eval()
        return self

    def describe(self) -> dict:
        """The hint as plain data, for run.json."""
        return {"loss": "mse(adapter(child map), parent map)", "weight": self.hint.weight,
                "student_layer": self.hint.student_layer, "parent_layer": self.hint.parent_layer,
                "student_map": list(self.student_shape), "parent_map": list(self.parent_shape),
                "adapter_params": sum(p.numel() for p in self.adapter.parameters())}

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        child_map, parent_map, logits = self._maps(batch.inputs, with_logits=True)
        losses = distillation_loss(logits, batch.labels, batch.teacher_log_probs, batch.soft_mask, self.cfg)
        adapted = self.adapter(child_map)  # (B, C_parent, H_child, W_child)
        if adapted.shape[2:] != parent_map.shape[2:]:
            adapted = F.interpolate(adapted, size=parent_map.shape[2:], mode="bilinear", align_corners=False)
        hint = F.mse_loss(adapted.float(), parent_map.float())
        return {**losses, "loss": losses["loss"] + self.hint.weight * hint, "hint": hint}

    def _maps(self, inputs: torch.Tensor, *, with_logits: bool = False) -> tuple[torch.Tensor, ...]:
        """The child's and the parent's hinted feature maps (and the child's logits) for ``inputs``."""
        child, parent = _Capture(self.student, self.hint.student_layer), _Capture(self.parent, self.hint.parent_layer)
        try:
            logits = self.student(inputs)  # (B, K)
            with torch.no_grad():
                self.parent(inputs)
        finally:
            child.remove()
            parent.remove()
        maps = (child.output, parent.output)
        return (*maps, logits) if with_logits else maps


class _Capture:
    """A forward hook on one named module that keeps its last output (a 4-D feature map)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        modules = dict(model.named_modules())
        if name not in modules:
            raise ConfigError(f"--hint-layer {name!r} is not a module of {type(model).__name__}; e.g. "
                              f"{', '.join(n for n in list(modules)[1:8])}")
        self.output: torch.Tensor | None = None
        self._handle = modules[name].register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ConfigError(f"--hint-layer: {type(module).__name__} gives {getattr(output, 'shape', type(output))},"
                              " not a (B, C, H, W) feature map")
        self.output = output

    def remove(self) -> None:
        self._handle.remove()
