"""The answer-format report: what the teacher really gave, from its stored answers."""
from __future__ import annotations

import numpy as np
import pytest

from extractor.config import LabelConfig
from extractor.datasets.transforms import PreprocessSpec
from extractor.labeling.job import label_dataset
from extractor.reporting.answer_format import (
    ProbedAnswers,
    answer_format_lines,
    describe_answers,
    run_answer_format,
    store_answer_formats,
)
from extractor.store.label_store import LabelStore
from extractor.teachers.onnx import OnnxTeacher
from extractor.teachers.simulated import ART_REVERSE_SIGMOID, AnswerFormat, SimulatedTeacher, softmax
from extractor.training.invariance import probe_views
from tests.images import write_jpegs
from tests.servers.model_server import tiny_classifier


def _answers(answers: AnswerFormat, rows: int = 200, classes: int = 10, seed: int = 0):
    out = answers.apply(softmax(np.random.default_rng(seed).normal(0, 3, (rows, classes))))
    scores = np.zeros((rows, classes), np.float32) if out.probs is None else out.probs
    return out.labels, scores, [out.kind] * rows


def test_full_probabilities_are_plain():
    found = describe_answers(*_answers(AnswerFormat()))
    assert found.kind == "probs" and found.decimals is None and found.topk is None
    assert found.ties == 0.0 and found.one_hot == 0.0 and not found.warnings and found.is_plain
    assert found.line().startswith("full probabilities; 0.0% tied top scores")


def test_top_k_says_which_k_and_the_hidden_mass():
    labels, scores, kinds = _answers(AnswerFormat(topk=3))
    found = describe_answers(labels, scores, kinds)
    assert found.kind == "topk" and found.topk == 3 and found.topk_range == (3, 3)
    assert found.hidden_mass == pytest.approx(float(np.mean(1 - scores.sum(axis=1))), rel=1e-5)
    assert "top-3 probabilities (hidden mass" in found.line() and not found.is_plain
    renormalised = describe_answers(*_answers(AnswerFormat(topk=3, renormalise=True)))
    assert renormalised.kind == "probs" and "(usually 3 of 10 classes above 0)" in renormalised.line()


def test_rounding_ties_and_one_hot_answers_are_counted():
    found = describe_answers(*_answers(AnswerFormat(decimals=1)))
    assert found.decimals == 1 and "rounded to 1 decimal;" in found.line()
    assert found.one_hot > 0.05 and found.ties > 0.0
    assert any("tied top score" in warning for warning in found.warnings)
    assert describe_answers(*_answers(AnswerFormat(topk=5, decimals=2))).decimals == 2


def test_label_only_answers():
    found = describe_answers(*_answers(AnswerFormat(label_only=True)))
    assert found.kind == "label" and found.decimals is None and found.ties is None
    assert found.line() == "label only (200 answers)"


def test_reverse_sigmoid_scores_are_flagged_as_flattened():
    found = describe_answers(*_answers(AnswerFormat(reverse_sigmoid=ART_REVERSE_SIGMOID)))
    assert found.floor > 0.2 and any("flattened" in warning for warning in found.warnings)
    assert describe_answers(*_answers(AnswerFormat())).floor < 0.05


def _probe(confidence: np.ndarray, agree: np.ndarray) -> ProbedAnswers:
    rows = len(confidence)
    scores = np.zeros((rows, 4), np.float32)
    scores[:, 0] = confidence
    scores[:, 1:] = ((1 - confidence) / 3)[:, None]
    labels = np.zeros(rows, np.int64)
    return ProbedAnswers(labels, scores, ["probs"] * rows, np.where(agree, 0, 1))


def test_the_probe_flags_confidence_that_does_not_rise_with_agreement():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.4, 0.99, 200)
    honest = describe_answers(*_answers(AnswerFormat()), probe=_probe(confidence, confidence > 0.5))
    assert not honest.warnings and honest.probe["agreement_more_confident"] == 1.0
    perturbed = describe_answers(*_answers(AnswerFormat()), probe=_probe(confidence, confidence < 0.7))
    assert any("does not rise with agreement" in warning for warning in perturbed.warnings)
    flat = describe_answers(*_answers(AnswerFormat()), probe=_probe(np.full(200, 0.3) + rng.uniform(0, 0.01, 200),
                                                                     np.arange(200) % 10 != 0))
    assert any(warning.startswith("scores look flattened: the mean top-1") for warning in flat.warnings)
    assert describe_answers(*_answers(AnswerFormat()), probe=_probe(confidence[:10], confidence[:10] > 0.5)).probe is None


@pytest.fixture
def stored(tmp_path):
    """A store with a top-3 rounded simulated teacher's answers about 40 images, and its one-pixel probe."""
    write_jpegs(tmp_path / "images", 40)
    (tmp_path / "t.onnx").write_bytes(tiny_classifier(channels=3, size=16, classes=6))
    teacher = SimulatedTeacher(OnnxTeacher(tmp_path / "t.onnx", threads=1), AnswerFormat(topk=3, decimals=2))
    cfg = LabelConfig(images=tmp_path / "images", store=tmp_path / "labels.db", preprocess=PreprocessSpec(size=16),
                      workers=0, quiet=True)
    with LabelStore(cfg.store) as store:
        label_dataset(cfg, teacher, store)
        digests = [digest for digest, *_ in store.labels().itertuples(index=False)]
        shift1 = probe_views(0.125, 0.75)["shift1"]
        label_dataset(LabelConfig(**{**cfg.__dict__, "views": (shift1,), "only": tuple(digests)}), teacher, store)
    return cfg.store, teacher


def test_store_stats_describe_each_teacher_and_leave_views_out(stored):
    path, teacher = stored
    with LabelStore(path) as store:
        entries = store_answer_formats(store)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["teacher"] == teacher.fingerprint and entry["answers"] == 40
    assert entry["kind"] == "topk" and entry["topk"] == 3 and entry["decimals"] == 2
    assert entry["line"].startswith("top-3 probabilities")
    assert entry["probe"] is None  # 40 probed images: too few to judge


def test_the_report_line_of_a_run_trained_on_top_k_rounded_answers(stored):
    path, teacher = stored
    with LabelStore(path) as store:
        (source,) = [row for row in store.label_sources() if "view" not in store.preprocess_spec(row[1])]
    run = {"config": {"store": str(path)}, "teacher": {"fingerprint": teacher.fingerprint},
           "preprocess_fingerprint": source[1]}
    lines = answer_format_lines(run_answer_format(run))
    assert lines[0].startswith("- answers: trained on top-3 probabilities (hidden mass ")
    assert "rounded to 2 decimals" in lines[0]
    assert run_answer_format({**run, "config": {"store": str(path) + ".gone"}}) is None
    assert answer_format_lines(None) == []
