"""`--executor ray` on real local Ray clusters: the same store, keys and jobs as the local executor, and
exactly-once storage through killed workers and a killed driver."""
import json
import os
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from extractor.config import LabelConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.labeling.job import label_dataset
from extractor.store.label_store import LabelStore
from extractor.teachers.source import TeacherOpener, TeacherSource, open_teacher
from tests.e2e.cli import console_script
from tests.e2e.test_label_cli import wait_for_rows
from tests.images import write_jpegs
from tests.models import linear_classifier
from tests.servers.model_server import tiny_classifier

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance with 2 CPUs for the module; its address for drivers in other processes."""
    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield context.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    return linear_classifier(tmp_path_factory.mktemp("teacher") / "linear.onnx", channels=1, size=24, classes=5)


def label(folder, store, teacher_file, executor, **options):
    source = TeacherSource(str(teacher_file))
    cfg = LabelConfig(images=folder, store=store, preprocess=PreprocessSpec(size=24, channels="gray"),
                      quiet=True, executor=executor, workers=1, **options)
    with LabelStore(store) as label_store:
        return label_dataset(cfg, open_teacher(source), label_store, opener=TeacherOpener.of(source))


def stored(store):
    with LabelStore(store) as label_store:
        return label_store.labels().set_index("digest").sort_index()


def counts(store):
    with sqlite3.connect(store) as db:
        return db.execute("SELECT COUNT(*), COUNT(DISTINCT digest) FROM labels").fetchone()


def test_ray_labels_equal_local_and_either_executor_resumes_the_other(cluster, teacher_file, tmp_path):
    write_jpegs(tmp_path / "images", 60)
    local = label(tmp_path / "images", tmp_path / "local.db", teacher_file, "local", batch_size=8)
    remote = label(tmp_path / "images", tmp_path / "ray.db", teacher_file, "ray", batch_size=8)
    assert (local.labeled, remote.labeled, remote.queries, remote.failed) == (60, 60, 60, 0)
    a, b = stored(tmp_path / "local.db"), stored(tmp_path / "ray.db")
    assert a.index.equals(b.index) and (a["label"] == b["label"]).all() and a["label"].nunique() > 1
    assert all(np.array_equal(x, y) for x, y in zip(a["soft"], b["soft"]))
    # Same keys: each store is complete for the other executor.
    assert label(tmp_path / "images", tmp_path / "local.db", teacher_file, "ray").queries == 0
    assert label(tmp_path / "images", tmp_path / "ray.db", teacher_file, "local").queries == 0
    # A job half done by one executor is finished by the other, sending only what is missing.
    write_jpegs(tmp_path / "more", 30, seed=100)
    assert label(tmp_path / "more", tmp_path / "ray.db", teacher_file, "local", budget=12).labeled == 12
    rest = label(tmp_path / "more", tmp_path / "ray.db", teacher_file, "ray")
    assert (rest.cached, rest.labeled, rest.queries) == (12, 18, 18)


def test_a_worker_killed_mid_job_is_restarted_and_every_image_stored_once(cluster, teacher_file, tmp_path):
    write_jpegs(tmp_path / "images", 800)
    store = tmp_path / "labels.db"
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(summary=label(tmp_path / "images", store, teacher_file,
                                                                      "ray", batch_size=4)))
    job.start()
    try:
        wait_for_rows(store, minimum=40, timeout_s=120)
        victims = label_worker_pids()
        assert victims, "no Ray label worker found"
        os.kill(victims[0], signal.SIGKILL)
    finally:
        job.join(timeout=300)
    summary = result["summary"]
    assert counts(store)[0] < 800 or summary.labeled == 800
    assert (summary.labeled, summary.failed) == (800, 0)
    assert counts(store) == (800, 800)
    assert victims[0] not in label_worker_pids()


def test_driver_killed_then_resumed_stores_every_image_once_and_requeries_nothing(cluster, teacher_file, tmp_path):
    write_jpegs(tmp_path / "images", 1500)
    store = tmp_path / "labels.db"
    args = [console_script(), "label", "--teacher", teacher_file, "--images", tmp_path / "images", "--store", store,
            "--size", "24", "--channels", "gray", "--batch-size", "4", "--executor", "ray", "--ray-address", cluster,
            "--quiet"]
    driver = subprocess.Popen([str(arg) for arg in args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_rows(store, minimum=40, timeout_s=120)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    done = counts(store)[0]
    assert done < 1500, "the job finished before it could be killed; make the folder larger"
    resumed = subprocess.run([str(arg) for arg in args] + ["--json"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["cached"] >= done and summary["cached"] + summary["labeled"] == 1500
    assert summary["queries"] == summary["labeled"] == 1500 - summary["cached"]  # nothing committed is asked again
    assert counts(store) == (1500, 1500)
    with sqlite3.connect(store) as db:
        statuses = [status for (status,) in db.execute("SELECT status FROM jobs ORDER BY id")]
    assert statuses == ["running", "done"]


def test_http_teacher_budget_is_never_exceeded_across_workers(cluster, serve, tmp_path):
    model = tiny_classifier(channels=1, size=24, classes=5)
    server = serve(model, "kserve-v2", fault="429", fault_times=4, retry_after="0")
    write_jpegs(tmp_path / "images", 64)
    source = TeacherSource(server.url, protocol="kserve-v2", model_name="model", request_batch=4, retries=3)
    for budget in (30, 45):
        cfg = LabelConfig(images=tmp_path / "images", store=tmp_path / "labels.db", executor="ray", ray_actors=2,
                          preprocess=PreprocessSpec(size=24, channels="gray"), batch_size=4, concurrency=2,
                          budget=budget, quiet=True)
        with LabelStore(cfg.store) as store:
            summary = label_dataset(cfg, open_teacher(source), store, opener=TeacherOpener.of(source))
            sent = store.stats()["requests"][0]["images_sent"]
        received = server.counts()["images"]
        assert received <= budget and sent == received, (budget, received, sent)
        assert summary.labeled <= budget
    assert summary.labeled > 0 and server.counts()["requests"] > 4  # the 429s were retried, and charged


def test_two_nodes_on_one_machine(teacher_file, tmp_path):
    """A head and a second node of one CPU each: two workers of one CPU each need both nodes."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        nodes.add_node(num_cpus=1)
        ray.init(address=nodes.address, log_to_driver=False)
        nodes.wait_for_nodes()
        assert len([node for node in ray.nodes() if node["Alive"]]) == 2
        write_jpegs(tmp_path / "images", 40)
        summary = label(tmp_path / "images", tmp_path / "labels.db", teacher_file, "ray", ray_actors=2, batch_size=4)
        assert (summary.labeled, summary.failed) == (40, 0)
        assert counts(tmp_path / "labels.db") == (40, 40)
    finally:
        ray.shutdown()
        nodes.shutdown()


def label_worker_pids() -> list[int]:
    """Ray names an actor's process after its class: ``ray::_LabelWorker...``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"ray::_LabelWorker"):
                pids.append(int(entry.name))
    return sorted(pids)
