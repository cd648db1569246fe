"""report.html end to end: label -> train -> quantize -> report, then the page opened in a real headless browser
(Debian's `chromium`, driven by its --screenshot and --dump-dom modes): it is not blank, its summary figures
are report.json's, every image has loaded, and the gallery shows the held-out disagreements up to its cap."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from extractor.reporting.disagreements import GALLERY_CAP
from extractor.reporting.html import write_html
from extractor.result import Result
from tests.e2e.cli import installed, installed_json
from tests.images import write_jpegs
from tests.models import linear_classifier

BROWSER = next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
               None)
requires_browser = pytest.mark.skipif(BROWSER is None, reason="no headless browser installed (Debian: apt-get "
                                                              "install chromium)")
TRAIN = ["--student", "resnet8", "--size", "32", "--batch-size", "16", "--workers", "1", "--heldout", "0.5", "--quiet"]
SUMMARY_KEYS = {"teacher.size_mb", "student.size_mb", "teacher.params", "student.params", "teacher.latency_ms.1",
                "student.latency_ms.1", "fidelity", "accuracy", "kappa", "majority_baseline",
                "teacher_self_agreement.value", "queries", "ledger.cost", "eval_images"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of a tiny black box whose answers look random (zero-mean inputs to a random linear map), so the
    students disagree with it often: more held-out disagreements (~50 of 75) than the gallery's cap."""
    root = tmp_path_factory.mktemp("html")
    for index in range(3):
        write_jpegs(root / "images" / str(index), 50, seed=100 * index)
    linear_classifier(root / "teacher.onnx", size=16)
    installed("label", "--teacher", "teacher.onnx", "--images", "images", "--store", "labels.db", "--mean", "127.5",
              "--std", "127.5", "--workers", "1", "--quiet", cwd=root)
    installed("train", "--store", "labels.db", "--out", "run", "--epochs", "2", *TRAIN, cwd=root)
    installed("train", "--store", "labels.db", "--out", "run2", "--epochs", "1", "--seed", "1", *TRAIN, cwd=root)
    installed("quantize", "run", "--bits", "8", "--calibration-images", "32", "--quiet", cwd=root)
    return root


@pytest.fixture(scope="module")
def reported(runs):
    """The first run's report, with ground truth (its class folders) and a price, as report.json holds it."""
    return installed_json("report", "run", "--ground-truth", "folders", "--price-per-1000", "2.5", cwd=runs)


class Dom(HTMLParser):
    """Every start tag of a page, as (tag, attributes)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data):
        if data.strip():
            self.text.append(data.strip())

    def find(self, tag=None, **attributes):
        return [attrs for name, attrs in self.tags if (tag is None or name == tag)
                and all(attrs.get(key.replace("_", "-")) == value for key, value in attributes.items())]


def open_in_browser(page: Path, tmp_path: Path) -> tuple[Dom, Image.Image]:
    """(the DOM after the page's load event and its script, a screenshot), from headless chromium."""
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
             f"--user-data-dir={tmp_path / 'browser-profile'}", "--virtual-time-budget=10000"]
    shot = tmp_path / f"{page.stem}.png"
    subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120, check=True)
    dumped = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                            check=True)
    return Dom(dumped.stdout), Image.open(shot).convert("RGB")


def lookup(data, key):
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def assert_loaded_and_not_blank(dom: Dom, shot: Image.Image) -> None:
    body = dom.find("body")[0]
    images = dom.find("img")
    assert images and int(body["data-images"]) == len(images) == int(body["data-images-loaded"])
    assert all(int(img["data-natural-width"]) > 0 for img in images)
    assert all(img["src"].startswith("data:image/") for img in images)
    colours = shot.resize((300, 600)).getcolors(maxcolors=300 * 600)
    assert len(colours) > 50 and max(count for count, _ in colours) < 0.95 * 300 * 600  # not one flat colour
    assert len(" ".join(dom.text)) > 500


@pytest.mark.slow
@requires_browser
def test_report_html_shows_the_report_json_figures_and_every_image(runs, reported, tmp_path):
    report = reported
    page = runs / "run" / "report.html"
    assert (runs / "run" / "report.md").is_file() and page.is_file()
    dom, shot = open_in_browser(page, tmp_path)
    assert_loaded_and_not_blank(dom, shot)

    keyed = dom.find()
    keyed = [attrs for attrs in keyed if "data-key" in attrs]
    assert SUMMARY_KEYS <= {attrs["data-key"] for attrs in keyed}
    for attrs in keyed:
        assert json.loads(attrs["data-value"]) == lookup(report, attrs["data-key"]), attrs["data-key"]
    assert report["ledger"]["cost"] == pytest.approx(report["ledger"]["images_sent"] * 2.5 / 1000)

    heldout = pd.read_csv(runs / "run" / "heldout.csv")
    disagreements = int((heldout.student_label != heldout.teacher_label).sum())
    assert disagreements > GALLERY_CAP  # the fixture's point: the cap is exercised
    gallery = dom.find("section", id="gallery")[0]
    shown = dom.find("figure", **{"class": "disagreement"})
    assert int(gallery["data-disagreements"]) == disagreements
    assert len(shown) == int(gallery["data-shown"]) == min(disagreements, GALLERY_CAP)
    wrong = set(heldout.loc[heldout.student_label != heldout.teacher_label, "digest"])
    assert {figure["data-digest"] for figure in shown} <= wrong
    confidences = [json.loads(figure["data-confidence"]) for figure in shown]
    assert all(0 < c <= 1 for c in confidences) and confidences == sorted(confidences, reverse=True)

    counts = [int(cell["data-count"]) for cell in dom.find("td") if "data-count" in cell]
    assert sum(counts) == len(heldout)
    assert sum(int(c["data-count"]) for c in dom.find("td") if c.get("data-teacher") is not None
               and c["data-teacher"] == c["data-student"]) == len(heldout) - disagreements
    for section in ("summary", "training", "confusion", "per-class", "invariance", "size", "config"):
        assert dom.find("section", id=section), section
    assert [attrs for attrs in dom.find("img") if "training" in attrs.get("alt", "")]  # the fidelity curve
    assert {row["variant"] for row in report["variants"]} == {"fp32", "int8"}  # the size plot has the variant


@pytest.mark.slow
@requires_browser
def test_several_runs_give_one_comparison_page(runs, tmp_path):
    for name in ("run", "run2"):  # copies: this report must not overwrite the one the other tests read
        shutil.copytree(runs / name, runs / "compare" / name, dirs_exist_ok=True)
    installed("report", "compare/run", "compare/run2", cwd=runs)
    page = runs / "compare" / "run" / "comparison.html"
    dom, shot = open_in_browser(page, tmp_path)
    assert_loaded_and_not_blank(dom, shot)
    for index, name in enumerate(("run", "run2")):
        report = json.loads((runs / "compare" / name / "report.json").read_text())
        assert (runs / "compare" / name / "report.html").is_file()
        cell = dom.find("td", data_key=f"{index}.fidelity")[0]
        assert json.loads(cell["data-value"]) == report["fidelity"]
    links = {attrs["href"] for attrs in dom.find("a")}
    assert links == {"report.html", "../run2/report.html"}


@pytest.mark.slow
def test_the_page_is_self_contained(runs, reported):
    text = (runs / "run" / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)  # every image inline, no stylesheet link
    assert "http://" not in text and "https://" not in text and "<link" not in text


@requires_browser
def test_a_chain_page_plots_its_links_against_size(tmp_path):
    chain = tmp_path / "chain"
    links = []
    for index, (size, fidelity) in enumerate(((1.1, 0.9), (0.31, 0.85), (0.08, 0.8))):
        (chain / f"link{index}").mkdir(parents=True)
        (chain / f"link{index}" / "metrics.jsonl").write_text("".join(
            json.dumps({"step": step, "epoch": step, "split": split, "loss": 1.0 / step, "fidelity": fidelity}) + "\n"
            for step in (1, 2) for split in ("train", "heldout")))
        links.append({"link": index, "dir": f"link{index}", "architecture": "resnet8", "width": 1.0,
                      "parent": "teacher" if index == 0 else f"link{index - 1}", "size_mb": size, "params": 1000,
                      "fidelity": fidelity, "fidelity_to_parent": fidelity, "accuracy": None, "train_minutes": 0.5,
                      "stop": False})
    data = {"chain": links, "status": "finished", "links_planned": 3, "eval_images": 10,
            "teacher": {"fingerprint": "f" * 64, "size_mb": 0.2, "params": 50_000, "accuracy": None}}
    write_html(chain, Result(data, ""))
    dom, shot = open_in_browser(chain / "report.html", tmp_path)
    assert_loaded_and_not_blank(dom, shot)
    for attrs in (a for a in dom.find("td") if "data-key" in a):
        assert json.loads(attrs["data-value"]) == lookup(data, attrs["data-key"])
    assert len(dom.find("img")) == 2  # fidelity against size, the links' training curves
