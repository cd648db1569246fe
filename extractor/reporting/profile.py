"""Size, parameter count and onnxruntime latency of an ONNX model, teacher or student alike."""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


@dataclass(frozen=True)
class ModelProfile:
    """What a model costs to ship and to run on this machine."""

    size_mb: float
    params: int
    latency_ms: dict[int, float]
    """Median onnxruntime milliseconds per image, by batch size."""

    def as_dict(self) -> dict:
        return asdict(self)


def profile_onnx(path: str | os.PathLike, *, input_size: int | None = None, batch_sizes: tuple[int, ...] = (1, 64),
                 min_runs: int = 5, budget_s: float = 2.0) -> ModelProfile:
    """Measures an ONNX model: file size, parameters (initializer elements) and latency per image.

    Args:
        path: the model file.
        input_size: spatial side for inputs whose height/width are dynamic.
        batch_sizes: batch sizes to time (a fixed-batch model is timed at its own batch only).
        min_runs: timed runs per batch size at least; more while within ``budget_s``.
    """
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    params = sum(int(np.prod(init.dims)) for init in model.graph.initializer)
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    latency = {}
    for batch in batch_sizes:
        shape = [batch if i == 0 and not isinstance(d, int) else d if isinstance(d, int) else input_size or 224
                 for i, d in enumerate(spec.shape)]
        x = np.random.default_rng(0).normal(size=shape).astype(_DTYPES.get(spec.type, np.float32))
        latency[shape[0]] = _time_per_image(session, spec.name, x, min_runs, budget_s)
    return ModelProfile(size_mb=path.stat().st_size / 1e6, params=params, latency_ms=latency)


def _time_per_image(session: ort.InferenceSession, name: str, x: np.ndarray, min_runs: int, budget_s: float) -> float:
    session.run(None, {name: x})  # warm-up: first run allocates
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < min_runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - start)
        if len(times) >= 200:
            break
    return statistics.median(times) * 1000 / len(x)
