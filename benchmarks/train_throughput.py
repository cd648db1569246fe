"""Training throughput of the full pipeline over a bare torch loop, on the CPU and (when present) a GPU, and the
CPU training step's share of the machine's own limit.

Full pipeline: `students.trainer.Trainer` running a `DistillTask` with every hook `extractor train`
uses (augmentation on uint8 tensors, normalisation, LR schedule, metrics, checkpoints, held-out
evaluation, progress), on the device `extractor train --device` would use, with bfloat16 autocast
and the tensor cache on a GPU. Bare loop: the same student, optimizer and batch size on float tensors
already on the device, cross-entropy only. Targets: full / bare >= 0.9 on each device; with CUDA
the GPU's speed-up over the CPU is printed too, and the GPU pipeline with a channels-last student.

Share of the limit: in rounds, interleaved so that a shared machine's changing load falls on all alike, the
CPU's sustained fp32 rate on a large matmul (same threads) and the time of the product's training step
(`Trainer.run_step`: forward, backward, AdamW) of each student; the step's FLOPs come from
`torch.utils.flop_counter.FlopCounterMode` (forward and backward; the optimizer's elementwise work is not
counted). share = step FLOPs / step time / matmul rate, the median over rounds. Where a share is under 0.5,
the same step is timed with a channels-last student, on one thread, and (``--compile``) under torch.compile.

    python benchmarks/train_throughput.py [--student resnet20] [--images 4096] [--size 32] [--channels 3]
        [--limit-students resnet8 resnet20 squeezenet1_1] [--rounds 3] [--compile] [--json PATH]
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from extractor.students.batches import DistilTensors, InputConfig, train_batches
from extractor.students.config import DistillConfig, OptimConfig
from extractor.students.hooks import CheckpointHook, EvalHook, LRScheduleHook, MetricsHook, ProgressHook
from extractor.students.losses import distillation_loss
from extractor.students.tasks import DistillTask
from extractor.students.trainer import Trainer, build_optimizer
from extractor.students.zoo import build_student

CLASSES = 10
LIMIT_STUDENTS = ("resnet8", "resnet20", "squeezenet1_1")
LOW_SHARE = 0.5
"""Below this share of the matmul rate, other settings are tried."""
INPUTS = InputConfig(mean=(127.5,), std=(127.5,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="resnet20", help="the student of the pipeline / bare-loop ratio")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit-students", nargs="*", default=list(LIMIT_STUDENTS),
                        help="students whose CPU step is measured against the matmul rate (none: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the share measurement")
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per student and round")
    parser.add_argument("--matmul-seconds", type=float, default=1.0, help="matmul time per round")
    parser.add_argument("--compile", action="store_true", help="also time the low-share steps under torch.compile")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    data = synthetic_data(args.images, args.channels, args.size)
    print(f"{args.student}, {args.images} images {args.channels}x{args.size}x{args.size}, batch {args.batch_size}, "
          f"{args.epochs} epochs, {torch.get_num_threads()} CPU threads, load average "
          f"{os.getloadavg()[0]:.1f}")
    results = {"pipeline": pipeline(data, args.student, args.batch_size, args.epochs, report=print)}
    if args.limit_students:
        limit = share_of_limit(args.limit_students, args.batch_size, args.channels, args.size, rounds=args.rounds,
                               steps=args.steps, matmul_seconds=args.matmul_seconds, try_settings=True,
                               compile_low=args.compile)
        results["limit"] = limit
        print(format_limit(limit))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def synthetic_data(images: int, channels: int, size: int) -> DistilTensors:
    """Random uint8 images with random teacher logits: throughput does not depend on the pixels."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (images, channels, size, size), dtype=torch.uint8, generator=generator)
    scores = torch.randn(images, CLASSES, generator=generator)
    return DistilTensors.from_teacher(pixels, scores.argmax(1), scores, "logits", temperature=4.0)


def pipeline(data: DistilTensors, student: str, batch_size: int, epochs: int, *, report=None) -> dict:
    """Full pipeline and bare loop on the CPU and, when present, the GPU (there also the pipeline with a
    channels-last student).

    Returns:
        ``{device: {"bare", "full", "ratio"[, "full_channels_last"]}}`` in images per second, plus
        ``"gpu_speedup"`` (full pipeline, GPU over CPU) with CUDA.
    """
    heldout = data.subset(torch.arange(min(512, len(data))))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results: dict = {}
    for device in devices:
        if device.type == "cuda":  # untimed: cuDNN handles and kernel choice would count against the first run
            bare_loop(data.subset(torch.arange(min(4 * batch_size, len(data)))), student, batch_size, 1, device)
        bare = bare_loop(data, student, batch_size, epochs, device)
        full = full_pipeline(data, heldout, student, batch_size, epochs, device)
        row = {"bare": bare, "full": full, "ratio": full / bare}
        if report:
            report(f"[{device.type}] bare torch loop (tensors on the device) : {bare:9.1f} img/s")
            report(f"[{device.type}] full pipeline (Trainer + all hooks)     : {full:9.1f} img/s")
            report(f"[{device.type}] ratio full / bare                        : {full / bare:9.2f}   (target >= 0.9)")
        if device.type == "cuda":
            row["full_channels_last"] = full_pipeline(data, heldout, student, batch_size, epochs, device,
                                                      channels_last=True)
            if report:
                report(f"[cuda] full pipeline, channels-last student     : {row['full_channels_last']:9.1f} img/s")
        results[device.type] = row
    if "cuda" in results:
        results["gpu_speedup"] = results["cuda"]["full"] / results["cpu"]["full"]
        if report:
            report(f"GPU speed-up over {torch.get_num_threads()} CPU threads (full pipeline): "
                   f"{results['gpu_speedup']:.1f}x")
    return results


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(data: DistilTensors, student: str, batch_size: int, epochs: int, device: torch.device) -> float:
    """Images per second of a plain loop: float tensors already on ``device``, cross-entropy, AdamW."""
    torch.manual_seed(0)
    channels = data.images.shape[1]
    model = build_student(student, CLASSES, channels).to(device)
    optimizer, _ = build_optimizer(model, OptimConfig(epochs=epochs, batch_size=batch_size), 1)
    inputs = data.images.to(device).float().sub(127.5).div(127.5)
    labels = data.labels.to(device)
    mixed = device.type == "cuda"
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(epochs):
        for offset in range(0, len(inputs), batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed):
                loss = torch.nn.functional.cross_entropy(model(inputs[offset:offset + batch_size]),
                                                         labels[offset:offset + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _synchronize(device)
    return epochs * len(inputs) / (time.perf_counter() - start)


class ChannelsLast(torch.nn.Module):
    """A task whose student and inputs are channels-last: a trial of the memory format, without changing the
    product (the trainer reads ``student`` as usual)."""

    def __init__(self, task: torch.nn.Module) -> None:
        super().__init__()
        self.task = task.to(memory_format=torch.channels_last)

    @property
    def student(self) -> torch.nn.Module:
        return self.task.student

    def forward(self, batch):
        return self.task(dataclasses.replace(batch, inputs=batch.inputs.contiguous(memory_format=torch.channels_last)))


def full_pipeline(data: DistilTensors, heldout: DistilTensors, student: str, batch_size: int, epochs: int,
                  device: torch.device, *, channels_last: bool = False) -> float:
    """Images per second of `extractor train`'s trainer with all its hooks (bf16 and the cache on a GPU)."""
    torch.manual_seed(0)
    cfg = OptimConfig(epochs=epochs, batch_size=batch_size)
    distill = DistillConfig()
    task = DistillTask(build_student(student, CLASSES, data.images.shape[1]), distill).to(device)
    if channels_last:
        task = ChannelsLast(task)
    optimizer, scheduler = build_optimizer(task, cfg, -(-len(data) // batch_size))
    train = data.to(device) if device.type == "cuda" else data
    with tempfile.TemporaryDirectory() as out:
        hooks = [LRScheduleHook(scheduler), EvalHook(heldout, INPUTS, 256, functools.partial(distillation_loss, cfg=distill)),
                 MetricsHook(Path(out) / "metrics.jsonl"), CheckpointHook(Path(out)), ProgressHook(quiet=True)]
        trainer = Trainer(task, optimizer, train, hooks, epochs=epochs, batch_size=batch_size, seed=0,
                          inputs=INPUTS, mixed_precision=device.type == "cuda")
        _synchronize(device)
        start = time.perf_counter()
        trainer.train()
        _synchronize(device)
        return epochs * len(data) / (time.perf_counter() - start)


def matmul_rate(seconds: float, n: int = 2048) -> float:
    """Sustained fp32 FLOP/s of ``n x n`` matmuls on the CPU for about ``seconds``, with torch's current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)  # the first call allocates and warms the kernels
    count, start = 0, time.perf_counter()
    while True:
        torch.mm(a, b, out=c)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * n ** 3 * count / elapsed


class _Step:
    """The product's training step (``Trainer.run_step``) of one student on fixed augmented CPU batches."""

    def __init__(self, student: str, batch_size: int, channels: int, size: int, *, channels_last: bool = False,
                 compiled: bool = False) -> None:
        torch.manual_seed(0)
        task: torch.nn.Module = DistillTask(build_student(student, CLASSES, channels), DistillConfig())
        if channels_last:
            task = ChannelsLast(task)
        optimizer, _ = build_optimizer(task, OptimConfig(batch_size=batch_size), 1)
        if compiled:
            task = torch.compile(task)
        data = synthetic_data(2 * batch_size, channels, size)
        self.batches = list(train_batches(data, batch_size, seed=0, epoch=0, inputs=INPUTS))
        self.batch_size = batch_size
        self.trainer = Trainer(task, optimizer, data, [], epochs=1, batch_size=batch_size, seed=0, inputs=INPUTS)
        for batch in self.batches:  # warm-up: allocation, kernel selection, compilation
            self.trainer.run_step(batch)

    def seconds(self, steps: int) -> float:
        """Wall seconds per step over ``steps`` steps."""
        start = time.perf_counter()
        for index in range(steps):
            self.trainer.run_step(self.batches[index % len(self.batches)])
        return (time.perf_counter() - start) / steps


def step_flops(student: str, batch_size: int, channels: int, size: int) -> int:
    """FLOPs of one training step's forward and backward (a multiply-add counts 2), from FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    task = DistillTask(build_student(student, CLASSES, channels), DistillConfig())
    batch = next(train_batches(synthetic_data(batch_size, channels, size), batch_size, seed=0, epoch=0, inputs=INPUTS))
    with FlopCounterMode(display=False) as counter:
        task(batch)["loss"].backward()
    return counter.get_total_flops()


def share_of_limit(students: Iterable[str], batch_size: int, channels: int, size: int, *, rounds: int, steps: int,
                   matmul_seconds: float, try_settings: bool = False, compile_low: bool = False) -> dict:
    """Each student's CPU training step against the CPU's matmul rate, measured in interleaved rounds.

    With ``try_settings``, every student whose share is under ``LOW_SHARE`` is timed again, interleaved with the
    default, with a channels-last student, on one thread, and (``compile_low``) compiled.

    Returns:
        ``{"threads", "batch_size", "matmul_gflops", "students": {name: {"flops_per_image", "img_s", "gflops",
        "share", "settings": {setting: {"img_s", "speedup"}}}}}``; rates are medians over rounds.
    """
    students = list(students)
    threads = torch.get_num_threads()
    flops = {name: step_flops(name, batch_size, channels, size) for name in students}
    steppers = {name: _Step(name, batch_size, channels, size) for name in students}
    matmul, seconds = [], {name: [] for name in students}
    for _ in range(rounds):
        matmul.append(matmul_rate(matmul_seconds))
        for name, stepper in steppers.items():
            seconds[name].append(stepper.seconds(steps))
    results = {"threads": threads, "batch_size": batch_size, "rounds": rounds,
               "matmul_gflops": statistics.median(matmul) / 1e9, "students": {}}
    for name in students:
        shares = [flops[name] / step / rate for step, rate in zip(seconds[name], matmul, strict=True)]
        step = statistics.median(seconds[name])
        results["students"][name] = {"flops_per_image": flops[name] / batch_size, "img_s": batch_size / step,
                                     "gflops": flops[name] / step / 1e9, "share": statistics.median(shares)}
    if try_settings:
        for name, row in results["students"].items():
            if row["share"] < LOW_SHARE:
                row["settings"] = _try_settings(name, steppers[name], batch_size, channels, size, rounds=rounds,
                                                steps=steps, compile_low=compile_low)
    return results


def _try_settings(name: str, default: _Step, batch_size: int, channels: int, size: int, *, rounds: int, steps: int,
                  compile_low: bool) -> dict:
    """Seconds per step of other settings, interleaved with the default's; speed-up = default / setting."""
    threads = torch.get_num_threads()
    variants: dict[str, _Step | None] = {"channels-last": _Step(name, batch_size, channels, size, channels_last=True)}
    if threads > 1:
        variants["1 thread"] = None  # the default step, run with one thread
    if compile_low:
        try:
            variants["torch.compile"] = _Step(name, batch_size, channels, size, compiled=True)
        except Exception as error:  # noqa: BLE001 - a compiler that fails here is a finding, not a crash
            variants["torch.compile"] = None
            print(f"{name}: torch.compile failed: {type(error).__name__}: {str(error)[:200]}")
    timings: dict[str, list[float]] = {"default": [], **{key: [] for key in variants}}
    for _ in range(rounds):
        timings["default"].append(default.seconds(steps))
        for key, stepper in variants.items():
            if key == "1 thread":
                torch.set_num_threads(1)
                try:
                    timings[key].append(default.seconds(steps))
                finally:
                    torch.set_num_threads(threads)
            elif stepper is not None:
                timings[key].append(stepper.seconds(steps))
    base = statistics.median(timings["default"])
    return {key: {"img_s": batch_size / statistics.median(values), "speedup": base / statistics.median(values)}
            for key, values in timings.items() if key != "default" and values}


def format_limit(limit: dict) -> str:
    """The share-of-limit table, with the settings tried where a share was low."""
    lines = [f"CPU training step vs the CPU's fp32 matmul rate ({limit['matmul_gflops']:.1f} GFLOP/s, 2048^2 matmuls, "
             f"{limit['threads']} threads), batch {limit['batch_size']}, median of {limit['rounds']} interleaved rounds",
             "", "| student | step MFLOP/image | img/s | step GFLOP/s | share of the matmul rate |",
             "|---|---:|---:|---:|---:|"]
    for name, row in limit["students"].items():
        lines.append(f"| {name} | {row['flops_per_image'] / 1e6:.1f} | {row['img_s']:.0f} | {row['gflops']:.1f} | "
                     f"{row['share']:.2f} |")
    tried = [(name, row["settings"]) for name, row in limit["students"].items() if row.get("settings")]
    if tried:
        lines += ["", f"settings tried where the share is under {LOW_SHARE} (speed-up over the default step):"]
        for name, settings in tried:
            lines.append(f"- {name}: " + ", ".join(f"{key} {value['img_s']:.0f} img/s ({value['speedup']:.2f}x)"
                                                   for key, value in settings.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
