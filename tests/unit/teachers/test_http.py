"""HttpTeacher against a real model server on 127.0.0.1: protocols, faults, retries, budget, secrets, concurrency."""
from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests
from PIL import Image

from extractor.ledger import Ledger
from extractor.teachers.base import (
    MalformedAnswer,
    QueryBudgetExceeded,
    Teacher,
    TeacherError,
    TeacherUnavailable,
)
from extractor.teachers.http.config import HttpConfig, Secret, fingerprint, parse_header, parse_header_env
from extractor.teachers.http.formats import TIMED_REQUESTS
from extractor.teachers.http.json_spec import JsonSpec
from extractor.teachers.http.teacher import HttpTeacher
from tests.servers.model_server import ModelServer, tiny_classifier

pytestmark = pytest.mark.timeout(60)

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
TINY = tiny_classifier(channels=1, size=48, classes=7)
SERVER_JSON = JsonSpec(path="/predict", input="base64", input_key="images", scores="result.scores",
                       model_version="model_version")
FAST = {"timeout_s": 2.0, "retries": 3, "backoff_s": 0.01, "max_backoff_s": 5.0}


def make_config(server: ModelServer, **overrides) -> HttpConfig:
    """A config for ``server`` with fast retries and the server's class names."""
    options = {"url": server.url, "protocol": server.protocol, "model": server.name,
               "class_names": server.class_names, **FAST}
    if server.protocol == "json":
        options.update(model="", json_spec=SERVER_JSON)
    options.update(overrides)
    return HttpConfig(**options)


def inputs_for(teacher: HttpTeacher, count: int, seed: int = 0) -> np.ndarray | list[np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (count, 48, 48, 1), dtype=np.uint8)
    if teacher.input_format == "image":
        return list(pixels)
    return ((pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255 - 0.5) / 0.5).astype(np.float32)


@pytest.fixture
def emotion_model(assets: Path) -> Path:
    path = assets / "teacher_emotion_fer2013" / "emotion-fer2013.onnx"
    if not path.is_file():
        pytest.skip(f"real teacher absent: {path}")
    return path


@pytest.fixture
def faces(assets: Path) -> list[np.ndarray]:
    """16 LFW faces as the emotion teacher sees them: centre 100 px crop, 48x48 gray, uint8 (H, W, 1)."""
    paths = sorted((assets / "lfw_gender_6k" / "images").glob("*.jpg"))[:16]
    if len(paths) < 16:
        pytest.skip("LFW faces absent")
    crops = []
    for path in paths:
        image = Image.open(path).convert("L")
        left, top = (image.width - 100) // 2, (image.height - 100) // 2
        crop = image.crop((left, top, left + 100, top + 100)).resize((48, 48), Image.BILINEAR)
        crops.append(np.asarray(crop, dtype=np.uint8)[:, :, None])
    return crops


def run_onnx(path: Path, inputs: np.ndarray) -> np.ndarray:
    """The reference: the same model run directly, with the server's session options."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


# --- each protocol against the real emotion teacher ----------------------------------------------

@pytest.mark.parametrize("protocol", ["kserve-v2", "kserve-v1"])
def test_tensor_protocols_match_onnxruntime(serve, emotion_model, faces, protocol) -> None:
    server = serve(emotion_model, protocol, name="emotion", class_names=EMOTIONS)
    teacher = HttpTeacher(make_config(server))
    assert isinstance(teacher, Teacher) and teacher.input_format == "tensor" and teacher.num_classes == 7
    batch = np.stack([server.preprocess(face) for face in faces])  # (16, 1, 48, 48)
    output = teacher.predict(batch)
    reference = run_onnx(emotion_model, batch)
    assert output.kind == "logits"
    np.testing.assert_array_equal(output.probs, reference)
    np.testing.assert_array_equal(output.labels, reference.argmax(axis=1))
    assert server.counts()["images"] == 16


@pytest.mark.parametrize("tensor_format", ["binary", "json", "auto"])
def test_kserve_v2_tensor_formats_match_onnxruntime(serve, emotion_model, faces, tensor_format) -> None:
    server = serve(emotion_model, "kserve-v2", name="emotion", class_names=EMOTIONS)
    teacher = HttpTeacher(make_config(server, tensor_format=tensor_format))
    batch = np.stack([server.preprocess(face) for face in faces])
    np.testing.assert_array_equal(teacher.predict(batch).probs, run_onnx(emotion_model, batch))
    binary = tensor_format != "json"
    assert teacher.tensor_format == ("binary" if binary else "json")
    assert server.counts()["binary_requests"] == binary


def test_auto_falls_back_to_json_once_when_the_server_refuses_binary(serve, caplog) -> None:
    server = serve(TINY, "kserve-v2", binary=False)
    ledger = Ledger()
    teacher = HttpTeacher(make_config(server), ledger=ledger)
    assert teacher.tensor_format is None  # undecided until the server answers
    with ThreadPoolExecutor(4) as pool:  # the first request decides alone: one refusal, not one per thread
        outputs = list(pool.map(lambda seed: teacher.predict(inputs_for(teacher, 2, seed)), range(8)))
    assert teacher.tensor_format == "json" and all(output.labels.shape == (2,) for output in outputs)
    assert (server.counts()["requests"], server.counts()["binary_requests"]) == (8, 0)
    records = ledger.drain()
    assert sum(record.charged for record in records) == 2 * 9  # the refused request was sent, so charged
    assert sum("sending JSON tensors from now on" in message for message in caplog.messages) == 1


@pytest.mark.parametrize("slow, kept", [("binary", "json"), ("json", "binary")])
def test_auto_times_both_formats_then_keeps_the_faster(serve, caplog, slow, kept) -> None:
    """KServe's Python server decodes binary inputs value by value: there JSON is the faster format."""
    caplog.set_level(logging.INFO)
    server = serve(TINY, "kserve-v2", **{f"{slow}_delay_s": 0.05})
    teacher = HttpTeacher(make_config(server))
    batch = inputs_for(teacher, 2)
    teacher.predict(batch)
    assert teacher.tensor_format == "binary"  # taken; not yet timed against JSON
    teacher.predict(batch)
    assert teacher.tensor_format == "binary+json"
    for _ in range(2 * TIMED_REQUESTS - 1):
        teacher.predict(batch)
    assert teacher.tensor_format == kept and f"sending {kept}" in caplog.text
    server.reset_counts()
    for _ in range(3):
        teacher.predict(batch)
    assert server.counts()["binary_requests"] == (3 if kept == "binary" else 0)


def test_auto_keeps_binary_when_the_server_refuses_json_tensors(serve) -> None:
    """KServe refuses FP16 inputs as JSON numbers: the request is sent again in binary, which is kept."""
    server = serve(TINY, "kserve-v2", input_datatype="FP16")
    teacher = HttpTeacher(make_config(server))
    batch = inputs_for(teacher, 2)
    teacher.predict(batch)
    server.set(fault="400", fault_times=1)  # the next request is the first in JSON
    assert teacher.predict(batch).labels.shape == (2,)
    assert teacher.tensor_format == "binary" and server.counts()["requests"] == 3  # the refused one included
    teacher.predict(batch)
    assert server.counts()["binary_requests"] == 3


def test_binary_asked_for_is_never_downgraded(serve) -> None:
    server = serve(TINY, "kserve-v2", binary=False)
    teacher = HttpTeacher(make_config(server, tensor_format="binary"))
    with pytest.raises(TeacherError, match="HTTP 400 .*binary tensor data is not supported"):
        teacher.predict(inputs_for(teacher, 2))


def test_fp16_inputs_travel_as_fp16(serve, emotion_model, faces) -> None:
    server = serve(emotion_model, "kserve-v2", input_datatype="FP16")
    teacher = HttpTeacher(make_config(server))
    batch = np.stack([server.preprocess(face) for face in faces])
    output = teacher.predict(batch)
    assert (server.counts()["datatypes"], server.counts()["binary_requests"]) == (["FP16"], 1)
    reference = run_onnx(emotion_model, batch.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(output.probs, reference, rtol=1e-6, atol=1e-6)


def test_json_protocol_matches_onnxruntime(serve, emotion_model, faces) -> None:
    server = serve(emotion_model, "json", class_names=EMOTIONS)
    teacher = HttpTeacher(make_config(server, output_policy="logits"))
    assert teacher.input_format == "image"
    output = teacher.predict(faces)
    reference = run_onnx(emotion_model, np.stack([server.preprocess(face) for face in faces]))
    assert output.kind == "logits"
    np.testing.assert_array_equal(output.probs, reference)
    np.testing.assert_array_equal(output.labels, reference.argmax(axis=1))


@pytest.mark.parametrize("topk, kind", [(5, "topk"), (7, "probs")])
def test_torchserve_matches_onnxruntime_top_k(serve, emotion_model, faces, topk, kind) -> None:
    server = serve(emotion_model, "torchserve", name="emotion", class_names=EMOTIONS, topk=topk)
    teacher = HttpTeacher(make_config(server))
    assert teacher.max_batch == 1 and teacher.input_format == "image"
    logits = run_onnx(emotion_model, np.stack([server.preprocess(face) for face in faces])).astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    for face, expected in zip(faces, probs):
        output = teacher.predict([face])
        got = output.probs[0]
        top = np.argsort(-expected)[:topk]
        hidden = np.setdiff1d(np.arange(7), top)
        assert output.kind == kind and not got[hidden].any()
        np.testing.assert_allclose(got[top], expected[top], rtol=1e-6, atol=1e-37)  # float32 subnormals
        assert output.labels.item() == expected.argmax()
    assert server.counts() == {"requests": 16, "images": 16, "max_in_flight": 1, "binary_requests": 0,
                               "datatypes": ["FP32"]}


# --- metadata, versions, classes -----------------------------------------------------------------

def test_metadata_names_input_version_and_classes(serve) -> None:
    server = serve(TINY, "kserve-v2", class_names=tuple(EMOTIONS), model_version="3")
    teacher = HttpTeacher(make_config(server, class_names=()))
    assert (teacher.model_version, teacher.num_classes) == ("3", 7)
    assert teacher.fingerprint == fingerprint(make_config(server, class_names=()), "3")
    with pytest.raises(TeacherError, match=r"--model-version 2 is not served .* served: \['3'\]"):
        HttpTeacher(make_config(server, model_version="2"))
    pinned = HttpTeacher(make_config(server, model_version="3"))
    assert pinned.predict(inputs_for(pinned, 2)).probs.shape == (2, 7)


def test_without_metadata_the_flags_must_name_the_input(serve, caplog) -> None:
    server = serve(TINY, "kserve-v2", metadata=False)
    with pytest.raises(TeacherError, match="pass --input-name"):
        HttpTeacher(make_config(server))
    teacher = HttpTeacher(make_config(server, input_name="input"))
    assert teacher.model_version is None and "pass --model-version" in caplog.text
    assert teacher.predict(inputs_for(teacher, 3)).labels.shape == (3,)


def test_metadata_listing_no_tensors_sends_kserve_default_input_name(serve, caplog) -> None:
    """KServe's own model server answers metadata with "inputs": [] and "outputs": []."""
    server = serve(TINY, "kserve-v2", input_name="input-0", tensor_metadata=False)
    teacher = HttpTeacher(make_config(server, class_names=()))
    warnings = [r.getMessage() for r in caplog.records if r.name == "extractor.teachers.http.kserve"]
    assert len(warnings) == 2
    assert "'input-0'" in warnings[0] and "--input-name" in warnings[0] and "--output-name" in warnings[1]
    assert (teacher.input_shape, teacher.num_classes) == (None, 0)
    caplog.clear()
    output = teacher.predict(inputs_for(teacher, 3))
    np.testing.assert_array_equal(output.probs, server.infer(inputs_for(teacher, 3)))
    assert teacher.num_classes == 7 and server.counts()["images"] == 3
    teacher.predict(inputs_for(teacher, 2))
    assert not [r for r in caplog.records if r.name == "extractor.teachers.http.kserve"]  # warned once


def test_metadata_listing_no_tensors_takes_input_and_output_name_flags(serve, caplog) -> None:
    server = serve(TINY, "kserve-v2", input_name="pixels", tensor_metadata=False)
    guessed = HttpTeacher(make_config(server))
    with pytest.raises(TeacherError, match="HTTP 400 .*unknown input 'input-0'; the model takes 'pixels'"):
        guessed.predict(inputs_for(guessed, 2))
    caplog.clear()
    named = HttpTeacher(make_config(server, input_name="pixels", output_name="logits"))
    assert "input-0" not in caplog.text and "names no output" not in caplog.text
    assert named.predict(inputs_for(named, 3)).probs.shape == (3, 7)
    other = HttpTeacher(make_config(server, input_name="pixels", output_name="probabilities"))
    with pytest.raises(MalformedAnswer, match="no output 'probabilities'; it has \\['logits'\\]"):
        other.predict(inputs_for(other, 1))


@pytest.mark.parametrize("protocol, declared", [("kserve-v2", None), ("json", "1")])
def test_model_version_change_is_noticed(serve, protocol, declared) -> None:
    server = serve(TINY, protocol)
    teacher = HttpTeacher(make_config(server, model_version=declared))  # kserve-v2 reads "1" from metadata
    teacher.predict(inputs_for(teacher, 2))
    server.set(model_version="2")
    with pytest.raises(TeacherError, match="teacher model version changed from 1 to 2"):
        teacher.predict(inputs_for(teacher, 2))


def test_a_pinned_version_that_is_gone_is_an_error(serve) -> None:
    server = serve(TINY, "kserve-v2")
    teacher = HttpTeacher(make_config(server, model_version="1"))  # requests go to /versions/1/infer
    server.set(model_version="2")
    with pytest.raises(TeacherError, match="HTTP 404 Not Found: .*version 1 not found"):
        teacher.predict(inputs_for(teacher, 2))


def test_class_count_mismatch_is_an_error(serve) -> None:
    server = serve(TINY, "kserve-v2")
    with pytest.raises(TeacherError, match="the model outputs 7 classes but --classes names 5"):
        HttpTeacher(make_config(server, class_names=EMOTIONS[:5]))
    unmetered = serve(TINY, "kserve-v1")
    teacher = HttpTeacher(make_config(unmetered, class_names=EMOTIONS[:5]))
    with pytest.raises(MalformedAnswer, match="7 scores per image but the teacher has 5 classes \\(--classes\\)"):
        teacher.predict(inputs_for(teacher, 2))


def test_label_outside_classes_is_an_error(serve) -> None:
    server = serve(TINY, "torchserve", class_names=EMOTIONS)
    teacher = HttpTeacher(make_config(server, class_names=tuple(f"mood{i}" for i in range(7))))
    with pytest.raises(MalformedAnswer, match="which is not among --classes"):
        teacher.predict(inputs_for(teacher, 1))


# --- retries, timeouts, resets -------------------------------------------------------------------

def test_429_retry_after_seconds_is_honoured(serve) -> None:
    server = serve(TINY, "kserve-v2", fault="429", fault_times=1, retry_after="1")
    ledger = Ledger()
    teacher = HttpTeacher(make_config(server), ledger=ledger)
    start = time.perf_counter()
    teacher.predict(inputs_for(teacher, 4))
    waited = time.perf_counter() - start
    assert 0.95 <= waited < 3.0
    assert server.counts()["requests"] == 2
    records = ledger.drain()
    assert (records[-1].status, records[-1].retries, records[-1].images) == (200, 1, 4)


def test_429_retry_after_http_date_is_honoured(serve) -> None:
    server = serve(TINY, "kserve-v2")
    teacher = HttpTeacher(make_config(server))
    server.set(fault="429", fault_times=1, retry_after=email.utils.formatdate(time.time() + 2, usegmt=True))
    start = time.perf_counter()
    teacher.predict(inputs_for(teacher, 4))
    assert 0.9 <= time.perf_counter() - start < 3.0  # the date has 1 s resolution


@pytest.mark.parametrize("status", ["429", "500", "503"])
def test_transient_statuses_are_retried_with_backoff(serve, status) -> None:
    server = serve(TINY, "kserve-v2")
    ledger = Ledger()
    teacher = HttpTeacher(make_config(server), ledger=ledger)
    server.set(fault=status, fault_times=2)
    start = time.perf_counter()
    assert teacher.predict(inputs_for(teacher, 4)).labels.shape == (4,)
    assert time.perf_counter() - start < 1.0  # backoff_s 0.01: full jitter sleeps at most 0.01 + 0.02
    assert server.counts()["requests"] == 3
    records = ledger.drain()
    assert (records[-1].status, records[-1].retries, records[-1].error) == (200, 2, None)


def test_retries_are_bounded_then_unavailable(serve) -> None:
    server = serve(TINY, "kserve-v2")
    ledger = Ledger()
    teacher = HttpTeacher(make_config(server, retries=2), ledger=ledger)
    server.set(fault="503", fault_times=-1)
    with pytest.raises(TeacherUnavailable, match=r"failed 3 attempts \(--retries 2\); last: HTTP 503"):
        teacher.predict(inputs_for(teacher, 4))
    assert server.counts()["requests"] == 3
    records = ledger.drain()
    assert records[-1].status == 503 and records[-1].error.startswith("TeacherUnavailable:")


def test_retry_after_beyond_max_backoff_gives_up(serve) -> None:
    server = serve(TINY, "kserve-v2")
    teacher = HttpTeacher(make_config(server))
    server.set(fault="503", fault_times=-1, retry_after="120")
    with pytest.raises(TeacherUnavailable, match="retry after 120 s, longer than --max-backoff 5 s"):
        teacher.predict(inputs_for(teacher, 4))
    assert server.counts()["requests"] == 1


def test_client_errors_are_not_retried(serve) -> None:
    server = serve(TINY, "kserve-v2")
    teacher = HttpTeacher(make_config(server, tensor_format="binary"))  # auto would try JSON after a 400
    server.set(fault="400", fault_times=-1)
    with pytest.raises(TeacherError, match="answered HTTP 400 Bad Request: .*injected 400") as caught:
        teacher.predict(inputs_for(teacher, 4))
    assert not isinstance(caught.value, TeacherUnavailable)
    assert server.counts()["requests"] == 1


def test_timeouts_are_retried_then_unavailable(serve) -> None:
    server = serve(TINY, "kserve-v2", hang_s=1.0)
    teacher = HttpTeacher(make_config(server, timeout_s=0.3, retries=1))
    server.set(fault="timeout", fault_times=1)
    start = time.perf_counter()
    assert teacher.predict(inputs_for(teacher, 2)).labels.shape == (2,)
    assert 0.3 <= time.perf_counter() - start < 2.5
    server.set(fault="timeout", fault_times=-1)
    with pytest.raises(TeacherUnavailable, match="no answer within --timeout 0.3 s"):
        teacher.predict(inputs_for(teacher, 2))


def test_slow_answers_within_the_timeout_succeed(serve) -> None:
    server = serve(TINY, "kserve-v2", slow_s=0.3)
    teacher = HttpTeacher(make_config(server, timeout_s=1.0))
    server.set(fault="slow", fault_times=1)
    assert teacher.predict(inputs_for(teacher, 2)).labels.shape == (2,)
    assert server.counts()["requests"] == 1


def test_connection_resets_are_retried_then_unavailable(serve) -> None:
    server = serve(TINY, "kserve-v2")
    teacher = HttpTeacher(make_config(server, retries=2))
    server.set(fault="reset", fault_times=1)
    assert teacher.predict(inputs_for(teacher, 2)).labels.shape == (2,)
    assert server.counts()["requests"] == 2
    server.set(fault="reset", fault_times=-1)
    with pytest.raises(TeacherUnavailable, match="connection failed"):
        teacher.predict(inputs_for(teacher, 2))


def test_refused_connection_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = HttpConfig(f"http://127.0.0.1:{port}", "json", json_spec=SERVER_JSON, retries=1, backoff_s=0.01)
    with pytest.raises(TeacherUnavailable, match=r"failed 2 attempts .* connection failed \(ConnectionRefusedError\)"):
        HttpTeacher(config).predict([np.zeros((48, 48, 1), np.uint8)])


# --- malformed answers ---------------------------------------------------------------------------

MALFORMED = {
    "missing-field": {"kserve-v2": "no 'outputs' field", "kserve-v1": "no 'predictions' field",
                      "torchserve": "names no classes", "json": "no 'result.scores'"},
    "wrong-shape": {"kserve-v2": "6 scores per image but the teacher has 7 classes",
                    "kserve-v1": "6 scores per image but the teacher has 7 classes",
                    "torchserve": "expected a \\{label: score\\} object, got list",
                    "json": "6 scores per image but the teacher has 7 classes"},
}


@pytest.mark.parametrize("protocol", ["kserve-v2", "kserve-v1", "json"])
def test_a_nan_score_comes_back_in_its_own_row_not_as_a_malformed_answer(serve, protocol) -> None:
    """One image's NaN is that image's problem: the label job fails it alone (labeling.run.answer_rows)."""
    server = serve(TINY, protocol, class_names=EMOTIONS)
    teacher = HttpTeacher(make_config(server), ledger=Ledger())
    server.set(fault="nan", fault_times=1)
    output = teacher.predict(inputs_for(teacher, teacher.max_batch and min(teacher.max_batch, 3)))
    finite_rows = np.isfinite(output.probs).all(axis=1)
    assert not finite_rows.all() and finite_rows.any()
    assert server.counts()["requests"] == 1  # not retried: the other images' answers are good


@pytest.mark.parametrize("fault, protocol, reason",
                         [(fault, protocol, reason) for fault, by_protocol in MALFORMED.items()
                          for protocol, reason in by_protocol.items()])
def test_malformed_answers_are_refused_with_a_reason(serve, fault, protocol, reason) -> None:
    server = serve(TINY, protocol, class_names=EMOTIONS)
    ledger = Ledger()
    teacher = HttpTeacher(make_config(server), ledger=ledger)
    server.set(fault=fault, fault_times=1)
    with pytest.raises(MalformedAnswer, match=reason):
        teacher.predict(inputs_for(teacher, teacher.max_batch and min(teacher.max_batch, 3)))
    assert server.counts()["requests"] == 1  # a malformed answer is not retried
    records = ledger.drain()
    assert records[-1].status == 200 and records[-1].error.startswith("MalformedAnswer:")
    assert teacher.predict(inputs_for(teacher, 1)).labels.shape == (1,)


@pytest.mark.parametrize("protocol", ["kserve-v2", "kserve-v1", "torchserve", "json"])
@pytest.mark.parametrize("fault", ["bad-json", "truncated"])
def test_unreadable_bodies_are_retried_like_5xx(serve, protocol, fault) -> None:
    """A body cut short (in its Content-Length, or by a closed connection) is a transport fault, not an answer."""
    server = serve(TINY, protocol, class_names=EMOTIONS)
    ledger = Ledger()
    teacher = HttpTeacher(make_config(server, retries=2), ledger=ledger)
    server.set(fault=fault, fault_times=2)
    assert teacher.predict(inputs_for(teacher, 1)).labels.shape == (1,)
    assert server.counts()["requests"] == 3
    server.set(fault=fault, fault_times=-1)
    reason = "(the answer is not JSON|Inference-Header-Content-Length is .* but the body has)" \
        if fault == "bad-json" else "connection failed"  # kserve-v2 answers in binary here
    with pytest.raises(TeacherUnavailable, match=f"failed 3 attempts .*; last: {reason}"):
        teacher.predict(inputs_for(teacher, 1))
    records = ledger.drain()
    assert (records[-2].retries, records[-2].error) == (2, None)
    assert records[-1].status == ("UnreadableAnswer" if fault == "bad-json" else "ChunkedEncodingError")


# --- budget --------------------------------------------------------------------------------------

def test_budget_refuses_before_sending(serve) -> None:
    server = serve(TINY, "kserve-v2")
    budget = Ledger(40)
    teacher = HttpTeacher(make_config(server, batch_size=16), ledger=budget)
    teacher.predict(inputs_for(teacher, 16))
    teacher.predict(inputs_for(teacher, 16))
    with pytest.raises(QueryBudgetExceeded, match="sending 16 more images would exceed --budget 40 \\(32 sent, 8 left\\)"):
        teacher.predict(inputs_for(teacher, 16))
    assert server.counts()["images"] == budget.used == 32
    records = budget.drain()
    assert (records[-1].status, records[-1].charged) == ("QueryBudgetExceeded", 0)


def test_budget_charges_every_retry(serve) -> None:
    server = serve(TINY, "kserve-v2")
    budget = Ledger(20)
    teacher = HttpTeacher(make_config(server, batch_size=16), ledger=budget)
    server.set(fault="503", fault_times=1)
    with pytest.raises(QueryBudgetExceeded):
        teacher.predict(inputs_for(teacher, 16))
    assert server.counts()["images"] == budget.used == 16


def test_budget_holds_under_concurrency(serve) -> None:
    server = serve(TINY, "kserve-v2", delay_s=0.02)
    budget = Ledger(100)
    teacher = HttpTeacher(make_config(server, batch_size=8), ledger=budget)
    batch = inputs_for(teacher, 8)

    def call(_: int) -> bool:
        try:
            teacher.predict(batch)
            return True
        except QueryBudgetExceeded:
            return False

    with ThreadPoolExecutor(8) as pool:
        answered = sum(pool.map(call, range(20)))
    assert answered == 12 and server.counts()["images"] == budget.used == 96


# --- secrets -------------------------------------------------------------------------------------

def test_header_values_never_leak(serve, monkeypatch, caplog) -> None:
    env_secret, literal_secret = "s3cr3t-token-from-the-environment", "literal-key-0123456789"
    monkeypatch.setenv("EXTRACTOR_TEST_TOKEN", f"Bearer {env_secret}")
    caplog.set_level(logging.DEBUG)
    server = serve(TINY, "kserve-v2")
    ledger = Ledger()
    config = make_config(server, headers=(parse_header(f"X-Api-Key: {literal_secret}"),),
                         header_env=(parse_header_env("Authorization=EXTRACTOR_TEST_TOKEN"),))
    teacher = HttpTeacher(config, ledger=ledger)
    server.set(fault="503", fault_times=1)
    teacher.predict(inputs_for(teacher, 2))  # a retry, logged
    assert server.last_headers["Authorization"] == f"Bearer {env_secret}"  # auth did reach the server
    assert server.last_headers["X-Api-Key"] == literal_secret
    server.set(fault="401-echo", fault_times=1)
    with pytest.raises(TeacherError) as caught:
        teacher.predict(inputs_for(teacher, 2))
    assert "401" in str(caught.value) and "***" in str(caught.value)
    server.set(fault="503", fault_times=-1)
    with pytest.raises(TeacherUnavailable) as unavailable:
        teacher.predict(inputs_for(teacher, 2))
    exposed = [str(caught.value), repr(caught.value), str(unavailable.value), caplog.text, repr(config),
               str(config), repr(teacher.__dict__), json.dumps(teacher.describe()), repr(ledger.drain())]
    for text in exposed:
        assert env_secret not in text and literal_secret not in text
    assert teacher.describe()["headers"] == ["X-Api-Key", "Authorization"]
    with pytest.raises(TypeError):  # a careless json.dumps(asdict(config)) fails instead of leaking
        json.dumps(dataclasses.asdict(config))


def test_redirects_are_refused_not_followed(serve) -> None:
    server = serve(TINY, "kserve-v2")
    teacher = HttpTeacher(make_config(server, headers=(("X-Api-Key", "not-for-elsewhere"),)))
    server.set(fault="307", fault_times=1)
    with pytest.raises(TeacherError, match="HTTP 307 .* to http://127.0.0.1:9/elsewhere; redirects are not followed"):
        teacher.predict(inputs_for(teacher, 2))
    assert server.counts()["requests"] == 1


def test_netrc_does_not_replace_the_authorization_header(serve, monkeypatch, tmp_path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other-credentials\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    server = serve(TINY, "kserve-v2")
    teacher = HttpTeacher(make_config(server, headers=(parse_header("Authorization: Bearer the-right-token"),)))
    teacher.predict(inputs_for(teacher, 1))
    assert server.last_headers["Authorization"] == "Bearer the-right-token"


def test_missing_header_env_names_the_variable(monkeypatch) -> None:
    monkeypatch.delenv("EXTRACTOR_TEST_MISSING", raising=False)
    with pytest.raises(ValueError, match="environment variable EXTRACTOR_TEST_MISSING is not set"):
        HttpConfig("http://127.0.0.1:1", "json", json_spec=SERVER_JSON,
                   header_env=(("Authorization", "EXTRACTOR_TEST_MISSING"),))


def test_header_parsing_never_echoes_values() -> None:
    name, value = parse_header("Authorization: Bearer abc:def")
    assert name == "Authorization" and isinstance(value, Secret) and value.reveal() == "Bearer abc:def"
    assert str(value) == "***" and repr(value) == "Secret('***')" and f"{value}" == "***"
    assert parse_header_env(" X-Key = MY_KEY ") == ("X-Key", "MY_KEY")
    for bad, parser, hint in [("Authorization Bearer sk-live-1234567", parse_header, "has no colon"),
                              ("Authorization Bearer sk-live-1234567: x", parse_header, "header name"),
                              ("Authorization: ", parse_header, "non-empty"),
                              ("Authorization=Bearer sk-live-1234567", parse_header_env, "not the value"),
                              ("Authorization", parse_header_env, "no '='")]:
        with pytest.raises(ValueError, match=hint) as caught:
            parser(bad)
        assert "sk-live" not in str(caught.value)


# --- fingerprint ---------------------------------------------------------------------------------

BASE = {"url": "http://127.0.0.1:9/serving", "protocol": "kserve-v2", "model": "emotion",
        "class_names": EMOTIONS, "output_policy": "auto"}


@pytest.mark.parametrize("changes", [
    {"url": "http://127.0.0.1:9/other"},
    {"protocol": "kserve-v1"},
    {"model": "emotion-large"},
    {"output_policy": "logits"},
    {"class_names": EMOTIONS[::-1]},
    {"output_name": "probabilities"},
])
def test_fingerprint_triple(changes) -> None:
    h1 = fingerprint(HttpConfig(**BASE), "1")
    h2 = fingerprint(HttpConfig(**{**BASE, **changes}), "1")
    h3 = fingerprint(HttpConfig(**BASE), "1")
    assert h1 == h3 != h2


def test_fingerprint_follows_version_and_schema_but_not_headers(monkeypatch) -> None:
    config = HttpConfig(**BASE)
    assert fingerprint(config, "1") == fingerprint(config, "1") != fingerprint(config, "2")
    assert fingerprint(config, None) != fingerprint(config, "1")
    monkeypatch.setenv("EXTRACTOR_TEST_TOKEN", "one")
    with_headers = HttpConfig(**BASE, headers=(("X-Api-Key", "a"),), header_env=(("Authorization", "EXTRACTOR_TEST_TOKEN"),))
    monkeypatch.setenv("EXTRACTOR_TEST_TOKEN", "two")
    other_values = HttpConfig(**BASE, headers=(("X-Api-Key", "b"),), header_env=(("Authorization", "EXTRACTOR_TEST_TOKEN"),))
    assert fingerprint(config, "1") == fingerprint(with_headers, "1") == fingerprint(other_values, "1")
    json_base = {"url": BASE["url"], "protocol": "json"}
    s1 = fingerprint(HttpConfig(**json_base, json_spec=SERVER_JSON), None)
    s2 = fingerprint(HttpConfig(**json_base, json_spec=dataclasses.replace(SERVER_JSON, image_format="jpeg")), None)
    s3 = fingerprint(HttpConfig(**json_base, json_spec=SERVER_JSON), None)
    assert s1 == s3 != s2


# --- concurrency, rate limit, ledger, inputs -----------------------------------------------------

def test_eight_threads_overlap_requests(serve) -> None:
    delay_s, requests_count = 0.1, 32
    server = serve(TINY, "kserve-v2", delay_s=delay_s)
    teacher = HttpTeacher(make_config(server, batch_size=1))  # small bodies: client and server share one GIL here
    batch = inputs_for(teacher, 1)
    with ThreadPoolExecutor(8) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _: teacher.predict(batch), range(requests_count)))
        elapsed = time.perf_counter() - start
    ideal = requests_count / 8 * delay_s
    assert ideal * 0.95 <= elapsed < ideal * 4  # one at a time would take 8x ideal; slack for a loaded CI
    assert server.counts()["max_in_flight"] == 8


def test_max_rps_spaces_requests_across_threads(serve) -> None:
    server = serve(TINY, "kserve-v2")
    teacher = HttpTeacher(make_config(server, max_rps=20))
    batch = inputs_for(teacher, 1)
    time.sleep(0.06)  # let the metadata request's turn pass
    with ThreadPoolExecutor(8) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _: teacher.predict(batch), range(11)))
        elapsed = time.perf_counter() - start
    assert 0.48 <= elapsed < 2.0  # 11 starts, 50 ms apart (upper bound: slack for a loaded CI)


def test_ledger_gets_one_record_per_request(serve) -> None:
    server = serve(TINY, "kserve-v2")
    ledger = Ledger(1000)
    teacher = HttpTeacher(make_config(server, batch_size=5), ledger=ledger)
    for count in (5, 3, 1):
        teacher.predict(inputs_for(teacher, count))
    records = ledger.drain()
    assert [(r.images, r.status, r.retries, r.charged, r.error) for r in records] == [
        (0, 200, 0, 0, None), (5, 200, 0, 5, None), (3, 200, 0, 3, None), (1, 200, 0, 1, None)]
    assert all(r.latency_s > 0 and abs(r.time - time.time()) < 60 for r in records)


def test_inputs_are_checked_before_sending(serve) -> None:
    server = serve(TINY, "kserve-v2")
    teacher = HttpTeacher(make_config(server, batch_size=4))
    good = inputs_for(teacher, 4)
    with pytest.raises(TypeError, match="expected float32"):
        teacher.predict(good.astype(np.float64))
    with pytest.raises(ValueError, match="1 to 4 images"):
        teacher.predict(np.concatenate([good, good]))
    with pytest.raises(ValueError, match="expects inputs of shape \\[1, 48, 48\\]"):
        teacher.predict(np.repeat(good, 3, axis=1))
    with pytest.raises(ValueError, match="NaN"):
        teacher.predict(np.full_like(good, np.nan))
    assert server.counts()["requests"] == 0


@pytest.mark.parametrize("options, flag", [
    ({"url": "ftp://host"}, "--teacher must be an http"),
    ({"url": "https://user:pw@host"}, "must not embed credentials"),
    ({"protocol": "grpc"}, "--protocol must be one of"),
    ({"model": ""}, "--model-name is required"),
    ({"json_spec": SERVER_JSON}, "--json-spec is required with --protocol json"),
    ({"timeout_s": 0}, "--timeout"),
    ({"retries": -1}, "--retries"),
    ({"backoff_s": 10, "max_backoff_s": 1}, "--backoff"),
    ({"max_rps": 0}, "--max-rps"),
    ({"batch_size": 0}, "--request-batch"),
    ({"protocol": "torchserve", "batch_size": 4}, "--request-batch must be 1"),
    ({"protocol": "torchserve", "class_names": ()}, "--classes is required"),
    ({"protocol": "torchserve", "output_policy": "logits"}, "--output-policy applies to dense"),
    ({"output_policy": "softmax"}, "--output-policy must be one of"),
    ({"class_names": ("a", "a")}, "--classes must name"),
    ({"verify_tls": False}, "cannot be turned off"),
    ({"verify_tls": "/no/such/bundle.pem"}, "--ca-bundle"),
    ({"headers": (("X-A", "1"), ("x-a", "2"))}, "given twice"),
    ({"protocol": "kserve-v1", "input_name": "x"}, "--input-name applies to --protocol kserve-v2, not kserve-v1"),
    ({"protocol": "torchserve", "output_name": "x"}, "--output-name applies to --protocol kserve-v2 or kserve-v1"),
    ({"input_name": ""}, "--input-name must name a tensor"),
    ({"tensor_format": "raw"}, "--tensor-format must be one of"),
    ({"protocol": "kserve-v1", "tensor_format": "binary"}, "--tensor-format binary applies to --protocol kserve-v2"),
])
def test_config_errors_name_the_flag(options, flag) -> None:
    with pytest.raises(ValueError, match=flag):
        HttpConfig(**{**BASE, **options})


def test_server_control_endpoint(serve) -> None:
    server = serve(TINY, "kserve-v2")
    teacher = HttpTeacher(make_config(server))
    answer = requests.post(f"{server.url}/control", json={"fault": "503", "fault_times": 1, "model_version": "1"})
    assert answer.status_code == 200 and server.switches.fault == "503"
    teacher.predict(inputs_for(teacher, 2))
    assert requests.get(f"{server.url}/control").json() == {"requests": 2, "images": 4, "max_in_flight": 1,
                                                            "binary_requests": 2, "datatypes": ["FP32"]}
    assert requests.post(f"{server.url}/control", json={"reset_counts": True}).json()["requests"] == 0
    refused = requests.post(f"{server.url}/control", json={"fualt": "500"})
    assert refused.status_code == 400 and "unknown switches" in refused.json()["error"]


@pytest.mark.slow
def test_server_runs_as_a_subprocess() -> None:
    root = Path(__file__).resolve().parents[3]
    process = subprocess.Popen([sys.executable, "-m", "tests.servers.model_server", "--model", "tiny",
                                "--protocol", "kserve-v2", "--port", "0"],
                               cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split()[-1]
        teacher = HttpTeacher(HttpConfig(url, "kserve-v2", model="model", **FAST))
        assert teacher.predict(inputs_for(teacher, 3)).probs.shape == (3, 7)
    finally:
        process.terminate()
        process.wait(timeout=10)
