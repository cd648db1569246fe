"""The labeled pool a student learns from: one teacher's stored answers, their images, decoded once."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from extractor.datasets.ground_truth import from_csv
from extractor.datasets.loading import LoadRequest, load_parallel
from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.views import VIEW_VERSION, ViewSpec
from extractor.errors import CacheError, ConfigError
from extractor.fingerprint import stable_hash
from extractor.store.label_store import LabelStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherAnswers:
    """One teacher's answers under one preprocessing, in a fixed order (sorted by digest)."""

    teacher: dict
    """The teacher's registered description, with fingerprint, num_classes, class_names."""
    preprocess_fingerprint: str
    spec_data: dict
    digests: list[str]
    labels: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N, C) float32: what the teacher gave; zeros where it gave nothing
    kinds: list[str]
    paths: list[Path]  # where each content was last seen
    relative_paths: list[str]

    @property
    def num_classes(self) -> int:
        return int(self.teacher["num_classes"] or self.scores.shape[1])

    def restricted_to(self, digests: set[str]) -> TeacherAnswers:
        """The same answers for only the images in ``digests``, keeping the digest order."""
        rows = [i for i, digest in enumerate(self.digests) if digest in digests]
        return replace(self, digests=[self.digests[i] for i in rows], labels=self.labels[rows],
                       scores=self.scores[rows], kinds=[self.kinds[i] for i in rows],
                       paths=[self.paths[i] for i in rows], relative_paths=[self.relative_paths[i] for i in rows])


def select_answers(store: LabelStore, teacher: str | None, preprocess: str | None = None) -> TeacherAnswers:
    """Loads the stored answers of the teacher named by a fingerprint prefix, or of the only black box (answers
    of trained runs, from ``parents``, are not counted), under one preprocessing fingerprint if given.

    Raises:
        CacheError: when the store is empty, or the choice is ambiguous (the message lists choices).
    """
    sources = store.label_sources()
    if teacher:
        sources = [row for row in sources if row[0].startswith(teacher)]
    if preprocess:
        sources = [row for row in sources if row[1] == preprocess]
    if not teacher and len(sources) > 1:
        sources = [row for row in sources if "run" not in store.teacher(row[0])] or sources
    if not preprocess:  # answers about augmented views belong to the plain answers (``stored_views``)
        sources = [row for row in sources if "view" not in store.preprocess_spec(row[1])]
    if not sources:
        raise CacheError(f"no stored answers{' for teacher ' + teacher if teacher else ''} in {store.path}; "
                         "run `extractor label` first")
    if len(sources) > 1:
        choices = ", ".join(f"{t[:12]} (preprocess {p[:12]}, {n} images)" for t, p, n in sources)
        raise CacheError(f"{store.path} holds answers from several teachers or preprocessings: {choices}; "
                         "choose one with --teacher FINGERPRINT_PREFIX")
    teacher_fp, preprocess_fp, _ = sources[0]
    description, spec_data = store.teacher(teacher_fp), store.preprocess_spec(preprocess_fp)
    frame = store.labels(teacher=teacher_fp, preprocess=preprocess_fp).sort_values("digest")
    frame = frame[frame["relative_path"].notna()]
    classes = int(description["num_classes"] or max((len(s) for s in frame["soft"] if s is not None), default=0)
                  or int(frame["label"].max()) + 1)
    scores = np.zeros((len(frame), classes), dtype=np.float32)
    for row, soft in enumerate(frame["soft"]):
        if soft is not None:
            scores[row] = soft
    return TeacherAnswers(
        teacher=description, preprocess_fingerprint=preprocess_fp, spec_data=spec_data,
        digests=frame["digest"].tolist(), labels=frame["label"].to_numpy(np.int64, copy=True), scores=scores,
        kinds=frame["kind"].tolist(), paths=[Path(r) / p for r, p in zip(frame["root"], frame["relative_path"])],
        relative_paths=frame["relative_path"].tolist())


def stored_views(store: LabelStore, answers: TeacherAnswers, limit: int | None = None
                 ) -> list[tuple[ViewSpec, TeacherAnswers]]:
    """The teacher's answers about augmented training views (`extractor label --views`) of ``answers``' images,
    by view index, at most ``limit - 1`` views (``limit`` counts the plain image). Probe views are left out."""
    found = []
    fingerprint = answers.teacher["fingerprint"]
    for teacher, preprocess, _ in store.label_sources():
        if teacher != fingerprint:
            continue
        spec_data = store.preprocess_spec(preprocess)
        data = dict(spec_data.get("view") or {})
        if not data or data.pop("version") != VIEW_VERSION or data.get("probe"):
            continue
        if {key: value for key, value in spec_data.items() if key != "view"} != answers.spec_data:
            continue
        view = ViewSpec(**{**data, "augment": tuple(data["augment"])})
        found.append((view, select_answers(store, teacher, preprocess).restricted_to(set(answers.digests))))
    found.sort(key=lambda item: item[0].index)
    return found if limit is None else found[:max(0, limit - 1)]


def student_spec(spec_data: dict, size: int) -> PreprocessSpec:
    """The teacher's crop, channels and pixel statistics at the student's input size."""
    return PreprocessSpec.from_data(spec_data["transform"]).with_size(size)


def decode_once(answers: TeacherAnswers, requests: list[LoadRequest], cache_dir: Path, *, workers: int,
                quiet: bool) -> tuple[np.ndarray, np.ndarray]:
    """Student-ready uint8 (N, C, S, S) tensors, decoded from the image files once and cached.

    Returns the tensors and a (N,) bool mask of the images that could still be read.
    """
    spec = requests[0].spec
    key = stable_hash({"spec": spec.as_data(), "digests": answers.digests,
                       "faces": answers.spec_data.get("faces"), "detector": answers.spec_data.get("detector")})[:20]
    tensors_path, ok_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.ok.npy"
    if tensors_path.exists() and ok_path.exists():
        return np.load(tensors_path), np.load(ok_path)
    count, channels = len(answers.digests), spec.num_channels
    require_memory(count * channels * spec.size * spec.size, available_memory())
    tensors = np.zeros((count, channels, spec.size, spec.size), dtype=np.uint8)
    ok = np.zeros(count, dtype=bool)
    with load_parallel(requests, workers) as loaded:
        for index, item in enumerate(tqdm(loaded, total=count, desc="decoding", unit="img", disable=quiet,
                                          leave=False)):
            if item.pixels is None:
                log.warning("cannot read %s any more (%s); it is left out of training", item.request.path, item.reason)
                continue
            tensors[index] = item.pixels.transpose(2, 0, 1)
            ok[index] = True
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _save_whole(tensors_path, tensors)
        _save_whole(ok_path, ok)
        (cache_dir / f"{key}.json").write_text(json.dumps({"spec": spec.as_data(), "images": count}))
    except OSError as error:  # a store on a read-only mount: train from it all the same
        log.warning("cannot keep the decoded images in %s (%s); the next run decodes them again", cache_dir,
                    error.strerror or error)
    return tensors, ok


MEMORY_SHARE = 0.7
"""The share of the memory available now that the decoded training images may take (training needs the rest)."""


def require_memory(needed: int, available: int | None) -> None:
    """Refuses, in one line, a decoded-image cache that would not fit in memory (None: unknown, so allowed)."""
    if available is not None and needed > MEMORY_SHARE * available:
        raise ConfigError(f"the decoded training images need {needed / 2**30:.1f} GiB, more than "
                          f"{MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB of memory available: "
                          "lower the student's --size, or train on fewer answers")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _save_whole(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file, so a killed run never leaves a half-written cache entry."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        np.save(out, array)
    os.replace(partial, path)


def common_images(chosen: list[TeacherAnswers]) -> list[TeacherAnswers]:
    """The answers of several teachers restricted to the images all of them answered, in one order.

    Raises:
        ConfigError: when the teachers' class counts differ.
    """
    counts = {answers.num_classes for answers in chosen}
    if len(counts) > 1:
        names = ", ".join(f"{a.teacher['fingerprint'][:12]} ({a.num_classes} classes)" for a in chosen)
        raise ConfigError(f"--teacher: the teachers have different class counts: {names}")
    if len(chosen) == 1:
        return chosen
    common = set(chosen[0].digests).intersection(*(a.digests for a in chosen[1:]))
    if not common:
        raise ConfigError("--teacher: the teachers share no answered image")
    return [answers.restricted_to(common) for answers in chosen]


def split_keys(answers: TeacherAnswers, split_by: tuple[Path, str] | None) -> list[str]:
    """What the held-out split hashes, one per image: its content digest, or its group in ``split_by``'s
    (CSV file, column) where the file names one."""
    if split_by is None:
        return answers.digests
    csv_path, column = split_by
    groups = from_csv(csv_path, column, answers.relative_paths)
    missing = sum(path not in groups for path in answers.relative_paths)
    if missing:
        log.warning("%d images have no %r in %s; they are split by content instead", missing, column, csv_path)
    return [f"group:{groups[path]}" if path in groups else digest
            for path, digest in zip(answers.relative_paths, answers.digests)]
