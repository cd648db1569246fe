"""Chance-corrected agreement on a hand-built case."""
import numpy as np
import pytest

from extractor.reporting.agreement import agreement_metrics, cohen_kappa, macro_agreement, majority_baseline

# Teacher: six 0s, two 1s, two 2s. The student agrees on 5 of the 0s, 1 of the 1s, 1 of the 2s.
TEACHER = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
STUDENT = np.array([0, 0, 0, 0, 0, 1, 1, 0, 2, 1])


def test_hand_computed_values():
    assert majority_baseline(TEACHER) == pytest.approx(0.6)  # 6 of 10 answers are class 0
    assert macro_agreement(TEACHER, STUDENT) == pytest.approx((5 / 6 + 1 / 2 + 1 / 2) / 3)
    # p_o = 7/10; class shares teacher (6, 2, 2), student (6, 3, 1): p_e = (36 + 6 + 2) / 100 = 0.44
    assert cohen_kappa(TEACHER, STUDENT) == pytest.approx((0.7 - 0.44) / (1 - 0.44))


def test_perfect_chance_and_degenerate_cases():
    assert cohen_kappa(TEACHER, TEACHER) == 1.0 and macro_agreement(TEACHER, TEACHER) == 1.0
    always_zero = np.zeros(10, dtype=int)
    assert cohen_kappa(TEACHER, always_zero) == pytest.approx(0.0)  # the majority answer is chance
    assert macro_agreement(TEACHER, always_zero) == pytest.approx(1 / 3)
    assert cohen_kappa(always_zero, always_zero) == 1.0
    assert majority_baseline(np.array([], dtype=int)) is None and cohen_kappa(np.array([]), np.array([])) is None


def test_report_metrics_take_the_ceiling_and_invariance_from_the_probe():
    probe = {"images": 200, "measured": True, "changed": {"flip": 0.5, "shift1": 0.2}}
    metrics = agreement_metrics(TEACHER, STUDENT, probe, {"flip": "off", "shift": "stored"})
    assert metrics["teacher_self_agreement"] == {"value": pytest.approx(0.8), "images": 200}
    assert metrics["ceiling_share"] == pytest.approx(0.7 / 0.8)
    assert metrics["invariance"]["flip"] == {"changed": 0.5, "policy": "off"}
    assert metrics["invariance"]["shift"] == {"changed": None, "policy": "stored"}
    none = agreement_metrics(TEACHER, STUDENT, None, None)
    assert none["teacher_self_agreement"] is None and none["invariance"] is None
