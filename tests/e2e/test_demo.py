import json

import pytest

from tests.e2e.cli import extractor


@pytest.mark.slow
def test_demo_with_its_defaults_reaches_its_fidelity_floor_without_shared_assets(tmp_path):
    result = extractor("demo", "--out", tmp_path / "demo", "--json")
    data = json.loads(result.stdout)
    assert data["label"]["labeled"] == 1797 and data["label"]["failed"] == 0
    assert data["train"]["onnx_max_abs_diff"] < 1e-4
    report = data["report"]
    assert report["accuracy"] is not None and report["ground_truth_images"] == report["eval_images"] > 100
    assert report["teacher"]["accuracy"] > 0.8  # the digits CNN is a competent black box
    assert report["compression"] > 2
    assert report["fidelity"] >= 0.90  # the first run a user sees must show that distillation works
    assert (tmp_path / "demo" / "run" / "report.png").stat().st_size > 0
    again = json.loads(extractor("demo", "--out", tmp_path / "demo", "--epochs", "1", "--json").stdout)
    assert again["label"]["queries"] == 0  # the second run is answered from the store
