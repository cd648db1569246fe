"""Measures HttpTeacher's throughput against a delay-bound local server: binary against JSON tensors, both
against the ideal, and against a sequential loop.

The server (a subprocess, so that it does not share the client's GIL) answers every request after a
fixed delay and serves at most ``--concurrency`` requests at once, so the ideal throughput is
``concurrency * batch / delay`` images per second. The model is a tiny two-conv net, so its cost is
small next to the delay. The inputs are 3x64x64 floats (``--channels``, ``--size``): 196,608 values per
request of 16, which is where tensor encoding decides the throughput. With ``--tensor-format json`` each
value is written as a decimal by the client and parsed by the server; with ``binary`` (the binary tensor
data extension of the Open Inference Protocol) both sides copy 786 kB of little-endian float32.

With ``--kserve-python PATH`` (a Python that has the ``kserve`` package), it also times both formats
against KServe's own model server (tests/servers/kserve_server.py) serving the same net, with no delay:
there the server's own parsing and inference are the cost, so there is no ideal to compare with; "auto"
shows which format the teacher keeps after timing both (its warm-up requests decide).

Run from the repository root: ``python benchmarks/http_throughput.py [--delay-ms 50 --batch 16]``.
Exits 1 when binary reaches less than ``--target`` of the ideal or less than ``--target-vs-json`` times
JSON. On a busy machine the figures swing by +-10 %; ``overhead_ms_per_request`` is the time each request
spends outside the server's delay (encoding, transfer, parsing on both sides, thread scheduling), and
the CPU milliseconds per request of client and server show what each format costs whatever the load.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
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

from extractor.teachers.http.config import HttpConfig  # noqa: E402
from extractor.teachers.http.teacher import HttpTeacher  # noqa: E402
from tests.servers.model_server import tiny_classifier  # noqa: E402

FORMATS = ("binary", "json")


def start_server(model: Path, channels: int, delay_s: float, max_concurrent: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "tests.servers.model_server", "--model", str(model), "--protocol",
               "kserve-v2", "--port", "0", "--delay-s", str(delay_s), "--max-concurrent", str(max_concurrent),
               "--channels", "gray" if channels == 1 else "rgb"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("serving"):
        process.kill()
        raise RuntimeError(f"the model server did not start: {line!r}")
    return process, line.split()[-1]


def start_kserve(python: str, model: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([python, "-m", "tests.servers.kserve_server", "--model", str(model), "--port",
                                str(port), "--name", "model", "--input-name", "input"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("KServe's model server did not start")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc), NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def adapter_rates(url: str, batch: np.ndarray, tensor_format: str, concurrency: int, requests_count: int,
                  repeats: int, server_pid: int | None = None) -> tuple[list[float], dict[str, float]]:
    """Images per second with ``concurrency`` predict calls in flight, as the label job runs them, and the
    CPU milliseconds each request cost the client (this process) and the server."""
    teacher = HttpTeacher(HttpConfig(url, "kserve-v2", model="model", batch_size=len(batch), timeout_s=60,
                                     input_name="input", tensor_format=tensor_format))
    rates = []
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: teacher.predict(batch), range(concurrency)))  # warm: one session per thread
        assert tensor_format == "auto" or teacher.tensor_format == tensor_format
        client, server = time.process_time(), cpu_s(server_pid) if server_pid else float("nan")
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(lambda _: teacher.predict(batch), range(requests_count)))
            rates.append(requests_count * len(batch) / (time.perf_counter() - start))
        sent = repeats * requests_count
        cpu = {"client_cpu_ms_per_request": round((time.process_time() - client) / sent * 1000, 2),
               "server_cpu_ms_per_request": round((cpu_s(server_pid) - server) / sent * 1000, 2)
               if server_pid else None, "format_used": teacher.tensor_format}
    return rates, cpu


def sequential_rate(url: str, batch: np.ndarray, requests_count: int) -> float:
    """Images per second of a plain loop of ``requests.post`` calls with JSON tensors, one after another."""
    payload = {"inputs": [{"name": "input", "shape": list(batch.shape), "datatype": "FP32",
                           "data": batch.ravel().tolist()}]}
    requests.post(f"{url}/v2/models/model/infer", json=payload, timeout=60).raise_for_status()
    start = time.perf_counter()
    for _ in range(requests_count):
        requests.post(f"{url}/v2/models/model/infer", json=payload, timeout=60).raise_for_status()
    return requests_count * len(batch) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=50.0, help="server delay per request")
    parser.add_argument("--concurrency", type=int, default=8, help="predict calls in flight = server slots")
    parser.add_argument("--batch", type=int, default=16, help="images per request")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3, help="input channels of the tiny model")
    parser.add_argument("--size", type=int, default=64, help="input side of the tiny model")
    parser.add_argument("--requests", type=int, default=160, help="requests in each binary adapter run")
    parser.add_argument("--repeats", type=int, default=3, help="adapter runs per format; the median counts")
    parser.add_argument("--target", type=float, default=0.8, help="least acceptable fraction of the ideal (binary)")
    parser.add_argument("--target-vs-json", type=float, default=3.0, help="least acceptable binary / JSON")
    parser.add_argument("--kserve-python", help="a Python with kserve installed: also time KServe's model server")
    args = parser.parse_args()
    delay_s = args.delay_ms / 1000
    shape = (args.batch, args.channels, args.size, args.size)
    batch = np.random.default_rng(0).standard_normal(shape, np.float32)
    ideal = args.concurrency * args.batch / delay_s
    figures: dict = {"delay_ms": args.delay_ms, "concurrency": args.concurrency, "batch": args.batch,
                     "input": list(shape[1:]), "ideal_img_s": round(ideal, 1)}
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "tiny.onnx"
        model.write_bytes(tiny_classifier(channels=args.channels, size=args.size, classes=7))
        process, url = start_server(model, args.channels, delay_s, args.concurrency)
        try:
            for tensor_format in FORMATS:
                # JSON runs take 10x longer: fewer requests keep the run short; the rate is per image either way
                count = args.requests if tensor_format == "binary" else max(2 * args.concurrency, args.requests // 8)
                rates, cpu = adapter_rates(url, batch, tensor_format, args.concurrency, count, args.repeats,
                                           process.pid)
                rate = float(np.median(rates))
                figures[tensor_format] = {
                    "img_s": round(rate, 1), "runs_img_s": [round(r, 1) for r in rates],
                    "vs_ideal": round(rate / ideal, 3),
                    "overhead_ms_per_request": round((args.concurrency * args.batch / rate - delay_s) * 1000, 2),
                    **cpu}
            figures["sequential_json_img_s"] = round(sequential_rate(url, batch, max(4, args.requests // 40)), 1)
            figures["server_max_in_flight"] = requests.get(f"{url}/control", timeout=5).json()["max_in_flight"]
        finally:
            process.terminate()
            process.wait(timeout=10)
        if args.kserve_python:
            process, url = start_kserve(args.kserve_python, model)
            try:
                figures["kserve"] = {}
                for tensor_format in (*FORMATS, "auto"):
                    rates, cpu = adapter_rates(url, batch, tensor_format, args.concurrency, args.requests // 4,
                                               args.repeats, process.pid)
                    figures["kserve"][tensor_format] = {"img_s": round(float(np.median(rates)), 1), **cpu}
            finally:
                process.terminate()
                process.wait(timeout=15)
    binary, text = figures["binary"]["img_s"], figures["json"]["img_s"]
    figures["binary_vs_json"] = round(binary / text, 2)
    figures["binary_vs_sequential_json"] = round(binary / figures["sequential_json_img_s"], 2)
    print(json.dumps(figures, indent=2))
    met = binary / ideal >= args.target and binary / text >= args.target_vs_json
    print(f"binary reaches {binary / ideal:.1%} of the ideal (target {args.target:.0%}) and {binary / text:.1f}x "
          f"JSON (target {args.target_vs_json:g}x): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
