"""When a failed request is tried again, and after how long: a policy in the spirit of urllib3's ``Retry``.

Retried: 429 and 5xx answers (but 501 and 505, which never get better), connection errors, timeouts and
bodies that cannot be read (:class:`~extractor.errors.UnreadableAnswer`); never a TLS failure. The wait
before retry n (0 first) is full jitter, ``uniform(0, min(max_backoff_s, backoff_s * 2**n))`` (AWS
Architecture Blog, "Exponential Backoff And Jitter", 2015), or what the answer's ``Retry-After`` asks
(delta-seconds or an HTTP date, RFC 9110 section 10.2.3); a ``Retry-After`` past ``max_backoff_s``
gives up instead of waiting.
"""
from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from datetime import timezone
from typing import Callable

import requests

from extractor.errors import ConfigError, UnreadableAnswer

RETRIED_ERRORS: tuple[type[BaseException], ...] = (
    requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError, UnreadableAnswer)
NEVER_RETRIED_ERRORS: tuple[type[BaseException], ...] = (requests.exceptions.SSLError,)
"""A ConnectionError subclass that no retry mends: the certificate stays what it is."""
NEVER_RETRIED_5XX = frozenset({501, 505})  # Not Implemented / HTTP Version Not Supported


@dataclass(frozen=True)
class Retry:
    """How many times a failed request is tried again, which failures qualify, and how long to wait.

    Args:
        total: retries after the first attempt (--retries).
        backoff_s: base of the exponential backoff (--backoff).
        max_backoff_s: the longest single wait (--max-backoff).
        jitter: a source of uniform draws in [0, 1); inject one for deterministic waits.
        clock: seconds since the epoch, for Retry-After dates; inject one for deterministic tests.
    """

    total: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    errors: tuple[type[BaseException], ...] = RETRIED_ERRORS
    """Transport errors (and unreadable bodies) that are retried."""
    never: tuple[type[BaseException], ...] = NEVER_RETRIED_ERRORS
    """Subclasses of ``errors`` that are not."""
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.total < 0:
            raise ConfigError(f"--retries must be >= 0, got {self.total}")
        if self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ConfigError(f"need 0 <= --backoff <= --max-backoff, got {self.backoff_s} and {self.max_backoff_s}")

    def retries(self, failure: int | BaseException) -> bool:
        """Whether this kind of failure (an HTTP status or an error) is ever retried."""
        if isinstance(failure, int):
            return failure == 429 or (failure >= 500 and failure not in NEVER_RETRIED_5XX)
        return isinstance(failure, self.errors) and not isinstance(failure, self.never)

    def next_delay(self, attempt: int, failure: int | BaseException, retry_after: str | None = None) -> float | None:
        """Seconds to wait before trying again after attempt ``attempt`` (0 first) failed, or None to give up:
        the failure is not retried, the retries are spent, or ``retry_after`` asks longer than the longest wait."""
        if not self.retries(failure) or attempt >= self.total:
            return None
        asked_s = self.retry_after_s(retry_after)
        if asked_s is None:
            return self.jitter() * min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
        return asked_s if asked_s <= self.max_backoff_s else None

    def retry_after_s(self, value: str | None) -> float | None:
        """Seconds a Retry-After header asks for: delta-seconds or an HTTP date; None if absent or unreadable."""
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
        return max(0.0, when.timestamp() - self.clock())
