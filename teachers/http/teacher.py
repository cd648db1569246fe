"""A remote model behind a serving API, queried over HTTP as an opaque teacher.

One ``predict`` call is one logical request: the job splits work into ``max_batch``-sized pieces and
runs several ``predict`` calls at once from its own threads, so everything here is thread-safe. The
:class:`~extractor.teachers.http.transport.Transport` rate limits each request (``--max-rps``, shared by
all threads), charges it to the job's :class:`~extractor.ledger.Ledger` before every attempt, caps the
answer's size and retries it as the :class:`~extractor.teachers.http.retry.Retry` policy says; the
teacher records it once in that ledger.

Header values are secrets: they are kept in :class:`~extractor.teachers.http.config.Secret` wrappers
that print as ``***``, masked (exact copies in any case and near copies,
:class:`~extractor.teachers.http.redact.Redactor`) in every message this module produces, server answers
quoted in errors included, and never follow a redirect (redirects are refused, not followed).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Sequence, TypeVar

import numpy as np

from extractor.ledger import Ledger
from extractor.teachers.base import (
    InputFormat,
    MalformedAnswer,
    OutputKind,
    TeacherError,
    TeacherOutput,
    guess_kind,
    output_from_scores,
)
from extractor.teachers.http import registry
from extractor.teachers.http.bodies import parse_json
from extractor.teachers.http.codec import Answer, Codec, HttpRequest, ModelInfo
from extractor.teachers.http.config import HttpConfig, fingerprint, public_url
from extractor.teachers.http.formats import StatusError, TensorFormats
from extractor.teachers.http.redact import Redactor
from extractor.teachers.http.transport import Attempts, Reply, Transport

log = logging.getLogger(__name__)

_NO_METADATA = {404, 405, 501}
_EXCERPT_CHARS = 160
_Result = TypeVar("_Result")


class HttpTeacher:
    """A classifier behind a serving API (KServe v1/v2, TF Serving, TorchServe or a JSON spec).

    Construction reads the server's model metadata where the protocol has it (one GET, charged
    nothing), pins the model version and computes the fingerprint.

    Args:
        config: endpoint, protocol and policies.
        ledger: where every attempt is charged (before it is sent) and every logical request is
            recorded; None starts an unlimited one, which :meth:`use_ledger` hands over to the job's.
    """

    def __init__(self, config: HttpConfig, ledger: Ledger | None = None) -> None:
        self.config = config
        self.ledger = ledger if ledger is not None else Ledger()
        self._public_url = public_url(config.url)
        self._redact = Redactor(config.secrets())
        self._transport = Transport(config)
        self._lock = threading.Lock()
        protocol = registry.factory(config.protocol)
        info = self._read_metadata()
        self.model_version: str | None = self._pick_version(info)
        tensor_format = config.tensor_format if "tensor_format" in protocol.takes else None
        codec = registry.make_codec(
            config.protocol, model=config.model, version=config.model_version, class_names=config.class_names,
            spec=config.json_spec, input_name=config.input_name, output_name=config.output_name, info=info,
            binary=tensor_format is not None and tensor_format != "json")
        self._formats = TensorFormats(codec, tensor_format, self._public_url)
        shape = info.input_shape
        self.input_shape: tuple[int | None, int | None, int | None] | None = \
            (shape[1], shape[2], shape[3]) if shape and len(shape) == 4 else None
        """(C, H, W) from the model's metadata, None for unknown dims; None without metadata."""
        self.num_classes: int = self._declared_classes(info)
        self.input_format: InputFormat = codec.input_format
        self.max_batch: int | None = config.batch_size
        self._kind: OutputKind | None = {"logits": "logits", "probs": "probs"}.get(config.output_policy)
        self.fingerprint = fingerprint(config, self.model_version)
        if self.model_version is None and protocol.versioned:
            log.warning("teacher %s names no model version; pass --model-version so that a model update "
                        "changes the cache key", self._public_url)

    def describe(self) -> dict:
        """Plain data that names this teacher in the store and reports; header names, never values."""
        spec = self.config.json_spec
        return {"type": "http", "url": self._public_url, "protocol": self.config.protocol,
                "model": self.config.model, "model_version": self.model_version,
                "output_policy": self.config.output_policy, "output": self.config.output_name,
                "classes": list(self.config.class_names), "request_batch": self.max_batch,
                "headers": self.config.header_names(), "json_spec": spec.as_data() if spec else None}

    def use_ledger(self, ledger: Ledger) -> bool:
        """Charges and records in ``ledger`` from now on; the records kept so far (the metadata read)
        move to it, so that they reach the job's store too."""
        for record in self.ledger.drain():
            ledger.record(record)
        self.ledger = ledger
        return True

    @property
    def tensor_format(self) -> str | None:
        """How kserve-v2 tensors travel: "binary" or "json"; "binary+json" while auto mode times both;
        None for other protocols, and in auto mode until the server has answered."""
        return self._formats.format

    def predict(self, batch: np.ndarray | Sequence[np.ndarray]) -> TeacherOutput:
        """Sends one request for ``batch``: float32 (B, C, H, W) tensors or B uint8 (H, W, C) images."""
        images = self._check_batch(batch)
        inputs = np.asarray(batch) if self.input_format == "tensor" else batch
        attempts = Attempts(self.ledger, images)
        return self._recorded(attempts, lambda: self._answer(inputs, attempts))

    def _answer(self, inputs: np.ndarray | Sequence[np.ndarray], attempts: Attempts) -> TeacherOutput:
        """One request in the tensor format decided, its answer checked against what was asked."""
        answer = self._formats.ask(lambda codec: self._exchange(codec, inputs, attempts), attempts)
        return self._to_output(answer, attempts.images)

    def _recorded(self, attempts: Attempts, call: Callable[[], _Result]) -> _Result:
        """Runs one logical request and records it in the ledger, its error masked; errors raised masked too."""
        started, clock = time.time(), time.perf_counter()
        error: str | None = None
        try:
            return call()
        except TeacherError as exc:
            clean = self._scrub(exc)
            error = f"{type(clean).__name__}: {clean}"
            raise clean from None
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            self.ledger.record(attempts.record(started, time.perf_counter() - clock, error))

    def _check_batch(self, batch: np.ndarray | Sequence[np.ndarray]) -> int:
        count = len(batch)
        if not 1 <= count <= (self.max_batch or count):
            raise ValueError(f"a request takes 1 to {self.max_batch} images (--request-batch), got {count}")
        if self.input_format == "image":
            return count  # each image is checked as it is encoded
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.dtype != np.float32:
            raise TypeError(f"expected float32 (B, C, H, W), got {batch.dtype} {batch.shape}")
        if not np.isfinite(batch).all():
            raise ValueError("inputs contain NaN or infinite values; a serving API cannot take them")
        expected = self.input_shape or ()
        for axis, (want, got) in enumerate(zip(expected, batch.shape[1:]), start=1):
            if want is not None and want != got:
                raise ValueError(f"teacher expects inputs of shape {list(expected)}, got {list(batch.shape[1:])} "
                                 f"(axis {axis}; check --channels and --size)")
        return count

    def _exchange(self, codec: Codec, inputs: np.ndarray | Sequence[np.ndarray], attempts: Attempts) -> Answer:
        """Encodes, sends with retries, and decodes one answer; a non-2xx final answer raises."""
        reply = self._transport.send("POST", codec.encode(inputs), attempts,
                                     lambda answer: codec.decode(codec.parse(answer.body, answer.headers)))
        if reply.value is None:
            raise self._http_error(reply)
        return reply.value

    def _read_metadata(self) -> ModelInfo:
        path = registry.metadata_path(self.config.protocol, self.config.model)
        if path is None:
            return ModelInfo()
        attempts = Attempts(self.ledger, 0)

        def read() -> ModelInfo:
            reply = self._transport.send("GET", HttpRequest(path), attempts, lambda answer: parse_json(answer.body))
            if reply.status in _NO_METADATA:
                log.info("teacher %s has no model metadata (HTTP %d); using the flags alone",
                         self._public_url, reply.status)
                return ModelInfo()
            if reply.status >= 300:
                raise self._http_error(reply)
            return registry.parse_metadata(self.config.protocol, reply.value)

        return self._recorded(attempts, read)

    def _pick_version(self, info: ModelInfo) -> str | None:
        declared = self.config.model_version
        if not info.versions:
            return declared
        if declared is not None:
            if declared not in info.versions:
                raise TeacherError(f"--model-version {declared} is not served by {self._public_url} "
                                   f"for {self.config.model}; served: {list(info.versions)}")
            return declared
        if len(info.versions) == 1:
            return info.versions[0]
        raise TeacherError(f"{self.config.model} is served in versions {list(info.versions)}; "
                           "choose one with --model-version")

    def _declared_classes(self, info: ModelInfo) -> int:
        names = self.config.class_names
        wanted = self.config.output_name or (info.outputs[0][0] if info.outputs else None)
        served = dict(info.outputs).get(wanted) if wanted else None
        if names and served and len(names) != served:
            raise TeacherError(f"the model outputs {served} classes but --classes names {len(names)}: {list(names)}")
        return len(names) or served or 0

    def _to_output(self, answer: Answer, images: int) -> TeacherOutput:
        if answer.model_version is not None:
            self._check_version(answer.model_version)
        if answer.kind == "label":
            labels = answer.labels if answer.labels is not None else np.zeros(0, np.int64)
            if len(labels) != images:
                raise MalformedAnswer(f"the answer has {len(labels)} labels for {images} images")
            return TeacherOutput(labels=labels.astype(np.int64), probs=None, kind="label")
        scores = answer.scores
        if scores is None or scores.ndim != 2 or len(scores) != images:
            got = "no scores" if scores is None else f"scores of shape {scores.shape}"
            raise MalformedAnswer(f"the answer has {got} for {images} images")
        with self._lock:
            if self.num_classes == 0:
                self.num_classes = scores.shape[1]
                log.info("teacher %s has %d classes (from its first answer)", self._public_url, self.num_classes)
        if scores.shape[1] != self.num_classes:
            source = " (--classes)" if self.config.class_names else ""
            raise MalformedAnswer(f"the answer has {scores.shape[1]} scores per image but the "
                                  f"teacher has {self.num_classes} classes{source}")
        return output_from_scores(scores, answer.kind or self._dense_kind(scores))

    def _dense_kind(self, scores: np.ndarray) -> OutputKind:
        with self._lock:
            if self._kind is None:
                self._kind = guess_kind(scores)
                log.info("teacher %s outputs %s (decided from its first answer)", self._public_url, self._kind)
            return self._kind

    def _check_version(self, seen: str) -> None:
        with self._lock:
            expected = self.model_version
            if expected is None:
                self.model_version = seen
                log.warning("teacher %s answers from model version %s, which its fingerprint does not "
                            "include; pass --model-version %s", self._public_url, seen, seen)
                return
        if seen != expected:
            raise TeacherError(f"teacher model version changed from {expected} to {seen} during the run; "
                               f"its answers are not stored under the old fingerprint (pass --model-version "
                               f"{seen} to label with the new model)")

    def _http_error(self, reply: Reply) -> TeacherError:
        """The error of a final non-2xx answer, quoting the start of its body with secrets masked first (so
        that cutting it short cannot leave part of one)."""
        status = f"teacher {self._public_url} answered HTTP {reply.status} {reply.reason}"
        if reply.redirect_to is not None:
            return TeacherError(f"{status} to {public_url(reply.redirect_to)}; redirects are not followed (they "
                                "could carry the auth headers elsewhere): give the final URL")
        excerpt = " ".join(self._redact(reply.text()).split())[:_EXCERPT_CHARS]
        return StatusError(f"{status}: {excerpt or '(empty body)'}", reply.status)

    def _scrub(self, exc: TeacherError) -> TeacherError:
        text = str(exc)
        clean = self._redact(text)
        if clean == text:
            return exc
        return StatusError(clean, exc.status) if isinstance(exc, StatusError) else type(exc)(clean)
