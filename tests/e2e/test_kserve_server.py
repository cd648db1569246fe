"""`extractor label --protocol kserve-v2` against KServe's own model server (optional: needs the kserve package).

KServe's Python model server lists no inputs or outputs in its metadata; the teacher sends its input as
"input-0" and takes the answer's first output. It takes and gives tensors in both formats: JSON numbers,
and the binary tensor data extension (kserve.protocol.infer_type, InferRequest.from_bytes). Run with the
package installed: `pytest -m serving`.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from tests.e2e.cli import console_script
from tests.images import write_jpegs
from tests.servers.model_server import tiny_classifier

pytestmark = [pytest.mark.serving, pytest.mark.timeout(300)]
kserve = pytest.importorskip("kserve")

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["--channels", "gray", "--size", "32", "--mean", "127.5", "--std", "127.5", "--workers", "1"]
_START_TIMEOUT_S = 120


def run_extractor(*args: object) -> subprocess.CompletedProcess:
    result = subprocess.run([console_script(), *map(str, args)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def kserve_url(tmp_path_factory):
    """KServe's ModelServer serving a kserve.Model that runs a tiny ONNX classifier, on 127.0.0.1."""
    tmp_path = tmp_path_factory.mktemp("kserve")
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_classifier(channels=1, size=32, classes=5))
    port = free_port()
    log = (tmp_path / "kserve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "tests.servers.kserve_server", "--model", str(model),
                               "--port", str(port), "--name", "tiny"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"kserve server did not start:\n{(tmp_path / 'kserve.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, model
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


# auto: the first request (binary) is taken, then formats alternate, timed; 3 requests end before a choice
@pytest.mark.parametrize("tensor_format, used", [("binary", "binary"), ("json", "json"), ("auto", "binary+json")])
def test_labels_through_kserve_model_server_match_the_onnx_model(kserve_url, tmp_path, tensor_format, used):
    url, model = kserve_url
    metadata = requests.get(f"{url}/v2/models/tiny", timeout=5).json()
    assert (metadata["inputs"], metadata["outputs"]) == ([], [])  # what the feature is for
    images = tmp_path / "images"
    write_jpegs(images, 12)
    served = run_extractor("label", "--teacher", url, "--protocol", "kserve-v2", "--model-name", "tiny",
                           "--images", images, "--store", tmp_path / "http.db", *FLAGS, "--request-batch", "4",
                           "--tensor-format", tensor_format, "--json")
    summary = json.loads(served.stdout)
    assert (summary["labeled"], summary["failed"], summary["queries"]) == (12, 0, 12)
    assert summary["tensor_format"] == used and "sending JSON tensors" not in served.stderr
    assert "'input-0'" in served.stderr and "--input-name" in served.stderr
    run_extractor("label", "--teacher", model, "--images", images, "--store", tmp_path / "onnx.db", *FLAGS, "--json")
    http, local = (exported(tmp_path / f"{name}.db", tmp_path / f"{name}.csv") for name in ("http", "onnx"))
    assert (http["label"] == local["label"]).all() and set(http["kind"]) == {"logits"}
    np.testing.assert_allclose(np.stack(http["soft"]), np.stack(local["soft"]), atol=1e-5)


def exported(store: Path, out: Path) -> pd.DataFrame:
    run_extractor("export", "--store", store, "--format", "csv", "--out", out)
    frame = pd.read_csv(out).set_index("digest").sort_index()
    frame["soft"] = [np.asarray(json.loads(soft)) for soft in frame["soft"]]
    return frame
