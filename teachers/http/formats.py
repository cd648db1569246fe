"""How kserve-v2 tensors travel: raw bytes (the binary tensor data extension) where the server takes them
and it pays, else JSON numbers.

With ``--tensor-format auto`` the first request asks in binary and, if the server refuses it (400, 415 or
422), again in JSON, which is then kept for the rest of the run; if the server takes binary, the next
requests time both formats and the faster one is kept (:data:`TIMED_REQUESTS`). Protocols with one
format each pass straight through.
"""
from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from extractor.errors import TeacherError
from extractor.teachers.http.codec import Answer, Codec
from extractor.teachers.http.transport import Attempts

log = logging.getLogger(__name__)

TIMED_REQUESTS = 3
"""With --tensor-format auto and a server that takes binary tensors, requests answered at the first attempt
in each format whose time per image is compared (medians) before the faster format is kept. Binary is not
always faster: KServe's Python model server (0.21) turns binary REST inputs into a Python list value by
value (``InferRequest.from_bytes``), which costs it several times what parsing the same values as JSON does."""
REFUSED_FORMAT = frozenset({400, 415, 422})  # Bad Request, Unsupported Media Type, Unprocessable Content


class StatusError(TeacherError):
    """A final non-2xx answer (after retries, or one never retried, such as a 4xx)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Timing:
    """Auto mode's comparison of the two tensor formats: seconds per image of the requests answered at
    their first attempt, and the formats sent so far."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {"binary": [], "json": []})
    sent: set[str] = field(default_factory=lambda: {"binary"})


Exchange = Callable[[Codec], Answer]
"""Sends one request with the given codec and decodes its answer; StatusError for a non-2xx answer."""


class TensorFormats:
    """Picks the codec each request is sent with, deciding auto mode from the server's first answers.

    Args:
        codec: the codec built from the flags (in binary, for auto mode).
        tensor_format: "binary", "json" or "auto"; None for a protocol with one format.
        public_url: the teacher, as logs may name it.
    """

    def __init__(self, codec: Codec, tensor_format: str | None, public_url: str) -> None:
        self.codec = codec
        self._format = None if tensor_format == "auto" else tensor_format
        self._probing = tensor_format == "auto"
        self._public_url = public_url
        self._lock = threading.Lock()
        self._timing: _Timing | None = None

    @property
    def format(self) -> str | None:
        """"binary" or "json"; "binary+json" while auto mode times both; None for other protocols, and in auto
        mode until the server has answered."""
        timing = self._timing
        if timing is not None:
            return "+".join(sorted(timing.sent))
        return self._format

    def ask(self, exchange: Exchange, attempts: Attempts) -> Answer:
        """One request in the format decided; in auto mode, until it is, one at a time (so that a server
        without binary tensors refuses one request, not one per thread, and timings are not queueing)."""
        if self._probing:
            with self._lock:
                if self._probing:
                    return self._first(exchange) if self._timing is None else \
                        self._timed(self._timing, exchange, attempts)
        return exchange(self.codec)

    def _first(self, exchange: Exchange) -> Answer:
        """In binary; if the server refuses it, in JSON, which is kept."""
        try:
            answer = exchange(self.codec)
        except StatusError as exc:
            if exc.status not in REFUSED_FORMAT:
                raise
            json_codec = dataclasses.replace(self.codec, binary=False)  # type: ignore[type-var]
            answer = exchange(json_codec)
            log.warning("teacher %s answered a request with binary tensors HTTP %d; sending JSON tensors from "
                        "now on (--tensor-format json skips this request)", self._public_url, exc.status)
            log.debug("the refusal: %s", exc)
            self.codec, self._format, self._probing = json_codec, "json", False
            return answer
        log.info("teacher %s takes binary tensors; timing them against JSON", self._public_url)
        self._timing = _Timing()
        return answer

    def _timed(self, timing: _Timing, exchange: Exchange, attempts: Attempts) -> Answer:
        """JSON and binary in turn until TIMED_REQUESTS of each were answered at their first attempt; then
        the one with the shorter median time per image is kept (binary at once if the server refuses JSON,
        as KServe does FP16 inputs)."""
        chosen = min(("json", "binary"), key=lambda name: len(timing.seconds[name]))
        timing.sent.add(chosen)
        json_codec = dataclasses.replace(self.codec, binary=False)  # type: ignore[type-var]
        clock = time.perf_counter()
        try:
            answer = exchange(self.codec if chosen == "binary" else json_codec)
        except StatusError as exc:
            if chosen != "json" or exc.status not in REFUSED_FORMAT:
                raise
            log.warning("teacher %s answered a request with JSON tensors HTTP %d; sending binary tensors from "
                        "now on", self._public_url, exc.status)
            self._format, self._timing, self._probing = "binary", None, False
            return exchange(self.codec)
        if attempts.retries == 0:  # backoff would say nothing about the format
            timing.seconds[chosen].append((time.perf_counter() - clock) / attempts.images)
        if min(map(len, timing.seconds.values())) >= TIMED_REQUESTS:
            medians = {name: statistics.median(times) for name, times in timing.seconds.items()}
            faster = min(medians, key=medians.__getitem__)
            log.info("teacher %s: %.3f ms per image with binary tensors, %.3f ms with JSON (medians of %d "
                     "requests); sending %s", self._public_url, medians["binary"] * 1000, medians["json"] * 1000,
                     TIMED_REQUESTS, faster)
            if faster == "json":
                self.codec = json_codec
            self._format, self._timing, self._probing = faster, None, False
        return answer
