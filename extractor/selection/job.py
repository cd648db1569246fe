"""`extractor select`: score the images the store has no answer for with a trained student, keep the best.

Never picked: an image the store already answers for (for the run's teacher and preprocessing), and an
image that would fall in the run's held-out split (its side depends on its digest alone, so the held-out
set stays the one fixed by the first purchase).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extractor.datasets.folder import FolderFile, hash_files, list_files, looks_like_image
from extractor.datasets.loading import LoadRequest, load_parallel
from extractor.datasets.splits import heldout_mask
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError
from extractor.labeling.picks import write_picks
from extractor.labeling.plan import rank
from extractor.result import Result
from extractor.run_dir import STUDENT_ONNX, RunDir
from extractor.selection.strategies import STRATEGIES, PoolOutputs, pick
from extractor.selection.student_outputs import StudentOutputs
from extractor.store.label_store import LabelStore
from extractor.training.answers import student_spec

_BATCH = 512


@dataclass(frozen=True)
class SelectConfig:
    """What `extractor select` does."""

    run: Path
    """A finished training run whose student scores the pool."""
    images: Path
    """The pool: a folder of images."""
    strategy: str
    count: int
    out: Path
    """The picks file: one image path per line."""
    other: Path | None = None
    """A second run for ``disagreement`` (default: the run's first parent)."""
    seed: int = 0
    """Seeds the fair order that ``random`` follows and that breaks ties."""
    workers: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.count < 0:
            raise ConfigError(f"--count must be >= 0, got {self.count}")


def select_images(cfg: SelectConfig) -> Result:
    """Writes the ``cfg.count`` best unanswered, not held-out images of the pool to ``cfg.out``."""
    started, cpu_started = time.perf_counter(), time.process_time()
    run_dir = RunDir(cfg.run).require_finished("select")
    run = run_dir.run()
    if run["config"].get("split_by"):
        raise ConfigError(f"{cfg.run} splits by group (--split-by); select supports runs split by content only")
    if run["preprocess"].get("faces"):
        raise ConfigError(f"{cfg.run} was trained on face crops; select does not crop faces yet")
    root = Path(cfg.images).resolve()
    with LabelStore(Path(run["config"]["store"])) as store:
        known = store.known_files(str(root))
        files = [f for f in hash_files(list_files(root), known, workers=cfg.workers or 1) if f.problem is None]
        answered = store.cached_digests(run["teacher"]["fingerprint"], run["preprocess_fingerprint"],
                                        {f.digest for f in files})
    unique = list({f.digest: f for f in files if f.digest in answered or looks_like_image(f)}.values())
    held = heldout_mask([f.digest for f in unique], run["config"]["heldout"])
    candidates = [f for f, h in zip(unique, held) if not h and f.digest not in answered]
    bought = [f for f, h in zip(unique, held) if not h and f.digest in answered]
    spec = student_spec(run["preprocess"], run["student"]["size"])
    student = StudentOutputs(run_dir / STUDENT_ONNX, features=cfg.strategy == "kcenter")
    logits, features, readable = _outputs(student, candidates, spec, run, cfg.workers)
    candidates = [f for f, ok in zip(candidates, readable) if ok]
    outputs = PoolOutputs(logits=logits, ranks=np.array([rank(f.digest, cfg.seed) for f in candidates]),
                          features=features)
    if cfg.strategy == "kcenter":
        outputs = PoolOutputs(**{**outputs.__dict__, "bought_features": _outputs(student, bought, spec, run,
                                                                                  cfg.workers)[1]})
    if cfg.strategy == "disagreement":
        other = _other_run(cfg, run)
        other_run = other.run()
        other_spec = student_spec(other_run["preprocess"], other_run["student"]["size"])
        other_logits = _outputs(StudentOutputs(other / STUDENT_ONNX), candidates, other_spec, other_run,
                                cfg.workers)[0]
        outputs = PoolOutputs(**{**outputs.__dict__, "other_logits": other_logits})
    chosen = pick(cfg.strategy, outputs, cfg.count)
    written = write_picks(cfg.out, cfg.images, [candidates[i].relative_path for i in chosen])
    seconds = time.perf_counter() - started
    data = {"picks": written, "out": str(cfg.out), "strategy": cfg.strategy, "candidates": len(candidates),
            "answered": len(answered), "held_out_excluded": int(held.sum()), "seconds": seconds,
            "cpu_seconds": time.process_time() - cpu_started}
    return Result(data, f"selected {written} of {len(candidates)} unanswered images by {cfg.strategy} "
                        f"({len(answered)} already answered, {int(held.sum())} held out) in {seconds:.1f} s: "
                        f"{cfg.out}\nnext: extractor label ... --only {cfg.out}")


def _outputs(student: StudentOutputs, files: list[FolderFile], spec: PreprocessSpec, run: dict, workers: int
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The student's logits and features on ``files``, and which of them could be read."""
    num_classes = int(run["num_classes"])
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    scale = 1.0 / np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    logits, features, readable, batch = [], [], np.zeros(len(files), dtype=bool), []

    def flush() -> None:
        if batch:
            out_logits, out_features = student((np.stack(batch).astype(np.float32) - mean) * scale)
            logits.append(out_logits)
            if out_features is not None:
                features.append(out_features)
            batch.clear()

    with load_parallel((LoadRequest(f.path, f.digest, spec) for f in files), workers) as loaded:
        for index, item in enumerate(loaded):
            if item.pixels is None:
                continue
            readable[index] = True
            batch.append(item.pixels.transpose(2, 0, 1))
            if len(batch) == _BATCH:
                flush()
    flush()
    return (np.concatenate(logits) if logits else np.zeros((0, num_classes), dtype=np.float32),
            np.concatenate(features) if features else None, readable)


def _other_run(cfg: SelectConfig, run: dict) -> RunDir:
    """The second student of ``disagreement``: ``--other``, else the run's first parent."""
    if cfg.other is not None:
        return RunDir(cfg.other).require_finished("--other")
    parents = run.get("parents") or []
    if not parents:
        raise ConfigError("--strategy disagreement needs a second student: pass --other RUN, or use a run "
                          "trained with a --parent")
    return RunDir(Path(parents[0]["run"])).require_finished("disagreement")
