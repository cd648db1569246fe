"""Device handling: --device resolution everywhere, and training on CUDA where there is one (skipped
without: CI has no GPU)."""
import pytest
import torch

from extractor.errors import ConfigError
from extractor.students.batches import DistilTensors, InputConfig
from extractor.students.config import DistillConfig, OptimConfig
from extractor.students.hooks import CheckpointHook, EvalHook, resume
from extractor.students.tasks import DistillTask
from extractor.students.trainer import Trainer, build_optimizer
from extractor.students.zoo import build_student
from extractor.training.pipeline import resolve_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def test_auto_is_cuda_exactly_when_present():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_cuda_without_one_is_a_clear_error():
    with pytest.raises(ConfigError, match="--device cuda:0: no CUDA device"):
        resolve_device("cuda:0")


def _data(n: int = 64) -> DistilTensors:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    scores = torch.randn(n, 4, generator=generator)
    return DistilTensors.from_teacher(images, scores.argmax(1), scores, "logits", 4.0)


def _trainer(device: torch.device, data: DistilTensors, out, epochs: int = 2) -> Trainer:
    torch.manual_seed(0)
    task = DistillTask(build_student("resnet8", 4, 3), DistillConfig()).to(device)
    optimizer, _ = build_optimizer(task, OptimConfig(epochs=epochs, batch_size=16), 4)
    inputs = InputConfig(mean=(127.5,), std=(127.5,))
    hooks = [EvalHook(data.subset(torch.arange(16)), inputs, 16), CheckpointHook(out)]
    train = data.to(device) if device.type == "cuda" else data
    return Trainer(task, optimizer, train, hooks, epochs=epochs, batch_size=16, seed=0, inputs=inputs,
                   mixed_precision=device.type == "cuda")


@cuda
def test_trains_on_cuda_with_mixed_precision_and_the_checkpoint_loads_on_the_cpu(tmp_path):
    data = _data()
    state = _trainer(torch.device("cuda"), data, tmp_path).train()
    assert state.step == 8 and torch.isfinite(torch.tensor(state.losses["loss"]))
    cpu_trainer = _trainer(torch.device("cpu"), data, tmp_path / "cpu", epochs=3)
    resume(cpu_trainer, tmp_path / "last.pt")
    assert cpu_trainer.state.epoch == 2
    cpu_trainer.train()
    assert cpu_trainer.state.epoch == 3
