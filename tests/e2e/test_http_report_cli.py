"""label over HTTP -> train -> report: the remote teacher's latency and cost come from the store's request ledger."""
import json

import pandas as pd
import pytest

from tests.e2e.cli import extractor, extractor_json
from tests.images import write_jpegs
from tests.servers.model_server import tiny_classifier

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_report_fills_an_http_teachers_latency_and_prices_its_queries(serve, tmp_path):
    server = serve(tiny_classifier(channels=1, size=32, classes=5), "kserve-v2", delay_s=0.02,
                   fault="503", fault_times=1)
    images, store, run = tmp_path / "images", tmp_path / "labels.db", tmp_path / "run"
    write_jpegs(images, 40)
    extractor("label", "--teacher", server.url, "--protocol", "kserve-v2", "--model-name", "model", "--images", images,
              "--store", store, "--channels", "gray", "--size", "32", "--request-batch", "8", "--workers", "1", "--quiet")
    extractor("train", "--store", store, "--out", run, "--size", "32", "--epochs", "1", "--batch-size", "16",
              "--workers", "1", "--quiet")
    report = extractor_json("report", run, "--price-per-1000", "0.5")
    sent, requests = server.counts()["images"], server.counts()["requests"]  # training's probe asks too
    ledger = report["ledger"]
    assert (ledger["requests"], ledger["images_sent"], ledger["retries"]) == (requests - 1, sent, 1)
    assert ledger["cost"] == pytest.approx(sent * 0.5 / 1000)
    latency = report["teacher"]["latency_ms"]
    assert set(latency) == {"image_p50", "image_p95", "request_p50", "request_p95"}
    assert 20 <= latency["request_p50"] <= latency["request_p95"] and latency["image_p50"] >= 20 / 8
    assert report["teacher"]["size_mb"] is None  # no model file: nothing to measure here
    table = pd.read_csv(run / "report.csv").set_index("model")
    assert table.loc["teacher", "latency_ms_p50"] == pytest.approx(latency["image_p50"])
    markdown = (run / "report.md").read_text()
    assert "p95 (HTTP)" in markdown and f"{sent} images sent in {requests - 1} requests (1 retries, 0 failed)" in markdown
    assert f"cost {sent * 0.5 / 1000:,.2f} at 0.5 per 1000 images" in markdown
    assert json.loads((run / "report.json").read_text())["ledger"] == ledger
