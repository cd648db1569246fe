"""Training throughput of the full pipeline over a bare torch loop, on the CPU and (when present) a GPU.

Full pipeline: `students.trainer.Trainer` running a `DistillTask` with every hook `extractor train`
uses (augmentation on uint8 tensors, normalisation, LR schedule, metrics, checkpoints, held-out
evaluation, progress), on the device `extractor train --device` would use, with bfloat16 autocast
and the tensor cache on a GPU. Bare loop: the same student, optimizer and batch size on float tensors
already on the device, cross-entropy only. Targets: full / bare >= 0.9 on each device; with CUDA
the GPU's speed-up over the CPU is printed too.

    python benchmarks/train_throughput.py [--student resnet20] [--images 4096] [--size 32] [--channels 3]
"""
from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from pathlib import Path

import torch

from extractor.students.batches import DistilTensors, InputConfig
from extractor.students.config import DistillConfig, OptimConfig
from extractor.students.hooks import CheckpointHook, EvalHook, LRScheduleHook, MetricsHook, ProgressHook
from extractor.students.losses import distillation_loss
from extractor.students.tasks import DistillTask
from extractor.students.trainer import Trainer, build_optimizer
from extractor.students.zoo import build_student

CLASSES = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="resnet20")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, args.channels, args.size, args.size), dtype=torch.uint8,
                           generator=generator)
    scores = torch.randn(args.images, CLASSES, generator=generator)
    data = DistilTensors.from_teacher(images, scores.argmax(1), scores, "logits", temperature=4.0)
    heldout = data.subset(torch.arange(min(512, args.images)))
    print(f"{args.student}, {args.images} images {args.channels}x{args.size}x{args.size}, batch {args.batch_size}, "
          f"{args.epochs} epochs, {torch.get_num_threads()} CPU threads")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    full_by_device = {}
    for device in devices:
        bare = bare_loop(data, args, device)
        full = full_pipeline(data, heldout, args, device)
        full_by_device[device.type] = full
        print(f"[{device.type}] bare torch loop (tensors on the device) : {bare:9.1f} img/s")
        print(f"[{device.type}] full pipeline (Trainer + all hooks)     : {full:9.1f} img/s")
        print(f"[{device.type}] ratio full / bare                        : {full / bare:9.2f}   (target >= 0.9)")
    if "cuda" in full_by_device:
        print(f"GPU speed-up over {torch.get_num_threads()} CPU threads (full pipeline): "
              f"{full_by_device['cuda'] / full_by_device['cpu']:.1f}x")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(data: DistilTensors, args: argparse.Namespace, device: torch.device) -> float:
    torch.manual_seed(0)
    model = build_student(args.student, CLASSES, args.channels).to(device)
    optimizer, _ = build_optimizer(model, OptimConfig(epochs=args.epochs, batch_size=args.batch_size), 1)
    inputs = data.images.to(device).float().sub(127.5).div(127.5)
    labels = data.labels.to(device)
    mixed = device.type == "cuda"
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(args.epochs):
        for offset in range(0, len(inputs), args.batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
                loss = torch.nn.functional.cross_entropy(model(inputs[offset:offset + args.batch_size]),
                                                         labels[offset:offset + args.batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _synchronize(device)
    return args.epochs * len(inputs) / (time.perf_counter() - start)


def full_pipeline(data: DistilTensors, heldout: DistilTensors, args: argparse.Namespace, device: torch.device) -> float:
    torch.manual_seed(0)
    cfg = OptimConfig(epochs=args.epochs, batch_size=args.batch_size)
    distill = DistillConfig()
    task = DistillTask(build_student(args.student, CLASSES, args.channels), distill).to(device)
    optimizer, scheduler = build_optimizer(task, cfg, -(-len(data) // args.batch_size))
    inputs = InputConfig(mean=(127.5,), std=(127.5,))
    train = data.to(device) if device.type == "cuda" else data
    with tempfile.TemporaryDirectory() as out:
        hooks = [LRScheduleHook(scheduler), EvalHook(heldout, inputs, 256, functools.partial(distillation_loss, cfg=distill)),
                 MetricsHook(Path(out) / "metrics.jsonl"), CheckpointHook(Path(out)), ProgressHook(quiet=True)]
        trainer = Trainer(task, optimizer, train, hooks, epochs=args.epochs, batch_size=args.batch_size, seed=0,
                          inputs=inputs, mixed_precision=device.type == "cuda")
        _synchronize(device)
        start = time.perf_counter()
        trainer.train()
        _synchronize(device)
        return args.epochs * len(data) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
