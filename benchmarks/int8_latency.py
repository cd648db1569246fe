"""int8 against fp32 latency of one run's students, timed the way that survives a busy machine.

`extractor report` times each ONNX file with every core, one after the other; where other jobs share
the cores, that swings by tens of percent. Here both files run on one onnxruntime thread, interleaved,
each for a fixed time per round, and the median of the rounds counts. Target (issue 11): int8 at least
1.5x faster than fp32 at batch 1.

    extractor quantize RUN_DIR --bits 8
    python benchmarks/int8_latency.py RUN_DIR [--rounds 7] [--seconds 0.3]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

BATCHES = (1, 64)
TARGET = 1.5


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ms_per_image(model: ort.InferenceSession, x: np.ndarray, seconds: float) -> float:
    name = model.get_inputs()[0].name
    model.run(None, {name: x})
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.run(None, {name: x})
        runs += 1
    return (time.perf_counter() - start) / runs / len(x) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory with student.onnx and int8/student.onnx")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3, help="timing per model, batch and round")
    args = parser.parse_args()
    models = {"fp32": session(args.run / "student.onnx"), "int8": session(args.run / "int8" / "student.onnx")}
    shape = [d if isinstance(d, int) else 1 for d in models["fp32"].get_inputs()[0].shape]
    for batch in BATCHES:
        x = np.random.default_rng(0).normal(size=[batch, *shape[1:]]).astype(np.float32)
        times = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                times[name].append(ms_per_image(model, x, args.seconds))
        fp32, int8 = statistics.median(times["fp32"]), statistics.median(times["int8"])
        verdict = "" if batch != 1 else f"   target >= {TARGET}x: {'ok' if fp32 / int8 >= TARGET else 'NOT met'}"
        print(f"batch {batch:2d}: fp32 {fp32:.3f} ms/img, int8 {int8:.3f} ms/img, int8 speed-up {fp32 / int8:.2f}x"
              + verdict)


if __name__ == "__main__":
    main()
