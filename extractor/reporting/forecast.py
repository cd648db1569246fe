"""A spend forecast: fidelity against queries, fitted to the rounds so far, extrapolated with an interval.

The curve is a power law in the disagreement, ``1 - fidelity = a * queries^(-b)``: a straight line in
log-log space, fitted by least squares, saturating at full fidelity. With three rounds or more the
interval is the regression's 90% prediction interval (Student's t); with two it is unknown.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

_FLOOR = 1e-4
"""Disagreement below this is taken as this (log of 0)."""


@dataclass(frozen=True)
class Prediction:
    queries: int
    fidelity: float
    low: float | None
    """90% prediction interval (None with fewer than three points)."""
    high: float | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LearningCurve:
    """``1 - fidelity = exp(intercept) * queries^slope`` (slope < 0 while fidelity rises)."""

    intercept: float
    slope: float
    points: int
    residual_sd: float | None
    log_queries_mean: float
    log_queries_ss: float

    def predict(self, queries: int) -> Prediction:
        x = math.log(queries)
        mean = self.intercept + self.slope * x
        if self.residual_sd is None:
            return Prediction(queries, _fidelity(mean), None, None)
        from scipy.stats import t

        spread = self.residual_sd * math.sqrt(1 + 1 / self.points
                                              + (x - self.log_queries_mean) ** 2 / self.log_queries_ss)
        half = float(t.ppf(0.95, self.points - 2)) * spread
        return Prediction(queries, _fidelity(mean), _fidelity(mean + half), _fidelity(mean - half))


def fit_learning_curve(queries: Sequence[int], fidelities: Sequence[float],
                       heldout_images: Sequence[int] | None = None) -> LearningCurve | None:
    """The curve through (queries, fidelity) points, or None with fewer than two distinct query counts.

    ``heldout_images``: how many images each fidelity was measured on. The residual spread is then at least
    what measuring on so few images alone gives, so three rounds that happen to agree exactly (a common sight
    on 50 held-out images) do not make a zero-width interval.
    """
    x = np.log(np.asarray(queries, dtype=np.float64))
    y = np.log(np.clip(1.0 - np.asarray(fidelities, dtype=np.float64), _FLOOR, 1.0))
    if len(x) < 2 or np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (intercept + slope * x)
    sd = float(math.sqrt((residuals ** 2).sum() / (len(x) - 2))) if len(x) > 2 else None
    if sd is not None and heldout_images is not None:
        sd = max(sd, _sampling_sd(fidelities, heldout_images))
    return LearningCurve(float(intercept), float(slope), len(x), sd, float(x.mean()),
                         float(((x - x.mean()) ** 2).sum()))


def _fidelity(log_disagreement: float) -> float:
    return float(min(1.0, max(0.0, 1.0 - math.exp(log_disagreement))))


def _sampling_sd(fidelities: Sequence[float], heldout_images: Sequence[int]) -> float:
    """The sd of log-disagreement from binomial sampling alone: var(log d) ~ (1 - d) / (d n) (delta method)."""
    n = np.maximum(np.asarray(heldout_images, dtype=np.float64), 1.0)
    d = np.clip(1.0 - np.asarray(fidelities, dtype=np.float64), 1.0 / (n + 1), 1.0 - 1.0 / (n + 1))
    return float(math.sqrt(((1.0 - d) / (d * n)).mean()))
