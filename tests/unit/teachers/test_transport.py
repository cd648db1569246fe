"""The answer size cap against a real model server on 127.0.0.1: gzip bombs and oversize bodies are refused
while they stream in, once, as a failed request; answers under the cap read as before, compressed or not."""
from __future__ import annotations

import json
import sqlite3
import tracemalloc

import numpy as np
import pytest

from extractor.ledger import Ledger
from extractor.teachers.base import MalformedAnswer
from extractor.teachers.http.config import HttpConfig
from extractor.teachers.http.teacher import HttpTeacher
from extractor.teachers.source import TeacherSource, open_teacher
from tests.e2e.cli import extractor
from tests.images import write_jpegs
from tests.servers.model_server import tiny_classifier

pytestmark = pytest.mark.timeout(120)

TINY = tiny_classifier(channels=1, size=16, classes=3)
BATCH = np.random.default_rng(0).standard_normal((2, 1, 16, 16)).astype(np.float32)


def teacher_for(server, ledger: Ledger | None = None, **options) -> HttpTeacher:
    config = HttpConfig(server.url, "kserve-v1", model=server.name, retries=3, backoff_s=0.01, **options)
    return HttpTeacher(config, ledger=ledger)


def test_a_gzip_bomb_is_refused_before_it_is_inflated(serve) -> None:
    server = serve(TINY, "kserve-v1", fault="gzip-bomb", fault_times=1, bloat_mb=64)  # about 64 KB on the wire
    ledger = Ledger()
    teacher = teacher_for(server, ledger, max_answer_mb=1)
    tracemalloc.start()
    try:
        with pytest.raises(MalformedAnswer, match=r"larger than --max-answer-mb 1 once decompressed \(gzip\)"):
            teacher.predict(BATCH)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2 ** 20  # 64 MiB inflated would be here
    assert server.counts()["requests"] == 1  # refused, not retried
    record = ledger.drain()[-1]
    assert (record.status, record.retries, record.charged) == (200, 0, 2)
    assert record.error.startswith("MalformedAnswer: the answer is larger than --max-answer-mb 1")
    np.testing.assert_array_equal(teacher.predict(BATCH).probs, server.infer(BATCH))  # the next one is fine


def test_an_oversize_body_is_refused(serve) -> None:
    server = serve(TINY, "kserve-v1", fault="oversize", fault_times=1, bloat_mb=4)
    teacher = teacher_for(server, max_answer_mb=1.5)
    with pytest.raises(MalformedAnswer, match=r"larger than --max-answer-mb 1.5; the rest was not read") as caught:
        teacher.predict(BATCH)
    assert "decompressed" not in str(caught.value)
    assert server.counts()["requests"] == 1
    assert teacher.predict(BATCH).labels.shape == (2,)


@pytest.mark.parametrize("fault", ["gzip-bomb", "oversize"])
def test_answers_under_the_cap_read_whole(serve, fault) -> None:
    server = serve(TINY, "kserve-v1", fault=fault, fault_times=1, bloat_mb=3)
    teacher = teacher_for(server, max_answer_mb=4)
    np.testing.assert_array_equal(teacher.predict(BATCH).probs, server.infer(BATCH))


def test_the_teacher_source_carries_the_cap(serve) -> None:
    server = serve(TINY, "kserve-v1", fault="oversize", fault_times=-1, bloat_mb=2)
    teacher = open_teacher(TeacherSource(server.url, protocol="kserve-v1", model_name=server.name, max_answer_mb=1))
    with pytest.raises(MalformedAnswer, match="--max-answer-mb 1"):
        teacher.predict(BATCH)
    with pytest.raises(ValueError, match="--max-answer-mb applies to http"):
        TeacherSource("teacher.onnx", max_answer_mb=1)
    with pytest.raises(ValueError, match="--max-answer-mb must be > 0"):
        HttpConfig(server.url, "kserve-v1", model=server.name, max_answer_mb=0)


def test_label_fails_the_images_of_an_oversize_answer_with_the_reason(serve, tmp_path) -> None:
    server = serve(TINY, "kserve-v1", fault="gzip-bomb", fault_times=1, bloat_mb=8)
    images, store = tmp_path / "images", tmp_path / "labels.db"
    write_jpegs(images, 8)
    result = extractor("label", "--teacher", server.url, "--protocol", "kserve-v1", "--model-name", server.name,
                       "--images", images, "--store", store, "--channels", "gray", "--size", "16", "--mean", "127.5",
                       "--std", "127.5", "--workers", "0", "--request-batch", "4", "--max-answer-mb", "1", "--json")
    summary = json.loads(result.stdout)
    assert (summary["labeled"], summary["failed"], summary["stopped"]) == (4, 4, None)
    assert server.counts()["requests"] == 2  # the oversize answer was not asked again
    with sqlite3.connect(store) as db:
        reasons = {reason for (reason,) in db.execute("SELECT reason FROM failures")}
        sent = db.execute("SELECT SUM(images_sent) FROM requests").fetchone()[0]
    assert len(reasons) == 1 and "larger than --max-answer-mb 1 once decompressed" in reasons.pop()
    assert sent == 8
