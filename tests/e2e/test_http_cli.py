"""`extractor label` against real HTTP model servers on 127.0.0.1 serving the real emotion teacher."""
import json
import os
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.assets import EMOTION_FLAGS, EMOTION_TEACHER, lfw_subset, requires_assets
from tests.e2e.cli import extractor, extractor_json
from tests.e2e.test_label_cli import wait_for_rows
from tests.servers.model_server import ModelServer, tiny_classifier

pytestmark = requires_assets
EMOTIONS = "angry,disgust,fear,happy,sad,surprise,neutral"
SECRET = "s3cr3t-token-value-0123456789"


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("http") / "faces"
    lfw_subset(folder, 64, start=100)
    return folder


@pytest.fixture(scope="module")
def onnx_labels(faces, tmp_path_factory):
    """The same images labeled through the local ONNX path, as the reference."""
    store = tmp_path_factory.mktemp("onnx") / "labels.db"
    extractor("label", "--teacher", EMOTION_TEACHER, "--images", faces, "--store", store, *EMOTION_FLAGS, "--quiet")
    return exported(store, store.parent / "labels.parquet")


def exported(store, out):
    extractor("export", "--store", store, "--format", "parquet", "--out", out)
    return pd.read_parquet(out).set_index("digest").sort_index()


def http_label(server, faces, store, *extra, env=None, check=True):
    args = ["label", "--teacher", server.url, "--model-name", "model", "--images", faces, "--store", store,
            *EMOTION_FLAGS, *extra, "--json"]
    command = [sys.executable, "-m", "extractor.cli", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result


def test_kserve_v2_labels_equal_onnx_and_secrets_never_leak(serve, faces, onnx_labels, tmp_path):
    server = serve(EMOTION_TEACHER, "kserve-v2")
    store = tmp_path / "labels.db"
    result = http_label(server, faces, store, "--protocol", "kserve-v2", "--concurrency", "4",
                        "--request-batch", "8", "--header-env", "Authorization=TEACHER_TOKEN",
                        env={"TEACHER_TOKEN": SECRET, "EXTRACTOR_DEBUG": "1"})
    assert server.last_headers.get("Authorization") == SECRET  # the header really was sent
    summary = json.loads(result.stdout)
    assert (summary["labeled"], summary["queries"]) == (64, 64)
    labels = exported(store, tmp_path / "labels.parquet")
    assert (labels["label"] == onnx_labels["label"]).all()
    assert np.allclose(np.stack(labels["soft"]), np.stack(onnx_labels["soft"]), atol=1e-5)
    stats = extractor_json("store", "stats", "--store", store)
    assert stats["requests"][0]["requests"] == 8 + 1  # 8 batches of 8, plus one metadata read
    rerun = http_label(server, faces, store, "--protocol", "kserve-v2",
                       "--header-env", "Authorization=TEACHER_TOKEN", env={"TEACHER_TOKEN": SECRET})
    assert '"queries": 0' in rerun.stdout
    for path in [store, tmp_path / "labels.parquet", *tmp_path.glob("labels.db*")]:
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in result.stdout + result.stderr + rerun.stdout + rerun.stderr


def test_kserve_v2_without_tensor_metadata_labels_with_and_without_input_name(serve, faces, onnx_labels,
                                                                             tmp_path):
    """KServe's own model server lists no inputs or outputs: "input-0" by default, --input-name otherwise."""
    default = serve(EMOTION_TEACHER, "kserve-v2", input_name="input-0", tensor_metadata=False)
    result = http_label(default, faces, tmp_path / "a.db", "--protocol", "kserve-v2", "--request-batch", "16")
    assert json.loads(result.stdout)["labeled"] == 64
    assert "'input-0'" in result.stderr and "--input-name" in result.stderr and "--output-name" in result.stderr
    named = serve(EMOTION_TEACHER, "kserve-v2", input_name="pixels", tensor_metadata=False)
    wrong = http_label(named, faces, tmp_path / "b.db", "--protocol", "kserve-v2", check=False)
    assert wrong.returncode == 1 and "unknown input 'input-0'" in wrong.stderr
    result = http_label(named, faces, tmp_path / "b.db", "--protocol", "kserve-v2", "--input-name", "pixels",
                        "--output-name", named.output_name)
    assert json.loads(result.stdout)["labeled"] == 64 and "input-0" not in result.stderr
    for store in ("a", "b"):
        labels = exported(tmp_path / f"{store}.db", tmp_path / f"{store}.parquet")
        assert (labels["label"] == onnx_labels["label"]).all()
        assert np.allclose(np.stack(labels["soft"]), np.stack(onnx_labels["soft"]), atol=1e-5)


def test_torchserve_topk_needs_classes_and_matches_top1(serve, faces, onnx_labels, tmp_path):
    server = serve(EMOTION_TEACHER, "torchserve", class_names=tuple(EMOTIONS.split(",")), topk=3)
    missing = http_label(server, faces, tmp_path / "a.db", "--protocol", "torchserve", check=False)
    assert missing.returncode == 1 and "--classes" in missing.stderr
    http_label(server, faces, tmp_path / "b.db", "--protocol", "torchserve", "--classes", EMOTIONS,
               "--concurrency", "4")
    labels = exported(tmp_path / "b.db", tmp_path / "b.parquet")
    assert set(labels["kind"]) == {"topk"}
    assert (labels["label"] == onnx_labels["label"]).all()
    assert all((np.asarray(soft) > 0).sum() == 3 for soft in labels["soft"])


def test_budget_is_exact_across_runs_and_dry_run_counts(serve, faces, tmp_path):
    server = serve(EMOTION_TEACHER, "kserve-v2")
    store = tmp_path / "labels.db"
    flags = ["--protocol", "kserve-v2", "--request-batch", "8"]
    dry = http_label(server, faces, store, *flags, "--dry-run")
    assert '"queries": 64' in dry.stdout and server.counts()["images"] == 0
    first = http_label(server, faces, store, *flags, "--budget", "20")
    assert '"labeled": 20' in first.stdout and server.counts()["images"] == 20
    again = http_label(server, faces, store, *flags, "--budget", "20")
    assert '"queries": 0' in again.stdout and server.counts()["images"] == 20
    server.set(fault="503", fault_times=1)  # a retried request is charged twice
    more = json.loads(http_label(server, faces, store, *flags, "--budget", "40").stdout)
    # 20 left: the first batch of 8 is sent twice (16); the next batch of 8 would pass the budget, so a last
    # request of the 4 images the budget still pays for ends the job exactly at it
    sent = server.counts()["images"]
    assert more["labeled"] == 12 and sent == 20 + 16 + 4 == 40
    assert more["skipped_budget"] == 64 - 20 - more["labeled"]
    stats = extractor_json("store", "stats", "--store", store)
    assert sum(row["images_sent"] for row in stats["requests"]) == sent
    with sqlite3.connect(store) as db:  # every image answered is stored: none was paid for and lost
        assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == sent - 8


def test_faults_are_retried_and_malformed_answers_are_failures_not_labels(serve, faces, tmp_path):
    server = serve(EMOTION_TEACHER, "kserve-v2", fault="429", fault_times=2, retry_after="0")
    store = tmp_path / "labels.db"
    flags = ["--protocol", "kserve-v2", "--request-batch", "16", "--retries", "3"]
    assert '"labeled": 64' in http_label(server, faces, store, *flags).stdout
    bad_store = tmp_path / "bad.db"
    server.set(fault="nan", fault_times=1)
    result = json.loads(http_label(server, faces, bad_store, *flags).stdout)
    assert (result["labeled"], result["failed"]) == (63, 1)  # the NaN fails its image, not its request
    with sqlite3.connect(bad_store) as db:
        reasons = {r for (r,) in db.execute("SELECT reason FROM failures")}
        assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 63
    assert len(reasons) == 1 and "NaN" in next(iter(reasons))
    assert '"queries": 0' in http_label(server, faces, bad_store, *flags).stdout  # paid for: not asked again
    assert '"labeled": 1' in http_label(server, faces, bad_store, *flags, "--retry-failed").stdout


def test_killed_http_job_resumes_without_duplicates(tmp_path):
    faces = tmp_path / "faces"
    lfw_subset(faces, 400, start=1000)
    server = ModelServer(EMOTION_TEACHER, "kserve-v2", delay_s=0.05).start()
    try:
        store = tmp_path / "labels.db"
        args = ["label", "--teacher", server.url, "--protocol", "kserve-v2", "--model-name", "model",
                "--images", faces, "--store", store, *EMOTION_FLAGS, "--request-batch", "4", "--quiet"]
        job = subprocess.Popen([sys.executable, "-m", "extractor.cli", *map(str, args)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        done = wait_for_rows(store, minimum=20, timeout_s=120)
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
        assert done < 400
        with sqlite3.connect(store) as db:
            kept, sent = db.execute("SELECT (SELECT COUNT(*) FROM labels), "
                                    "(SELECT SUM(images_sent) FROM requests)").fetchone()
        resumed = extractor_json(*args)
        assert resumed["cached"] + resumed["labeled"] == 400
        with sqlite3.connect(store) as db:
            assert db.execute("SELECT COUNT(*), COUNT(DISTINCT digest) FROM labels").fetchone() == (400, 400)
        # Paid twice: the answers not yet committed (on the ledger, not in the store) and the request in flight.
        assert server.counts()["images"] <= 400 + (sent - kept) + 4
    finally:
        server.stop()


def test_canary_notices_a_teacher_that_changed_behind_the_same_fingerprint(faces, tmp_path):
    store = tmp_path / "labels.db"
    real = ModelServer(EMOTION_TEACHER, "kserve-v2").start()
    port = real.httpd.server_address[1]
    try:
        args = ["label", "--teacher", real.url, "--protocol", "kserve-v2", "--model-name", "model",
                "--images", faces, "--store", store, *EMOTION_FLAGS]
        extractor(*args, "--quiet")
        same = extractor_json(*args, "--canary", "8")
        assert (same["canary_checked"], same["canary_changed"]) == (8, 0)
    finally:
        real.stop()
    swapped = ModelServer(tiny_classifier(1, 48, 7), "kserve-v2", port=port).start()  # same URL, name, version
    try:
        changed = extractor_json(*args, "--canary", "8")
        assert changed["canary_checked"] == 8 and changed["canary_changed"] >= 4
    finally:
        swapped.stop()
