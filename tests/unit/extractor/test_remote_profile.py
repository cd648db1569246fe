"""Ledger figures of a remote teacher: latency percentiles per image and per request, queries and cost."""
import pandas as pd
import pytest

from extractor.reporting.remote_profile import ledger_figures


def ledger(*rows):
    return pd.DataFrame(rows, columns=["time", "images", "images_sent", "status", "latency_s", "retries", "error"])


def test_latency_percentiles_come_from_answered_requests_and_cost_from_every_image_sent():
    requests = ledger(
        (0.0, 0, 0, "200", 0.005, 0, None),  # the metadata read: no images, not a query
        (1.0, 4, 4, "200", 0.100, 0, None),  # 25 ms per image
        (2.0, 4, 8, "200", 0.300, 1, None),  # retried once: 8 images charged, 75 ms per image
        (3.0, 2, 2, "200", 0.020, 0, None),  # 10 ms per image
        (4.0, 4, 4, "UnreadableAnswer", 0.050, 0, "TeacherUnavailable: ..."),  # no answer: no latency, still paid
    )
    figures = ledger_figures(requests, price_per_1000=2.5)
    assert (figures["requests"], figures["images_sent"], figures["retries"], figures["failed_requests"]) == (4, 18, 1, 1)
    latency = figures["latency_ms"]
    assert latency["image_p50"] == pytest.approx(25.0) and latency["request_p50"] == pytest.approx(100.0)
    # numpy's linear percentile of (10, 25, 75) ms at 95: 25 + 0.9 * (75 - 25)
    assert latency["image_p95"] == pytest.approx(70.0) and latency["request_p95"] == pytest.approx(280.0)
    assert figures["cost"] == pytest.approx(18 * 2.5 / 1000)


def test_no_requests_with_images_no_figures_and_no_price_no_cost():
    assert ledger_figures(ledger((0.0, 0, 0, "200", 0.005, 0, None))) is None
    figures = ledger_figures(ledger((1.0, 2, 2, "ok", 0.01, 0, None)))
    assert figures["cost"] is None and figures["price_per_1000"] is None
