"""What a teacher really gave, read from its stored answers: format, top-k, rounding, ties, one-hot, perturbation.

Computed from the stored answers, so the store's schema holds nothing new: full probabilities, logits, top-k
(which k, and the mass it hid), or the label only; the grid the scores were rounded to
(``losses.score_decimals``); the share of answers whose top score is tied or that are exactly one-hot; and
warnings when the scores look flattened or perturbed (as IBM ART's reverse-sigmoid defence does): every
class keeps a floor of probability, the confidence is far below how often the teacher agrees with itself
under the invariance probe's one-pixel shift, or it does not rise with that agreement. ``extractor store
stats`` shows one entry per teacher and preprocessing, and the report of a run one line for its teacher.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from extractor.store.label_store import LabelStore

log = logging.getLogger(__name__)

STATS_SAMPLE = 20_000
"""Answers per teacher and preprocessing that `store stats` reads (the first ones in the table's order)."""
FLOOR_WARNING = 0.2
"""Warn "flattened" when, in the typical full-probability answer of a teacher with 3 classes or more, even
the least likely class holds this share of the uniform 1 / C (a softmax leaves most classes near 0; ART's
reverse sigmoid at its defaults leaves about 0.56 on the CIFAR teacher)."""
CONFIDENCE_RATIO_WARNING = 0.5
"""Warn "flattened" when the mean top-1 probability is below this fraction of the teacher's agreement with
itself under a one-pixel shift (the CIFAR teacher: 0.69 against 0.90; reverse-sigmoid: 0.31 against 0.90)."""
TIE_WARNING = 0.05
"""Warn that the top-1 depends on the scores' precision when this share of the answers has a tied top score."""
MIN_PROBED = 64
"""Fewer probed answers than this and the probe's checks are not made."""
_MAX_PROBED = 1000
"""Probed images read back (``LabelStore.labels`` looks up a few hundred digests at a time)."""


@dataclass(frozen=True)
class DetectedFormat:
    """What one teacher gave under one preprocessing, over ``answers`` of its stored answers."""

    answers: int
    kinds: dict[str, int]
    """Answers by stored kind: probs, logits, topk, label."""
    kind: str
    """The kind most answers have ("none" when there are none)."""
    classes: int = 0
    topk: int | None = None
    """The usual number of visible classes of the top-k answers."""
    topk_range: tuple[int, int] | None = None
    """Fewest and most visible classes of a top-k answer (a visible score rounded to 0 looks hidden)."""
    hidden_mass: float | None = None
    """Mean ``1 - sum(top-k)`` of the top-k answers: the mass the teacher put on classes it did not show."""
    nonzero: int | None = None
    """The usual number of classes above 0 in full-probability answers, when it is fewer than all of them (an
    API that renormalised its top-k, or rounded small classes to 0)."""
    decimals: int | None = None
    """The scores all lie on a 10^-d grid: rounded to d decimals (None: not rounded, as far as can be told)."""
    ties: float | None = None
    """Share of the scored answers whose top score is shared by another class."""
    one_hot: float | None = None
    """Share of the probability answers that are exactly one-hot (1 on one class, 0 elsewhere)."""
    floor: float | None = None
    """Median over full-probability answers of ``C * min(p)``: the least likely class's share of uniform."""
    probe: dict | None = None
    """Against the one-pixel-shift probe: probed answers, agreement, mean confidence, agreement of the less and
    the more confident half."""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["topk_range"] = list(self.topk_range) if self.topk_range else None
        return data

    @property
    def is_plain(self) -> bool:
        """Full, unrounded scores with nothing to warn about."""
        return self.kind in ("probs", "logits") and self.decimals is None and not self.warnings

    def line(self) -> str:
        """One line: what the answers are, e.g. "top-5 probabilities (hidden mass 4.2% on average), rounded to
        2 decimals; 3.1% tied top scores, 0.0% one-hot"."""
        if not self.answers:
            return "no stored answers"
        names = {"probs": "full probabilities", "logits": "logits", "label": "label only"}
        what = names.get(self.kind, self.kind)
        if self.kind == "probs" and self.nonzero is not None:
            what += f" (usually {self.nonzero} of {self.classes} classes above 0)"
        if self.kind == "topk":
            low, high = self.topk_range or (self.topk, self.topk)
            what = f"top-{self.topk} probabilities" + (f" ({low}-{high} visible)" if low != high else "")
            if self.hidden_mass is not None:
                what += f" (hidden mass {self.hidden_mass:.1%} on average)"
        parts = [what]
        if self.decimals is not None:
            parts.append(f"rounded to {self.decimals} decimal{'s' if self.decimals > 1 else ''}")
        if len([count for count in self.kinds.values() if count]) > 1:
            parts.append("mixed: " + ", ".join(f"{count} {kind}" for kind, count in sorted(self.kinds.items())))
        text = ", ".join(parts)
        shares = [f"{value:.1%} {name}" for name, value in (("tied top scores", self.ties), ("one-hot", self.one_hot))
                  if value is not None]
        return text + (f"; {', '.join(shares)}" if shares else "") + f" ({self.answers:,} answers)"


@dataclass(frozen=True)
class ProbedAnswers:
    """The teacher's plain answers about the images the invariance probe shifted by one pixel, and its labels
    for the shifted images."""

    labels: np.ndarray  # (M,) int64
    scores: np.ndarray  # (M, C)
    kinds: Sequence[str]
    shifted_labels: np.ndarray  # (M,) int64


def describe_answers(labels: np.ndarray, scores: np.ndarray, kinds: Sequence[str],
                     probe: ProbedAnswers | None = None) -> DetectedFormat:
    """The format of one teacher's answers.

    Args:
        labels: (N,) int64 stored labels.
        scores: (N, C) float32 stored scores, zeros where the teacher gave none.
        kinds: (N,) stored kinds.
        probe: the one-pixel-shift probe's answers, for the checks that need them; None without a probe.
    """
    from extractor.students.losses import score_decimals

    kinds = np.asarray(list(kinds), dtype=object)
    counts = {str(kind): int(count) for kind, count in Counter(kinds.tolist()).items()}
    if not len(kinds):
        return DetectedFormat(answers=0, kinds={}, kind="none")
    kind = max(counts, key=counts.__getitem__)
    scores = np.asarray(scores, dtype=np.float64)
    classes = int(scores.shape[1]) if scores.ndim == 2 else 0
    values: dict = {"answers": len(kinds), "kinds": counts, "kind": kind, "classes": classes}
    scored = kinds != "label"
    probs_rows = np.isin(kinds, ("probs", "topk"))
    topk_rows = kinds == "topk"
    if topk_rows.any():
        visible = (scores[topk_rows] > 0).sum(axis=1)
        values["topk"] = int(np.bincount(visible).argmax())
        values["topk_range"] = (int(visible.min()), int(visible.max()))
        values["hidden_mass"] = float(np.clip(1.0 - scores[topk_rows].sum(axis=1), 0.0, 1.0).mean())
    if scored.any():
        values["decimals"] = score_decimals(scores[probs_rows]) if probs_rows.any() else score_decimals(scores[scored])
        top_two = np.sort(scores[scored], axis=1)[:, -2:]
        values["ties"] = float((top_two[:, 0] == top_two[:, 1]).mean())
    if probs_rows.any():
        rows = scores[probs_rows]
        values["one_hot"] = float(((rows.max(axis=1) == 1.0) & ((rows > 0).sum(axis=1) == 1)).mean())
    full_rows = kinds == "probs"
    if full_rows.any():
        usual = int(np.bincount((scores[full_rows] > 0).sum(axis=1)).argmax())
        values["nonzero"] = usual if usual < classes else None
    warnings = []
    if full_rows.any() and classes >= 3:
        values["floor"] = float(np.median(classes * scores[full_rows].min(axis=1)))
        if values["floor"] >= FLOOR_WARNING:
            warnings.append(f"scores look flattened or perturbed: in the typical answer even the least likely "
                            f"class holds {values['floor']:.0%} of a uniform share (a softmax leaves most classes "
                            "near 0; a defence such as reverse sigmoid lifts them)")
    if values.get("ties") is not None and values["ties"] >= TIE_WARNING:
        warnings.append(f"the top-1 depends on the scores' precision: {values['ties']:.1%} of the answers have a "
                        "tied top score")
    if probe is not None:
        checked = _probe_check(probe)
        if checked is not None:
            values["probe"] = checked
            warnings += checked.pop("warnings")
    return DetectedFormat(**values, warnings=warnings)


def _probe_check(probe: ProbedAnswers) -> dict | None:
    """Confidence against agreement with the one-pixel-shift probe, over the scored answers it covers."""
    kinds = np.asarray(list(probe.kinds), dtype=object)
    rows = kinds != "label"
    if rows.sum() < MIN_PROBED:
        return None
    confidence = _confidence(np.asarray(probe.scores, np.float64)[rows], kinds[rows])
    agree = np.asarray(probe.labels)[rows] == np.asarray(probe.shifted_labels)[rows]
    surer = confidence > np.median(confidence)
    if not surer.any() or surer.all():
        return None
    result = {"images": int(rows.sum()), "agreement": float(agree.mean()), "confidence": float(confidence.mean()),
              "agreement_less_confident": float(agree[~surer].mean()),
              "agreement_more_confident": float(agree[surer].mean()), "warnings": []}
    if result["confidence"] < CONFIDENCE_RATIO_WARNING * result["agreement"]:
        result["warnings"].append(
            f"scores look flattened: the mean top-1 probability is {result['confidence']:.0%}, yet the teacher "
            f"keeps its answer under a one-pixel shift for {result['agreement']:.0%} of {result['images']} probed images")
    if result["agreement_more_confident"] <= result["agreement_less_confident"]:
        result["warnings"].append(
            "scores look perturbed: confidence does not rise with agreement under the one-pixel shift "
            f"({result['agreement_more_confident']:.0%} for the more confident half of the probed answers, "
            f"{result['agreement_less_confident']:.0%} for the less confident half)")
    return result


def _confidence(scores: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """(N,) top-1 probability of each scored answer (softmax of logits)."""
    confidence = scores.max(axis=1)
    logits = kinds == "logits"
    if logits.any():
        shifted = np.exp(scores[logits] - scores[logits].max(axis=1, keepdims=True))
        confidence[logits] = 1.0 / shifted.sum(axis=1)
    return confidence


def store_answer_formats(store: LabelStore, sample: int = STATS_SAMPLE) -> list[dict]:
    """The answer format of every teacher and preprocessing in ``store`` (augmented views left out), each from
    at most ``sample`` of its answers: ``{"teacher", "preprocess", **DetectedFormat.as_dict(), "line"}``."""
    sources = [(teacher, preprocess, count) for teacher, preprocess, count in store.label_sources()
               if "view" not in store.preprocess_spec(preprocess)]
    wanted = {(teacher, preprocess): min(count, sample) for teacher, preprocess, count in sources}
    found: dict[tuple[str, str], dict[str, list]] = {key: {"digest": [], "label": [], "kind": [], "soft": []}
                                                     for key in wanted}
    for chunk in store.label_columns(rows=min(sample, 100_000)):
        for digest, teacher, preprocess, label, kind, soft in zip(*(chunk[name] for name in (
                "digest", "teacher", "preprocess", "label", "kind", "soft")), strict=True):
            rows = found.get((teacher, preprocess))
            if rows is not None and len(rows["digest"]) < wanted[(teacher, preprocess)]:
                for name, value in (("digest", digest), ("label", label), ("kind", kind), ("soft", soft)):
                    rows[name].append(value)
        if all(len(found[key]["digest"]) >= count for key, count in wanted.items()):
            break
    entries = []
    for teacher, preprocess, _ in sources:
        rows = found[(teacher, preprocess)]
        softs = [None if blob is None else np.frombuffer(blob, dtype=np.float32) for blob in rows["soft"]]
        described = describe_answers(np.asarray(rows["label"], np.int64), _matrix(softs), rows["kind"],
                                     _probed(store, teacher, preprocess))
        entries.append({"teacher": teacher, "preprocess": preprocess, **described.as_dict(), "line": described.line()})
    return entries


def run_answer_format(run: dict) -> dict | None:
    """The answer format of the answers a run trained on (its teacher and preprocessing in its store), for
    the report; None when the store is not where the run says."""
    store_path = Path(str((run.get("config") or {}).get("store", "")))
    if not store_path.is_file():
        log.info("the run's store %s is not here: the teacher's answer format is not reported", store_path)
        return None
    teacher, preprocess = run["teacher"]["fingerprint"], run.get("preprocess_fingerprint")
    with LabelStore(store_path) as store:
        frame = store.labels(teacher=teacher, preprocess=preprocess)
        described = describe_answers(frame["label"].to_numpy(np.int64), _matrix(list(frame["soft"])),
                                     frame["kind"].tolist(), _probed(store, teacher, preprocess))
    return {**described.as_dict(), "line": described.line()}


def answer_format_lines(entry: dict | None) -> list[str]:
    """Markdown lines of a report: one for the answers a run trained on, one per warning."""
    if not entry:
        return []
    trained = "trained on " if entry["kind"] == "topk" or entry["decimals"] is not None else ""
    return [f"- answers: {trained}{entry['line']}", *(f"- warning: {text}" for text in entry["warnings"])]


def _matrix(softs: list[np.ndarray | None]) -> np.ndarray:
    """(N, C) float32 scores from stored soft vectors, zeros where there are none."""
    classes = max((len(soft) for soft in softs if soft is not None), default=2)
    scores = np.zeros((len(softs), classes), dtype=np.float32)
    for row, soft in enumerate(softs):
        if soft is not None:
            scores[row, :len(soft)] = soft
    return scores


def _probed(store: LabelStore, teacher: str, preprocess: str) -> ProbedAnswers | None:
    """The teacher's one-pixel-shift probe answers under this preprocessing with its plain answers about the
    same images; None when the store holds no such probe."""
    plain = store.preprocess_spec(preprocess)
    for source_teacher, source_preprocess, _ in store.label_sources():
        if source_teacher != teacher:
            continue
        spec = store.preprocess_spec(source_preprocess)
        view = spec.get("view") or {}
        if not (view.get("probe") and view.get("shift_px") == 1 and view.get("augment") == ["shift"]):
            continue
        if {key: value for key, value in spec.items() if key != "view"} != plain:
            continue
        shifted = store.labels(teacher=teacher, preprocess=source_preprocess)
        by_digest = dict(zip(shifted["digest"], shifted["label"].astype(int)))
        answers = store.labels(teacher=teacher, preprocess=preprocess, digests=list(by_digest)[:_MAX_PROBED])
        return ProbedAnswers(labels=answers["label"].to_numpy(np.int64), scores=_matrix(list(answers["soft"])),
                             kinds=answers["kind"].tolist(),
                             shifted_labels=np.asarray([by_digest[d] for d in answers["digest"]], dtype=np.int64))
    return None
