"""Each strategy's scores and picks against a case worked by hand."""
import math

import numpy as np
import pytest

from extractor.errors import ConfigError
from extractor.selection.strategies import (
    PoolOutputs,
    disagreement_scores,
    entropy_scores,
    kcenter_picks,
    margin_scores,
    pick,
)

# Softmax of these logits: [1, 0, 0] (sure), [0.5, 0.5, 0] (torn between two), [1/3, 1/3, 1/3] (lost).
LOGITS = np.log(np.array([[1.0, 1e-12, 1e-12], [0.5, 0.5, 1e-12], [1 / 3, 1 / 3, 1 / 3]]))


def test_entropy_by_hand():
    assert entropy_scores(LOGITS) == pytest.approx([0.0, math.log(2), math.log(3)], abs=1e-6)


def test_margin_by_hand():
    assert margin_scores(LOGITS) == pytest.approx([-1.0, 0.0, 0.0], abs=1e-6)


def test_disagreement_is_total_variation():
    other = np.log(np.array([[1e-12, 1.0, 1e-12], [0.5, 0.5, 1e-12], [0.5, 0.5, 1e-12]]))
    assert disagreement_scores(LOGITS, other) == pytest.approx([1.0, 0.0, 1 / 3], abs=1e-6)


def test_uncertainty_picks_the_least_sure_and_breaks_ties_by_the_fair_order():
    outputs = PoolOutputs(logits=LOGITS, ranks=np.array(["c", "b", "a"]))
    assert list(pick("entropy", outputs, 2)) == [2, 1]
    assert list(pick("margin", outputs, 2)) == [2, 1]  # a tie at margin 0: rank "a" before "b"
    assert list(pick("random", outputs, 3)) == [2, 1, 0]


def test_kcenter_takes_the_farthest_point_each_time():
    # Bought: the origin. Pool on a line at 1, 2, 10, 11: first 11 (farthest), then 2? no: after 11, the
    # distances are 1->1, 2->2, 10->1: so 2; then 1 and 10 tie at 1 and the first, 1 (index 0), wins.
    pool = np.array([[1.0], [2.0], [10.0], [11.0]])
    assert list(kcenter_picks(pool, np.array([[0.0]]), 3)) == [3, 1, 0]


def test_kcenter_never_picks_twice():
    pool = np.zeros((3, 2))
    assert sorted(kcenter_picks(pool, None, 3)) == [0, 1, 2]


def test_disagreement_without_a_second_student_says_how():
    with pytest.raises(ConfigError, match="--other"):
        pick("disagreement", PoolOutputs(logits=LOGITS, ranks=np.array(["a", "b", "c"])), 1)


def test_an_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="random, entropy, margin, kcenter, disagreement"):
        pick("bald", PoolOutputs(logits=LOGITS, ranks=np.array(["a", "b", "c"])), 1)
