"""Tests for the training loop, its hooks, resume, and that SqueezeNet really learns."""
import functools
import json
import logging

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from extractor.students.batches import DistilTensors, InputConfig
from extractor.students.hooks import (
    CheckpointHook,
    EvalHook,
    LRScheduleHook,
    MetricsHook,
    ProgressHook,
    evaluate,
    resume,
)
from extractor.students.losses import DistillConfig, distillation_loss
from extractor.students.squeezenet import squeezenet1_1
from extractor.students.tasks import DistillTask
from extractor.students.trainer import HookBase, OptimConfig, Trainer, build_optimizer

INPUTS = InputConfig(mean=(128.0,), std=(64.0,))
LOSS = functools.partial(distillation_loss, cfg=DistillConfig(temperature=2.0))


class TinyNet(nn.Module):
    """Two convolutions and a linear head: the fastest model that still trains."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.body(x))


def _data(n=24, classes=3, side=32, seed=0) -> DistilTensors:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8, generator=generator)
    scores = torch.softmax(2 * torch.randn(n, classes, generator=generator), dim=1)
    return DistilTensors.from_teacher(images, scores.argmax(dim=1), scores, "probs", 2.0,
                                      truth=torch.randint(-1, classes, (n,), generator=generator))


def _trainer(model, data, hooks, epochs=2, batch_size=8, cfg=None):
    cfg = cfg or OptimConfig(epochs=epochs, batch_size=batch_size, lr=1e-3)
    optimizer, scheduler = build_optimizer(model, cfg, -(-len(data) // batch_size))
    trainer = Trainer(DistillTask(model, DistillConfig(temperature=2.0)), optimizer, data,
                      [LRScheduleHook(scheduler), *hooks], epochs=epochs,
                      batch_size=batch_size, seed=cfg.seed, inputs=INPUTS)
    return trainer


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"epochs": 0}, "--epochs"), ({"batch_size": 0}, "--batch-size"), ({"lr": 0.0}, "--lr"),
    ({"lr": float("nan")}, "--lr"), ({"weight_decay": -1.0}, "--weight-decay"), ({"warmup_frac": 1.0}, "--warmup"),
    ({"seed": -1}, "--seed"),
])
def test_optim_config_rejects_invalid_values_naming_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        OptimConfig(**kwargs)


def test_schedule_warms_up_to_the_peak_then_decays_towards_zero():
    model = TinyNet()
    cfg = OptimConfig(epochs=10, lr=0.01, warmup_frac=0.1)
    optimizer, scheduler = build_optimizer(model, cfg, steps_per_epoch=10)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.001)
    assert max(rates) == pytest.approx(0.01) and rates.index(max(rates)) == 9
    assert all(a >= b for a, b in zip(rates[9:-1], rates[10:], strict=True))
    assert rates[-1] < 0.0001
    assert [group["weight_decay"] for group in optimizer.param_groups] == [cfg.weight_decay, 0.0]


class Recorder(HookBase):
    def __init__(self):
        self.calls = []

    def before_train(self, trainer):
        self.calls.append(("before_train", trainer.state.step))

    def after_step(self, trainer):
        self.calls.append(("after_step", trainer.state.step))

    def after_epoch(self, trainer):
        self.calls.append(("after_epoch", trainer.state.epoch))

    def after_train(self, trainer):
        self.calls.append(("after_train", trainer.state.step))


def test_hooks_run_in_order_around_every_step_and_epoch():
    recorder = Recorder()
    state = _trainer(TinyNet(), _data(n=20), [recorder], epochs=2, batch_size=8).train()
    steps = [("after_step", 1), ("after_step", 2), ("after_step", 3)]
    assert recorder.calls == [("before_train", 0), *steps, ("after_epoch", 1),
                              *[(name, n + 3) for name, n in steps], ("after_epoch", 2), ("after_train", 6)]
    assert (state.epoch, state.step) == (2, 6)
    assert set(state.losses) == {"loss", "hard", "soft"}


def test_a_non_finite_loss_raises_naming_the_step_before_touching_the_weights():
    class Poison(HookBase):
        def after_step(self, trainer):
            if trainer.state.step == 2:
                trainer.model.head.bias.data[0] = float("nan")

    model = TinyNet()
    trainer = _trainer(model, _data(), [Poison()])
    with pytest.raises(FloatingPointError, match="step 3"):
        trainer.train()
    assert trainer.state.step == 2
    assert torch.isfinite(model.head.weight).all()


def test_evaluate_measures_fidelity_and_accuracy_on_known_rows_only():
    class Constant(nn.Module):  # always predicts class 1
        def __init__(self):
            super().__init__()
            self.logits = nn.Parameter(torch.tensor([0.0, 5.0, 0.0]))

        def forward(self, x):
            return self.logits.expand(x.shape[0], 3)

    data = _data(n=24)
    model = Constant()
    results = evaluate(model, data, INPUTS, batch_size=5, loss_fn=LOSS)
    known = data.truth >= 0
    assert results["fidelity"] == pytest.approx((data.labels == 1).float().mean().item())
    assert results["accuracy"] == pytest.approx((data.truth[known] == 1).float().mean().item())
    expected = LOSS(model.logits.detach().expand(24, 3), data.labels, data.teacher_log_probs, data.soft_mask)
    assert results["loss"] == pytest.approx(expected["loss"].item())
    assert model.training

    no_truth = DistilTensors(data.images, data.labels, data.teacher_log_probs, data.soft_mask)
    assert "accuracy" not in evaluate(model, no_truth, INPUTS, batch_size=5)


def test_metrics_hold_one_record_per_step_and_per_evaluation(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _trainer(TinyNet(), _data(n=20), [EvalHook(_data(n=6, seed=1), INPUTS, 4, LOSS), MetricsHook(path)]).train()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    heldout = [r for r in records if r["split"] == "heldout"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert [r["epoch"] for r in train] == [1, 1, 1, 2, 2, 2]
    assert set(train[0]) == {"step", "epoch", "split", "loss", "hard", "soft", "lr"}
    assert train[0]["lr"] == pytest.approx(1e-3)  # the rate each step used: 6 steps, 1 of warmup, then cosine
    assert train[1]["lr"] > train[-1]["lr"] > 0
    assert [(r["step"], r["epoch"]) for r in heldout] == [(3, 1), (6, 2)]
    assert {"fidelity", "accuracy", "loss"} <= set(heldout[0])


def test_best_checkpoint_follows_heldout_fidelity(tmp_path):
    class Scripted(HookBase):
        def after_epoch(self, trainer):
            trainer.state.heldout = {"fidelity": [0.5, 0.7, 0.6][trainer.state.epoch - 1]}

    _trainer(TinyNet(), _data(), [Scripted(), CheckpointHook(tmp_path)], epochs=3).train()
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert last["progress"]["epoch"] == 3
    assert best["progress"]["epoch"] == 2
    assert best["hooks"]["CheckpointHook"] == {"best_fidelity": 0.7}
    model = TinyNet()
    model.load_state_dict(best["model"])


def test_progress_logs_every_n_steps_and_quiet_hides_the_bar(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="extractor.students.hooks"):
        _trainer(TinyNet(), _data(n=20), [ProgressHook(quiet=True, log_every=2)]).train()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["step 2/6 epoch 1", "step 4/6 epoch 2",
                                                                       "step 6/6 epoch 2"]
    assert "train" not in capsys.readouterr().err
    _trainer(TinyNet(), _data(n=20), [ProgressHook(quiet=False)]).train()
    assert "6/6" in capsys.readouterr().err


@pytest.fixture
def one_thread():
    # 32-px convolutions gain nothing from intra-op threads, and on a shared 2-core runner OpenMP
    # threads that wait on a busy core make them many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(tmp_path, kill_after_epoch=None):
    """SqueezeNet (its dropout draws from the global RNG) for 3 epochs, optionally killed."""

    class Kill(HookBase):
        def after_epoch(self, trainer):
            if trainer.state.epoch == kill_after_epoch:
                raise KeyboardInterrupt

    torch.manual_seed(0)
    model = squeezenet1_1(num_classes=3, in_channels=1)
    hooks = [EvalHook(_data(n=6, seed=1), INPUTS, 6), MetricsHook(tmp_path / "metrics.jsonl"), CheckpointHook(tmp_path)]
    return _trainer(model, _data(n=24), [*hooks, Kill()], epochs=3, batch_size=8)


def test_resuming_after_a_kill_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, one_thread):
    straight = _run(tmp_path / "straight")
    straight.train()

    killed = _run(tmp_path / "resumed", kill_after_epoch=1)
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 4, "split": "train", "note": "written after the checkpoint, before the kill"}\n')
    torch.manual_seed(123)  # a fresh process: other initial weights, other global RNG state
    resumed = _run(tmp_path / "resumed")
    resume(resumed, tmp_path / "resumed" / "last.pt")
    assert (resumed.state.epoch, resumed.state.step) == (1, 3)
    resumed.train()

    expected, actual = straight.model.state_dict(), resumed.model.state_dict()
    assert list(expected) == list(actual)
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert resumed.state.heldout == straight.state.heldout
    assert (tmp_path / "resumed" / "metrics.jsonl").read_text() == (tmp_path / "straight" / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_squeezenet_learns_digits_from_scratch(one_thread):
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.tensor(digits.images, dtype=torch.float32)[:, None] * (255 / 16)  # 8x8, values 0..16
    images = F.interpolate(pixels, size=32, mode="bilinear", align_corners=False).round().clamp(0, 255).byte()
    truth = torch.tensor(digits.target)
    data = DistilTensors.from_teacher(images, truth, torch.zeros(len(truth), 10), "label", 1.0, truth=truth)
    order = torch.randperm(len(truth), generator=torch.Generator().manual_seed(0))
    train, heldout = data.subset(order[:1400]), data.subset(order[1400:])

    cfg = OptimConfig(epochs=8, batch_size=32, lr=1e-3, seed=0)  # SqueezeNet's rate: it has no BatchNorm
    inputs = InputConfig(mean=(64.0,), std=(96.0,), flip=False, shift_frac=0.0)  # mirrored digits are other digits
    torch.manual_seed(cfg.seed)
    model = squeezenet1_1(num_classes=10, in_channels=1)
    optimizer, scheduler = build_optimizer(model, cfg, steps_per_epoch=-(-len(train) // cfg.batch_size))
    task = DistillTask(model, DistillConfig(targets="hard"))
    trainer = Trainer(task, optimizer, train, [LRScheduleHook(scheduler), EvalHook(heldout, inputs, 512)],
                      epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, inputs=inputs)
    state = trainer.train()
    assert state.heldout["accuracy"] >= 0.9
