"""Training throughput of the full pipeline over a bare torch loop, in one run.

Full pipeline: `students.trainer.Trainer` with every hook `extractor train` uses (augmentation
on uint8 tensors, normalisation, LR schedule, metrics, checkpoints, held-out evaluation, progress).
Bare loop: the same SqueezeNet, optimizer and batch size on float tensors already in memory.
Target: full / bare >= 0.9.

    python benchmarks/train_throughput.py [--images 2048] [--size 64] [--channels 1] [--epochs 2]
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extractor.students.batches import DistilTensors, InputConfig  # noqa: E402
from extractor.students.hooks import (  # noqa: E402
    CheckpointHook,
    EvalHook,
    LRScheduleHook,
    MetricsHook,
    ProgressHook,
)
from extractor.students.losses import DistillConfig, distillation_loss  # noqa: E402
from extractor.students.squeezenet import squeezenet1_1  # noqa: E402
from extractor.students.tasks import DistillTask  # noqa: E402
from extractor.students.trainer import OptimConfig, Trainer, build_optimizer  # noqa: E402

CLASSES = 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, args.channels, args.size, args.size), dtype=torch.uint8,
                           generator=generator)
    scores = torch.randn(args.images, CLASSES, generator=generator)
    data = DistilTensors.from_teacher(images, scores.argmax(1), scores, "logits", temperature=4.0)
    heldout = data.subset(torch.arange(min(256, args.images)))
    bare = bare_loop(data, args)
    full = full_pipeline(data, heldout, args)
    print(f"SqueezeNet 1.1, {args.images} images {args.channels}x{args.size}x{args.size}, batch {args.batch_size}, "
          f"{args.epochs} epochs, {torch.get_num_threads()} threads")
    print(f"  bare torch loop (in-memory float tensors) : {bare:7.1f} img/s")
    print(f"  full pipeline (Trainer + all hooks)       : {full:7.1f} img/s")
    print(f"  ratio full / bare                         : {full / bare:7.2f}   (target >= 0.9)")


def bare_loop(data: DistilTensors, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    model = squeezenet1_1(CLASSES, args.channels)
    optimizer, _ = build_optimizer(model, OptimConfig(epochs=args.epochs, batch_size=args.batch_size), 1)
    inputs = data.images.float().sub(127.5).div(127.5)
    labels = data.labels
    start = time.perf_counter()
    for _ in range(args.epochs):
        for offset in range(0, len(inputs), args.batch_size):
            loss = torch.nn.functional.cross_entropy(model(inputs[offset:offset + args.batch_size]),
                                                     labels[offset:offset + args.batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return args.epochs * len(inputs) / (time.perf_counter() - start)


def full_pipeline(data: DistilTensors, heldout: DistilTensors, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    model = squeezenet1_1(CLASSES, args.channels)
    cfg = OptimConfig(epochs=args.epochs, batch_size=args.batch_size)
    optimizer, scheduler = build_optimizer(model, cfg, -(-len(data) // args.batch_size))
    inputs = InputConfig(mean=(127.5,), std=(127.5,))
    loss_fn = functools.partial(distillation_loss, cfg=DistillConfig())
    with tempfile.TemporaryDirectory() as out:
        hooks = [LRScheduleHook(scheduler), EvalHook(heldout, inputs, 256, loss_fn),
                 MetricsHook(Path(out) / "metrics.jsonl"), CheckpointHook(Path(out)), ProgressHook(quiet=True)]
        trainer = Trainer(DistillTask(model, DistillConfig()), optimizer, data, hooks, epochs=args.epochs,
                          batch_size=args.batch_size,
                          seed=0, inputs=inputs)
        start = time.perf_counter()
        trainer.train()
        return args.epochs * len(data) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
