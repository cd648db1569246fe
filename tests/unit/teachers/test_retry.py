"""The retry policy on its own: which failures it retries, how long it waits, when it gives up; no server."""
from __future__ import annotations

import email.utils
import random

import pytest
import requests

from extractor.errors import MalformedAnswer, UnreadableAnswer
from extractor.teachers.http.retry import Retry

NOW = 1_700_000_000.0


def fixed(draw: float) -> Retry:
    """A policy whose jitter always draws ``draw`` and whose clock stands at NOW."""
    return Retry(total=5, backoff_s=1.0, max_backoff_s=10.0, jitter=lambda: draw, clock=lambda: NOW)


@pytest.mark.parametrize("status, retried", [(429, True), (500, True), (502, True), (503, True), (504, True),
                                             (501, False), (505, False), (400, False), (404, False), (200, False)])
def test_statuses_retried(status, retried) -> None:
    assert Retry().retries(status) is retried
    assert (Retry().next_delay(0, status) is not None) is retried


@pytest.mark.parametrize("error, retried", [
    (requests.ConnectTimeout(), True), (requests.ReadTimeout(), True), (requests.ConnectionError(), True),
    (requests.exceptions.ChunkedEncodingError(), True), (UnreadableAnswer("cut short"), True),
    (requests.exceptions.SSLError(), False), (requests.exceptions.InvalidURL(), False),
    (MalformedAnswer("NaN"), False), (ValueError(), False),
])
def test_errors_retried(error, retried) -> None:
    assert Retry().retries(error) is retried


def test_backoff_doubles_up_to_the_longest_wait_scaled_by_the_jitter() -> None:
    assert [fixed(0.5).next_delay(attempt, 503) for attempt in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert fixed(0.0).next_delay(3, 503) == 0.0
    assert fixed(0.999).next_delay(4, 503) == pytest.approx(9.99)


def test_seeded_jitter_repeats() -> None:
    def delays(seed: int) -> list[float | None]:
        policy = Retry(total=4, backoff_s=0.5, max_backoff_s=30.0, jitter=random.Random(seed).random)
        return [policy.next_delay(attempt, requests.ConnectionError()) for attempt in range(4)]

    assert delays(1) == delays(1) != delays(2)
    assert all(0 <= delay <= 0.5 * 2 ** attempt for attempt, delay in enumerate(delays(1)))


def test_gives_up_once_the_retries_are_spent() -> None:
    policy = Retry(total=2, jitter=lambda: 0.5)
    assert policy.next_delay(1, 503) is not None
    assert policy.next_delay(2, 503) is None
    assert Retry(total=0).next_delay(0, 429) is None


def test_retry_after_seconds_replaces_the_backoff() -> None:
    assert fixed(0.5).next_delay(0, 429, "3") == 3.0
    assert fixed(0.5).next_delay(0, 429, " 0 ") == 0.0
    assert fixed(0.5).next_delay(0, 429, "10") == 10.0  # exactly the longest wait is still waited
    assert fixed(0.5).next_delay(0, 429, "11") is None  # longer: give up rather than wait
    assert fixed(0.5).next_delay(0, 429, "soon") == 0.5  # unreadable: the backoff
    assert fixed(0.5).next_delay(5, 429, "1") is None  # out of retries whatever it asks


def test_retry_after_http_date_counts_from_the_clock() -> None:
    assert fixed(0.5).next_delay(0, 503, email.utils.formatdate(NOW + 7, usegmt=True)) == 7.0
    assert fixed(0.5).next_delay(0, 503, email.utils.formatdate(NOW - 60, usegmt=True)) == 0.0  # past: at once
    assert fixed(0.5).retry_after_s(email.utils.formatdate(NOW + 120, usegmt=True)) == 120.0
    assert fixed(0.5).next_delay(0, 503, email.utils.formatdate(NOW + 120, usegmt=True)) is None
    assert fixed(0.5).retry_after_s(None) is None and fixed(0.5).retry_after_s("") is None


@pytest.mark.parametrize("options, flag", [({"total": -1}, "--retries"),
                                           ({"backoff_s": 5.0, "max_backoff_s": 1.0}, "--backoff"),
                                           ({"backoff_s": -1.0}, "--backoff")])
def test_bad_settings_name_the_flag(options, flag) -> None:
    with pytest.raises(ValueError, match=flag):
        Retry(**options)
