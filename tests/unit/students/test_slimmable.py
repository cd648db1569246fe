"""Tests for slimmable students: widths, switchable BatchNorm, plain export, recalibration, in-place distillation."""
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from extractor.errors import ConfigError
from extractor.students.batches import DistilTensors, InputConfig, eval_batches
from extractor.students.config import DistillConfig, OptimConfig, SlimmableConfig
from extractor.students.export import export_onnx
from extractor.students.hooks import CheckpointHook, LRScheduleHook, resume
from extractor.students.losses import distillation_loss
from extractor.students.slimmable import (
    SLIMMABLE_LAYERS,
    SlimmableConv2d,
    SlimmableLinear,
    SlimmableNet,
    SwitchableBatchNorm2d,
    build_slimmable,
    recalibrate_batchnorm,
    to_plain,
)
from extractor.students.tasks import InplaceDistillTask
from extractor.students.trainer import HookBase, Trainer, build_optimizer
from extractor.students.zoo import build_student, count_parameters

WIDTHS = (1.0, 0.75, 0.5, 0.25)
T = 2.0
INPUTS = InputConfig(mean=(128.0,), std=(64.0,))


class TinySlim(SlimmableNet):
    """One slimmable convolution, its switchable BatchNorm and a slimmable head: 8 channels at width 1."""

    def __init__(self, widths=WIDTHS, classes=3):
        super().__init__(widths)
        self.conv = SlimmableConv2d(1, 8, 3, 2, 1, slim_in=False)
        self.bn = SwitchableBatchNorm2d(8, self.widths)
        self.fc = SlimmableLinear(8, classes)
        self.set_width(self.widths[0])

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def _data(n=24, classes=3, side=16, seed=0) -> DistilTensors:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8, generator=generator)
    scores = torch.softmax(2 * torch.randn(n, classes, generator=generator), dim=1)
    return DistilTensors.from_teacher(images, scores.argmax(dim=1), scores, "probs", T)


@pytest.mark.parametrize("name", ["resnet8", "resnet20"])
def test_each_width_is_the_zoo_resnet_of_that_width(name):
    model = build_slimmable(name, 10, 3, WIDTHS).eval()
    x = torch.randn(2, 3, 32, 32)
    counts = []
    for width in WIDTHS:
        plain = to_plain(model, width).eval()
        zoo = build_student(name, 10, 3, width=width).eval()
        zoo.load_state_dict(plain.state_dict())  # same names, same shapes
        model.set_width(width)
        with torch.inference_mode():
            assert torch.equal(zoo(x), model(x)) and torch.equal(plain(x), model(x))
        assert not any(isinstance(m, SLIMMABLE_LAYERS) for m in plain.modules())
        counts.append(count_parameters(plain))
    assert counts[0] == count_parameters(build_student(name, 10, 3))
    # convolutions scale with width squared (BatchNorm and the head linearly, a few percent of the whole)
    assert [count / counts[0] for count in counts] == pytest.approx([w * w for w in WIDTHS], abs=0.02)
    assert model.width == 0.25 and count_parameters(model) > counts[0]  # the switchable BatchNorms of all widths


def test_switching_width_changes_the_active_channels_and_parameters():
    model = TinySlim()
    for width, channels in {1.0: 8, 0.75: 6, 0.5: 4, 0.25: 2}.items():
        model.set_width(width)
        assert model.conv.active() == (1, channels, 1) and model.fc.active() == channels
        assert model.bn.active().num_features == channels
        # 3x3 filters on one input channel, BatchNorm's scale and shift, the 3-class head and its bias
        assert count_parameters(to_plain(model, width)) == 9 * channels + 2 * channels + 3 * channels + 3
    with pytest.raises(ValueError, match="0.3"):
        model.set_width(0.3)


def test_each_width_keeps_its_own_batchnorm_statistics():
    model = TinySlim().train()
    model.set_width(0.5)
    model(torch.randn(8, 1, 8, 8) * 3 + 5)
    assert model.bn.norms[WIDTHS.index(0.5)].num_batches_tracked == 1
    assert all(norm.num_batches_tracked == 0 for i, norm in enumerate(model.bn.norms) if WIDTHS[i] != 0.5)


def test_depthwise_convolutions_slim_their_groups():
    conv = SlimmableConv2d(8, 8, 3, 1, 1, depthwise=True)
    conv.width = 0.5
    assert conv.active() == (4, 4, 4) and conv(torch.randn(1, 4, 5, 5)).shape == (1, 4, 5, 5)
    assert conv.plain().weight.shape == (4, 1, 3, 3)


@pytest.mark.parametrize(("name", "widths"), [("resnet8", WIDTHS), ("mobilenet_v1", (1.0, 0.25))])
def test_each_widths_onnx_export_matches_torch(name, widths, tmp_path):
    model = build_slimmable(name, 5, 1, widths)
    recalibrate_batchnorm(model, [torch.randn(16, 1, 32, 32)])  # non-trivial statistics to export
    model.eval()
    check = torch.randn(3, 1, 32, 32)
    for width in widths:
        path = tmp_path / f"student_w{width}.onnx"
        assert export_onnx(to_plain(model, width), path, 1, 32) < 1e-4
        (logits,) = ort.InferenceSession(str(path)).run(["logits"], {"input": check.numpy()})
        model.set_width(width)
        with torch.inference_mode():
            assert torch.allclose(torch.from_numpy(logits), model(check), atol=1e-4)


def test_recalibration_sets_each_widths_statistics_to_the_batches_average():
    model = TinySlim()
    model.set_width(0.5)
    model.eval()
    momentum = model.bn.norms[0].momentum
    batches = [torch.randn(6, 1, 8, 8) * 2 + 1, torch.randn(6, 1, 8, 8) - 3]
    recalibrate_batchnorm(model, batches)
    assert model.width == 0.5 and not model.training and model.bn.norms[0].momentum == momentum
    for index, width in enumerate(WIDTHS):
        model.set_width(width)
        with torch.no_grad():
            means = torch.stack([model.conv(x).mean(dim=(0, 2, 3)) for x in batches]).mean(dim=0)
        norm = model.bn.norms[index]
        assert torch.allclose(norm.running_mean, means, atol=1e-5)
        assert norm.num_batches_tracked == len(batches)


def _captured_logits(task, batch):
    """Runs one step of ``task`` and returns its loss parts and the logits of each width, in order."""
    seen = []
    handle = task.student.register_forward_hook(lambda module, args, out: seen.append((module.width, out.detach())))
    try:
        parts = task(batch)
    finally:
        handle.remove()
    return parts, seen


def _kl(source, logits):
    target = F.softmax(source / T, dim=1)
    return T**2 * (target * (F.log_softmax(source / T, dim=1) - F.log_softmax(logits / T, dim=1))).sum(1).mean()


def _batch():
    return next(eval_batches(_data(n=8), 8, inputs=INPUTS))


@pytest.mark.parametrize("inplace", ["none", "teacher", "ta"])
def test_inplace_modes_take_each_widths_targets_from_the_right_source(inplace):
    torch.manual_seed(0)
    distill = DistillConfig(temperature=T)
    task = InplaceDistillTask(TinySlim(), distill, SlimmableConfig(widths=WIDTHS, inplace=inplace, sandwich=False))
    batch = _batch()
    parts, seen = _captured_logits(task, batch)
    assert [width for width, _ in seen] == list(WIDTHS)
    teacher = distillation_loss(seen[0][1], batch.labels, batch.teacher_log_probs, batch.soft_mask, distill)
    assert parts["loss_w1.0"].item() == pytest.approx(teacher["loss"].item())
    assert parts["hard"].item() == pytest.approx(teacher["hard"].item())
    for index in range(1, len(WIDTHS)):
        width, logits = seen[index]
        if inplace == "none":
            expected = distillation_loss(logits, batch.labels, batch.teacher_log_probs, batch.soft_mask, distill)["loss"]
        else:
            source = seen[index - 1 if inplace == "ta" else 0][1]  # ta: the width just above; teacher: the widest
            expected = _kl(source, logits)
        assert parts[f"loss_w{width}"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx(sum(parts[f"loss_w{w}"].item() for w in WIDTHS), rel=1e-5)
    assert task.student.width == 1.0


def test_ta_targets_are_detached_so_a_narrow_width_never_pushes_the_wider_one():
    torch.manual_seed(0)
    task = InplaceDistillTask(TinySlim(), DistillConfig(temperature=T),
                              SlimmableConfig(widths=(1.0, 0.5), inplace="ta", sandwich=False))
    task(_batch())["loss_w0.5"].backward()
    wide_only = task.student.conv.weight.grad[4:]  # channels 4..7 exist only at width 1.0
    assert torch.count_nonzero(wide_only) == 0 and torch.count_nonzero(task.student.conv.weight.grad[:4]) > 0


def test_sandwich_trains_the_widest_and_narrowest_every_step_and_one_width_between():
    torch.manual_seed(0)
    task = InplaceDistillTask(TinySlim(), DistillConfig(temperature=T), SlimmableConfig(widths=WIDTHS))
    steps = [task.step_widths() for _ in range(40)]
    assert all(len(s) == 3 and s[0] == 1.0 and s[-1] == 0.25 for s in steps)
    assert {s[1] for s in steps} == {0.75, 0.5}
    everything = InplaceDistillTask(TinySlim(), DistillConfig(), SlimmableConfig(widths=WIDTHS, sandwich=False))
    assert everything.step_widths() == WIDTHS


class StopAfter(HookBase):
    """Simulates a kill right after the checkpoint of epoch ``epoch``."""

    def __init__(self, epoch):
        self.epoch = epoch

    def after_epoch(self, trainer):
        if trainer.state.epoch == self.epoch:
            raise KeyboardInterrupt


def _trainer(directory, stop=None, epochs=3):
    torch.manual_seed(0)
    model = TinySlim()
    task = InplaceDistillTask(model, DistillConfig(temperature=T), SlimmableConfig(widths=WIDTHS, inplace="ta"))
    data = _data(n=20)
    optimizer, scheduler = build_optimizer(task, OptimConfig(epochs=epochs, batch_size=8), 3)
    hooks = [LRScheduleHook(scheduler), CheckpointHook(directory), *([stop] if stop else [])]
    return Trainer(task, optimizer, data, hooks, epochs=epochs, batch_size=8, seed=0, inputs=INPUTS)


def test_a_run_stopped_after_an_epoch_resumes_to_the_same_weights(tmp_path):
    straight = _trainer(tmp_path / "straight")
    straight.train()
    stopped = _trainer(tmp_path / "resumed", StopAfter(1))
    with pytest.raises(KeyboardInterrupt):
        stopped.train()
    torch.manual_seed(123)  # a new process: the RNG comes from the checkpoint, not from here
    resumed = _trainer(tmp_path / "resumed")
    resume(resumed, tmp_path / "resumed" / "last.pt")
    resumed.train()
    assert resumed.state.step == straight.state.step == 9
    for name, value in straight.task.state_dict().items():
        assert torch.equal(value, resumed.task.state_dict()[name]), name


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"widths": ()}, "--slimmable"), ({"widths": (1.0, 1.5)}, "--slimmable"), ({"widths": (1.0, 0.5, 0.5)}, "--slimmable"),
    ({"inplace": "assistant"}, "--inplace"),
])
def test_slimmable_config_rejects_bad_flags_naming_them(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SlimmableConfig(**kwargs)


def test_slimmable_flags_parse_sort_and_need_each_other():
    assert SlimmableConfig.from_flags("0.5,1.0,0.25", "teacher", False) == SlimmableConfig(
        widths=(1.0, 0.5, 0.25), inplace="teacher", sandwich=False)
    assert SlimmableConfig.from_flags(None, None, True) is None
    with pytest.raises(ConfigError, match="--slimmable"):
        SlimmableConfig.from_flags(None, "ta", True)
    with pytest.raises(ConfigError, match="--slimmable"):
        SlimmableConfig.from_flags("1.0,half", None, True)


def test_unknown_slimmable_architecture_lists_the_valid_ones():
    with pytest.raises(KeyError, match="mobilenet_v1"):
        build_slimmable("squeezenet1_1", 10, 3, WIDTHS)
    assert isinstance(build_slimmable("resnet8", 10, 3, WIDTHS), nn.Module)
