"""Tests for top-k answers trained as k + 1 outcomes (the visible classes and the rest), and rounded answers."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from extractor.students.losses import (
    DistillConfig,
    combine_teachers,
    distillation_loss,
    score_decimals,
    teacher_log_probs,
)
from extractor.teachers.simulated import ART_REVERSE_SIGMOID, AnswerFormat, softmax

ONE = torch.tensor([True])


def _soft(student_logits, teacher_scores, kind, temperature):
    """The soft term of one batch whose rows are all soft."""
    teacher = teacher_log_probs(teacher_scores, kind, temperature)
    mask = torch.ones(len(teacher_scores), dtype=torch.bool)
    return distillation_loss(student_logits, teacher.argmax(dim=1), teacher, mask,
                             DistillConfig(temperature=temperature))["soft"]


def _todays_soft(student_logits, probs, temperature):
    """The soft term as extractor computed it before the rest was kept: the visible classes renormalised, and
    the student tempered over all classes."""
    teacher = F.log_softmax(torch.log(probs) / temperature, dim=1)
    student = F.log_softmax(student_logits / temperature, dim=1)
    p = teacher.exp()
    kl = (p * (teacher.masked_fill(p == 0, 0.0) - student)).sum(dim=1)
    return temperature**2 * kl.mean()


def test_k_plus_one_loss_matches_a_hand_computed_case():
    # Teacher top-2 of 4 classes: [.5, .2, hidden, hidden], rest .3. Student q = softmax(log [4, 2, 1, 3]) =
    # [.4, .2, .1, .3]: visible .4, .2 and rest .1 + .3 = .4.
    # T = 1: KL = .5 log(.5/.4) + .2 log(.2/.2) + .3 log(.3/.4) = 0.1115718 - 0.0863046 = 0.0252672.
    student = torch.log(torch.tensor([[4.0, 2.0, 1.0, 3.0]]))
    teacher = torch.tensor([[0.5, 0.2, 0.0, 0.0]])
    kl_t1 = 0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.4)
    assert kl_t1 == pytest.approx(0.0252672, abs=1e-7)
    assert _soft(student, teacher, "topk", 1.0).item() == pytest.approx(kl_t1, rel=1e-5)
    # Today's handling renormalises the teacher to [5/7, 2/7] and ignores the rest: a larger loss.
    assert _todays_soft(student, teacher, 1.0).item() > 2 * kl_t1


def test_temperature_tempers_both_sides_k_plus_one_outcomes():
    # T = 2, same case: both sides' k + 1 outcomes tempered as softmax(log m / 2), i.e. proportional to sqrt(m):
    # teacher sqrt([.5, .2, .3]) / 1.7020429 = [.4154459, .2627511, .3218030],
    # student sqrt([.4, .2, .4]) / 1.7121247 = [.3693981, .2612039, .3693981];
    # T^2 * KL = 4 * sum t log(t / s) = 4 * 0.0059694 = 0.0238776.
    student = torch.log(torch.tensor([[4.0, 2.0, 1.0, 3.0]]))
    teacher = torch.tensor([[0.5, 0.2, 0.0, 0.0]])
    t = [math.sqrt(m) for m in (0.5, 0.2, 0.3)]
    s = [math.sqrt(m) for m in (0.4, 0.2, 0.4)]
    t, s = [v / sum(t) for v in t], [v / sum(s) for v in s]
    expected = 4 * sum(ti * math.log(ti / si) for ti, si in zip(t, s, strict=True))
    assert expected == pytest.approx(0.0238776, abs=1e-7)
    assert _soft(student, teacher, "topk", 2.0).item() == pytest.approx(expected, rel=1e-5)
    # The teacher row holds its tempered visible part; the missing mass is its tempered rest.
    row = teacher_log_probs(teacher, "topk", 2.0).exp()[0]
    assert row[:2].tolist() == pytest.approx(t[:2], rel=1e-6)
    assert torch.isinf(teacher_log_probs(teacher, "topk", 2.0)[0, 2:]).all()
    assert 1 - row.sum().item() == pytest.approx(t[2], rel=1e-5)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0, 10.0])
def test_a_student_with_the_teachers_k_plus_one_masses_has_zero_loss_at_every_temperature(temperature):
    # The same map on both sides: only the visible masses and the hidden total matter, at any T.
    teacher = torch.tensor([[0.5, 0.2, 0.0, 0.0, 0.0]])
    student = torch.log(torch.tensor([[0.5, 0.2, 0.05, 0.2, 0.05]]))
    assert _soft(student, teacher, "topk", temperature).item() == pytest.approx(0.0, abs=1e-5)
    uneven = torch.log(torch.tensor([[0.5, 0.2, 0.29, 0.005, 0.005]]))  # same hidden total, spread otherwise
    assert _soft(uneven, teacher, "topk", temperature).item() == pytest.approx(0.0, abs=1e-5)


def test_hidden_classes_get_gradient_only_through_their_sum():
    teacher = torch.tensor([[0.6, 0.1, 0.0, 0.0]])
    student = torch.tensor([[1.0, 0.5, -1.0, 2.0]], requires_grad=True)
    _soft(student, teacher, "topk", 4.0).backward()
    q = torch.softmax(student.detach(), dim=1)[0]
    grad = student.grad[0]
    # d loss / d z_j of a hidden class is (its share of the hidden mass) * (d loss / d log q_rest) - q_j * c:
    # grad_j / q_j is the same for both hidden classes.
    assert (grad[2] / q[2]).item() == pytest.approx((grad[3] / q[3]).item(), rel=1e-4)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("mass_missing", [0.0, 5e-5])
def test_a_top_k_answer_whose_visible_mass_is_one_gives_todays_loss(temperature, mass_missing):
    generator = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.7, 0.3, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.25, 0.25]]) * (1 - mass_missing)
    student = torch.randn(2, 5, generator=generator) * 2
    assert _soft(student, probs, "topk", temperature).item() == pytest.approx(
        _todays_soft(student, probs, temperature).item(), rel=1e-4)


def test_a_rounded_top_k_answer_within_its_rounding_of_mass_one_gives_todays_loss():
    # Scores on a 10^-2 grid (32 non-integer values): three visible classes may miss 1 by 3 half steps.
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(16):
        top = rng.dirichlet(np.ones(3)).round(2)
        row = np.zeros(6)
        row[rng.choice(6, 3, replace=False)] = top
        rows.append(row)
    probs = torch.tensor(np.stack(rows), dtype=torch.float32)
    assert score_decimals(probs) == 2 and (probs.sum(dim=1) - 1).abs().max() <= 0.015 + 1e-6
    student = torch.randn(16, 6, generator=torch.Generator().manual_seed(2))
    assert _soft(student, probs, "topk", 4.0).item() == pytest.approx(
        _todays_soft(student, probs / probs.sum(dim=1, keepdim=True), 4.0).item(), rel=1e-4)


def test_full_probabilities_and_label_only_rows_are_unchanged():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 5, generator=generator) * 3
    student = torch.randn(6, 5, generator=generator)
    probs = torch.softmax(logits, dim=1)
    assert _soft(student, probs, "probs", 4.0).item() == pytest.approx(_todays_soft(student, probs, 4.0).item(),
                                                                       rel=1e-5)
    kinds = ["probs", "label"] * 3
    teacher = teacher_log_probs(probs, kinds, 4.0)
    mask = torch.tensor([kind != "label" for kind in kinds])
    out = distillation_loss(student, probs.argmax(dim=1), teacher, mask, DistillConfig(temperature=4.0))
    assert out["soft"].item() == pytest.approx(_todays_soft(student[mask], probs[mask], 4.0).item(), rel=1e-5)
    assert out["hard"].item() == pytest.approx(F.cross_entropy(student, probs.argmax(dim=1)).item(), rel=1e-6)


# --- rounding ------------------------------------------------------------------------------------

def _probs(rows=64, classes=10, seed=0):
    return softmax(np.random.default_rng(seed).normal(0, 3, (rows, classes)))


@pytest.mark.parametrize("decimals", [1, 2, 3, 4, 5])
def test_the_rounding_detector_finds_the_grid_of_rounded_answers(decimals):
    rounded = np.round(_probs(), decimals).astype(np.float32)  # stored as float32, as the store does
    assert score_decimals(rounded) == decimals
    assert score_decimals(torch.from_numpy(rounded)) == decimals


def test_the_rounding_detector_leaves_unrounded_answers_alone():
    assert score_decimals(_probs().astype(np.float32)) is None
    assert score_decimals(np.random.default_rng(0).normal(0, 5, (64, 10)).astype(np.float32)) is None  # logits
    assert score_decimals(np.eye(10)[np.arange(64) % 10]) is None  # one-hot answers say nothing about a grid
    assert score_decimals(np.round(_probs(rows=2), 2)) is None  # too few scores to tell
    assert score_decimals(np.round(np.random.default_rng(0).normal(0, 5, (64, 10)), 2)) == 2  # rounded logits


def test_rounded_zeros_are_raised_to_half_a_grid_step_not_minus_infinity():
    rounded = torch.tensor(np.round(_probs(), 2), dtype=torch.float32)
    assert (rounded == 0).any()
    out = teacher_log_probs(rounded, "probs", 1.0)
    assert torch.isfinite(out).all()
    floored = rounded.clamp_min(0.005)
    assert torch.allclose(out, torch.log(floored / floored.sum(dim=1, keepdim=True)), atol=1e-6)
    exact = torch.tensor(_probs(), dtype=torch.float32)
    exact[0, 0] = 0.0  # an exact zero in unrounded answers stays probability 0
    assert torch.isneginf(teacher_log_probs(exact, "probs", 1.0)[0, 0])


# --- no inf / NaN for any stored format ---------------------------------------------------------------

FORMATS = [AnswerFormat(), AnswerFormat(topk=5), AnswerFormat(topk=3), AnswerFormat(topk=1), AnswerFormat(label_only=True),
           AnswerFormat(decimals=2), AnswerFormat(decimals=1), AnswerFormat(topk=3, decimals=2),
           AnswerFormat(topk=1, decimals=2), AnswerFormat(reverse_sigmoid=ART_REVERSE_SIGMOID),
           AnswerFormat(topk=3, renormalise=True)]


@pytest.mark.parametrize("temperature", [0.1, 1.0, 4.0, 50.0])
@pytest.mark.parametrize("answers", FORMATS, ids=lambda f: f.name)
def test_no_infinite_or_nan_loss_or_gradient_for_any_stored_format(answers, temperature):
    logits = np.random.default_rng(5).normal(0, 6, (64, 10))  # confident: many probabilities round to 0
    logits[0] = [40.0] + [0.0] * 9  # a one-hot answer, and top-1 with score 1.0
    output = answers.apply(softmax(logits))
    scores = torch.zeros(64, 10) if output.probs is None else torch.from_numpy(output.probs)
    teacher = teacher_log_probs(scores, output.kind, temperature)
    assert not torch.isnan(teacher).any() and not (teacher == math.inf).any()
    student = torch.randn(64, 10, generator=torch.Generator().manual_seed(6)).mul(5).requires_grad_(True)
    mask = torch.full((64,), output.kind != "label")
    out = distillation_loss(student, torch.from_numpy(output.labels), teacher, mask,
                            DistillConfig(temperature=temperature))
    out["loss"].backward()
    assert all(math.isfinite(value.item()) for value in out.values())
    assert torch.isfinite(student.grad).all()


def test_rounded_logits_and_mixed_kinds_stay_finite():
    logits = torch.tensor(np.round(np.random.default_rng(0).normal(0, 5, (40, 4)), 1), dtype=torch.float32)
    top = torch.softmax(logits, dim=1)
    top[top < top.topk(2, dim=1).values[:, -1:]] = 0.0
    scores = torch.cat([logits[:20], top[20:]])
    kinds = ["logits"] * 20 + ["topk"] * 20
    student = torch.randn(40, 4, requires_grad=True)
    out = distillation_loss(student, scores.argmax(dim=1), teacher_log_probs(scores, kinds, 4.0),
                            torch.ones(40, dtype=torch.bool), DistillConfig(temperature=4.0))
    out["loss"].backward()
    assert math.isfinite(out["loss"].item()) and torch.isfinite(student.grad).all()


def test_a_top_k_teacher_combined_with_a_full_one_stays_finite():
    probs = torch.tensor(softmax(np.random.default_rng(2).normal(0, 3, (8, 5))), dtype=torch.float32)
    top = probs.clone()
    top[top < top.topk(2, dim=1).values[:, -1:]] = 0.0
    labels = probs.argmax(dim=1)
    combined_labels, log_mean = combine_teachers([(labels, top, "topk"), (labels, probs, "probs")], [1.0, 1.0], 4.0)
    assert torch.equal(combined_labels, labels)
    student = torch.randn(8, 5, requires_grad=True)
    out = distillation_loss(student, combined_labels, log_mean, torch.ones(8, dtype=torch.bool),
                            DistillConfig(temperature=4.0))
    out["loss"].backward()
    assert math.isfinite(out["loss"].item()) and torch.isfinite(student.grad).all()
