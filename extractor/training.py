"""The training job: stored teacher answers -> decoded-once tensors -> student -> checked ONNX file."""
from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch

from extractor.datasets.faces import Detection, FaceSpec
from extractor.datasets.ground_truth import from_csv
from extractor.datasets.loading import LoadRequest
from extractor.datasets.splits import heldout_mask
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError, InputNotFound
from extractor.fingerprint import stable_hash
from extractor.pool import TeacherAnswers, decode_once, select_answers, student_spec
from extractor.store import LabelStore
from extractor.students.batches import DistilTensors, InputConfig, normalize
from extractor.students.export import export_onnx
from extractor.students.hooks import (
    CheckpointHook,
    EvalHook,
    LRScheduleHook,
    MetricsHook,
    ProgressHook,
    resume,
)
from extractor.students.losses import DistillConfig, distillation_loss
from extractor.students.squeezenet import build_student, count_parameters
from extractor.students.trainer import OptimConfig, Trainer, build_optimizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """What `extractor train` does."""

    store: Path
    """Label store written by `extractor label`."""
    out: Path
    """Run directory: checkpoints, metrics.jsonl, student.onnx, run.json."""
    teacher: str | None = None
    """Fingerprint prefix of the teacher to learn from; needed only when the store holds several."""
    student: str = "squeezenet1_1"
    """Student architecture."""
    size: int = 64
    """Student input side in pixels (>= 32)."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    heldout: float = 0.1
    """Fraction held out (by content digest, or by group with split_by)."""
    split_by: tuple[Path, str] | None = None
    """(CSV, column): hold out whole groups, e.g. people, to measure generalisation to new data."""
    resume: bool = False
    """Continue the run in ``out`` from its last checkpoint."""
    workers: int = os.cpu_count() or 1
    """Decode processes for the one-time tensor cache."""
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ConfigError(f"--size must be >= 32 pixels for SqueezeNet 1.1, got {self.size}")
        if not 0.0 < self.heldout < 1.0:
            raise ConfigError(f"--heldout must be in (0, 1), got {self.heldout}")

    def as_data(self) -> dict:
        data = asdict(self)
        data["split_by"] = [str(self.split_by[0]), self.split_by[1]] if self.split_by else None
        return json.loads(json.dumps(data, default=str))


@dataclass(frozen=True)
class TrainResult:
    out: Path
    fidelity: float
    epochs: int
    train_images: int
    heldout_images: int
    seconds: float
    onnx_max_abs_diff: float

    def as_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out)}


def train_student(cfg: TrainConfig) -> TrainResult:
    """Trains a student on one teacher's stored answers and exports it to ``cfg.out/student.onnx``."""
    started = time.perf_counter()
    _check_run_dir(cfg)
    torch.set_num_threads(os.cpu_count() or 1)
    with LabelStore(cfg.store) as store:
        answers = select_answers(store, cfg.teacher)
        spec = student_spec(answers.spec_data, cfg.size)
        requests = _load_requests(store, answers, spec)
    tensors, readable = decode_once(answers, requests, cfg.store.with_name(cfg.store.name + ".tensors"),
                                    workers=cfg.workers, quiet=cfg.quiet)
    held = heldout_mask(_split_keys(cfg, answers), cfg.heldout)
    train_rows, held_rows = np.flatnonzero(readable & ~held), np.flatnonzero(readable & held)
    if len(held_rows) == 0 or len(train_rows) == 0:
        raise ConfigError(f"the split leaves {len(train_rows)} training and {len(held_rows)} held-out images; "
                          "label more images or change --heldout")
    data = DistilTensors.from_teacher(torch.from_numpy(tensors), torch.from_numpy(answers.labels),
                                      torch.from_numpy(answers.scores), answers.kinds, cfg.distill.temperature)
    train_data, held_data = data.subset(torch.from_numpy(train_rows)), data.subset(torch.from_numpy(held_rows))
    inputs = InputConfig(mean=spec.mean, std=spec.std)

    torch.manual_seed(cfg.optim.seed)
    model = build_student(cfg.student, answers.num_classes, spec.num_channels)
    loss_fn = functools.partial(distillation_loss, cfg=cfg.distill)
    steps = -(-len(train_data) // cfg.optim.batch_size)
    optimizer, scheduler = build_optimizer(model, cfg.optim, steps)
    hooks = [LRScheduleHook(scheduler), EvalHook(held_data, inputs, 256, loss_fn),
             MetricsHook(cfg.out / "metrics.jsonl"), CheckpointHook(cfg.out), ProgressHook(quiet=cfg.quiet)]
    trainer = Trainer(model, optimizer, train_data, loss_fn, hooks, epochs=cfg.optim.epochs,
                      batch_size=cfg.optim.batch_size, seed=cfg.optim.seed, inputs=inputs)
    if cfg.resume and (cfg.out / "last.pt").exists():
        resume(trainer, cfg.out / "last.pt")
        log.info("resuming %s at epoch %d", cfg.out, trainer.state.epoch)
    trainer.train()

    model.load_state_dict(torch.load(cfg.out / "best.pt", map_location="cpu", weights_only=True)["model"])
    onnx_path = cfg.out / "student.onnx"
    diff = export_onnx(model, onnx_path, spec.num_channels, spec.size)
    predicted = _onnx_predictions(onnx_path, held_data, inputs)
    fidelity = float((predicted == held_data.labels.numpy()).mean())
    _write_heldout(cfg.out, answers, held_rows, predicted)
    seconds = time.perf_counter() - started
    run = {
        "teacher": answers.teacher, "num_classes": answers.num_classes,
        "teacher_input_size": answers.spec_data["transform"].get("size"),
        "preprocess": answers.spec_data, "preprocess_fingerprint": answers.preprocess_fingerprint,
        "student": {"architecture": cfg.student, "size": spec.size, "channels": spec.channels,
                    "mean": list(spec.mean), "std": list(spec.std), "params": count_parameters(model)},
        "config": {**cfg.as_data(), "targets": cfg.distill.targets},
        "queries": len(answers.digests), "train_images": int(len(train_rows)), "heldout_images": int(len(held_rows)),
        "unreadable_images": int((~readable).sum()), "fidelity": fidelity, "epochs": trainer.state.epoch,
        "train_seconds": seconds, "onnx_max_abs_diff": diff,
    }
    (cfg.out / "run.json").write_text(json.dumps(run, indent=2, default=str))
    return TrainResult(cfg.out, fidelity, trainer.state.epoch, len(train_rows), len(held_rows), seconds, diff)


def _check_run_dir(cfg: TrainConfig) -> None:
    if not cfg.store.exists():
        raise InputNotFound(f"--store {cfg.store} does not exist; run `extractor label` first")
    if (cfg.out / "last.pt").exists() and not cfg.resume:
        raise ConfigError(f"{cfg.out} already holds a training run; pass --resume to continue it or choose a new --out")
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "config.json").write_text(json.dumps(cfg.as_data(), indent=2))


def _load_requests(store: LabelStore, answers: TeacherAnswers, spec: PreprocessSpec) -> list[LoadRequest]:
    """Student-side load requests: the same face crops the teacher saw, read from stored detections."""
    faces_data = answers.spec_data.get("faces")
    if not faces_data:
        return [LoadRequest(path, digest, spec) for path, digest in zip(answers.paths, answers.digests)]
    face = FaceSpec(**{k: v for k, v in faces_data.items() if k not in ("version", "template")})
    stored = store.detections(stable_hash(answers.spec_data["detector"]), answers.digests)
    return [LoadRequest(path, digest, spec, face, Detection.from_json(stored[digest]) if stored.get(digest) else None)
            for path, digest in zip(answers.paths, answers.digests)]


def _split_keys(cfg: TrainConfig, answers: TeacherAnswers) -> list[str]:
    if cfg.split_by is None:
        return answers.digests
    csv_path, column = cfg.split_by
    groups = from_csv(csv_path, column, answers.relative_paths)
    missing = sum(path not in groups for path in answers.relative_paths)
    if missing:
        log.warning("%d images have no %r in %s; they are split by content instead", missing, column, csv_path)
    return [f"group:{groups[path]}" if path in groups else digest
            for path, digest in zip(answers.relative_paths, answers.digests)]


def _onnx_predictions(path: Path, data: DistilTensors, inputs: InputConfig) -> np.ndarray:
    """Top-1 of the exported student (what the user ships) on the held-out tensors."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predicted = []
    for start in range(0, len(data), 256):
        x = normalize(data.images[start:start + 256], inputs).numpy()
        predicted.append(session.run(["logits"], {"input": x})[0].argmax(axis=1))
    return np.concatenate(predicted)


def _write_heldout(out: Path, answers: TeacherAnswers, rows: np.ndarray, predicted: np.ndarray) -> None:
    pd.DataFrame({
        "digest": [answers.digests[i] for i in rows],
        "relative_path": [answers.relative_paths[i] for i in rows],
        "teacher_label": answers.labels[rows],
        "student_label": predicted,
    }).to_csv(out / "heldout.csv", index=False)
