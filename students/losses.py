"""The distillation objective: hard teacher labels plus tempered soft teacher outputs.

A top-k answer is a distribution over k + 1 outcomes: the k visible classes and "any other class", which
carries the hidden mass ``1 - sum(top-k)``. Its tempered row (``teacher_log_probs``) is a sub-distribution
over the classes: the visible classes' tempered mass, ``-inf`` on the hidden ones, and the missing mass is
the tempered rest; ``distillation_loss`` matches it with the student's probabilities of the visible
classes and the sum of the rest. docs/answer-formats.md says how temperature is applied on both sides.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from extractor.errors import ConfigError
from extractor.students.config import DistillConfig

SOFT_KINDS: tuple[str, ...] = ("probs", "logits", "topk")
"""Teacher output kinds that carry a soft vector; ``"label"`` carries none."""
_ALL_KINDS: tuple[str, ...] = (*SOFT_KINDS, "label")
TOPK_MASS_TOLERANCE = 1e-4
"""A top-k answer whose hidden mass ``1 - sum(top-k)`` is at most this (or at most its rounding, ``k`` half
grid steps) has no rest: it trains as the visible classes renormalised, as before the rest was kept."""
REST_EPSILON = 1e-5
"""Tempered teacher rows whose missing mass is at most this have no rest outcome (float32 sums of a
normalised row miss 1 by about 1e-7)."""
MAX_DETECTED_DECIMALS = 5
"""Finest rounding ``score_decimals`` can tell from float32 storage: a float32 probability is exact to
about 6e-8, a tenth of a 10^-6 grid step for scores near 1."""
MIN_ROUNDED_VALUES = 32
"""Fewer non-integer scores than this and ``score_decimals`` does not claim a rounding."""
_FLOAT32_TOLERANCE = 2.5e-7
"""Relative distance to the grid a float32-stored rounded score may have (half an ulp is 6e-8)."""
GRID_SAMPLE = 1_000_000
"""``score_decimals`` looks at most at this many scores, evenly strided, of a larger pool (an unrounded
pool fails the coarsest grid on its first scores; a rounded one has every score on it)."""


def score_decimals(scores: np.ndarray | torch.Tensor) -> int | None:
    """The ``d`` of the 10^-d grid all the scores lie on, when they were rounded to ``d`` decimals.

    Exact zeros and whole numbers lie on every grid and are not evidence; ``None`` when fewer than
    ``MIN_ROUNDED_VALUES`` other scores are given or no grid up to ``MAX_DETECTED_DECIMALS`` holds them all.
    A score stored as float32 counts as on the grid within ``_FLOAT32_TOLERANCE`` of its size, so an
    unrounded float32 softmax output (values dense in [0, 1]) is never taken for a rounded one.

    Args:
        scores: any shape; probabilities or logits as stored (NaN/inf are ignored). Of more than
            ``GRID_SAMPLE`` scores, an evenly strided sample of that many is read.

    Returns:
        The smallest such ``d``, or None when the scores are not rounded (or it cannot be told).
    """
    flat = scores.detach().reshape(-1) if isinstance(scores, torch.Tensor) else np.asarray(scores).reshape(-1)
    flat = flat[::max(1, -(-len(flat) // GRID_SAMPLE))]
    values = np.asarray(flat.cpu().numpy() if isinstance(flat, torch.Tensor) else flat, dtype=np.float64)
    values = values[np.isfinite(values) & (values != np.round(values))]
    if values.size < MIN_ROUNDED_VALUES:
        return None
    tolerance = _FLOAT32_TOLERANCE * np.abs(values)
    for decimals in range(1, MAX_DETECTED_DECIMALS + 1):
        step = 10.0 ** -decimals
        if tolerance.max() >= 0.05 * step:  # too fine a grid to tell from the storage's precision
            return None
        if (np.abs(values - np.round(values / step) * step) <= tolerance + 1e-12).all():
            return decimals
    return None


def teacher_log_probs(scores: torch.Tensor, kind: Sequence[str] | str, temperature: float) -> torch.Tensor:
    """The teacher's tempered log-distribution ``log P_T(T)``, row by row.

    - ``"logits"``: ``log_softmax(z / T)``.
    - ``"probs"``: ``log p`` is used as the logits. ``softmax(log p / T)`` equals ``softmax(z / T)``
      exactly, because ``log p = z - logsumexp(z)`` differs from ``z`` by a per-row constant that softmax
      ignores (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", sec. 2). Classes with
      ``p == 0`` get exactly ``-inf``, i.e. probability 0 at every temperature, instead of a clamped
      ``log eps`` that large T would inflate into real mass; except in rounded answers (below).
    - ``"topk"``: the k + 1 outcomes (the visible classes, and the rest with mass ``r = 1 - sum(p)``)
      tempered as one distribution, ``softmax([log p_1, ..., log p_k, log r] / T)``. The row holds the
      visible classes' part of it; the hidden classes are ``-inf`` and the row's missing mass
      (``1 - sum(exp(row))``) is the tempered rest, which ``distillation_loss`` matches against the
      student's hidden mass. An answer with ``r <= TOPK_MASS_TOLERANCE`` (or within its rounding, ``k``
      half grid steps) has no rest: its visible classes renormalise, as a ``"probs"`` row with zeros.
      A visible class rounded to 0 cannot be told from a hidden one and counts in the rest.
    - ``"label"``: no soft output. The row is the uniform distribution, a finite placeholder; such
      rows must be excluded from the soft term with ``soft_mask`` (see ``SOFT_KINDS``).

    Rounded answers: when the probabilities of all ``"probs"`` and ``"topk"`` rows lie on a 10^-d grid
    (``score_decimals``), each score stands for an interval of half a grid step ``h = 0.5 * 10^-d`` on
    either side. A ``"probs"`` score rounded to 0 is then only known to be below ``h``: it is raised to
    ``h`` (the interval's bound), so no log of a 0 that was only rounded down is taken, and the visible
    mass of a top-k answer counts as 1 within ``k * h``.

    Args:
        scores: (B, C) float teacher scores, as stored: probabilities (possibly rounded or with hidden
            classes zeroed) or logits. Pass the whole pool at once: the rounding is detected over it.
        kind: One kind for the whole batch, or one per row.
        temperature: T > 0.

    Returns:
        (B, C) float32 log-probabilities, entries finite or ``-inf``, never NaN; each row's mass is 1
        except in top-k rows with a rest, where it is ``1 - rest``.

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

    def rows(*names: str) -> torch.Tensor:
        return torch.tensor([k in names for k in kinds], dtype=torch.bool, device=scores.device)

    is_logits, is_full, is_topk = rows("logits"), rows("probs"), rows("topk")
    out = torch.full_like(scores, -math.log(scores.shape[1]))  # the "label" placeholder
    logits = scores[is_logits]
    if not torch.isfinite(logits).all():
        raise ValueError("teacher logits contain NaN or infinite values")
    out[is_logits] = F.log_softmax(logits / temperature, dim=1)
    probs = scores[is_full | is_topk]
    if not (torch.isfinite(probs).all() and (probs >= 0).all() and (probs > 0).any(dim=1).all()):
        raise ValueError("teacher probabilities must be finite, >= 0 and not all zero in a row")
    decimals = score_decimals(probs)
    half_step = 0.5 * 10.0 ** -decimals if decimals is not None else 0.0
    out[is_full] = F.log_softmax(torch.log(scores[is_full].clamp_min(half_step)) / temperature, dim=1)
    out[is_topk] = _topk_log_probs(scores[is_topk], temperature, half_step)
    return out


def _topk_log_probs(probs: torch.Tensor, temperature: float, half_step: float) -> torch.Tensor:
    """(N, C) top-k answers (hidden classes 0) -> their tempered k + 1 distribution's visible part."""
    visible = probs > 0
    rest = 1.0 - probs.double().sum(dim=1)  # (N,) in float64: a rest of 1e-4 keeps its digits
    tolerance = torch.clamp(visible.sum(dim=1).double() * half_step, min=TOPK_MASS_TOLERANCE)
    has_rest = (rest > tolerance) & ~visible.all(dim=1)
    log_rest = torch.where(has_rest, rest.clamp_min(1e-300).log(), torch.full_like(rest, -math.inf)).float()
    outcomes = torch.cat([torch.log(probs), log_rest[:, None]], dim=1)  # (N, C + 1); log 0 = -inf where hidden
    return F.log_softmax(outcomes / temperature, dim=1)[:, :-1]


def combine_teachers(teachers: Sequence[tuple[torch.Tensor, torch.Tensor, Sequence[str] | str]], weights: Sequence[float],
                     temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Several teachers' answers as one target: the weighted mean of their tempered distributions.

    A label-only row counts as a one-hot distribution on its label. A top-k teacher's tempered rest is
    part of the mean as missing mass: it stays with the classes that no teacher shows (the ``-inf`` ones
    of the mean); where every class is shown by some teacher, ``distillation_loss`` renormalises it away.

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
    al. 2015, sec. 2). The KL treats ``0 * log 0 = 0``, so ``-inf`` teacher entries contribute nothing
    and give no NaN in the loss or its gradient. It is averaged over the rows where ``soft_mask`` is
    True only; rows without a soft output (label-only teachers) feed the hard term alone, and a batch
    with no soft row has ``soft == 0``.

    A row whose tempered teacher mass falls short of 1 by more than ``REST_EPSILON`` and that has hidden
    (``-inf``) classes is a top-k answer with a rest (``teacher_log_probs``). Its KL is over the k + 1
    outcomes: the student's side is its untempered probability of each visible class and the sum over
    the hidden ones, ``[q_1, ..., q_k, q_rest]``, tempered exactly as the teacher's k + 1 outcomes were,
    ``softmax(log [q_1, ..., q_k, q_rest] / T)``. The same map on both sides keeps the minimum where the
    student's k + 1 masses equal the teacher's, at every T. Every other row is matched as before, over
    all C classes with the student at ``softmax(z / T)``; a teacher row short of mass without a hidden
    class is renormalised first.

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
    teacher_log = teacher_log_probs_T.float()
    mass = torch.logsumexp(teacher_log, dim=1)  # (B,) log of each row's tempered mass
    hidden = torch.isneginf(teacher_log)  # (B, C)
    rest = (-torch.expm1(mass)).clamp_min(0.0)  # (B,) the tempered rest of a top-k row, else ~0
    with_rest = (rest > REST_EPSILON) & hidden.any(dim=1)
    # Over all C classes (every row without a rest): the student tempered. A teacher row short of mass with
    # no hidden class (a mean of teachers where each class is shown by one) is renormalised; a full row is
    # used as it is, since renormalising it again only adds float32 noise that T**2 magnifies.
    short = (rest > REST_EPSILON)[:, None]
    kl_rows = _kl(torch.where(short, teacher_log - mass[:, None], teacher_log),
                  F.log_softmax(student_logits.float() / temperature, dim=1))
    if with_rest.any():
        kl_rows = torch.where(with_rest, _rest_kl(student_logits.float(), teacher_log, rest, hidden, temperature),
                              kl_rows)
    soft_rows = soft_mask.sum().clamp_min(1)
    soft = temperature**2 * torch.where(soft_mask, kl_rows, torch.zeros_like(kl_rows)).sum() / soft_rows
    if cfg.targets == "hard":
        loss = hard
    elif cfg.targets == "soft":
        loss = cfg.alpha * soft
    else:
        loss = hard + cfg.alpha * soft
    return {"loss": loss, "hard": hard, "soft": soft}


def _kl(teacher_log: torch.Tensor, student_log: torch.Tensor) -> torch.Tensor:
    """(B,) ``sum p (log p - log q)`` over the last dim with ``0 * log 0 = 0``; ``-inf`` entries of both sides
    are zeroed first where the teacher's are 0, so ``0 * (-inf)`` never appears, not even in backward."""
    teacher_probs = teacher_log.exp()
    empty = teacher_probs == 0
    return (teacher_probs * (teacher_log.masked_fill(empty, 0.0) - student_log.masked_fill(empty, 0.0))).sum(dim=1)


def _rest_kl(logits: torch.Tensor, teacher_log: torch.Tensor, rest: torch.Tensor, hidden: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """(B,) KL over the k + 1 outcomes of top-k rows (``distillation_loss``); finite junk for the other rows."""
    log_q = F.log_softmax(logits, dim=1)  # (B, C) untempered
    some_hidden = hidden.any(dim=1, keepdim=True)
    # A row with no hidden class sums all classes instead: finite, discarded, and its gradient is no NaN.
    log_q_rest = torch.logsumexp(log_q.masked_fill(~hidden & some_hidden, -math.inf), dim=1)  # (B,)
    student = torch.cat([log_q.masked_fill(hidden, -math.inf), log_q_rest[:, None]], dim=1)  # (B, C + 1)
    teacher = torch.cat([teacher_log, rest.clamp_min(1e-30).log()[:, None]], dim=1)  # already tempered
    return _kl(teacher, F.log_softmax(student / temperature, dim=1))
