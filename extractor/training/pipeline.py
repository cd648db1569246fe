"""The training job: stored teacher answers -> decoded-once tensors -> task -> student -> checked ONNX file.

Its steps: ``prepare_data`` (answers, split, tensors), ``fit`` (any task on the trainer) and ``finish``
(export, held-out check through the ONNX file, run.json); ``extractor.training.recipe`` runs them in order
for every scheme.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import torch

from extractor.config import AUTO, TrainConfig
from extractor.datasets.faces import Detection, FaceSpec
from extractor.datasets.loading import LoadRequest
from extractor.datasets.splits import heldout_mask
from extractor.datasets.transforms import PreprocessSpec
from extractor.errors import ConfigError, InputNotFound
from extractor.fingerprint import detector_fingerprint
from extractor.run_dir import HELDOUT_FILE, LAST_CHECKPOINT, METRICS_FILE, STUDENT_ONNX, RunDir
from extractor.store.label_store import LabelStore
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
from extractor.students.losses import combine_teachers, distillation_loss
from extractor.students.trainer import Trainer, build_optimizer
from extractor.students.zoo import count_parameters
from extractor.training.answers import (
    TeacherAnswers,
    common_images,
    decode_once,
    select_answers,
    split_keys,
    stored_views,
    student_spec,
)
from extractor.training.invariance import STORED, ProbeResult, choose_policy, run_probe
from extractor.training.parents import ParentRun, label_with_parent
from extractor.training.tracking import tracking_hooks, write_job
from extractor.training.views import with_views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    out: Path
    fidelity: float
    epochs: int
    train_images: int
    heldout_images: int
    seconds: float
    onnx_max_abs_diff: float
    student: str = ""
    fidelity_to_parent: float | None = None
    """Held-out agreement with the first parent run's student, when a run taught."""
    augment_policy: dict[str, str] | None = None
    """Each augmentation: "stored", "views" or "off" (``extractor.training.invariance``)."""
    invariance: dict | None = None
    """The invariance probe's result (``ProbeResult.as_dict``)."""

    def as_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out)}


@dataclass(frozen=True)
class TrainData:
    """What every training scheme starts from: the teachers' answers, split, as tensors."""

    answers: TeacherAnswers
    """The reference black box's answers: the first teacher's, or the black box a first teacher that is a run
    learnt from. Its preprocessing is the student's; held-out fidelity is to it."""
    teacher_fingerprints: list[str]
    spec: PreprocessSpec
    """The student's input preprocessing."""
    inputs: InputConfig
    train: DistilTensors
    heldout: DistilTensors
    train_rows: np.ndarray
    held_rows: np.ndarray
    unreadable: int
    parents: tuple[tuple[ParentRun, TeacherAnswers], ...] = ()
    """The teachers that are runs, in --teacher order, each with its answers in the rows of ``answers``."""
    probe: ProbeResult | None = None
    """The invariance probe of the reference black box (``extractor.training.invariance``)."""
    policy: dict[str, str] = field(default_factory=dict)
    """Each augmentation: "stored" (with the stored answer), "views" (only through bought views) or "off"."""
    views: int = 1
    """Most views per training image the student draws among (1: the plain image only)."""
    view_answers: int = 0
    """Training rows that are augmented views the teacher answered for."""
    view_queries: int = 0
    """Stored answers about augmented views of these images (held-out ones too): what the views cost."""


def cpu_threads() -> int:
    """Every core, unless OMP_NUM_THREADS (a positive whole number) says how many to use."""
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    return int(wanted) if wanted.isdigit() and int(wanted) > 0 else os.cpu_count() or 1


def prepare_data(cfg: TrainConfig) -> TrainData:
    """Checks the run directory, selects and combines the teachers' answers (a teacher that is a run labels
    its black box's images first, ``parents``), decodes and splits the images.

    The training targets are the teachers' (combined) answers; the held-out targets are the reference black
    box's (``TrainData.answers``), so held-out fidelity and the best checkpoint always refer to it.
    """
    _check_run_dir(cfg)
    torch.set_num_threads(cpu_threads())
    parents: list[tuple[ParentRun, int]] = []  # each parent and the index of its answers in ``chosen``
    with LabelStore(cfg.store) as store:  # one handle through data preparation, the probe's label job included
        chosen = []
        for choice in cfg.teachers or (None,):
            if choice is None or choice.run is None:
                chosen.append(select_answers(store, choice.prefix if choice else None))
                continue
            parent = ParentRun.open(choice.run)
            parent.require_same_split(cfg.as_data())
            parents.append((parent, len(chosen)))
            chosen.append(select_answers(store, *label_with_parent(parent, store, workers=cfg.workers,
                                                                   quiet=cfg.quiet)))
        if parents and parents[0][1] == 0:  # the first teacher is a run: the reference is its black box
            answers = common_images([select_answers(store, *parents[0][0].black_box), *chosen])
            first, chosen = answers[0], answers[1:]
        else:
            chosen = common_images(chosen)
            first = chosen[0]
        size = cfg.student.size or max(32, int(first.spec_data["transform"].get("size") or 64))
        spec = student_spec(first.spec_data, size)
        requests = _load_requests(store, first, spec)
        # Bought views carry the reference black box's answers: used when it alone teaches.
        bought = stored_views(store, first, cfg.views) if not parents and len(chosen) == 1 else []
        tensors, readable = decode_once(first, requests, cfg.store.with_name(cfg.store.name + ".tensors"),
                                        workers=cfg.workers, quiet=cfg.quiet)
        # After the decode: its worker processes fork before the probe's label job starts threads.
        # A child never asks the black box again: it reads the probe answers stored by an ancestor's probe.
        probe = run_probe(store, first, cfg.probe, shift_frac=cfg.shift_frac, crop_scale=cfg.crop_scale,
                          may_query=tuple(cfg.augment) == (AUTO,) and not parents, workers=cfg.workers,
                          quiet=cfg.quiet)
        policy = choose_policy(probe, cfg.augment, [view for view, _ in bought], cfg.probe.max_change)
    held = heldout_mask(split_keys(first, cfg.split_by), cfg.heldout)
    train_rows, held_rows = np.flatnonzero(readable & ~held), np.flatnonzero(readable & held)
    if len(held_rows) == 0 or len(train_rows) == 0:
        raise ConfigError(f"the split leaves {len(train_rows)} training and {len(held_rows)} held-out images; "
                          "label more images or change --heldout")
    images = torch.from_numpy(tensors)
    reference = DistilTensors.from_teacher(images, torch.from_numpy(first.labels), torch.from_numpy(first.scores),
                                           first.kinds, cfg.distill.temperature)
    if len(chosen) == 1:
        only = chosen[0]
        data = DistilTensors.from_teacher(images, torch.from_numpy(only.labels), torch.from_numpy(only.scores),
                                          only.kinds, cfg.distill.temperature)
    else:
        weights = [choice.weight for choice in cfg.teachers]
        labels, log_probs = combine_teachers(
            [(torch.from_numpy(a.labels), torch.from_numpy(a.scores), a.kinds) for a in chosen], weights,
            cfg.distill.temperature)
        data = DistilTensors(images=images, labels=labels, teacher_log_probs=log_probs,
                             soft_mask=torch.ones(len(labels), dtype=torch.bool))
    inputs = InputConfig(mean=spec.mean, std=spec.std, flip=policy["flip"] == STORED,
                         shift_frac=cfg.shift_frac if policy["shift"] == STORED else 0.0,
                         crop_scale=cfg.crop_scale if policy["crop"] == STORED else 1.0)
    train, view_answers = with_views(data.subset(torch.from_numpy(train_rows)), tensors, train_rows, first, bought,
                                     cfg.distill.temperature)
    return TrainData(answers=first, teacher_fingerprints=[a.teacher["fingerprint"] for a in chosen], spec=spec,
                     inputs=inputs, train=train,
                     heldout=reference.subset(torch.from_numpy(held_rows)), train_rows=train_rows,
                     held_rows=held_rows, unreadable=int((~readable).sum()),
                     parents=tuple((parent, chosen[index]) for parent, index in parents),
                     probe=probe, policy=policy, views=1 + len(bought), view_answers=view_answers,
                     view_queries=sum(len(answers.digests) for _, answers in bought))


CHANNELS_LAST_ON_CPU = frozenset({"squeezenet1_1"})
"""Students whose CPU training step is faster channels-last: SqueezeNet 1.1's step runs at 0.25 of the CPU's matmul
rate, and 1.38x faster channels-last (`benchmarks/train_throughput.py`, 2 threads, 32 px); the ResNets already run
at 0.50-0.57 of it."""


def fit(cfg: TrainConfig, task: torch.nn.Module, data: TrainData) -> Trainer:
    """Trains ``task`` on ``data`` with the standard hooks (eval, metrics, checkpoints, schedule, progress),
    resuming from ``cfg.out/last.pt`` when asked; ``best.pt`` holds the best held-out student."""
    device = resolve_device(cfg.device)
    task.to(device)
    if device.type == "cpu" and cfg.student.architecture in CHANNELS_LAST_ON_CPU:
        task.to(memory_format=torch.channels_last)
    train_data = data.train.to(device) if device.type == "cuda" else data.train  # the tensor cache on the GPU
    loss_fn = functools.partial(distillation_loss, cfg=cfg.distill)
    optimizer, scheduler = build_optimizer(task, cfg.optim, -(-train_data.num_images // cfg.optim.batch_size))
    hooks = [LRScheduleHook(scheduler), EvalHook(data.heldout, data.inputs, 256, loss_fn),
             MetricsHook(cfg.out / METRICS_FILE), CheckpointHook(cfg.out), ProgressHook(quiet=cfg.quiet)]
    hooks += tracking_hooks()  # extractor train --log tensorboard|mlflow
    trainer = Trainer(task, optimizer, train_data, hooks, epochs=cfg.optim.epochs, batch_size=cfg.optim.batch_size,
                      seed=cfg.optim.seed, inputs=data.inputs, mixed_precision=device.type == "cuda")
    if cfg.resume and RunDir(cfg.out).has_checkpoint:
        resume(trainer, cfg.out / LAST_CHECKPOINT)
        log.info("resuming %s at epoch %d", cfg.out, trainer.state.epoch)
    trainer.train()
    return trainer


def finish(cfg: TrainConfig, data: TrainData, student: torch.nn.Module, *, epochs: int, started: float,
           onnx_name: str = STUDENT_ONNX, extra: dict | None = None) -> TrainResult:
    """Exports ``student`` to ``cfg.out/onnx_name`` and records it (``record``)."""
    student = student.cpu().eval()
    onnx_path = cfg.out / onnx_name
    diff = export_onnx(student, onnx_path, data.spec.num_channels, data.spec.size)
    return record(cfg, data, onnx_path, params=count_parameters(student), epochs=epochs, started=started,
                  onnx_max_abs_diff=diff, extra=extra)


def record(cfg: TrainConfig, data: TrainData, onnx_path: Path, *, params: int, epochs: int, started: float,
           onnx_max_abs_diff: float, extra: dict | None = None) -> TrainResult:
    """Measures held-out fidelity through an exported ONNX file (what the user ships), and writes
    heldout.csv and run.json; ``onnx_max_abs_diff`` is its recorded deviation from PyTorch."""
    diff = onnx_max_abs_diff
    predicted = onnx_predictions(onnx_path, data.heldout, data.inputs)
    fidelity = float((predicted == data.heldout.labels.numpy()).mean())
    to_parents = [float((predicted == taught.labels[data.held_rows]).mean()) for _, taught in data.parents]
    answers = data.answers
    _write_heldout(cfg.out, answers, data.held_rows, predicted,
                   data.parents[0][1].labels[data.held_rows] if data.parents else None)
    seconds = time.perf_counter() - started
    spec = data.spec
    run = {
        "teacher": answers.teacher, "teachers": data.teacher_fingerprints, "num_classes": answers.num_classes,
        "teacher_input_size": answers.spec_data["transform"].get("size"),
        "preprocess": answers.spec_data, "preprocess_fingerprint": answers.preprocess_fingerprint,
        "student": {"architecture": cfg.student.architecture, "width": cfg.student.width, "size": spec.size,
                    "channels": spec.channels, "mean": list(spec.mean), "std": list(spec.std),
                    "params": params},
        "config": {**cfg.as_data(), "targets": cfg.distill.targets},
        "augment": [name for name, use in data.policy.items() if use == STORED],
        "augment_requested": list(cfg.augment), "augment_policy": data.policy,
        "invariance": data.probe.as_dict() if data.probe else None,
        "views": data.views, "view_answers": data.view_answers, "device": str(resolve_device(cfg.device)),
        "queries": len(answers.digests) + data.view_queries,
        "probe_queries": data.probe.answers if data.probe else 0, "train_images": int(len(data.train_rows)),
        "heldout_images": int(len(data.held_rows)), "unreadable_images": data.unreadable, "fidelity": fidelity,
        "epochs": epochs, "train_seconds": seconds, "onnx_max_abs_diff": diff,
        "parents": [{**parent.describe(), "fingerprint": taught.teacher["fingerprint"], "fidelity_to_it": agreement}
                    for (parent, taught), agreement in zip(data.parents, to_parents, strict=True)],
        "fidelity_to_parent": to_parents[0] if to_parents else None, **(extra or {}),
    }
    RunDir(cfg.out).write_run(run)
    return TrainResult(cfg.out, fidelity, epochs, len(data.train_rows), len(data.held_rows), seconds, diff,
                       cfg.student.architecture, to_parents[0] if to_parents else None, data.policy or None,
                       run["invariance"])


def resolve_device(name: str) -> torch.device:
    """--device: "auto" is CUDA when present, else the CPU; a named CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
    return device


def _check_run_dir(cfg: TrainConfig) -> None:
    if not cfg.store.exists():
        raise InputNotFound(f"--store {cfg.store} does not exist; run `extractor label` first")
    run_dir = RunDir(cfg.out)
    if run_dir.has_checkpoint and not cfg.resume:
        raise ConfigError(f"{cfg.out} already holds a training run; pass --resume to continue it or choose a new --out")
    recorded = run_dir.config() if cfg.resume and run_dir.has_checkpoint else None
    if recorded is not None:
        _check_same_run(cfg, recorded)
        return  # the run's own config.json and job.toml stay as they were written
    run_dir.write_config(cfg.as_data())
    write_job(cfg)


def _check_same_run(cfg: TrainConfig, recorded: dict) -> None:
    """--resume continues the run in --out: a different store, student or teachers would train something else."""
    asked = cfg.as_data()
    differ = [f"--{name} {_shown(asked[name])} (the run has {_shown(recorded.get(name))})"
              for name in ("student", "teachers") if recorded.get(name, asked[name]) != asked[name]]
    if not _same_file(Path(recorded.get("store", cfg.store)), cfg.store):
        differ.insert(0, f"--store {cfg.store} (the run has {recorded['store']})")
    if differ:
        raise ConfigError(f"--resume continues the run in {cfg.out} as it began, but this command asks for "
                          + "; ".join(differ) + ": give the run's own flags, or a new --out")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items() if item is not None)
    return str(value)


def _load_requests(store: LabelStore, answers: TeacherAnswers, spec: PreprocessSpec) -> list[LoadRequest]:
    """Student-side load requests: the same face crops the teacher saw, read from stored detections."""
    faces_data = answers.spec_data.get("faces")
    if not faces_data:
        return [LoadRequest(path, digest, spec) for path, digest in zip(answers.paths, answers.digests)]
    face = FaceSpec.from_data(faces_data)
    stored = store.detections(detector_fingerprint(answers.spec_data["detector"]), answers.digests)
    return [LoadRequest(path, digest, spec, face, Detection.from_json(stored[digest]) if stored.get(digest) else None)
            for path, digest in zip(answers.paths, answers.digests)]


def onnx_predictions(path: Path, data: DistilTensors, inputs: InputConfig) -> np.ndarray:
    """Top-1 of the exported student (what the user ships) on the held-out tensors."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predicted = []
    for start in range(0, len(data), 256):
        x = normalize(data.images[start:start + 256], inputs).numpy()
        predicted.append(session.run(["logits"], {"input": x})[0].argmax(axis=1))
    return np.concatenate(predicted)


def _write_heldout(out: Path, answers: TeacherAnswers, rows: np.ndarray, predicted: np.ndarray,
                   parent_labels: np.ndarray | None) -> None:
    pd.DataFrame({
        "digest": [answers.digests[i] for i in rows],
        "relative_path": [answers.relative_paths[i] for i in rows],
        "teacher_label": answers.labels[rows],
        "student_label": predicted,
        **({"parent_label": parent_labels} if parent_labels is not None else {}),
    }).to_csv(out / HELDOUT_FILE, index=False)
