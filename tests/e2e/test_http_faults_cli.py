"""`extractor label` against a kserve-v2 server that fails on purpose: faults end requests, never the job.

The server (tests/servers/model_server.py) injects 429, 503, 500, stalls longer than --timeout and broken
bodies (cut short in their Content-Length, or by a closed connection) into a seeded random share of
requests. Stalls and timeouts are short so that each run takes seconds.
"""
import json
import sqlite3

import pytest

from tests.e2e.cli import extractor
from tests.images import write_jpegs
from tests.servers.model_server import tiny_classifier

pytestmark = pytest.mark.timeout(300)

TINY = tiny_classifier(channels=1, size=32, classes=5)
FLAGS = ["--protocol", "kserve-v2", "--model-name", "model", "--channels", "gray", "--size", "32",
         "--mean", "127.5", "--std", "127.5", "--workers", "1", "--json"]
FAULT_MIX = ("429", "503", "500", "timeout", "bad-json", "truncated")


def label(server, images, store, *extra, check=True):
    return extractor("label", "--teacher", server.url, "--images", images, "--store", store, *FLAGS, *extra,
                     check=check)


def stored(store):
    with sqlite3.connect(store) as db:
        labels = db.execute("SELECT COUNT(*), COUNT(DISTINCT digest) FROM labels").fetchone()
        sent = db.execute("SELECT COALESCE(SUM(images_sent), 0) FROM requests").fetchone()[0]
        failures = db.execute("SELECT reason FROM failures").fetchall()
    return labels, sent, [reason for (reason,) in failures]


def test_one_run_through_a_third_of_requests_failing_labels_every_image_once(serve, tmp_path):
    server = serve(TINY, "kserve-v2", fault_rate=0.3, fault_mix=FAULT_MIX, fault_seed=1, hang_s=1.0)
    images, store = tmp_path / "images", tmp_path / "labels.db"
    write_jpegs(images, 160)
    flags = ["--concurrency", "4", "--request-batch", "8", "--timeout", "0.4", "--budget", "400"]
    summary = json.loads(label(server, images, store, *flags).stdout)
    assert (summary["labeled"], summary["failed"], summary["stopped"]) == (160, 0, None)
    labels, sent, failures = stored(store)
    assert labels == (160, 160) and failures == []
    assert sent == server.counts()["images"] <= 400  # every attempt charged, retries included; none past the budget
    assert sent > 160  # the faults really happened, and their retries were paid for
    assert json.loads(label(server, images, store, *flags).stdout)["queries"] == 0


def test_a_request_out_of_retries_fails_nothing_until_asked_once_more(serve, tmp_path):
    server = serve(TINY, "kserve-v2", fault="503", fault_times=3)
    images, store = tmp_path / "images", tmp_path / "labels.db"
    write_jpegs(images, 20)
    result = label(server, images, store, "--request-batch", "8", "--retries", "2")
    summary = json.loads(result.stdout)
    assert (summary["labeled"], summary["failed"]) == (20, 0)
    assert "asking once more about 8 images" in result.stderr
    assert server.counts()["requests"] == 3 + 1 + 1 + 1  # the first batch's 3 attempts, 2 more batches, its retry
    assert stored(store)[0] == (20, 20)


def test_a_teacher_that_is_down_stops_the_job_with_a_summary(serve, tmp_path):
    server = serve(TINY, "kserve-v2", fault="503", fault_times=-1)
    images, store = tmp_path / "images", tmp_path / "labels.db"
    write_jpegs(images, 60)
    result = label(server, images, store, "--request-batch", "4", "--retries", "0", check=False)
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["stopped"].startswith("8 teacher requests in a row brought no usable answer")
    assert "last: teacher" in summary["stopped"] and "HTTP 503" in summary["stopped"]
    assert summary["labeled"] == 0 and summary["failed"] in (32, 36)  # 8 requests (and the one in flight)
    assert summary["failed"] + summary["pending"] == 60
    labels, sent, failures = stored(store)
    assert labels == (0, 0) and len(failures) == summary["failed"] and all("HTTP 503" in f for f in failures)
    assert sent == server.counts()["images"] == summary["failed"]
    server.set(fault=None)
    assert json.loads(label(server, images, store).stdout)["labeled"] == 60  # the next run asks again


def test_budget_left_by_retries_is_spent_on_a_last_smaller_request(serve, tmp_path):
    server = serve(TINY, "kserve-v2", fault="503", fault_times=2)
    images, store = tmp_path / "images", tmp_path / "labels.db"
    write_jpegs(images, 100)
    summary = json.loads(label(server, images, store, "--concurrency", "4", "--request-batch", "8",
                               "--budget", "104").stdout)
    labels, sent, _ = stored(store)
    assert sent == server.counts()["images"] == 104  # exactly the budget: two retried batches paid 16 more
    assert summary["labeled"] == labels[0] == 104 - 16
    assert summary["skipped_budget"] == 100 - summary["labeled"]
