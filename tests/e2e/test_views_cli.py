"""label --views -> train (the invariance probe chooses the augmentations) -> report of two runs."""
import json

from tests.e2e.cli import extractor_json
from tests.images import write_jpegs
from tests.models import linear_classifier

IMAGES = 48


def test_views_probe_and_honest_metrics_end_to_end(tmp_path):
    write_jpegs(tmp_path / "images", IMAGES)
    teacher = linear_classifier(tmp_path / "teacher.onnx", size=32)
    store = tmp_path / "labels.db"
    label = ["label", "--teacher", teacher, "--images", tmp_path / "images", "--store", store, "--workers", "1",
             "--quiet"]
    first = extractor_json(*label, "--views", "3")
    assert (first["queries"], first["views"]) == (3 * IMAGES, 3)
    assert extractor_json(*label, "--views", "3")["queries"] == 0
    train = ["train", "--store", store, "--student", "resnet8", "--epochs", "1", "--batch-size", "16",
             "--workers", "1", "--probe-images", "40", "--heldout", "0.25"]
    viewed = extractor_json(*train, "--out", tmp_path / "views")
    plain = extractor_json(*train, "--out", tmp_path / "plain", "--views", "1")
    assert set(viewed["augment_policy"]) == {"flip", "shift", "crop"}
    assert viewed["invariance"]["measured"] and viewed["invariance"]["queries"] == 4 * 40
    assert plain["invariance"]["queries"] == 0  # the probe's answers are stored: asked once
    run = json.loads((tmp_path / "views" / "run.json").read_text())
    assert run["views"] == 3 and run["queries"] == 3 * IMAGES and run["probe_queries"] == 160
    assert run["augment_requested"] == ["auto"] and run["invariance"]["changed"].keys() == \
        {"flip", "shift1", "shift", "crop"}
    compared = extractor_json("report", tmp_path / "views", tmp_path / "plain")
    assert [row["views"] for row in compared["runs"]] == [3, 1]
    assert [row["queries"] for row in compared["runs"]] == [3 * IMAGES + 160, IMAGES + 160]
    report = json.loads((tmp_path / "views" / "report.json").read_text())
    for key in ("majority_baseline", "macro_agreement", "kappa", "teacher_self_agreement", "invariance"):
        assert key in report, key
    assert report["teacher_self_agreement"]["images"] == 40 and len(report["efficiency"]) == 2
    assert (tmp_path / "views" / "comparison.md").exists() and (tmp_path / "plain" / "report.png").exists()
    csv_header = (tmp_path / "views" / "report.csv").read_text().splitlines()[0]
    assert {"majority_baseline", "macro_agreement", "kappa", "teacher_self_agreement"} <= set(csv_header.split(","))
    assert "majority baseline" in (tmp_path / "views" / "report.md").read_text()
