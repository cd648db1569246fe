"""Measures HttpTeacher's throughput against a delay-bound local server: versus the ideal and versus a sequential loop.

The server (a subprocess, so that it does not share the client's GIL) answers every request after a
fixed delay and serves at most ``--concurrency`` requests at once, so the ideal throughput is
``concurrency * batch / delay`` images per second. The model is a tiny two-conv net, so its cost is
negligible next to the delay. The inputs are small (1x8x8) for the same reason: float tensors
travel as JSON numbers, and writing and parsing them costs about 0.5 us per value on each side,
which at 1x48x48 (37k values per request of 16) outweighs the 50 ms delay; ``--size`` shows it.

Run from the repository root: ``python benchmarks/http_throughput.py [--delay-ms 50 --batch 16]``.
Exits 1 when the adapter's median run reaches less than ``--target`` of the ideal. On a busy
machine the figures swing by +-10 %; ``overhead_ms_per_request`` is the time each request spends
outside the server's delay (client encoding, transfer, server parsing, thread scheduling).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(ROOT))

from extractor.teachers.http import HttpConfig, HttpTeacher  # noqa: E402
from tests.servers.model_server import tiny_classifier  # noqa: E402


def start_server(model: Path, delay_s: float, max_concurrent: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "tests.servers.model_server", "--model", str(model), "--protocol",
               "kserve-v2", "--port", "0", "--delay-s", str(delay_s), "--max-concurrent", str(max_concurrent)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("serving"):
        process.kill()
        raise RuntimeError(f"the model server did not start: {line!r}")
    return process, line.split()[-1]


def adapter_rates(url: str, batch: np.ndarray, concurrency: int, requests_count: int, repeats: int) -> list[float]:
    """Images per second with ``concurrency`` predict calls in flight, as the label job runs them."""
    teacher = HttpTeacher(HttpConfig(url, "kserve-v2", model="model", batch_size=len(batch), timeout_s=30))
    rates = []
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: teacher.predict(batch), range(concurrency)))  # warm: one session per thread
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(lambda _: teacher.predict(batch), range(requests_count)))
            rates.append(requests_count * len(batch) / (time.perf_counter() - start))
    return rates


def sequential_rate(url: str, batch: np.ndarray, requests_count: int) -> float:
    """Images per second of a plain loop of ``requests.post`` calls, one after another."""
    payload = {"inputs": [{"name": "input", "shape": list(batch.shape), "datatype": "FP32",
                           "data": batch.ravel().tolist()}]}
    requests.post(f"{url}/v2/models/model/infer", json=payload, timeout=30).raise_for_status()
    start = time.perf_counter()
    for _ in range(requests_count):
        requests.post(f"{url}/v2/models/model/infer", json=payload, timeout=30).raise_for_status()
    return requests_count * len(batch) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=50.0, help="server delay per request")
    parser.add_argument("--concurrency", type=int, default=8, help="predict calls in flight = server slots")
    parser.add_argument("--batch", type=int, default=16, help="images per request")
    parser.add_argument("--size", type=int, default=8, help="input side of the tiny 1-channel model")
    parser.add_argument("--requests", type=int, default=160, help="requests in each adapter run")
    parser.add_argument("--repeats", type=int, default=3, help="adapter runs; the median counts")
    parser.add_argument("--target", type=float, default=0.85, help="least acceptable fraction of the ideal")
    args = parser.parse_args()
    delay_s = args.delay_ms / 1000
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "tiny.onnx"
        model.write_bytes(tiny_classifier(channels=1, size=args.size, classes=7))
        process, url = start_server(model, delay_s, args.concurrency)
        try:
            batch = np.random.default_rng(0).standard_normal((args.batch, 1, args.size, args.size), np.float32)
            rates = adapter_rates(url, batch, args.concurrency, args.requests, args.repeats)
            adapter = float(np.median(rates))
            sequential = sequential_rate(url, batch, max(10, args.requests // args.concurrency))
            served = requests.get(f"{url}/control", timeout=5).json()
        finally:
            process.terminate()
            process.wait(timeout=10)
    ideal = args.concurrency * args.batch / delay_s
    figures = {"delay_ms": args.delay_ms, "concurrency": args.concurrency, "batch": args.batch,
               "input": [1, args.size, args.size], "ideal_img_s": round(ideal, 1),
               "adapter_img_s": round(adapter, 1), "adapter_runs_img_s": [round(rate, 1) for rate in rates],
               "overhead_ms_per_request": round((args.concurrency * args.batch / adapter - delay_s) * 1000, 2),
               "sequential_img_s": round(sequential, 1),
               "adapter_vs_ideal": round(adapter / ideal, 3), "adapter_vs_sequential": round(adapter / sequential, 2),
               "server_max_in_flight": served["max_in_flight"]}
    print(json.dumps(figures, indent=2))
    met = adapter / ideal >= args.target
    print(f"adapter reaches {adapter / ideal:.1%} of the ideal (target {args.target:.0%}): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
