"""The invariance probe and the augmentation policy chosen from it.

A student learns the teacher's function only from inputs the teacher answered for. Training through a
flip with the answer given for the original teaches the wrong answer wherever the flip changes it (a
mirrored digit is another digit; Beyer et al., CVPR 2022, "A good teacher is patient and consistent").
Before training, the probe asks the teacher about a few hundred stored images under each student-side
augmentation, through the label job (each probe view has its own cache key; every query is charged to the
label job's budget and written to its ledger, and a re-run costs nothing). The policy then uses
augmentations with the stored answer only while the share of answers they change, summed, stays small,
else only through views the teacher answered for (`extractor label --views`), else not at all.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from extractor.config import AUGMENTATIONS, AUTO, LabelConfig, ProbeConfig
from extractor.datasets.faces import FaceSpec
from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.views import ViewSpec
from extractor.errors import ExtractionError
from extractor.labeling.job import label_dataset
from extractor.labeling.preprocess import job_keys, view_fingerprints
from extractor.store.label_store import LabelStore
from extractor.teachers.source import TeacherSource, open_teacher
from extractor.training.answers import TeacherAnswers

log = logging.getLogger(__name__)

STORED, VIEWS, OFF = "stored", "views", "off"
"""What the policy does with an augmentation: use it with the stored answer, let it reach the student only
through views the teacher answered for, or not use it."""
MIN_PROBED = 32
"""Fewer probed images than this (a budget that ran out) and the probe decides nothing."""


@dataclass(frozen=True)
class ProbeResult:
    """What the teacher's answers did under each probed augmentation."""

    images: int
    """Probed images with an answer under every probe view."""
    queries: int
    """Images this probe sent to the teacher (0 when every answer was stored)."""
    changed: dict[str, float] = field(default_factory=dict)
    """Share of the probed images whose top-1 answer changed, by probe: flip, shift1 (one pixel), shift
    (up to the configured shift), crop (down to the configured crop scale)."""
    note: str = ""
    """Why the probe decided nothing (the safe default applies), or ""."""

    @property
    def measured(self) -> bool:
        return self.images >= MIN_PROBED and bool(self.changed)

    @property
    def answers(self) -> int:
        """Teacher answers the measurement rests on, whichever run paid for them (its query cost)."""
        return self.images * len(self.changed) if self.measured else self.queries

    @property
    def teacher_self_agreement(self) -> float | None:
        """The teacher vs itself under a one-pixel shift: the ceiling of any student's fidelity to it."""
        return None if "shift1" not in self.changed else 1.0 - self.changed["shift1"]

    def as_dict(self) -> dict:
        return {**asdict(self), "measured": self.measured, "teacher_self_agreement": self.teacher_self_agreement}


def probe_views(shift_frac: float, crop_scale: float) -> dict[str, ViewSpec]:
    """The probe's views: each makes its change for sure (a mirror always, a shift never of 0 pixels)."""
    return {"flip": ViewSpec(("flip",), probe=True),
            "shift1": ViewSpec(("shift",), probe=True, shift_px=1),
            "shift": ViewSpec(("shift",), probe=True, shift_frac=shift_frac),
            "crop": ViewSpec(("crop",), probe=True, crop_scale=crop_scale)}


def choose_policy(probe: ProbeResult | None, requested: Sequence[str], bought: Sequence[ViewSpec],
                  max_change: float) -> dict[str, str]:
    """STORED, VIEWS or OFF for each augmentation.

    With --augment auto, ``max_change`` is a budget of wrong targets: an augmentation used with the stored
    answer teaches the original's answer wherever it changed the teacher's, so the probed changes of the
    augmentations used that way add up (a union bound on the composite's). Augmentations are taken least
    changing first while that sum stays below ``max_change``; the others reach the student only through
    bought views that make them, else not at all. Without a measurement the safe default: nothing with
    the stored answer (the student sees only pixels the teacher answered for). An explicit --augment list
    is STORED for what it names.
    """
    made = {name for view in bought for name in view.augment}
    if tuple(requested) == (AUTO,):
        stored = _within_budget(probe, max_change)
    else:
        stored = set(requested)
    return {name: STORED if name in stored else VIEWS if name in made else OFF for name in AUGMENTATIONS}


def _within_budget(probe: ProbeResult | None, max_change: float) -> set[str]:
    """The augmentations, least changing first, whose probed changes sum to less than ``max_change``."""
    if probe is None or not probe.measured:
        return set()
    chosen, spent = set(), 0.0
    for name in sorted((name for name in AUGMENTATIONS if name in probe.changed), key=probe.changed.__getitem__):
        spent += probe.changed[name]
        if spent >= max_change:
            break
        chosen.add(name)
    return chosen


def run_probe(store: LabelStore, answers: TeacherAnswers, cfg: ProbeConfig, *, shift_frac: float, crop_scale: float,
              may_query: bool, workers: int, quiet: bool) -> ProbeResult:
    """Asks the teacher about ``cfg.images`` stored images under each probe view (those not already stored)
    and measures how often its answers change. Never raises for an unreachable teacher: the result says why
    it measured nothing.

    Args:
        store: the label store; the probe's answers land there like any other.
        answers: the plain answers of the teacher being probed.
        cfg: sample size, where the teacher is, budget.
        shift_frac: the configured shift, as training applies it.
        crop_scale: the configured crop scale, as training applies it.
        may_query: False reads stored probe answers only (an explicit --augment sends nothing).
        workers: decode processes for the label job.
        quiet: no progress bars.
    """
    if cfg.images == 0:
        return ProbeResult(0, 0, note="--probe-images 0")
    sample = sorted(answers.digests)[:cfg.images]  # digests are hashes: the first ones are a random sample
    views = probe_views(shift_frac, crop_scale)
    teacher_fp = answers.teacher["fingerprint"]
    fingerprints = view_fingerprints(answers.spec_data, views)
    queries, note = 0, ""
    missing = any(len(store.cached_digests(teacher_fp, fp, sample)) < len(sample) for fp in fingerprints.values())
    if missing and may_query:
        try:
            queries = _ask(store, answers, cfg, views, sample, workers=workers, quiet=quiet)
        except (ExtractionError, OSError) as exc:
            note = f"the teacher could not be probed: {exc}"
            log.warning("%s; augmentations reach the student only through bought views", note)
    elif missing:
        note = "no stored probe answers (an explicit --augment sends no probe queries)"
    return _measure(store, answers, fingerprints, sample, queries, note)


def _ask(store: LabelStore, answers: TeacherAnswers, cfg: ProbeConfig, views: dict[str, ViewSpec],
         sample: list[str], *, workers: int, quiet: bool) -> int:
    """Runs the label job on the sample with the probe views, under the label job's own identity (so its
    budget and ledger); returns the images sent."""
    teacher_fp = answers.teacher["fingerprint"]
    teacher = open_teacher(_source(answers, cfg))
    if teacher.fingerprint != teacher_fp:
        raise ExtractionError(f"{_where(answers, cfg)} is not the teacher that labeled the store (fingerprint "
                              f"{teacher.fingerprint[:12]}, the store's {teacher_fp[:12]})")
    spec, faces, detector = _label_inputs(answers.spec_data)
    roots = store.label_roots(teacher_fp, answers.preprocess_fingerprint) or \
        sorted({str(path.parent) for path in answers.paths})
    sent = 0
    for root in roots:
        label_cfg = LabelConfig(images=Path(root), store=store.path, preprocess=spec, faces=faces, workers=workers,
                                quiet=quiet, views=tuple(views.values()), only=tuple(sample))
        keys = job_keys(label_cfg, teacher_fp, detector)
        if keys.preprocess != answers.preprocess_fingerprint:
            raise ExtractionError("the stored preprocessing cannot be rebuilt for the probe")
        budget = _budget(store, keys.identity, cfg)
        summary = label_dataset(replace(label_cfg, budget=budget), teacher, store, detector=detector)
        sent += summary.queries
        if summary.stopped:
            raise ExtractionError(summary.stopped)
        if summary.skipped_budget:
            log.warning("the probe stopped at the label job's --budget (%s images); pass --probe-budget N "
                        "to let it send N more", budget)
    return sent


def _source(answers: TeacherAnswers, cfg: ProbeConfig) -> TeacherSource:
    recorded = answers.teacher.get("source")
    if recorded:
        return TeacherSource.from_data(recorded, teacher=cfg.teacher_source)
    if cfg.teacher_source is None:
        raise ExtractionError("the store does not say where its teacher is (labeled before sources were "
                              "recorded); pass --teacher-source FILE_OR_URL")
    return TeacherSource(teacher=cfg.teacher_source)


def _where(answers: TeacherAnswers, cfg: ProbeConfig) -> str:
    return cfg.teacher_source or str((answers.teacher.get("source") or {}).get("teacher"))


def _budget(store: LabelStore, identity: str, cfg: ProbeConfig) -> int | None:
    """The probe's budget as a label-job budget: what the job sent so far plus --probe-budget, else the label
    job's own --budget."""
    if cfg.budget is not None:
        return store.images_sent(identity) + cfg.budget
    config = store.last_job_config("label", identity) or {}
    return config.get("budget")


def _label_inputs(spec_data: dict) -> tuple[PreprocessSpec, FaceSpec, object | None]:
    """The teacher's preprocessing, face settings and detector, rebuilt from the stored spec."""
    faces = FaceSpec.from_data(spec_data.get("faces"))
    detector = None
    if faces.mode != "none":
        from extractor.datasets.faces import FaceDetector  # facenet-pytorch: only for face stores

        detector = FaceDetector()
    return PreprocessSpec.from_data(spec_data["transform"]), faces, detector


def _measure(store: LabelStore, answers: TeacherAnswers, fingerprints: dict[str, str], sample: list[str],
             queries: int, note: str) -> ProbeResult:
    plain = dict(zip(answers.digests, answers.labels.tolist()))
    by_view = {}
    for name, fp in fingerprints.items():
        frame = store.labels(teacher=answers.teacher["fingerprint"], preprocess=fp, digests=sample)
        by_view[name] = dict(zip(frame["digest"], frame["label"].astype(int)))
    common = [d for d in sample if all(d in labels for labels in by_view.values())]
    if len(common) < MIN_PROBED:
        return ProbeResult(len(common), queries, note=note or f"only {len(common)} images were probed")
    changed = {name: float(np.mean([labels[d] != plain[d] for d in common])) for name, labels in by_view.items()}
    return ProbeResult(len(common), queries, changed, note)
