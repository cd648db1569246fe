"""One writer per store and budgets that survive kills, as users run them: several `extractor label` processes on
one store, random `kill -9`s, SIGTERM and Ctrl-C, against the real loopback model server that counts every image
it receives."""
import json
import random
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.e2e.cli import console_script
from tests.images import write_jpegs
from tests.models import linear_classifier
from tests.servers.model_server import tiny_classifier

pytestmark = pytest.mark.timeout(600)

TINY = tiny_classifier(channels=1, size=32, classes=5)
HTTP_FLAGS = ["--protocol", "kserve-v2", "--model-name", "model", "--channels", "gray", "--size", "32", "--mean",
              "127.5", "--std", "127.5", "--workers", "1", "--request-batch", "4", "--batch-size", "4", "--quiet"]


def start(teacher, images, store, *flags):
    command = [console_script(), "label", "--teacher", str(teacher), "--images", str(images), "--store", str(store),
               *map(str, flags)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(job, timeout=300):
    out, err = job.communicate(timeout=timeout)
    return job.returncode, out, err


def ledger(store):
    """(answers, distinct contents, images sent by the ledger, request rows) as committed."""
    with sqlite3.connect(store) as db:
        rows, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT digest) FROM labels").fetchone()
        sent, requests = db.execute("SELECT COALESCE(SUM(images_sent), 0), COUNT(*) FROM requests").fetchone()
    db.close()
    return rows, distinct, sent, requests


def wait_for(condition, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_four_onnx_jobs_on_one_store_buy_each_image_once_within_the_budget(tmp_path):
    write_jpegs(tmp_path / "images", 200)
    teacher = linear_classifier(tmp_path / "teacher.onnx")
    store = tmp_path / "labels.db"
    jobs = [start(teacher, tmp_path / "images", store, "--budget", 150, "--wait-for-store", "inf", "--batch-size", 8,
                  "--workers", 0, "--json") for _ in range(4)]
    results = [finish(job) for job in jobs]
    assert [code for code, _, _ in results] == [0] * 4, [err for _, _, err in results]
    summaries = [json.loads(out) for _, out, _ in results]
    assert sum(summary["labeled"] for summary in summaries) == 150  # the first bought them; the others found them
    assert ledger(store)[:3] == (150, 150, 150)  # every image answered once; the budget holds across the jobs


def test_four_http_jobs_on_one_store_pay_the_server_for_each_image_once(serve, tmp_path):
    server = serve(TINY, "kserve-v2", delay_s=0.02)
    write_jpegs(tmp_path / "images", 160)
    store = tmp_path / "labels.db"
    jobs = [start(server.url, tmp_path / "images", store, *HTTP_FLAGS, "--concurrency", 2, "--budget", 120,
                  "--wait-for-store", "inf") for _ in range(4)]
    results = [finish(job) for job in jobs]
    assert [code for code, _, _ in results] == [0] * 4, [err for _, _, err in results]
    answers, distinct, sent, _ = ledger(store)
    assert answers == distinct == sent == server.counts()["images"] == 120


def test_a_second_job_stops_at_once_naming_the_job_that_holds_the_store(serve, tmp_path):
    server = serve(TINY, "kserve-v2", delay_s=0.5)  # the first job takes a minute: the others meet it
    write_jpegs(tmp_path / "images", 480)
    store = tmp_path / "labels.db"
    first = start(server.url, tmp_path / "images", store, *HTTP_FLAGS)
    try:
        wait_for(lambda: server.counts()["requests"] >= 1)
        others = [start(server.url, tmp_path / "images", store, *HTTP_FLAGS) for _ in range(3)]
        for code, out, err in map(finish, others):
            assert code == 75 and out == "", err
            assert f"is busy (label job 1, pid {first.pid}, since " in err and err.count("\n") == 1
    finally:
        first.send_signal(signal.SIGTERM)
        code, _, err = finish(first)
    assert code == 143, err
    answers, distinct, sent, _ = ledger(store)
    assert answers == distinct == sent == server.counts()["images"] > 0  # only the first job paid


def test_random_kill_minus_nine_never_lets_the_server_see_more_than_the_budget(serve, tmp_path):
    server = serve(TINY, "kserve-v2", delay_s=0.05)
    write_jpegs(tmp_path / "images", 300)
    store, budget, draws = tmp_path / "labels.db", 160, random.Random(24)
    flags = [*HTTP_FLAGS, "--concurrency", 2, "--budget", budget]
    kills = 0
    while kills < 10:
        before = server.counts()["requests"]
        job = start(server.url, tmp_path / "images", store, *flags)
        try:
            wait_for(lambda: server.counts()["requests"] > before or job.poll() is not None)
            if job.poll() is not None:
                break  # the budget is spent: nothing more to kill
            time.sleep(draws.uniform(0.0, 0.4))
            job.send_signal(signal.SIGKILL)
            job.wait(30)
            kills += 1
        finally:
            if job.poll() is None:
                job.kill()
                job.wait(30)
        assert server.counts()["images"] <= budget
        assert ledger(store)[2] >= server.counts()["images"]  # on record before it was sent: never fewer
    code, out, err = finish(start(server.url, tmp_path / "images", store, *flags))
    assert code == 0, err
    answers, distinct, sent, _ = ledger(store)
    assert kills >= 5 and answers == distinct and server.counts()["images"] <= sent <= budget
    # Paid answers are committed as they come: a kill loses only the requests in flight (2 of 4 images each).
    assert answers >= server.counts()["images"] - kills * 2 * 4
    assert "held back" in out  # it stopped at the budget, not short of the images


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_store_what_was_answered_print_the_summary_and_exit_128_plus_the_signal(
        serve, tmp_path, signum, status):
    server = serve(TINY, "kserve-v2", delay_s=0.2)
    write_jpegs(tmp_path / "images", 100)
    store = tmp_path / "labels.db"
    job = start(server.url, tmp_path / "images", store, *HTTP_FLAGS, "--json")
    wait_for(lambda: server.counts()["requests"] >= 3)
    job.send_signal(signum)
    code, out, err = finish(job, timeout=60)
    name = signal.Signals(signum).name
    assert code == status and out == ""  # --json prints nothing for a job that did not finish
    assert f"interrupted     by {name};" in err and "labeled now" in err
    assert err.splitlines()[-1].startswith(f"stopped by {name} (exit {status}):")
    assert "Traceback" not in err
    answers, distinct, sent, _ = ledger(store)
    assert answers == sent == server.counts()["images"]  # the request in flight was answered and kept
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT status FROM jobs").fetchall() == [("interrupted",)]
    code, _, err = finish(start(server.url, tmp_path / "images", store, *HTTP_FLAGS))
    assert code == 0, err
    assert ledger(store)[:3] == (100, 100, 100) == (server.counts()["images"],) * 3  # nothing paid twice
