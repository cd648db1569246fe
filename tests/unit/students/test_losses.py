"""Tests for the distillation loss and the teacher's tempered log-distribution."""
import math

import pytest
import torch
import torch.nn.functional as F

from extractor.students.losses import (
    DistillConfig,
    distillation_loss,
    teacher_log_probs,
)

ALL_SOFT = torch.tensor([True, True])


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"temperature": 0.0}, "--temperature"),
    ({"temperature": -1.0}, "--temperature"),
    ({"temperature": math.inf}, "--temperature"),
    ({"alpha": -0.1}, "--alpha"),
    ({"targets": "both"}, "--targets"),
    ({"targets": "soft", "alpha": 0.0}, "--alpha"),
])
def test_config_rejects_invalid_values_naming_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        DistillConfig(**kwargs)


def test_loss_matches_a_hand_computed_two_sample_case():
    # T = 2, alpha = 0.5. Student logits [2, 0, 0] and [0, 0, 0]; teacher labels 0 and 2.
    # Row 1, teacher probs [.5, .25, .25]: softmax(log p / 2) is proportional to sqrt(p) = [sqrt2/2, 1/2, 1/2],
    #   q = [sqrt2, 1, 1] / (sqrt2 + 2); the student at T=2 has logits [1, 0, 0], s = [e, 1, 1] / (e + 2).
    # Row 2, top-k teacher [0, .5, .5]: the zero stays zero at any T, q = [0, .5, .5]; s = [1/3] * 3,
    #   KL = 2 * .5 * log(.5 / (1/3)) = log 1.5 (the 0 * log 0 term is 0).
    # Hard: CE([2, 0, 0], 0) = log(e^2 + 2) - 2; CE([0, 0, 0], 2) = log 3.
    e, r2 = math.e, math.sqrt(2)
    q = [r2 / (r2 + 2), 1 / (r2 + 2), 1 / (r2 + 2)]
    s = [e / (e + 2), 1 / (e + 2), 1 / (e + 2)]
    kl_row1 = sum(qi * math.log(qi / si) for qi, si in zip(q, s, strict=True))  # = 0.0528394557...
    kl_row2 = math.log(1.5)  # = 0.4054651081...
    hard = (math.log(e**2 + 2) - 2 + math.log(3)) / 2  # = 0.6690785274...
    soft = 2.0**2 * (kl_row1 + kl_row2) / 2  # = 0.9166091276...
    assert soft == pytest.approx(0.9166091276)

    teacher = teacher_log_probs(torch.tensor([[0.5, 0.25, 0.25], [0.0, 0.5, 0.5]]), ["probs", "topk"], 2.0)
    out = distillation_loss(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), torch.tensor([0, 2]), teacher,
                            ALL_SOFT, DistillConfig(alpha=0.5, temperature=2.0))

    assert out["hard"].item() == pytest.approx(hard, rel=1e-6)
    assert out["soft"].item() == pytest.approx(soft, rel=1e-6)
    assert out["loss"].item() == pytest.approx(hard + 0.5 * soft, rel=1e-6)  # = 1.1273830913


def _random_case(batch=4, classes=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, classes, generator=generator) * 3
    teacher_logits = torch.randn(batch, classes, generator=generator) * 3
    return student, teacher_logits, teacher_logits.argmax(dim=1)


def test_alpha_zero_leaves_the_hard_term_only():
    student, teacher, labels = _random_case()
    out = distillation_loss(student, labels, teacher_log_probs(teacher, "logits", 4.0), torch.ones(4, dtype=torch.bool),
                            DistillConfig(alpha=0.0, temperature=4.0))
    assert out["soft"].item() > 0
    assert torch.equal(out["loss"], out["hard"])


def test_targets_select_the_terms():
    student, teacher, labels = _random_case()
    log_probs = teacher_log_probs(teacher, "logits", 3.0)
    mask = torch.ones(4, dtype=torch.bool)
    parts = {targets: distillation_loss(student, labels, log_probs, mask,
                                        DistillConfig(targets=targets, alpha=0.7, temperature=3.0))
             for targets in ("joint", "hard", "soft")}
    hard, soft = parts["joint"]["hard"], parts["joint"]["soft"]
    assert torch.equal(parts["hard"]["loss"], hard)
    assert torch.allclose(parts["soft"]["loss"], 0.7 * soft)
    assert torch.allclose(parts["joint"]["loss"], hard + 0.7 * soft)


def test_temperature_one_is_the_plain_kl_divergence():
    student, teacher, labels = _random_case()
    out = distillation_loss(student, labels, teacher_log_probs(teacher, "logits", 1.0), torch.ones(4, dtype=torch.bool),
                            DistillConfig(temperature=1.0))
    expected = F.kl_div(F.log_softmax(student, 1), F.log_softmax(teacher, 1), log_target=True, reduction="batchmean")
    assert out["soft"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_large_temperature_approaches_logit_matching_thanks_to_the_t_squared_factor():
    # Hinton et al. 2015, sec. 2.1: as T grows, T^2 * KL -> sum_i (d_i - mean(d))^2 / (2 C), d = z_teacher - z_student.
    student, teacher, labels = _random_case()
    out = distillation_loss(student, labels, teacher_log_probs(teacher, "logits", 1000.0),
                            torch.ones(4, dtype=torch.bool), DistillConfig(temperature=1000.0))
    d = teacher - student
    expected = ((d - d.mean(dim=1, keepdim=True)) ** 2).sum(dim=1).mean() / (2 * d.shape[1])
    assert out["soft"].item() == pytest.approx(expected.item(), rel=1e-2)


def test_tiny_temperature_stays_finite_when_teacher_probabilities_underflow():
    student, teacher, labels = _random_case()
    student.requires_grad_(True)
    log_probs = teacher_log_probs(teacher * 100, "logits", 0.01)
    assert (log_probs.exp() == 0).any()  # the case 0 * log 0 must handle
    cfg = DistillConfig(temperature=0.01)
    out = distillation_loss(student, labels, log_probs, torch.ones(4, dtype=torch.bool), cfg)
    out["loss"].backward()
    assert math.isfinite(out["loss"].item())
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("temperature", [1.0, 2.5, 10.0])
def test_probabilities_temper_exactly_like_the_logits_they_came_from(temperature):
    _, logits, _ = _random_case(batch=8, classes=7, seed=3)
    from_probs = teacher_log_probs(torch.softmax(logits, dim=1), "probs", temperature)
    from_logits = teacher_log_probs(logits, "logits", temperature)
    assert torch.allclose(from_probs, from_logits, atol=1e-5)
    assert torch.allclose(from_logits.exp().sum(dim=1), torch.ones(8))


def test_zeroed_classes_of_full_probabilities_get_probability_zero_and_the_rest_renormalise():
    probs = torch.tensor([[0.6, 0.0, 0.2, 0.0], [0.0, 0.0, 0.3, 0.1]])  # too few scores to detect a rounding
    out = teacher_log_probs(probs, "probs", 1.0)
    assert torch.equal(torch.isinf(out), probs == 0)
    assert (out[probs == 0] < 0).all()
    assert torch.allclose(out.exp(), probs / probs.sum(dim=1, keepdim=True))


def test_topk_zeros_give_no_nan_in_loss_or_gradient():
    probs = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    student = torch.randn(2, 4, requires_grad=True)
    out = distillation_loss(student, probs.argmax(dim=1), teacher_log_probs(probs, "topk", 4.0), ALL_SOFT,
                            DistillConfig(temperature=4.0))
    out["loss"].backward()
    assert all(math.isfinite(value.item()) for value in out.values())
    assert torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0


def test_rows_without_soft_outputs_feed_only_the_hard_term():
    student, teacher, labels = _random_case()
    log_probs = teacher_log_probs(teacher, ["logits", "label", "logits", "label"], 2.0)
    mask = torch.tensor([True, False, True, False])
    cfg = DistillConfig(temperature=2.0)
    mixed = distillation_loss(student, labels, log_probs, mask, cfg)
    soft_rows_only = distillation_loss(student[mask], labels[mask], log_probs[mask], mask[mask], cfg)
    assert mixed["soft"].item() == pytest.approx(soft_rows_only["soft"].item(), rel=1e-6)
    assert mixed["hard"].item() == pytest.approx(F.cross_entropy(student, labels).item(), rel=1e-6)


def test_a_batch_with_no_soft_row_has_zero_soft_term_and_finite_gradient():
    student, _, labels = _random_case()
    student.requires_grad_(True)
    log_probs = teacher_log_probs(torch.zeros(4, 5), "label", 4.0)
    out = distillation_loss(student, labels, log_probs, torch.zeros(4, dtype=torch.bool), DistillConfig())
    out["loss"].backward()
    assert out["soft"].item() == 0.0
    assert torch.equal(out["loss"], out["hard"])
    assert torch.isfinite(student.grad).all()


def test_kinds_can_differ_per_row():
    _, logits, _ = _random_case(batch=2, classes=3)
    probs = torch.softmax(logits, dim=1)
    mixed = teacher_log_probs(torch.stack([logits[0], probs[1]]), ["logits", "probs"], 3.0)
    assert torch.allclose(mixed, teacher_log_probs(logits, "logits", 3.0), atol=1e-5)


@pytest.mark.parametrize(("scores", "kind", "match"), [
    (torch.tensor([[0.5, 0.5]]), "scores", "unknown teacher output kinds"),
    (torch.tensor([[0.5, -0.1]]), "probs", "probabilities"),
    (torch.tensor([[0.0, 0.0]]), "topk", "probabilities"),
    (torch.tensor([[float("nan"), 1.0]]), "logits", "logits"),
    (torch.tensor([0.5, 0.5]), "probs", r"\(B, C\)"),
])
def test_teacher_log_probs_rejects_unusable_scores(scores, kind, match):
    with pytest.raises(ValueError, match=match):
        teacher_log_probs(scores, kind, 1.0)
