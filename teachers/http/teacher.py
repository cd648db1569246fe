"""A remote model behind a serving API, queried over HTTP as an opaque teacher.

One ``predict`` call is one logical request: the job splits work into ``max_batch``-sized pieces and
runs several ``predict`` calls at once from its own threads, so everything here is thread-safe. A
request is rate limited (``--max-rps``, shared by all threads), charged to the job's
:class:`~extractor.ledger.Ledger` before every attempt, retried on connection errors, timeouts, 429,
5xx and bodies that cannot be read (not JSON, cut short) with exponential backoff and full jitter
(honouring ``Retry-After``), and recorded once in that ledger.

kserve-v2 tensors travel as raw bytes (the binary tensor data extension) where the server takes them
and it pays: with ``--tensor-format auto`` the first request asks in binary and, if the server refuses
it (400, 415 or 422), again in JSON, which is then kept for the rest of the run; if the server takes
binary, the next requests time both formats and the faster one is kept (:data:`TIMED_REQUESTS`).

Header values are secrets: they are kept in :class:`Secret` wrappers that print as ``***``, are
scrubbed from every message this module produces (server answers quoted in errors included), and
never follow a redirect (redirects are refused, not followed).
"""
from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import requests

from extractor.errors import ConfigError
from extractor.ledger import Ledger, RequestRecord
from extractor.teachers.http import codecs as protocols
from extractor.teachers.base import (
    OUTPUT_POLICIES,
    InputFormat,
    MalformedAnswer,
    OutputKind,
    OutputPolicy,
    TeacherError,
    TeacherOutput,
    TeacherUnavailable,
    UnreadableAnswer,
    guess_kind,
    output_from_scores,
)
from extractor.teachers.http.codecs import BINARY_HEADER, PROTOCOLS, TENSOR_FORMATS, HttpRequest, JsonSpec, ModelInfo

log = logging.getLogger(__name__)

DEFAULT_REQUEST_BATCH = 32
_NOT_RETRIED_5XX = {501, 505}  # Not Implemented / HTTP Version Not Supported never get better
_NO_METADATA = {404, 405, 501}
_UNREADABLE_BODY = {400, 415, 422}  # Bad Request, Unsupported Media Type, Unprocessable Content: a format refused
_EXCERPT_CHARS = 160
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_NOT_SENT = "not sent"
_MIN_REDACTED_CHARS = 8  # shorter words of a secret ("Bearer", "Basic") are too common to scrub alone
_Read = TypeVar("_Read")
TIMED_REQUESTS = 3
"""With --tensor-format auto and a server that takes binary tensors, requests answered at the first attempt
in each format whose time per image is compared (medians) before the faster format is kept. Binary is not
always faster: KServe's Python model server (0.21) turns binary REST inputs into a Python list value by
value (``InferRequest.from_bytes``), which costs it several times what parsing the same values as JSON does."""


class Secret:
    """A header value that prints as ``***``: safe in repr, str, f-strings and logs; not JSON-serialisable."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_header(text: str) -> tuple[str, Secret]:
    """``"Name: value"`` (from ``--header``) -> ``(name, Secret(value))``; never echoes the value."""
    name, colon, value = text.partition(":")
    if not colon:
        raise ConfigError("--header must be 'Name: value' (a header name, a colon, the value); "
                         "the one given has no colon")
    name, value = name.strip(), value.strip()
    _check_header_name(name, "--header")
    if not value or any(char in value for char in "\r\n\0"):
        raise ConfigError(f"--header {name}: the value must be non-empty and on one line")
    return name, Secret(value)


def parse_header_env(text: str) -> tuple[str, str]:
    """``"Name=ENVVAR"`` (from ``--header-env``) -> ``(name, ENVVAR)``."""
    name, equals, variable = text.partition("=")
    name, variable = name.strip(), variable.strip()
    if not equals:
        raise ConfigError("--header-env must be 'Name=ENVVAR' (a header name, '=', an environment "
                         "variable name); the one given has no '='")
    _check_header_name(name, "--header-env")
    if not _ENV_NAME.fullmatch(variable):
        raise ConfigError(f"--header-env {name}: after '=' give the name of an environment variable "
                         "(letters, digits, '_'), not the value itself")
    return name, variable


@dataclass(frozen=True)
class HttpConfig:
    """Where a remote teacher lives, how to talk to it and how hard to try.

    Header values are :class:`Secret`; plain strings given here are wrapped. ``header_env`` is
    resolved when the config is built, so a missing variable fails before any work starts.
    """

    url: str
    """Base URL of the serving API (--teacher), e.g. ``https://host:8080``."""
    protocol: str
    """Serving protocol (--protocol), one of ``PROTOCOLS``."""
    model: str = ""
    """Model name on the server (--model-name); required except for --protocol json."""
    model_version: str | None = None
    """Model version to pin (--model-version); None takes the one the server's metadata names."""
    headers: tuple[tuple[str, Secret], ...] = ()
    """Extra request headers (--header "Name: value")."""
    header_env: tuple[tuple[str, str], ...] = ()
    """Headers whose values come from environment variables (--header-env Name=ENVVAR)."""
    timeout_s: float = 30.0
    """Seconds to wait for a connection or for each read of the answer (--timeout)."""
    retries: int = 4
    """Retries after the first attempt on connection errors, timeouts, 429 and 5xx (--retries)."""
    backoff_s: float = 0.5
    """Base of the exponential backoff; attempt n sleeps uniform(0, backoff_s * 2**n) (--backoff)."""
    max_backoff_s: float = 30.0
    """Longest single sleep; a longer Retry-After gives up instead (--max-backoff)."""
    max_rps: float | None = None
    """Most request attempts per second over all threads; None for no limit (--max-rps)."""
    output_policy: OutputPolicy = "auto"
    """What dense scores are: "auto" decides from the first answer; "logits"/"probs" (--output-policy)."""
    class_names: tuple[str, ...] = ()
    """Class names in index order (--classes); required where answers name classes."""
    json_spec: JsonSpec | None = None
    """Request and answer layout for --protocol json (--json-spec)."""
    batch_size: int | None = None
    """Images per request (--request-batch); None: 32, or 1 where the protocol sends one image."""
    input_name: str | None = None
    """kserve-v2 input tensor name (--input-name); None reads it from the model metadata, and where that
    lists no inputs (KServe's own model server) sends "input-0" (``protocols.DEFAULT_V2_INPUT``)."""
    output_name: str | None = None
    """Which named output holds the scores (--output-name; kserve-v2, kserve-v1); None takes the first."""
    verify_tls: bool | str = True
    """TLS verification (--ca-bundle): True, or the path of a CA bundle; it cannot be turned off."""
    tensor_format: str = "auto"
    """kserve-v2 tensors as "binary" (the binary tensor data extension), "json", or "auto": binary unless
    the server refuses it (--tensor-format). Other protocols have one format each."""
    env_headers: tuple[tuple[str, Secret], ...] = field(default=(), init=False, compare=False)
    """The resolved ``header_env`` values."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--teacher must be an http:// or https:// URL, got {public_url(self.url)!r}")
        if parts.username is not None or parts.password is not None:
            raise ConfigError("--teacher must not embed credentials (user:password@host); pass them with --header-env")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.protocol != "json" and not self.model:
            raise ConfigError(f"--model-name is required with --protocol {self.protocol}")
        if (self.protocol == "json") != (self.json_spec is not None):
            raise ConfigError("--json-spec is required with --protocol json and applies to nothing else")
        self._check_numbers()
        self._check_outputs()
        self._check_headers()
        if self.verify_tls is False:
            raise ConfigError("TLS verification cannot be turned off; give --ca-bundle for a private CA")
        if isinstance(self.verify_tls, str) and not os.path.isfile(self.verify_tls):
            raise ConfigError(f"--ca-bundle {self.verify_tls!r} is not a file")

    @property
    def dense_answers(self) -> bool:
        """Whether answers are plain score vectors whose kind --output-policy decides."""
        if self.protocol == "torchserve":
            return False
        return self.json_spec is None or self.json_spec.output == "scores"

    @property
    def batched(self) -> bool:
        """Whether the protocol can carry several images in one request."""
        if self.protocol == "torchserve":
            return False
        return self.json_spec is None or self.json_spec.batch

    def header_names(self) -> list[str]:
        """Names of the extra headers, for reports; never their values."""
        return [name for name, _ in self.headers + self.env_headers]

    def reveal_headers(self) -> dict[str, str]:
        """The extra headers with their real values, for the session that sends them."""
        return {name: value.reveal() for name, value in self.headers + self.env_headers}

    def _check_numbers(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout_s}")
        if self.retries < 0:
            raise ConfigError(f"--retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError(f"need 0 <= --backoff <= --max-backoff, got {self.backoff_s} and {self.max_backoff_s}")
        if self.max_rps is not None and not self.max_rps > 0:
            raise ConfigError(f"--max-rps must be > 0, got {self.max_rps}")
        batch = self.batch_size
        if batch is None:
            object.__setattr__(self, "batch_size", DEFAULT_REQUEST_BATCH if self.batched else 1)
        elif batch < 1:
            raise ConfigError(f"--request-batch must be >= 1, got {batch}")
        elif batch > 1 and not self.batched:
            raise ConfigError(f"--request-batch must be 1 here: {self.protocol} sends one image per request")

    def _check_outputs(self) -> None:
        for flag, value, protocols_using in (("--input-name", self.input_name, ("kserve-v2",)),
                                             ("--output-name", self.output_name, ("kserve-v2", "kserve-v1"))):
            if value is not None and not value:
                raise ConfigError(f"{flag} must name a tensor, got an empty name")
            if value is not None and self.protocol not in protocols_using:
                raise ConfigError(f"{flag} applies to --protocol {' or '.join(protocols_using)}, "
                                  f"not {self.protocol}")
        if self.tensor_format not in TENSOR_FORMATS:
            raise ConfigError(f"--tensor-format must be one of {TENSOR_FORMATS}, got {self.tensor_format!r}")
        if self.tensor_format == "binary" and self.protocol != "kserve-v2":
            raise ConfigError(f"--tensor-format binary applies to --protocol kserve-v2, not {self.protocol}")
        if self.output_policy not in OUTPUT_POLICIES:
            raise ConfigError(f"--output-policy must be one of {OUTPUT_POLICIES}, got {self.output_policy!r}")
        if self.output_policy != "auto" and not self.dense_answers:
            raise ConfigError("--output-policy applies to dense score answers; this teacher answers "
                             "with named classes, so leave it at 'auto'")
        names = self.class_names
        if names and (len(names) < 2 or len(set(names)) != len(names) or not all(names)):
            raise ConfigError(f"--classes must name >= 2 distinct, non-empty classes, got {list(names)}")
        if not names and not self.dense_answers:
            raise ConfigError("--classes is required: this teacher answers with class names")

    def _check_headers(self) -> None:
        headers = tuple((name, value if isinstance(value, Secret) else Secret(value)) for name, value in self.headers)
        object.__setattr__(self, "headers", headers)
        resolved = []
        for name, variable in self.header_env:
            value = os.environ.get(variable)
            if not value:
                raise ConfigError(f"--header-env {name}={variable}: environment variable {variable} is not set or empty")
            resolved.append((name, Secret(value)))
        object.__setattr__(self, "env_headers", tuple(resolved))
        seen: set[str] = set()
        for name, value in headers + self.env_headers:
            _check_header_name(name, "--header")
            if any(char in value.reveal() for char in "\r\n\0"):
                raise ConfigError(f"header {name}: the value must be on one line")
            if name.lower() in seen:
                raise ConfigError(f"header {name} is given twice (--header / --header-env)")
            seen.add(name.lower())
        host = urlsplit(self.url).hostname
        if seen and urlsplit(self.url).scheme == "http" and host not in _LOOPBACK:
            log.warning("sending %d auth header(s) over plain http to %s; anyone on the path can read them",
                        len(seen), host)


class RateLimiter:
    """A token bucket of capacity one shared by all threads: request starts are spaced 1/max_rps apart."""

    def __init__(self, max_rps: float) -> None:
        self.interval_s = 1.0 / max_rps
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Blocks until this caller's turn; turns are handed out in arrival order."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval_s
        if start > now:
            time.sleep(start - now)


@dataclass
class _Timing:
    """Auto mode's comparison of the two tensor formats: seconds per image of the requests answered at
    their first attempt, and the formats sent so far."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {"binary": [], "json": []})
    sent: set[str] = field(default_factory=lambda: {"binary"})


class _StatusError(TeacherError):
    """A final non-2xx answer (after retries, or one never retried, such as a 4xx)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Attempts:
    """What happened while sending one logical request (for the ledger)."""

    status: int | str = _NOT_SENT
    retries: int = 0
    charged: int = 0


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
        self._secrets = _secret_tokens(config)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._random = random.Random()
        self._limiter = RateLimiter(config.max_rps) if config.max_rps else None
        self._retried_before = False
        info = self._read_metadata()
        self.model_version: str | None = self._pick_version(info)
        tensors = config.protocol == "kserve-v2"
        self._codec = protocols.make_codec(
            config.protocol, model=config.model, version=config.model_version, class_names=config.class_names,
            spec=config.json_spec, input_name=config.input_name, output_name=config.output_name, info=info,
            binary=tensors and config.tensor_format != "json")
        self._format: str | None = config.tensor_format if tensors and config.tensor_format != "auto" else None
        self._probing = tensors and self._format is None
        self._probe_lock = threading.Lock()
        self._timing: _Timing | None = None
        shape = info.input_shape
        self.input_shape: tuple[int | None, int | None, int | None] | None = \
            (shape[1], shape[2], shape[3]) if shape and len(shape) == 4 else None
        """(C, H, W) from the model's metadata, None for unknown dims; None without metadata."""
        self.num_classes: int = self._declared_classes(info)
        self.input_format: InputFormat = self._codec.input_format
        self.max_batch: int | None = config.batch_size
        self._kind: OutputKind | None = {"logits": "logits", "probs": "probs"}.get(config.output_policy)
        self.fingerprint = fingerprint(config, self.model_version)
        if self.model_version is None and config.protocol in ("kserve-v2", "kserve-v1"):
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
        timing = self._timing
        if timing is not None:
            return "+".join(sorted(timing.sent))
        return self._format

    def predict(self, batch: np.ndarray | Sequence[np.ndarray]) -> TeacherOutput:
        """Sends one request for ``batch``: float32 (B, C, H, W) tensors or B uint8 (H, W, C) images."""
        images = self._check_batch(batch)
        inputs = np.asarray(batch) if self.input_format == "tensor" else batch
        attempts, started, clock = _Attempts(), time.time(), time.perf_counter()
        error: str | None = None
        try:
            return self._to_output(self._ask(inputs, images, attempts), images)
        except TeacherError as exc:
            clean = self._scrub(exc)
            error = f"{type(clean).__name__}: {clean}"
            raise clean from None
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            self._record(started, images, attempts, time.perf_counter() - clock, error)

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

    def _ask(self, inputs: np.ndarray | Sequence[np.ndarray], images: int, attempts: _Attempts) -> protocols.Answer:
        """One logical request in the tensor format decided; in auto mode, until it is, one at a time."""
        if self._probing:
            with self._probe_lock:
                if self._probing:
                    return self._probe(inputs, images, attempts)
        return self._exchange(self._codec, inputs, images, attempts)

    def _probe(self, inputs: np.ndarray | Sequence[np.ndarray], images: int, attempts: _Attempts) -> protocols.Answer:
        """Auto mode, one request at a time (so that a server without binary tensors refuses one request,
        not one per thread, and so that timings are not queueing): the first request in binary, then,
        where the server took it, both formats in turn, timed."""
        if self._timing is None:
            return self._first(inputs, images, attempts)
        return self._timed(self._timing, inputs, images, attempts)

    def _first(self, inputs: np.ndarray | Sequence[np.ndarray], images: int, attempts: _Attempts) -> protocols.Answer:
        """In binary; if the server refuses it (400, 415 or 422), in JSON, which is kept."""
        try:
            answer = self._exchange(self._codec, inputs, images, attempts)
        except _StatusError as exc:
            if exc.status not in _UNREADABLE_BODY:
                raise
            json_codec = dataclasses.replace(self._codec, binary=False)
            answer = self._exchange(json_codec, inputs, images, attempts)
            log.warning("teacher %s answered a request with binary tensors HTTP %d; sending JSON tensors from "
                        "now on (--tensor-format json skips this request)", self._public_url, exc.status)
            log.debug("the refusal: %s", _redact(str(exc), self._secrets))
            self._codec, self._format, self._probing = json_codec, "json", False
            return answer
        log.info("teacher %s takes binary tensors; timing them against JSON", self._public_url)
        self._timing = _Timing()
        return answer

    def _timed(self, timing: _Timing, inputs: np.ndarray | Sequence[np.ndarray], images: int,
               attempts: _Attempts) -> protocols.Answer:
        """JSON and binary in turn until TIMED_REQUESTS of each were answered at their first attempt; then
        the one with the shorter median time per image is kept (binary at once if the server refuses JSON,
        as KServe does FP16 inputs)."""
        chosen = min(("json", "binary"), key=lambda name: len(timing.seconds[name]))
        timing.sent.add(chosen)
        codec = self._codec if chosen == "binary" else dataclasses.replace(self._codec, binary=False)
        clock = time.perf_counter()
        try:
            answer = self._exchange(codec, inputs, images, attempts)
        except _StatusError as exc:
            if chosen != "json" or exc.status not in _UNREADABLE_BODY:
                raise
            log.warning("teacher %s answered a request with JSON tensors HTTP %d; sending binary tensors from "
                        "now on", self._public_url, exc.status)
            self._format, self._timing, self._probing = "binary", None, False
            return self._exchange(self._codec, inputs, images, attempts)
        if attempts.retries == 0:  # backoff would say nothing about the format
            timing.seconds[chosen].append((time.perf_counter() - clock) / images)
        if min(map(len, timing.seconds.values())) >= TIMED_REQUESTS:
            medians = {name: statistics.median(times) for name, times in timing.seconds.items()}
            faster = min(medians, key=medians.__getitem__)
            log.info("teacher %s: %.3f ms per image with binary tensors, %.3f ms with JSON (medians of %d "
                     "requests); sending %s", self._public_url, medians["binary"] * 1000, medians["json"] * 1000,
                     TIMED_REQUESTS, faster)
            if faster == "json":
                self._codec = dataclasses.replace(self._codec, binary=False)
            self._format, self._timing, self._probing = faster, None, False
        return answer

    def _exchange(self, codec: protocols.Codec, inputs: np.ndarray | Sequence[np.ndarray], images: int,
                  attempts: _Attempts) -> protocols.Answer:
        """Encodes, sends with retries, and decodes one answer; a non-2xx final answer raises."""

        def read(response: requests.Response) -> protocols.Answer:
            return codec.decode(protocols.parse_body(response.content, response.headers.get(BINARY_HEADER)))

        response, answer = self._send("POST", codec.encode(inputs), images, attempts, read)
        if answer is None:
            raise self._http_error(response)
        return answer

    def _send(self, method: str, request: HttpRequest, images: int, attempts: _Attempts,
              read: Callable[[requests.Response], _Read] | None = None) -> tuple[requests.Response, _Read | None]:
        """One logical request: rate limit, budget, bounded retries.

        Returns:
            The final response, and what ``read`` made of it where it is a 2xx (else None). ``read``
            raising UnreadableAnswer (a body cut short or not JSON) is retried like a 5xx.
        """
        config = self.config
        url = config.url + request.path
        headers = dict(request.headers)
        if request.content_type:
            headers["Content-Type"] = request.content_type
        attempt = 0
        while True:
            attempts.retries = attempt
            if self._limiter is not None:
                self._limiter.wait()
            if images:
                self.ledger.charge(images)
                attempts.charged += images
            retry_after_s = None
            try:
                response = self._session().request(
                    method, url, data=request.body, files=list(request.files) or None,
                    headers=headers, timeout=config.timeout_s, allow_redirects=False)
            except requests.exceptions.SSLError:
                attempts.status = "SSLError"
                raise TeacherError(f"TLS verification of {self._public_url} failed; give --ca-bundle "
                                   "if it uses a private CA") from None
            except requests.Timeout as exc:
                attempts.status = type(exc).__name__
                failure = f"no answer within --timeout {config.timeout_s:g} s"
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                attempts.status = type(exc).__name__
                failure = f"connection failed ({_root_cause(exc)})"
            except requests.RequestException as exc:
                attempts.status = type(exc).__name__
                raise TeacherError(f"request to {self._public_url} failed: {_root_cause(exc)}") from None
            else:
                attempts.status = response.status_code
                if _retried(response.status_code):
                    failure = f"HTTP {response.status_code}"
                    retry_after_s = _retry_after_s(response.headers.get("Retry-After"))
                elif read is None or response.status_code >= 300:
                    return response, None
                else:
                    try:
                        return response, read(response)
                    except UnreadableAnswer as exc:
                        attempts.status = type(exc).__name__
                        failure = str(exc)
            if attempt == config.retries:
                raise TeacherUnavailable(f"teacher {self._public_url} failed {attempt + 1} attempts "
                                         f"(--retries {config.retries}); last: {failure}")
            delay_s = self._backoff_s(attempt) if retry_after_s is None else retry_after_s
            if delay_s > config.max_backoff_s:
                raise TeacherUnavailable(f"teacher {self._public_url} answered {failure} and asked to retry after "
                                         f"{delay_s:.0f} s, longer than --max-backoff {config.max_backoff_s:g} s")
            log.log(self._retry_log_level(), "teacher %s: %s; retry %d of %d in %.2f s", self._public_url,
                    failure, attempt + 1, config.retries, delay_s)
            time.sleep(delay_s)
            attempt += 1

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self.config.reveal_headers())
            # The environment's proxies and CA bundle, read once: with trust_env, requests reads the whole
            # environment again for every request (5 ms of CPU per request on a busy 2-core machine).
            session.proxies = requests.utils.get_environ_proxies(self.config.url)
            verify = self.config.verify_tls
            session.verify = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True) \
                if verify is True else verify
            session.trust_env = False
            session.auth = _keep_headers  # else requests swaps in ~/.netrc credentials for Authorization
            self._local.session = session
        return session

    def _retry_log_level(self) -> int:
        """WARNING for the first retry of this teacher, INFO after: throttling repeats."""
        with self._lock:
            first, self._retried_before = not self._retried_before, True
        return logging.WARNING if first else logging.INFO

    def _backoff_s(self, attempt: int) -> float:
        """Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015)."""
        ceiling = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** attempt)
        return self._random.uniform(0.0, ceiling)

    def _read_metadata(self) -> ModelInfo:
        path = protocols.metadata_path(self.config.protocol, self.config.model)
        if path is None:
            return ModelInfo()
        attempts, started, clock = _Attempts(), time.time(), time.perf_counter()
        error: str | None = None
        try:
            response, metadata = self._send("GET", HttpRequest(path), 0, attempts,
                                            lambda answer: protocols.parse_body(answer.content))
            if response.status_code in _NO_METADATA:
                log.info("teacher %s has no model metadata (HTTP %d); using the flags alone",
                         self._public_url, response.status_code)
                return ModelInfo()
            if response.status_code >= 300:
                raise self._http_error(response)
            return protocols.parse_metadata(self.config.protocol, metadata)
        except TeacherError as exc:
            clean = self._scrub(exc)
            error = f"{type(clean).__name__}: {clean}"
            raise clean from None
        finally:
            self._record(started, 0, attempts, time.perf_counter() - clock, error)

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

    def _to_output(self, answer: protocols.Answer, images: int) -> TeacherOutput:
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

    def _http_error(self, response: requests.Response) -> TeacherError:
        status = f"teacher {self._public_url} answered HTTP {response.status_code} {response.reason}"
        if response.is_redirect:
            target = public_url(response.headers.get("Location", "?"))
            return TeacherError(f"{status} to {target}; redirects are not followed (they could carry the "
                                "auth headers elsewhere): give the final URL")
        excerpt = " ".join(response.text[:_EXCERPT_CHARS].split())
        return _StatusError(f"{status}: {excerpt or '(empty body)'}", response.status_code)

    def _scrub(self, exc: TeacherError) -> TeacherError:
        text = str(exc)
        clean = _redact(text, self._secrets)
        return exc if clean == text else type(exc)(clean)

    def _record(self, started: float, images: int, attempts: _Attempts, latency_s: float,
                error: str | None) -> None:
        status = attempts.status
        if error is not None:
            error = _redact(error, self._secrets)
            status = error.partition(":")[0] if status == _NOT_SENT else status
        self.ledger.record(RequestRecord(time=started, images=images, charged=attempts.charged, status=status,
                                         latency_s=latency_s, retries=attempts.retries, error=error))


def fingerprint(config: HttpConfig, model_version: str | None) -> str:
    """Changes whenever answers could change: endpoint, protocol, model and version, request schema,
    classes and output policy. Header values (credentials) are left out on purpose."""
    spec = config.json_spec
    data = {"url": config.url, "protocol": config.protocol, "model": config.model,
            "model_version": model_version, "output": config.output_name,
            "schema": spec.as_data() if spec else None, "classes": list(config.class_names),
            "policy": config.output_policy}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def public_url(url: str) -> str:
    """The URL as it may appear in logs and reports: query values masked."""
    parts = urlsplit(url)
    query = urlencode([(key, "***") for key, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, ""))


def _keep_headers(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A no-op requests auth: the headers already carry the credentials."""
    return request


def _check_header_name(name: str, flag: str) -> None:
    if not _HEADER_NAME.fullmatch(name):
        raise ConfigError(f"{flag}: a header name is letters, digits and !#$%&'*+-.^_`|~ only; "
                         "the one given is empty or has a space or other character")


def _secret_tokens(config: HttpConfig) -> tuple[Secret, ...]:
    """Every header value, and its long words, so that "Bearer xyz" is scrubbed as "xyz" too."""
    tokens = set()
    for _, value in config.headers + config.env_headers:
        text = value.reveal()
        tokens.add(text)
        tokens.update(word for word in text.split() if len(word) >= _MIN_REDACTED_CHARS)
    return tuple(Secret(token) for token in sorted(tokens, key=len, reverse=True))


def _redact(text: str, secrets: Sequence[Secret]) -> str:
    for secret in secrets:
        text = text.replace(secret.reveal(), "***")
    return text


def _retried(status: int) -> bool:
    return status == 429 or (status >= 500 and status not in _NOT_RETRIED_5XX)


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _root_cause(exc: BaseException) -> str:
    """The innermost exception's name, e.g. ConnectionResetError, ConnectionRefusedError."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        if inner is None or id(inner) in seen:
            return type(exc).__name__
        seen.add(id(inner))
        exc = inner
