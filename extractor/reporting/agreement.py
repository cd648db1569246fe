"""How far a student's agreement with its teacher is above chance: majority baseline, macro agreement, kappa.

Fidelity alone flatters a student of a teacher that gives one answer most of the time: always answering
the teacher's most frequent class scores the majority baseline. Macro agreement weighs every teacher
class alike; Cohen's kappa is agreement beyond what two independent labelings with these class shares
would reach (Cohen 1960).
"""
from __future__ import annotations

import numpy as np


def majority_baseline(teacher: np.ndarray) -> float | None:
    """Share of the teacher's most frequent answer: the fidelity of always answering it."""
    teacher = np.asarray(teacher)
    if not len(teacher):
        return None
    return float(np.bincount(teacher).max() / len(teacher))


def macro_agreement(teacher: np.ndarray, student: np.ndarray) -> float | None:
    """Fidelity within each class the teacher answered, averaged over those classes."""
    teacher, student = np.asarray(teacher), np.asarray(student)
    classes = np.unique(teacher)
    if not len(classes):
        return None
    return float(np.mean([(student[teacher == c] == c).mean() for c in classes]))


def cohen_kappa(teacher: np.ndarray, student: np.ndarray) -> float | None:
    """(p_o - p_e) / (1 - p_e): observed agreement p_o against the agreement p_e expected by chance from the
    two labelings' class shares. 1 is perfect agreement, 0 chance; when chance alone agrees fully (both
    always give the same one answer), 1.0."""
    teacher, student = np.asarray(teacher), np.asarray(student)
    if not len(teacher):
        return None
    classes = int(max(teacher.max(), student.max())) + 1
    observed = float((teacher == student).mean())
    expected = float(np.dot(np.bincount(teacher, minlength=classes), np.bincount(student, minlength=classes))
                     / len(teacher) ** 2)
    if expected >= 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)


def agreement_metrics(teacher: np.ndarray, student: np.ndarray, invariance: dict | None,
                      policy: dict[str, str] | None) -> dict:
    """The report's truth-telling metrics for held-out labels, with the invariance probe's result.

    ``teacher_self_agreement`` is the teacher against itself under a one-pixel shift, from the probe's stored
    answers: no student can be expected to agree with the teacher more than it agrees with itself.
    """
    teacher, student = np.asarray(teacher, dtype=np.int64), np.asarray(student, dtype=np.int64)
    probe = invariance or {}
    changed = probe.get("changed") or {}
    self_agreement = None
    if "shift1" in changed and probe.get("measured", True):
        self_agreement = {"value": 1.0 - changed["shift1"], "images": probe.get("images")}
    fidelity = float((teacher == student).mean()) if len(teacher) else None
    return {
        "majority_baseline": majority_baseline(teacher),
        "macro_agreement": macro_agreement(teacher, student),
        "kappa": cohen_kappa(teacher, student),
        "teacher_self_agreement": self_agreement,
        "ceiling_share": (fidelity / self_agreement["value"]) if self_agreement and fidelity is not None
        and self_agreement["value"] > 0 else None,
        "invariance": {name: {"changed": changed.get(name), "policy": (policy or {}).get(name)}
                       for name in dict.fromkeys([*changed, *(policy or {})])} if (changed or policy) else None,
    }
