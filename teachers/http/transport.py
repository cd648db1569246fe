"""Sending one logical request: rate limit, charge the budget, attempt, read the answer within its size cap,
and retry as the :class:`~extractor.teachers.http.retry.Retry` policy says.

Answers are streamed and read in chunks after decompression, so that a body past --max-answer-mb (a
small gzip that inflates to gigabytes included) is refused before the rest of it lands in memory. Error
bodies are read only as far as an excerpt needs. Redirects are returned, never followed (they could carry
the auth headers elsewhere).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, Mapping, TypeVar

import requests

from extractor.errors import MalformedAnswer, TeacherError, TeacherUnavailable, UnreadableAnswer
from extractor.ledger import Ledger, RequestRecord
from extractor.teachers.http.codec import HttpRequest
from extractor.teachers.http.config import HttpConfig, public_url

log = logging.getLogger(__name__)

NOT_SENT = "not sent"
EXCERPT_BYTES = 4096
"""How much of an error body is read: enough for a message excerpt, however long the body is."""
_CHUNK_BYTES = 1 << 16
_Read = TypeVar("_Read")


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
class Attempts:
    """The attempts of one logical request, each charged to ``ledger`` before it is sent; its ledger record."""

    ledger: Ledger
    images: int
    """Images each attempt sends (0 for a metadata read, which is charged nothing)."""
    status: int | str = NOT_SENT
    """The last attempt's HTTP status, or the name of the error that ended it."""
    retries: int = 0
    charged: int = 0

    def start(self, attempt: int) -> None:
        """Counts attempt ``attempt`` (0 first) and charges its images; QueryBudgetExceeded past the budget."""
        self.retries = attempt
        if self.images:
            self.ledger.charge(self.images)
            self.charged += self.images

    def record(self, started: float, latency_s: float, error: str | None) -> RequestRecord:
        """The ledger record; ``error`` (already redacted) names the status where nothing was answered."""
        status = self.status
        if error is not None and status == NOT_SENT:
            status = error.partition(":")[0]
        return RequestRecord(time=started, images=self.images, charged=self.charged, status=status,
                             latency_s=latency_s, retries=self.retries, error=error)


@dataclass(frozen=True)
class Reply(Generic[_Read]):
    """A final answer: a 2xx, or a status that is not retried (whose body is an excerpt)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    encoding: str | None
    redirect_to: str | None
    """The Location of a redirect, which is not followed; None for any other answer."""
    value: _Read | None = None
    """What the caller's ``read`` made of a 2xx body; None otherwise."""

    def text(self) -> str:
        """The body as text, undecodable bytes replaced."""
        return self.body.decode(self.encoding or "utf-8", errors="replace")


@dataclass(frozen=True)
class _Failure:
    """An attempt that may be retried: why, as text and as the status or error the policy judges."""

    reason: str
    cause: int | BaseException
    retry_after: str | None = None


class Transport:
    """Sends requests to one teacher from any number of threads, one ``requests.Session`` per thread."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self.retry = config.retry
        self._public_url = public_url(config.url)
        self._limiter = RateLimiter(config.max_rps) if config.max_rps else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._retried_before = False

    def send(self, method: str, request: HttpRequest, attempts: Attempts,
             read: Callable[[Reply], _Read] | None = None) -> Reply[_Read]:
        """One logical request, attempted until it is answered or the retry policy gives up.

        Args:
            read: turns a 2xx reply into what the caller wants (its ``value``); raising UnreadableAnswer
                (a body cut short or not JSON) is retried like a 5xx.

        Raises:
            TeacherUnavailable: the retries are spent, or Retry-After asks too long a wait.
            TeacherError: a failure no retry mends (TLS verification, a malformed request).
            MalformedAnswer: the answer passed --max-answer-mb.
        """
        attempt = 0
        while True:
            if self._limiter is not None:
                self._limiter.wait()
            attempts.start(attempt)
            outcome = self._attempt(method, request, attempts, read)
            if isinstance(outcome, Reply):
                return outcome
            self._wait(attempt, outcome)
            attempt += 1

    def _attempt(self, method: str, request: HttpRequest, attempts: Attempts,
                 read: Callable[[Reply], _Read] | None) -> Reply[_Read] | _Failure:
        try:
            with self._request(method, request) as response:
                status = attempts.status = response.status_code
                whole = read is not None and 200 <= status < 300
                body = read_body(response, self.config.max_answer_bytes) if whole \
                    else read_excerpt(response, EXCERPT_BYTES)
        except requests.RequestException as exc:
            return self._transport_failure(exc, attempts)
        if self.retry.retries(status):
            return _Failure(f"HTTP {status}", status, response.headers.get("Retry-After"))
        redirect_to = response.headers.get("Location", "?") if response.is_redirect else None
        reply: Reply[_Read] = Reply(status, response.reason, response.headers, body, response.encoding, redirect_to)
        if not whole or read is None:
            return reply
        try:
            return dataclasses.replace(reply, value=read(reply))
        except UnreadableAnswer as exc:
            attempts.status = type(exc).__name__
            return _Failure(str(exc), exc)

    def _request(self, method: str, request: HttpRequest) -> requests.Response:
        headers = dict(request.headers)
        if request.content_type:
            headers["Content-Type"] = request.content_type
        return self._session().request(method, self.config.url + request.path, data=request.body,
                                       files=list(request.files) or None, headers=headers,
                                       timeout=self.config.timeout_s, allow_redirects=False, stream=True)

    def _transport_failure(self, exc: requests.RequestException, attempts: Attempts) -> _Failure:
        """A retried transport error as a failure; one that is never retried raises at once."""
        attempts.status = type(exc).__name__
        if isinstance(exc, requests.exceptions.SSLError):
            raise TeacherError(f"TLS verification of {self._public_url} failed; give --ca-bundle "
                               "if it uses a private CA") from None
        if not self.retry.retries(exc):
            raise TeacherError(f"request to {self._public_url} failed: {root_cause(exc)}") from None
        if isinstance(exc, requests.Timeout):
            return _Failure(f"no answer within --timeout {self.config.timeout_s:g} s", exc)
        return _Failure(f"connection failed ({root_cause(exc)})", exc)

    def _wait(self, attempt: int, failure: _Failure) -> None:
        """Sleeps before the next attempt, or raises TeacherUnavailable where the policy gives up."""
        delay_s = self.retry.next_delay(attempt, failure.cause, failure.retry_after)
        if delay_s is None:
            raise self._give_up(attempt, failure)
        log.log(self._retry_log_level(), "teacher %s: %s; retry %d of %d in %.2f s", self._public_url,
                failure.reason, attempt + 1, self.retry.total, delay_s)
        time.sleep(delay_s)

    def _give_up(self, attempt: int, failure: _Failure) -> TeacherUnavailable:
        asked_s = self.retry.retry_after_s(failure.retry_after)
        if attempt < self.retry.total and asked_s is not None:
            return TeacherUnavailable(f"teacher {self._public_url} answered {failure.reason} and asked to retry "
                                      f"after {asked_s:.0f} s, longer than --max-backoff "
                                      f"{self.retry.max_backoff_s:g} s")
        return TeacherUnavailable(f"teacher {self._public_url} failed {attempt + 1} attempts "
                                  f"(--retries {self.retry.total}); last: {failure.reason}")

    def _retry_log_level(self) -> int:
        """WARNING for the first retry of this teacher, INFO after: throttling repeats."""
        with self._lock:
            first, self._retried_before = not self._retried_before, True
        return logging.WARNING if first else logging.INFO

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


def read_body(response: requests.Response, max_bytes: int) -> bytes:
    """The whole body after decompression, read in chunks; MalformedAnswer as soon as it passes ``max_bytes``,
    before the rest of it is read."""
    chunks, size = [], 0
    for chunk in response.iter_content(_CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            encoded = response.headers.get("Content-Encoding")
            raise MalformedAnswer(f"the answer is larger than --max-answer-mb {max_bytes / 2 ** 20:g}"
                                  + (f" once decompressed ({encoded})" if encoded else "")
                                  + "; the rest was not read (raise --max-answer-mb if such answers are expected)")
        chunks.append(chunk)
    return b"".join(chunks)


def read_excerpt(response: requests.Response, max_bytes: int) -> bytes:
    """At most the first ``max_bytes`` of the body after decompression."""
    chunks, size = [], 0
    for chunk in response.iter_content(min(_CHUNK_BYTES, max_bytes)):
        chunks.append(chunk)
        size += len(chunk)
        if size >= max_bytes:
            break
    return b"".join(chunks)[:max_bytes]


def root_cause(exc: BaseException) -> str:
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


def _keep_headers(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """A no-op requests auth: the headers already carry the credentials."""
    return request
