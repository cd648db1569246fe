"""A real HTTP model server for tests and benchmarks: one ONNX model behind a serving protocol, with faults on demand.

Protocols: ``kserve-v2`` (with ``GET /v2/models/{name}`` metadata, and the binary tensor data extension:
raw little-endian tensors after a JSON header of ``Inference-Header-Content-Length`` bytes, both ways,
FP32, FP16 or FP64 in), ``kserve-v1`` (TF Serving
``:predict``, with ``GET /v1/models/{name}`` version status), ``torchserve`` (image bytes in, top-k
``{label: probability}`` out) and ``json`` (``{"images": [base64 PNG/JPEG]}`` in,
``{"model_version", "result": {"scores": [[...]]}}`` out). Image protocols decode with PIL and apply
the model's preprocessing, ``(pixel - mean) / std`` on the 0-255 scale.

Switches (``ModelServer.set(...)`` or ``POST /control`` with a JSON object of the same names):
``fault`` + ``fault_times`` inject one of ``FAULTS`` (or any 3-digit status) into the next inference
requests (-1: all of them), ``fault_rate`` + ``fault_mix`` inject a random one of ``fault_mix`` into
that fraction of them (seeded by ``fault_seed``), ``retry_after`` goes with injected statuses,
``delay_s`` delays every answer, ``max_concurrent`` caps requests served at once, ``model_version``
changes what is served, ``tensor_metadata=False`` answers kserve-v2 metadata with ``"inputs": []`` and
``"outputs": []`` (as KServe's own Python model server does), ``binary=False`` refuses binary tensors
with a 400 (as a server without the extension does), ``input_datatype`` is the datatype the metadata
names, ``binary_delay_s`` / ``json_delay_s`` delay requests by how their tensors came.
``GET /control`` returns the counts: inference requests and images received, the most in flight,
requests in binary, the input datatypes seen.

``answers`` (an ``extractor.teachers.simulated.AnswerFormat``) serves the model as a real API answers: its
probabilities top-k, rounded, perturbed or label only, formatted by the simulator (dense protocols answer
the formatted scores, zeros where hidden, one-hot for a label-only format; torchserve names the classes
with a score > 0, at most ``topk``).

Run alone: ``python -m tests.servers.model_server --model X.onnx|tiny --protocol P --port 0``; it prints
``serving P at URL`` once it listens. It binds 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import random
import re
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from extractor.teachers.simulated import AnswerFormat, softmax

PROTOCOLS: tuple[str, ...] = ("kserve-v2", "kserve-v1", "torchserve", "json")
FAULTS: tuple[str, ...] = ("timeout", "slow", "reset", "bad-json", "truncated", "wrong-shape", "nan",
                           "missing-field", "401-echo", "oversize", "gzip-bomb")
"""Named faults; a 3-digit string such as "429" or "503" answers that status instead. "timeout" stalls
``hang_s``; "bad-json" is a 200 whose body is cut in half (its Content-Length matches: JSON or binary data
cut short); "truncated" announces the whole body and closes the connection halfway through it; "oversize"
pads the JSON answer with spaces to ``bloat_mb`` MiB; "gzip-bomb" does too and sends it gzip-compressed
(``Content-Encoding: gzip``), about 1000 times smaller on the wire. Both are still valid answers."""
HOST = "127.0.0.1"
BINARY_HEADER = "Inference-Header-Content-Length"
V2_DTYPES = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2"), "FP64": np.dtype("<f8")}


@dataclass
class Switches:
    """What the server does to the inference requests it receives; changed at runtime."""

    fault: str | None = None
    """The fault to inject, one of FAULTS or a 3-digit HTTP status."""
    fault_times: int = 0
    """How many upcoming inference requests get the fault; -1 for all."""
    fault_rate: float = 0.0
    """Fraction of inference requests (beyond those ``fault_times`` takes) given a random fault of ``fault_mix``."""
    fault_mix: tuple[str, ...] = ()
    """The faults ``fault_rate`` draws from, uniformly."""
    fault_seed: int = 0
    """Seeds the draws of ``fault_rate``."""
    retry_after: str | None = None
    """Retry-After header sent with an injected status."""
    hang_s: float = 2.0
    """How long a "timeout" fault stalls before answering (longer than the client's timeout)."""
    slow_s: float = 0.3
    """Extra delay of a "slow" fault."""
    delay_s: float = 0.0
    """Fixed delay before every inference answer."""
    max_concurrent: int | None = None
    """Most inference requests served at once; None for no cap."""
    model_version: str = "1"
    """The version served, reported in metadata and answers."""
    tensor_metadata: bool = True
    """Whether kserve-v2 metadata lists the input and outputs; False answers "inputs": [] and "outputs": [],
    as KServe's own Python model server (kserve.Model) does."""
    binary: bool = True
    """Whether kserve-v2 takes the binary tensor data extension; False answers such requests 400."""
    input_datatype: str = "FP32"
    """The input datatype kserve-v2 metadata names (FP32, FP16 or FP64); requests may send any of them."""
    binary_delay_s: float = 0.0
    """Extra delay of kserve-v2 requests whose tensors came in binary (a server slow to decode them)."""
    json_delay_s: float = 0.0
    """Extra delay of kserve-v2 requests whose tensors came as JSON numbers."""
    bloat_mb: float = 8.0
    """How large an "oversize" or "gzip-bomb" answer is, in MiB (once decompressed)."""


class ModelServer:
    """Serves one ONNX model over HTTP in a background thread.

    Args:
        model: an .onnx path or the model's bytes.
        protocol: one of PROTOCOLS.
        name: the model's name in URLs.
        class_names: label names for top-k answers; default ``class0``, ``class1``, ...
        topk: how many classes a torchserve answer names.
        channels, mean, std: image-protocol preprocessing, ``(pixel - mean) / std`` per channel.
        input_name: the kserve-v2 input name the server takes; default the ONNX model's own.
        metadata: whether the metadata endpoints answer (else 404).
        answers: serve the model's probabilities in this answer format (the simulator's); None serves its
            raw outputs.
        switches: initial switch values (see Switches).
    """

    def __init__(self, model: str | Path | bytes, protocol: str, *, name: str = "model",
                 class_names: tuple[str, ...] = (), topk: int = 5, channels: str = "gray",
                 mean: tuple[float, ...] = (127.5,), std: tuple[float, ...] = (127.5,),
                 input_name: str | None = None, metadata: bool = True, port: int = 0,
                 answers: AnswerFormat | None = None, **switches: Any) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        model_bytes = model if isinstance(model, bytes) else Path(model).read_bytes()
        self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        spec, output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.model_input, self.output_name = spec.name, output.name
        self.input_name = input_name or spec.name
        self.input_shape = [dim if isinstance(dim, int) else -1 for dim in spec.shape]
        classes = output.shape[-1]
        self.class_names = class_names or tuple(f"class{index}" for index in range(classes))
        self.protocol, self.name, self.topk, self.channels = protocol, name, topk, channels
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)
        self.metadata = metadata
        self.answers = answers
        self.switches = Switches()
        self._lock = threading.Lock()
        self._slots: threading.BoundedSemaphore | None = None
        self.set(**switches)
        self.reset_counts()
        self.httpd = _HTTPServer((HOST, port), _Handler)
        self.httpd.model_server = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.httpd.server_address[1]}"

    def start(self) -> ModelServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def set(self, **changes: Any) -> None:
        """Changes switches by name, e.g. ``set(fault="503", fault_times=2)``."""
        valid = {f.name for f in fields(Switches)}
        unknown = set(changes) - valid
        if unknown:
            raise ValueError(f"unknown switches {sorted(unknown)}; valid: {sorted(valid)}")
        for fault in [changes.get("fault"), *changes.get("fault_mix", ())]:
            if fault is not None and fault not in FAULTS and not re.fullmatch(r"[1-5]\d\d", fault):
                raise ValueError(f"fault must be one of {FAULTS} or a 3-digit status, got {fault!r}")
        if "fault_mix" in changes:
            changes["fault_mix"] = tuple(changes["fault_mix"])
        with self._lock:
            for key, value in changes.items():
                setattr(self.switches, key, value)
            if "fault_seed" in changes or not hasattr(self, "_draws"):
                self._draws = random.Random(self.switches.fault_seed)
            if "max_concurrent" in changes:
                cap = changes["max_concurrent"]
                self._slots = threading.BoundedSemaphore(cap) if cap else None

    def counts(self) -> dict[str, Any]:
        """Inference requests and images received so far, the most requests served at once, requests
        whose tensors came in binary, and the input datatypes seen."""
        with self._lock:
            return {"requests": self.requests, "images": self.images, "max_in_flight": self.max_in_flight,
                    "binary_requests": self.binary_requests, "datatypes": sorted(self.datatypes)}

    def reset_counts(self) -> None:
        with self._lock:
            self.requests = self.images = self.in_flight = self.max_in_flight = self.binary_requests = 0
            self.datatypes: set[str] = set()
            self.last_headers: dict[str, str] = {}

    def preprocess(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (H, W[, C]) pixels -> float32 (C, H, W) model input."""
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
        chw = np.moveaxis(pixels, -1, 0).astype(np.float32)
        return (chw - self.mean) / self.std

    def decode_image(self, data: bytes) -> np.ndarray:
        image = Image.open(io.BytesIO(data)).convert("L" if self.channels == "gray" else "RGB")
        return self.preprocess(np.asarray(image, dtype=np.uint8))

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """(B, C, H, W) float32 -> (B, classes) float32 model outputs, or the ``answers`` format's scores."""
        outputs = self.session.run([self.output_name], {self.model_input: inputs.astype(np.float32)})[0]
        if self.answers is None:
            return outputs
        answer = self.answers.apply(softmax(outputs.astype(np.float64)))
        if answer.probs is None:  # label only: a dense protocol still answers a vector
            return np.eye(outputs.shape[1], dtype=np.float32)[answer.labels]
        return answer.probs

    def _arrive(self, request: _Request, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests += 1
            self.images += len(request.inputs)
            self.binary_requests += request.binary_in
            self.datatypes.add(request.datatype)
            self.last_headers = headers

    def _take_fault(self) -> str | None:
        with self._lock:
            switches = self.switches
            if switches.fault is not None and switches.fault_times != 0:
                if switches.fault_times > 0:
                    switches.fault_times -= 1
                return switches.fault
            if switches.fault_mix and self._draws.random() < switches.fault_rate:
                return self._draws.choice(switches.fault_mix)
            return None

    def _enter(self) -> threading.BoundedSemaphore | None:
        slots = self._slots
        if slots is not None:
            slots.acquire()
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return slots

    def _leave(self, slots: threading.BoundedSemaphore | None) -> None:
        with self._lock:
            self.in_flight -= 1
        if slots is not None:
            slots.release()


@dataclass(frozen=True)
class _Request:
    """An inference request as read: the model input, and how its tensors travel."""

    inputs: np.ndarray
    """(B, C, H, W) float32."""
    datatype: str = "FP32"
    binary_in: bool = False
    binary_out: bool = False
    """Whether the answer's outputs go in binary (kserve-v2 ``binary_data_output`` or an output's ``binary_data``)."""


class _Refused(ValueError):
    """A request the server does not take (answered 400)."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    model_server: ModelServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out or are reset on purpose are expected here; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # close idle keep-alive connections
    disable_nagle_algorithm = True  # headers and body go out as two writes; Nagle + delayed ACK would add 40 ms

    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read counts, not access logs."""

    def do_GET(self) -> None:
        model = self.server.model_server
        if self.path == "/control":
            return self._send(200, model.counts())
        if not model.metadata:
            return self._send(404, {"error": "no metadata here"})
        if model.protocol == "kserve-v2" and self.path == f"/v2/models/{model.name}":
            return self._send(200, _v2_metadata(model))
        if model.protocol == "kserve-v1" and self.path == f"/v1/models/{model.name}":
            status = {"version": model.switches.model_version, "state": "AVAILABLE",
                      "status": {"error_code": "OK", "error_message": ""}}
            return self._send(200, {"model_version_status": [status]})
        return self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        model = self.server.model_server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/control":
            try:
                changes = json.loads(body or b"{}")
                if changes.pop("reset_counts", False):
                    model.reset_counts()
                model.set(**changes)
            except (ValueError, AttributeError) as exc:
                return self._send(400, {"error": str(exc)})
            return self._send(200, model.counts())
        route = _route(model, self.path)
        if route is None:
            return self._send(404, {"error": f"no route {self.path}"})
        if route and route != model.switches.model_version:
            return self._send(404, {"error": f"version {route} not found"})
        try:
            request = _read_request(model, body, self.headers.get(BINARY_HEADER))
        except (ValueError, KeyError, TypeError, IndexError, OSError) as exc:
            return self._send(400, {"error": f"bad request: {exc}"})
        model._arrive(request, dict(self.headers))
        slots = model._enter()
        try:
            self._answer(model, request)
        finally:
            model._leave(slots)

    def _answer(self, model: ModelServer, request: _Request) -> None:
        fault = model._take_fault()
        switches = model.switches
        format_delay_s = 0.0
        if model.protocol == "kserve-v2":
            format_delay_s = switches.binary_delay_s if request.binary_in else switches.json_delay_s
        time.sleep(switches.delay_s + format_delay_s)
        if fault == "timeout":
            time.sleep(switches.hang_s)
        elif fault == "slow":
            time.sleep(switches.slow_s)
        elif fault == "reset":
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        elif fault == "401-echo":  # a careless API that quotes the credentials it refused
            quoted = {key: self.headers.get(key) for key in ("Authorization", "X-Api-Key")}
            return self._send(401, {"error": f"invalid credentials {quoted}"})
        elif fault is not None and fault.isdigit():
            headers = {"Retry-After": switches.retry_after} if switches.retry_after else {}
            if fault.startswith("3"):
                headers["Location"] = "http://127.0.0.1:9/elsewhere"
            return self._send(int(fault), {"error": f"injected {fault}"}, headers)
        answer = _encode_answer(model, model.infer(request.inputs), fault)
        body, headers = json.dumps(answer).encode(), {}
        if request.binary_out and isinstance(answer, dict) and "outputs" in answer:
            body, json_length = _binary_answer(answer)
            headers[BINARY_HEADER] = str(json_length)
        content_type = "application/octet-stream" if headers else "application/json"
        if fault == "bad-json":
            body = body[: len(body) // 2]
        elif fault in ("oversize", "gzip-bomb"):
            body = _bloat(body, int(switches.bloat_mb * 2 ** 20), compress=fault == "gzip-bomb")
            if fault == "gzip-bomb":
                headers["Content-Encoding"] = "gzip"
        elif fault == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send_bytes(200, body, content_type, headers)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_bytes(self, status: int, body: bytes, content_type: str,
                    headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def _bloat(body: bytes, size: int, *, compress: bool) -> bytes:
    """``body`` padded with spaces to ``size`` bytes, gzip-compressed if asked, without ever holding the
    padded body in memory."""
    padding = max(0, size - len(body))
    if not compress:
        return body + b" " * padding
    gzip = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # wbits + 16: a gzip header and trailer
    parts, chunk = [gzip.compress(body)], b" " * min(padding, 1 << 20)
    while padding:
        step = min(padding, len(chunk))
        parts.append(gzip.compress(chunk[:step]))
        padding -= step
    parts.append(gzip.flush())
    return b"".join(parts)


def _route(model: ModelServer, path: str) -> str | None:
    """The version named in an inference path ("" for none), or None if the path is not inference."""
    name = re.escape(model.name)
    patterns = {"kserve-v2": rf"/v2/models/{name}(?:/versions/([^/]+))?/infer",
                "kserve-v1": rf"/v1/models/{name}(?:/versions/([^/:]+))?:predict",
                "torchserve": rf"/predictions/{name}(?:/([^/]+))?",
                "json": r"/predict()"}
    match = re.fullmatch(patterns[model.protocol], path)
    return None if match is None else match.group(1) or ""


def _read_request(model: ModelServer, body: bytes, json_length: str | None) -> _Request:
    """The request's images as a (B, C, H, W) float32 model input, and how its tensors travel."""
    if model.protocol == "torchserve":
        return _Request(model.decode_image(body)[None])
    if model.protocol != "kserve-v2" or json_length is None:
        request = json.loads(body)
    elif not model.switches.binary:
        raise _Refused("binary tensor data is not supported")
    else:
        request = json.loads(body[: int(json_length)])
    if model.protocol == "kserve-v2":
        return _read_v2(model, request, body, json_length)
    if model.protocol == "kserve-v1":
        return _Request(np.asarray(request["instances"], np.float32))
    return _Request(np.stack([model.decode_image(base64.b64decode(item)) for item in request["images"]]))


def _read_v2(model: ModelServer, request: dict[str, Any], body: bytes, json_length: str | None) -> _Request:
    tensor = request["inputs"][0]
    if tensor["name"] != model.input_name:
        raise ValueError(f"unknown input {tensor['name']!r}; the model takes {model.input_name!r}")
    datatype = tensor["datatype"]
    if datatype not in V2_DTYPES:
        raise ValueError(f"input datatype {datatype!r} is not one of {sorted(V2_DTYPES)}")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is None:
        data = np.asarray(tensor["data"], np.float32)
    else:
        dtype, offset = V2_DTYPES[datatype], int(json_length or 0)
        if offset + size != len(body):
            raise ValueError(f"binary_data_size {size} does not match the {len(body) - offset} bytes sent")
        data = np.frombuffer(body, dtype, size // dtype.itemsize, offset).astype(np.float32)
    outputs = request.get("outputs") or []
    binary_out = bool((request.get("parameters") or {}).get("binary_data_output")) or any(
        (output.get("parameters") or {}).get("binary_data") for output in outputs)
    return _Request(data.reshape(tensor["shape"]), datatype, size is not None, binary_out)


def _binary_answer(answer: dict[str, Any]) -> tuple[bytes, int]:
    """A kserve-v2 answer with its outputs' data moved, as raw little-endian FP32, after the JSON header."""
    raw = []
    for output in answer["outputs"]:
        data = np.asarray(output.pop("data"), "<f4").tobytes()
        output["parameters"] = {"binary_data_size": len(data)}
        raw.append(data)
    header = json.dumps(answer).encode()
    return header + b"".join(raw), len(header)


def _encode_answer(model: ModelServer, scores: np.ndarray, fault: str | None) -> Any:
    """The protocol's answer for (B, C) scores, damaged as ``fault`` says."""
    scores = scores.astype(np.float64)
    if fault == "wrong-shape" and model.protocol != "torchserve":
        scores = scores[:, :-1]
    if fault == "nan":
        scores[0, 0] = np.nan
    version = model.switches.model_version
    if model.protocol == "kserve-v2":
        output = {"name": model.output_name, "shape": list(scores.shape), "datatype": "FP32",
                  "data": scores.ravel().tolist()}
        answer = {"model_name": model.name, "model_version": version, "outputs": [output]}
        key = "outputs"
    elif model.protocol == "kserve-v1":
        answer, key = {"predictions": scores.tolist()}, "predictions"
    elif model.protocol == "json":
        answer, key = {"model_version": version, "result": {"scores": scores.tolist()}}, "result"
    else:
        if model.answers is None:
            probs = np.exp(scores - np.nanmax(scores, axis=1, keepdims=True))
            probs = probs[0] / np.nansum(probs[0])
        else:  # already the formatted answer
            probs = scores[0]
        if fault == "nan":
            probs[0] = np.nan
        top = np.argsort(-np.nan_to_num(probs, nan=2.0))[: model.topk]
        if model.answers is not None:
            top = top[~(probs[top] <= 0)]  # hidden classes are not named (a NaN stays, as a fault)
        answer = {model.class_names[index]: float(probs[index]) for index in top}
        if fault == "wrong-shape":
            return [float(probs[index]) for index in top]
        return {} if fault == "missing-field" else answer
    if fault == "missing-field":
        del answer[key]
    return answer


def _v2_metadata(model: ModelServer) -> dict[str, Any]:
    if not model.switches.tensor_metadata:  # kserve.Model's default get_input_types/get_output_types
        return {"name": model.name, "versions": None, "platform": "", "inputs": [], "outputs": []}
    return {"name": model.name, "versions": [model.switches.model_version], "platform": "onnxruntime_onnx",
            "inputs": [{"name": model.input_name, "datatype": model.switches.input_datatype,
                        "shape": model.input_shape}],
            "outputs": [{"name": model.output_name, "datatype": "FP32", "shape": [-1, len(model.class_names)]}]}


def tiny_classifier(channels: int = 1, size: int = 48, classes: int = 7, seed: int = 0) -> bytes:
    """A two-conv ONNX net with fixed random weights: float32 (N, channels, size, size) -> (N, classes) logits."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {"w1": rng.normal(0, 0.5, (8, channels, 3, 3)), "b1": rng.normal(0, 0.1, 8),
               "w2": rng.normal(0, 0.3, (16, 8, 3, 3)), "b2": rng.normal(0, 0.1, 16),
               "w3": rng.normal(0, 1.0, (classes, 16)), "b3": rng.normal(0, 0.1, classes)}
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an .onnx file, or 'tiny' for a built-in two-conv net")
    parser.add_argument("--protocol", required=True, choices=PROTOCOLS)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--name", default="model")
    parser.add_argument("--version", default="1")
    parser.add_argument("--classes", default="", help="comma-separated class names")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--channels", choices=("gray", "rgb"), default="gray")
    parser.add_argument("--size", type=int, default=48, help="input side of the tiny model")
    parser.add_argument("--mean", type=float, nargs="+", default=[127.5])
    parser.add_argument("--std", type=float, nargs="+", default=[127.5])
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--max-concurrent", type=int, default=None)
    args = parser.parse_args()
    class_names = tuple(name for name in args.classes.split(",") if name)
    model: str | bytes = args.model
    if args.model == "tiny":
        model = tiny_classifier(1 if args.channels == "gray" else 3, args.size, len(class_names) or 7)
    server = ModelServer(model, args.protocol, name=args.name, class_names=class_names, topk=args.topk,
                         channels=args.channels, mean=tuple(args.mean), std=tuple(args.std), port=args.port,
                         model_version=args.version, delay_s=args.delay_s, max_concurrent=args.max_concurrent)
    print(f"serving {args.protocol} at {server.url}", flush=True)
    try:
        server.httpd.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    main()
