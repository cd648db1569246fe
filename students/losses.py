"""The distillation objective: hard teacher labels plus tempered soft teacher outputs."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from extractor.errors import ConfigError
from extractor.students.config import DistillConfig

SOFT_KINDS: tuple[str, ...] = ("probs", "logits", "topk")
"""Teacher output kinds that carry a soft vector; ``"label"`` carries none."""
_ALL_KINDS: tuple[str, ...] = (*SOFT_KINDS, "label")


def teacher_log_probs(scores: torch.Tensor, kind: Sequence[str] | str, temperature: float) -> torch.Tensor:
    """The teacher's tempered log-distribution ``log P_T(T)``, row by row.

    - ``"logits"``: ``log_softmax(z / T)``.
    - ``"probs"`` and ``"topk"``: ``log p`` is used as the logits. ``softmax(log p / T)`` equals
      ``softmax(z / T)`` exactly, because ``log p = z - logsumexp(z)`` differs from ``z`` by a per-row
      constant that softmax ignores (Hinton et al. 2015, "Distilling the Knowledge in a Neural
      Network", sec. 2). Classes with ``p == 0`` get exactly ``-inf``, i.e. probability 0 at every
      temperature, instead of a clamped ``log eps`` that large T would inflate into real mass. For a
      top-k teacher the result is therefore the visible top-k distribution renormalised over the
      visible classes; the hidden classes' mass is unknown and is not guessed.
    - ``"label"``: no soft output. The row is the uniform distribution, a finite placeholder; such
      rows must be excluded from the soft term with ``soft_mask`` (see ``SOFT_KINDS``).

    Args:
        scores: (B, C) float teacher scores, as stored: probabilities (possibly rounded or with hidden
            classes zeroed) or logits.
        kind: One kind for the whole batch, or one per row.
        temperature: T > 0.

    Returns:
        (B, C) float32 log-probabilities; entries are finite or ``-inf``, never NaN.

    Raises:
        ValueError: On an unknown kind, a shape mismatch, NaN/inf logits, or probabilities that are
            negative, non-finite or all zero in a row.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (B, C), got shape {tuple(scores.shape)}")
    if temperature <= 0:
        raise ConfigError(f"--temperature must be > 0, got {temperature}")
    kinds = [kind] * scores.shape[0] if isinstance(kind, str) else list(kind)
    if len(kinds) != scores.shape[0]:
        raise ValueError(f"got {len(kinds)} kinds for {scores.shape[0]} rows of scores")
    unknown = sorted(set(kinds) - set(_ALL_KINDS))
    if unknown:
        raise ValueError(f"unknown teacher output kinds {unknown}; valid kinds: {_ALL_KINDS}")
    scores = scores.float()
    is_logits = torch.tensor([k == "logits" for k in kinds], dtype=torch.bool, device=scores.device)
    is_probs = torch.tensor([k in ("probs", "topk") for k in kinds], dtype=torch.bool, device=scores.device)
    out = torch.full_like(scores, -math.log(scores.shape[1]))  # the "label" placeholder
    logits = scores[is_logits]
    if not torch.isfinite(logits).all():
        raise ValueError("teacher logits contain NaN or infinite values")
    out[is_logits] = F.log_softmax(logits / temperature, dim=1)
    probs = scores[is_probs]
    if not (torch.isfinite(probs).all() and (probs >= 0).all() and (probs > 0).any(dim=1).all()):
        raise ValueError("teacher probabilities must be finite, >= 0 and not all zero in a row")
    out[is_probs] = F.log_softmax(torch.log(probs) / temperature, dim=1)
    return out


def combine_teachers(teachers: Sequence[tuple[torch.Tensor, torch.Tensor, Sequence[str] | str]], weights: Sequence[float],
                     temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Several teachers' answers as one target: the weighted mean of their tempered distributions.

    A label-only row counts as a one-hot distribution on its label.

    Args:
        teachers: per teacher, (N,) int64 labels, (N, C) stored scores and their kinds (as for
            ``teacher_log_probs``).
        weights: one per teacher, > 0.
        temperature: T.

    Returns:
        (N,) int64 labels, the argmax of the mean, and (N, C) float32 log of the mean.
    """
    if len(teachers) != len(weights) or not teachers:
        raise ConfigError(f"got {len(teachers)} teachers and {len(weights)} weights")
    mean = torch.zeros_like(teachers[0][1], dtype=torch.float32)
    for (labels, scores, kinds), weight in zip(teachers, weights, strict=True):
        probs = teacher_log_probs(scores, kinds, temperature).exp()
        rows = [kinds] * len(scores) if isinstance(kinds, str) else list(kinds)
        label_only = torch.tensor([kind == "label" for kind in rows], dtype=torch.bool)
        if label_only.any():
            probs[label_only] = F.one_hot(labels[label_only], scores.shape[1]).float()
        mean += weight * probs
    mean /= sum(weights)
    return mean.argmax(dim=1), mean.log()


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_log_probs_T: torch.Tensor,
    soft_mask: torch.Tensor,
    cfg: DistillConfig,
) -> dict[str, torch.Tensor]:
    """``L = CE(teacher_label, P_S) + alpha * T^2 * KL(P_T(T) || P_S(T))``, with its parts.

    The soft term is multiplied by ``T**2``: the gradient of the tempered KL scales as ``1/T**2``,
    so the factor keeps its magnitude comparable to the hard term's across temperatures (Hinton et
    al. 2015, sec. 2). The KL treats ``0 * log 0 = 0``, so ``-inf`` teacher entries (hidden top-k
    classes) contribute nothing and give no NaN in the loss or its gradient. It is averaged over the
    rows where ``soft_mask`` is True only; rows without a soft output (label-only teachers) feed the
    hard term alone, and a batch with no soft row has ``soft == 0``.

    Args:
        student_logits: (B, C) raw student outputs.
        labels: (B,) int64 teacher top-1 labels.
        teacher_log_probs_T: (B, C) ``teacher_log_probs(...)`` at ``cfg.temperature``.
        soft_mask: (B,) bool, True where the teacher gave a soft output.
        cfg: Targets, alpha and temperature.

    Returns:
        ``{"loss", "hard", "soft"}`` scalars; ``soft`` already includes ``T**2`` but not ``alpha``.
    """
    hard = F.cross_entropy(student_logits, labels)
    temperature = cfg.temperature
    student_log_probs = F.log_softmax(student_logits / temperature, dim=1)  # (B, C)
    teacher_probs = teacher_log_probs_T.exp()  # (B, C)
    # 0 * log 0 = 0: zero the -inf entries first so that 0 * (-inf) never appears, not even in backward.
    teacher_log = teacher_log_probs_T.masked_fill(teacher_probs == 0, 0.0)
    kl_rows = (teacher_probs * (teacher_log - student_log_probs)).sum(dim=1)  # (B,)
    soft_rows = soft_mask.sum().clamp_min(1)
    soft = temperature**2 * torch.where(soft_mask, kl_rows, torch.zeros_like(kl_rows)).sum() / soft_rows
    if cfg.targets == "hard":
        loss = hard
    elif cfg.targets == "soft":
        loss = cfg.alpha * soft
    else:
        loss = hard + cfg.alpha * soft
    return {"loss": loss, "hard": hard, "soft": soft}
