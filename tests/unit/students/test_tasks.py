"""Tests for the task seam: the trainer minimises whatever losses a task returns, and several
teachers combine into one target."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from extractor.errors import ConfigError
from extractor.students.batches import Batch, DistilTensors, InputConfig
from extractor.students.config import DistillConfig, HintConfig, OptimConfig
from extractor.students.losses import combine_teachers, teacher_log_probs
from extractor.students.tasks import DistillTask, HintTask
from extractor.students.trainer import Trainer, build_optimizer
from extractor.students.zoo import build_student


def test_two_teachers_combine_into_the_weighted_mean_of_their_tempered_distributions():
    first = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    second = torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    labels, log_mean = combine_teachers([(first.argmax(1), first, "probs"), (second.argmax(1), second, "probs")],
                                        [1.0, 3.0], temperature=1.0)
    # At T = 1 the tempered distributions are the probabilities themselves: (1 * p1 + 3 * p2) / 4.
    expected = torch.tensor([[0.25, 0.5, 0.25], [0.175, 0.175, 0.65]])
    assert torch.allclose(log_mean.exp(), expected, atol=1e-6)
    assert labels.tolist() == [1, 2]


def test_combined_teachers_are_tempered_before_averaging():
    scores = torch.tensor([[2.0, 0.0, -1.0]])
    labels, log_mean = combine_teachers([(labels_of(scores), scores, "logits")] * 2, [1.0, 1.0], temperature=4.0)
    assert torch.allclose(log_mean, teacher_log_probs(scores, "logits", 4.0), atol=1e-6)


def test_a_label_only_teacher_counts_as_one_hot():
    soft = torch.tensor([[0.5, 0.5]])
    labels, log_mean = combine_teachers([(torch.tensor([0]), soft, "probs"),
                                         (torch.tensor([1]), torch.zeros(1, 2), "label")], [1.0, 1.0], 1.0)
    assert torch.allclose(log_mean.exp(), torch.tensor([[0.25, 0.75]]))
    assert labels.tolist() == [1]


def test_teacher_and_weight_counts_must_match():
    with pytest.raises(ConfigError):
        combine_teachers([(torch.tensor([0]), torch.tensor([[1.0, 0.0]]), "probs")], [1.0, 2.0], 1.0)


def labels_of(scores):
    return scores.argmax(dim=1)


class TwoLossTask(nn.Module):
    """A task with two named parts: the trainer must minimise "loss" and log the others."""

    def __init__(self) -> None:
        super().__init__()
        self.student = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        self.calls = 0

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.calls += 1
        logits = self.student(batch.inputs)
        push = logits[:, 0].mean()
        return {"loss": -push, "push": push, "constant": torch.tensor(1.5)}


def test_the_trainer_minimises_the_tasks_loss_and_records_every_part():
    images = torch.randint(0, 256, (32, 1, 4, 4), dtype=torch.uint8)
    data = DistilTensors.from_teacher(images, torch.zeros(32, dtype=torch.int64), torch.zeros(32, 2), "label", 1.0)
    task = TwoLossTask()
    cfg = OptimConfig(epochs=3, batch_size=8, lr=0.05)
    optimizer, _ = build_optimizer(task, cfg, 4)
    trainer = Trainer(task, optimizer, data, [], epochs=3, batch_size=8, seed=0,
                      inputs=InputConfig(flip=False, shift_frac=0.0))
    before = task.student(torch.ones(1, 1, 4, 4))[0, 0].item()
    state = trainer.train()
    assert task.calls == 12 and state.step == 12
    assert set(state.losses) == {"loss", "push", "constant"} and state.losses["constant"] == 1.5
    assert task.student(torch.ones(1, 1, 4, 4))[0, 0].item() > before
    assert trainer.model is task.student


def test_distill_task_returns_the_distillation_parts():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    scores = torch.softmax(torch.randn(5, 3), dim=1)
    batch = Batch(inputs=torch.randn(5, 1, 2, 2), labels=scores.argmax(1),
                  teacher_log_probs=teacher_log_probs(scores, "probs", 2.0),
                  soft_mask=torch.ones(5, dtype=torch.bool), truth=None)
    parts = DistillTask(student, DistillConfig(temperature=2.0, alpha=0.5))(batch)
    assert set(parts) == {"loss", "hard", "soft"}
    assert math.isclose(parts["loss"].item(), parts["hard"].item() + 0.5 * parts["soft"].item(), rel_tol=1e-6)


def hint_batch(channels: int = 3, size: int = 32, classes: int = 10, rows: int = 4) -> Batch:
    scores = torch.softmax(torch.randn(rows, classes), dim=1)
    return Batch(inputs=torch.randn(rows, channels, size, size), labels=scores.argmax(1),
                 teacher_log_probs=teacher_log_probs(scores, "probs", 4.0),
                 soft_mask=torch.ones(rows, dtype=torch.bool), truth=None)


@pytest.mark.parametrize("parent_name, child_name, child_width, parent_map, child_map", [
    ("resnet20", "resnet8", 0.5, (64, 8, 8), (32, 8, 8)),        # deeper and wider parent: channels differ
    ("squeezenet1_1", "resnet8", 1.0, (512, 1, 1), (64, 8, 8)),  # another family: channels and side differ
])
def test_hint_maps_a_mismatched_child_feature_map_onto_the_parents(parent_name, child_name, child_width,
                                                                   parent_map, child_map):
    torch.manual_seed(0)
    parent = build_student(parent_name, 10, 3)
    child = build_student(child_name, 10, 3, child_width)
    task = HintTask(child, parent, DistillConfig(), HintConfig(weight=0.5), input_shape=(3, 32, 32))
    assert task.parent_shape == parent_map and task.student_shape == child_map
    assert (task.adapter.in_channels, task.adapter.out_channels, task.adapter.kernel_size) == \
        (child_map[0], parent_map[0], (1, 1))
    parts = task.train()(hint_batch())
    assert set(parts) == {"loss", "hard", "soft", "hint"} and parts["hint"].item() > 0
    assert math.isclose(parts["loss"].item(), parts["hard"].item() + parts["soft"].item() + 0.5 * parts["hint"].item(),
                        rel_tol=1e-5)
    parts["loss"].backward()
    assert task.adapter.weight.grad is not None and child.fc.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in parent.parameters())
    assert not parent.training  # the frozen parent keeps its BatchNorm statistics
    assert not child._forward_hooks and not dict(child.named_modules())["features"]._forward_hooks


def test_hint_equals_the_mse_of_the_adapted_child_map_and_the_parents():
    torch.manual_seed(0)
    parent, child = build_student("resnet8", 3, 1), build_student("resnet8", 3, 1, 0.5)
    task = HintTask(child, parent, DistillConfig(), HintConfig(), input_shape=(1, 32, 32)).eval()
    batch = hint_batch(channels=1, classes=3)
    with torch.no_grad():
        expected = F.mse_loss(task.adapter(child.features(child.stem(batch.inputs))),
                              parent.features(parent.stem(batch.inputs)))
        assert math.isclose(task(batch)["hint"].item(), expected.item(), rel_tol=1e-5)


def test_hint_names_a_missing_layer():
    with pytest.raises(ConfigError, match="--hint-layer 'body'"):
        HintTask(build_student("resnet8", 3, 3), build_student("resnet8", 3, 3), DistillConfig(),
                 HintConfig(student_layer="body"), input_shape=(3, 32, 32))
