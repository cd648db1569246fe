"""Selection strategies: from the student's outputs on the pool to the ``count`` images worth buying.

Each strategy is a pure function of arrays (no files, no models), so its picks can be checked by hand:
``pick(outputs, count) -> indices into the pool, best first``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from extractor.errors import ConfigError


@dataclass(frozen=True)
class PoolOutputs:
    """What the students said about the pool (and, for coverage, about the images already bought)."""

    logits: np.ndarray
    """(N, C) the student's logits on the pool."""
    ranks: np.ndarray
    """(N,) the images' places in the seeded fair order (``labeling.plan.rank``): ties and ``random`` use it."""
    features: np.ndarray | None = None
    """(N, D) the student's penultimate features on the pool (``kcenter``)."""
    bought_features: np.ndarray | None = None
    """(M, D) the same features of the images already answered (``kcenter`` covers the pool beyond them)."""
    other_logits: np.ndarray | None = None
    """(N, C) a second student's logits on the pool (``disagreement``)."""


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def entropy_scores(logits: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of the student's softmax: higher is less sure."""
    probs = softmax(logits.astype(np.float64))
    return -(probs * np.log(np.clip(probs, 1e-300, None))).sum(axis=1)


def margin_scores(logits: np.ndarray) -> np.ndarray:
    """Minus the gap between the two most probable classes: higher is less sure."""
    top2 = np.sort(softmax(logits.astype(np.float64)), axis=1)[:, -2:]
    return -(top2[:, 1] - top2[:, 0])


def disagreement_scores(logits: np.ndarray, other_logits: np.ndarray) -> np.ndarray:
    """Total-variation distance between two students' softmaxes (0: they agree, 1: disjoint)."""
    return 0.5 * np.abs(softmax(logits.astype(np.float64)) - softmax(other_logits.astype(np.float64))).sum(axis=1)


def kcenter_picks(features: np.ndarray, bought: np.ndarray | None, count: int) -> np.ndarray:
    """Greedy k-center (ActiveThief, Sener & Savarese): repeatedly the pool image farthest from everything
    bought or picked so far, in Euclidean feature distance. Without bought images it starts at image 0."""
    features = features.astype(np.float32)
    nearest = np.full(len(features), np.inf, dtype=np.float32)
    for start in range(0, 0 if bought is None else len(bought), 2048):
        nearest = np.minimum(nearest, _distances(features, bought[start:start + 2048].astype(np.float32)).min(axis=1))
    picks: list[int] = []
    for _ in range(min(count, len(features))):
        pick = int(np.argmax(nearest)) if np.isfinite(nearest).any() else 0
        picks.append(pick)
        nearest = np.minimum(nearest, _distances(features, features[pick:pick + 1])[:, 0])
        nearest[pick] = -np.inf
    return np.asarray(picks, dtype=np.int64)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(axis=1)[:, None] - 2.0 * a @ b.T + (b * b).sum(axis=1)[None, :]
    return np.sqrt(np.maximum(squared, 0.0))


def _by_score(scores: np.ndarray, ranks: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` highest scores, ties broken by the fair order."""
    order = np.lexsort((ranks, -scores))
    return order[:count]


def _pick_random(outputs: PoolOutputs, count: int) -> np.ndarray:
    return np.argsort(outputs.ranks, kind="stable")[:count]


def _pick_entropy(outputs: PoolOutputs, count: int) -> np.ndarray:
    return _by_score(entropy_scores(outputs.logits), outputs.ranks, count)


def _pick_margin(outputs: PoolOutputs, count: int) -> np.ndarray:
    return _by_score(margin_scores(outputs.logits), outputs.ranks, count)


def _pick_kcenter(outputs: PoolOutputs, count: int) -> np.ndarray:
    if outputs.features is None:
        raise ConfigError("kcenter needs the student's features")
    return kcenter_picks(outputs.features, outputs.bought_features, count)


def _pick_disagreement(outputs: PoolOutputs, count: int) -> np.ndarray:
    if outputs.other_logits is None:
        raise ConfigError("--strategy disagreement needs a second student: --other RUN, or a run with a parent")
    return _by_score(disagreement_scores(outputs.logits, outputs.other_logits), outputs.ranks, count)


STRATEGIES: dict[str, Callable[[PoolOutputs, int], np.ndarray]] = {
    "random": _pick_random,
    "entropy": _pick_entropy,
    "margin": _pick_margin,
    "kcenter": _pick_kcenter,
    "disagreement": _pick_disagreement,
}


def pick(strategy: str, outputs: PoolOutputs, count: int) -> np.ndarray:
    """Indices into the pool of the ``count`` images ``strategy`` would buy, best first."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return STRATEGIES[strategy](outputs, count)
