"""What a training run records besides metrics.jsonl: ``job.toml``, the `extractor train` flags that repeat
it, and with `extractor train --log tensorboard|mlflow` the same metrics in TensorBoard or MLflow.

TensorBoard event files go into the run directory itself (``tensorboard --logdir runs/`` shows one run per
directory); an MLflow run goes to ``$MLFLOW_TRACKING_URI``, else to ``mlruns/mlflow.db`` under the current
directory (MLflow 3 refuses the old ``mlruns/`` file store unless told to), in the experiment
``$MLFLOW_EXPERIMENT_NAME`` or "extractor". Both get every number metrics.jsonl gets, at the same step, under
``train/<name>`` and ``heldout/<name>``; the run's configuration (the job.toml flags); and when training has
finished, the report's figures from run.json and heldout.csv under ``final/<name>``.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

from extractor.config import AUTO, TrainConfig
from extractor.errors import ConfigError
from extractor.students.config import OptimConfig, SlimmableConfig
from extractor.students.trainer import HookBase, Trainer

log = logging.getLogger(__name__)

JOB_FILE = "job.toml"
INSTALL = {"tensorboard": 'pip install "extractor-distill[tensorboard]"',
           "mlflow": 'pip install "extractor-distill[mlflow]"'}
"""How to install each tracker's optional extra."""
MLFLOW_DEFAULT_DIR = Path("mlruns")
MLFLOW_EXPERIMENT = "extractor"


# --- job.toml ---------------------------------------------------------------------------------------------

def train_flags(cfg: TrainConfig) -> tuple[dict[str, Any], list[str]]:
    """The `extractor train` flags (long names, TOML values) that build ``cfg`` again, and a note for each
    setting no flag reaches (left at its default by a repeat).

    How the run was started (``--resume``, ``--workers``, ``--quiet``, ``--json``) is left out: it does not
    change what is trained. ``--lr`` is always given, resolved to the student's default where it was not.
    """
    optim, hint, slim = cfg.optim, cfg.hint, cfg.slimmable
    flags: dict[str, Any] = {
        "store": str(cfg.store), "out": str(cfg.out),
        "teacher": [_teacher_flag(choice.prefix if choice.run is None else str(choice.run), choice.weight)
                    for choice in cfg.teachers] or None,
        "hint": hint is not None,
        "hint-weight": hint.weight if hint else None,
        "hint-layer": (hint.student_layer if hint.parent_layer == hint.student_layer
                       else f"{hint.student_layer}:{hint.parent_layer}") if hint else None,
        "student": cfg.student.architecture, "width": cfg.student.width, "size": cfg.student.size,
        "targets": cfg.distill.targets, "alpha": cfg.distill.alpha, "temperature": cfg.distill.temperature,
        "epochs": optim.epochs, "batch-size": optim.batch_size, "lr": optim.lr, "seed": optim.seed,
        "augment": AUTO if tuple(cfg.augment) == (AUTO,) else ",".join(cfg.augment) or "none",
        "shift": cfg.shift_frac, "crop-scale": cfg.crop_scale,
        "teacher-source": cfg.probe.teacher_source, "probe-images": cfg.probe.images,
        "probe-max-change": cfg.probe.max_change, "probe-budget": cfg.probe.budget, "views": cfg.views,
        "heldout": cfg.heldout, "split-by": [str(cfg.split_by[0]), cfg.split_by[1]] if cfg.split_by else None,
        "device": cfg.device,
        "slimmable": ",".join(f"{w:g}" for w in slim.widths) if slim else None,
        "inplace": slim.inplace if slim else None, "sandwich": slim.sandwich if slim else None,
    }
    notes = [f"{name} = {value!r} has no flag (a repeat uses {default!r})"
             for name, value, default in _unflagged(optim, OptimConfig, ("weight_decay", "warmup_frac"))
             + (_unflagged(slim, SlimmableConfig, ("random_widths", "calibration_images")) if slim else [])]
    return {key: value for key, value in flags.items() if value is not None}, notes


def _teacher_flag(name: str, weight: float) -> str:
    """--teacher NAME[:WEIGHT]."""
    return name if weight == 1.0 else f"{name}:{weight!r}"


def _unflagged(config: object, kind: type, names: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    defaults = {field.name: field.default for field in fields(kind)}
    return [(name, getattr(config, name), defaults[name]) for name in names if getattr(config, name) != defaults[name]]


def write_job(cfg: TrainConfig) -> Path:
    """Writes ``cfg.out/job.toml``: ``extractor train --config RUN/job.toml --out NEW`` repeats the run."""
    flags, notes = train_flags(cfg)
    header = [(f"# The run in {cfg.out}, as `extractor train` flags: extractor train --config "
               f"{cfg.out / JOB_FILE} --out NEW_RUN repeats it."),
              f"# Paths are as given, relative to the directory it ran in: {Path.cwd()}",
              *(f"# {note}" for note in notes)]
    path = cfg.out / JOB_FILE
    cfg.out.mkdir(parents=True, exist_ok=True)
    path.write_text(toml_text({"train": flags}, header), encoding="utf-8")
    return path


def toml_text(tables: dict[str, dict[str, Any]], header: list[str] = ()) -> str:
    """Tables of strings, numbers, booleans and lists of them as TOML (``tomllib`` reads, never writes)."""
    lines = list(header)
    for table, values in tables.items():
        lines += ["", f"[{table}]"] if lines else [f"[{table}]"]
        lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")) if not math.isfinite(value) \
            else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # JSON's string escapes are TOML basic-string escapes


# --- trackers ---------------------------------------------------------------------------------------------

class Tracker(Protocol):
    """Where the metrics go besides metrics.jsonl."""

    def log_config(self, flags: dict[str, Any], job_toml: str) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...
    def close(self, final: dict[str, float] | None, step: int) -> None:
        """Writes the final figures (None when training failed) and ends the run."""
        ...


class TensorBoardTracker:
    """Event files in the run directory, through ``torch.utils.tensorboard`` (needs the tensorboard package)."""

    def __init__(self, out: Path, first_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run replays the steps after its checkpoint: purge what the killed run wrote after it.
        self.writer = SummaryWriter(log_dir=str(out), purge_step=first_step if first_step > 1 else None)
        self.flags: dict[str, Any] = {}

    @staticmethod
    def check() -> None:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        import torch.utils.tensorboard  # noqa: F401

    def log_config(self, flags: dict[str, Any], job_toml: str) -> None:
        self.flags = flags
        self.writer.add_text("config/job.toml", "```toml\n" + job_toml + "```", 0)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def close(self, final: dict[str, float] | None, step: int) -> None:
        if final is not None:
            from torch.utils.tensorboard.summary import hparams

            self.log_metrics(final, step)
            # The HParams dashboard: this run's flags against its final figures, in this run's own directory.
            for summary in hparams({key: _scalar(value) for key, value in self.flags.items()}, final):
                self.writer.file_writer.add_summary(summary)
        self.writer.close()


class MlflowTracker:
    """An MLflow run, written through ``MlflowClient`` (no global active run)."""

    def __init__(self, out: Path, first_step: int) -> None:
        for name in ("mlflow", "alembic"):  # their INFO lines about creating the database are not ours to print
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).getEffectiveLevel()))
        from mlflow.tracking import MlflowClient

        uri, artifacts = os.environ.get("MLFLOW_TRACKING_URI"), None
        if not uri:
            MLFLOW_DEFAULT_DIR.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{(MLFLOW_DEFAULT_DIR / 'mlflow.db').resolve()}"
            artifacts = (MLFLOW_DEFAULT_DIR / "artifacts").resolve().as_uri()
        self.client = MlflowClient(uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or MLFLOW_EXPERIMENT
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (experiment.experiment_id if experiment
                         else self.client.create_experiment(name, artifact_location=artifacts))
        self.run_id = self.client.create_run(experiment_id, run_name=out.name, tags={
            "extractor.run_dir": str(out.resolve()), "extractor.first_step": str(first_step)}).info.run_id
        log.info("MLflow run %s in %s", self.run_id, uri)

    @staticmethod
    def check() -> None:
        import mlflow  # noqa: F401

    def log_config(self, flags: dict[str, Any], job_toml: str) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(key, str(_scalar(value))) for key, value in flags.items()])
        self.client.log_text(self.run_id, job_toml, JOB_FILE)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, float(value), now_ms, step)
                                                    for name, value in metrics.items()])

    def close(self, final: dict[str, float] | None, step: int) -> None:
        if final is not None:
            self.log_metrics(final, step)
        self.client.set_terminated(self.run_id, status="FINISHED" if final is not None else "FAILED")


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker}


def _scalar(value: Any) -> Any:
    """A flag's value as one scalar (lists joined by commas): what hparams and MLflow params hold."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


class TrackingSession:
    """One `extractor train --log KIND` command: the tracker opens when training starts (a run that fails
    its checks writes nothing) and closes with the final figures when the command ends."""

    def __init__(self, kind: str, cfg: TrainConfig) -> None:
        if kind not in TRACKERS:
            raise ConfigError(f"--log must be one of {', '.join(TRACKERS)}, got {kind!r}")
        try:
            TRACKERS[kind].check()
        except ImportError:
            raise ConfigError(f"--log {kind} needs the {kind} extra: {INSTALL[kind]}") from None
        self.kind, self.cfg = kind, cfg
        self.tracker: Tracker | None = None
        self.step = 0

    def start(self, first_step: int) -> Tracker:
        if self.tracker is None:
            self.tracker = TRACKERS[self.kind](self.cfg.out, first_step)
            flags, notes = train_flags(self.cfg)
            self.tracker.log_config(flags, toml_text({"train": flags}, [f"# {note}" for note in notes]))
        return self.tracker

    def close(self, succeeded: bool) -> None:
        if self.tracker is not None:
            self.tracker.close(final_figures(self.cfg.out) if succeeded else None, self.step)
            self.tracker = None


_SESSION: contextvars.ContextVar[TrackingSession | None] = contextvars.ContextVar("tracking", default=None)


@contextlib.contextmanager
def tracking(kind: str | None, cfg: TrainConfig) -> Iterator[None]:
    """While the block runs, training on ``cfg`` also writes to the tracker ``kind`` (None: to none).

    Raises:
        ConfigError: on an unknown kind, or when its extra is not installed (saying how to install it),
            before anything is trained.
    """
    if kind is None:
        yield
        return
    session = TrackingSession(kind, cfg)
    token = _SESSION.set(session)
    succeeded = False
    try:
        yield
        succeeded = True
    finally:
        _SESSION.reset(token)
        session.close(succeeded)


def tracking_hooks() -> list[HookBase]:
    """The trainer hook of the active `--log` session, if any: put it after ``EvalHook``."""
    session = _SESSION.get()
    return [TrackingHook(session)] if session is not None else []


class TrackingHook(HookBase):
    """Sends what ``MetricsHook`` writes to metrics.jsonl to the session's tracker, at the same steps."""

    def __init__(self, session: TrackingSession) -> None:
        self.session = session
        self.tracker: Tracker | None = None

    def before_train(self, trainer: Trainer) -> None:
        self.tracker = self.session.start(trainer.state.step + 1)
        self.session.step = trainer.state.step

    def after_step(self, trainer: Trainer) -> None:
        state = trainer.state
        self.tracker.log_metrics({**{f"train/{name}": value for name, value in state.losses.items()},
                                  "train/lr": state.lr}, state.step)
        self.session.step = state.step

    def after_epoch(self, trainer: Trainer) -> None:
        state = trainer.state
        if state.heldout:
            self.tracker.log_metrics({**{f"heldout/{name}": value for name, value in state.heldout.items()},
                                      "epoch": state.epoch}, state.step)


def final_figures(out: Path) -> dict[str, float]:
    """The report's figures of a finished run: from run.json, and agreement beyond chance from heldout.csv."""
    from extractor.reporting.agreement import agreement_metrics
    from extractor.run_dir import RunDir

    run_dir = RunDir(out)
    if not run_dir.is_finished:
        return {}
    run = run_dir.run()
    heldout = run_dir.heldout()
    agreement = agreement_metrics(heldout["teacher_label"], heldout["student_label"], run.get("invariance"),
                                  run.get("augment_policy"))
    figures = {name: run.get(name) for name in ("fidelity", "fidelity_to_parent", "queries", "probe_queries",
                                                "train_images", "heldout_images", "epochs", "train_seconds",
                                                "onnx_max_abs_diff")}
    figures.update({name: agreement[name] for name in ("majority_baseline", "macro_agreement", "kappa",
                                                        "ceiling_share")})
    figures["teacher_self_agreement"] = (agreement["teacher_self_agreement"] or {}).get("value")
    figures["student_params"] = run["student"]["params"]
    return {f"final/{name}": float(value) for name, value in figures.items() if isinstance(value, (int, float))
            and not isinstance(value, bool)}
