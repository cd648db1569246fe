"""The chain job: students distilled link by link, each from the one before, at no query to the black box.

Iterative knowledge distillation (Yalburgi 2019, seed 002): parent -> child, repeated while the
performance holds; several children per link, keeping the best. With a mid-sized link between the
teacher and a small student, the same job is teacher-assistant distillation (Mirzadeh et al. 2020,
"Improved Knowledge Distillation via Teacher Assistant", seed 003).

The first link learns from the black box's stored answers (the chain's teachers); every later link
learns from the previous link's run (``parents``), optionally with a FitNet hint. Each child is a
normal run directory (``DIR/link1_resnet20_w0.5/seed0``); the best child by held-out fidelity to the
original teacher is copied up into the link's directory (``DIR/link1_resnet20_w0.5``), itself a normal
run directory, which teaches the next link. The chain stops after the first link whose fidelity is
more than ``stop_drop`` points below the first link's. ``DIR/chain.json`` records every finished link:
a rerun of the same command skips them, resumes a child from its last checkpoint, and continues.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

from extractor.config import TeacherChoice, TrainConfig
from extractor.errors import ConfigError, InputNotFound
from extractor.result import Result
from extractor.students.config import HintConfig
from extractor.run_dir import CHAIN_FILE, RESULT_FILES, RUN_FILE, RunDir

_IDENTITY = ("store", "teachers", "distill", "optim", "augment", "heldout", "split_by")
"""The training settings a rerun of a chain must repeat."""


@dataclass(frozen=True)
class Link:
    """One student of the chain: an architecture of the zoo and its channel multiplier."""

    architecture: str
    width: float = 1.0

    @classmethod
    def parse_list(cls, text: str) -> tuple[Link, ...]:
        """--links 'squeezenet1_1,resnet20:0.5,resnet8:0.5' (architecture[:width], comma-separated)."""
        links = []
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            architecture, _, width = part.partition(":")
            try:
                links.append(cls(architecture, float(width) if width else 1.0))
            except ValueError:
                raise ConfigError(f"--links takes architecture[:width],..., e.g. resnet20,resnet8:0.5; got {part!r}") from None
        return tuple(links)

    def directory(self, index: int) -> str:
        """The link's run directory name, e.g. ``link1_resnet20_w0.5``."""
        return f"link{index}_{self.architecture}_w{float(self.width)}"


@dataclass(frozen=True)
class ChainConfig:
    """What `extractor chain` does."""

    train: TrainConfig
    """What every link trains with: ``out`` is the chain's directory, ``teachers`` teach the first link,
    ``student.size`` is every link's input side; architecture and width come from ``links``."""
    links: tuple[Link, ...]
    """The students, first (taught by the black box's answers) to last."""
    children: int = 1
    """Children trained per link (seeds ``seed``, ``seed + 1``, ...); the best by held-out fidelity is kept."""
    stop_drop: float | None = None
    """Stop after the first link whose fidelity is more than this many points below the first link's."""
    hint: HintConfig | None = None
    """A FitNet hint from each link's parent (every link after the first)."""
    lr: float | None = None
    """Every link's peak learning rate; None takes each link's student's own (``StudentConfig.default_lr``).
    ``train.optim.lr`` is not used."""

    def __post_init__(self) -> None:
        if not self.links:
            raise ConfigError("--links names no student; e.g. --links resnet20,resnet8")
        if self.children < 1:
            raise ConfigError(f"--children must be >= 1, got {self.children}")
        if self.stop_drop is not None and self.stop_drop < 0:
            raise ConfigError(f"--stop-drop must be >= 0 points, got {self.stop_drop}")
        if self.train.slimmable is not None or self.train.hint is not None or self.train.resume:
            raise ConfigError("a chain trains plain students; its hint is ChainConfig.hint and it resumes by itself")

    def identity(self) -> dict:
        """What a rerun must repeat to continue this chain: the store, teachers, targets, optimisation, split
        and links (not the workers, progress or device)."""
        train = {key: value for key, value in self.train.as_data().items() if key in _IDENTITY}
        return {"train": train, "size": self.train.student.size, "links": [asdict(link) for link in self.links],
                "children": self.children, "stop_drop": self.stop_drop, "lr": self.lr,
                "hint": asdict(self.hint) if self.hint else None}


def stop_index(fidelities: Sequence[float], stop_drop: float | None) -> int | None:
    """The first link whose fidelity is more than ``stop_drop`` points below the first link's, or None."""
    if stop_drop is None:
        return None
    # Rounded: 0.80 - 0.75 is 5.000000000000004 points in floating point, which is not a drop beyond 5.
    return next((index for index, fidelity in enumerate(fidelities)
                 if round(100.0 * (fidelities[0] - fidelity), 9) > stop_drop), None)


def run_chain(cfg: ChainConfig) -> Result:
    """Trains the links that ``cfg.train.out/chain.json`` does not hold yet, and returns the chain's summary."""
    from extractor.students.zoo import STUDENTS

    unknown = [link.architecture for link in cfg.links if link.architecture not in STUDENTS]
    if unknown:
        raise ConfigError(f"--links: unknown students {', '.join(unknown)}; valid: {', '.join(STUDENTS)}")
    if not cfg.train.store.exists():
        raise InputNotFound(f"--store {cfg.train.store} does not exist; run `extractor label` first")
    out = cfg.train.out
    state = _open_state(cfg)
    for index, link in enumerate(cfg.links):
        if state["stopped_at"] is not None:
            break
        if index < len(state["links"]):
            continue
        parent = out / state["links"][-1]["dir"] if state["links"] else None
        state["links"].append(_train_link(cfg, index, link, parent))
        state["stopped_at"] = stop_index([entry["fidelity"] for entry in state["links"]], cfg.stop_drop)
        RunDir(out).write_chain_state(state)
    state["status"] = "stopped" if state["stopped_at"] is not None else "done"
    RunDir(out).write_chain_state(state)
    return Result(state, _summary(state, cfg))


def _train_link(cfg: ChainConfig, index: int, link: Link, parent: Path | None) -> dict:
    """Trains (or resumes, or reads) every child of one link and promotes the best into the link's directory."""
    from extractor.training.recipe import train_student

    link_dir = cfg.train.out / link.directory(index)
    children = []
    for offset in range(cfg.children):
        seed = cfg.train.optim.seed + offset
        out = link_dir / f"seed{seed}"
        if not RunDir(out).is_finished:
            train_student(_child_config(cfg, link, out, seed, parent))
        run = RunDir(out).run()
        children.append({"seed": seed, "dir": out.name, "fidelity": run["fidelity"],
                         "fidelity_to_parent": run["fidelity_to_parent"], "train_seconds": run["train_seconds"]})
    best = max(children, key=lambda child: child["fidelity"])  # the first of equals: the lowest seed
    (link_dir / RUN_FILE).unlink(missing_ok=True)
    for name in RESULT_FILES:  # the best child's results, run.json last: it marks a complete copy
        shutil.copy2(link_dir / best["dir"] / name, link_dir / name)
    return {"index": index, "dir": link_dir.name, "architecture": link.architecture, "width": link.width,
            "parent": parent.name if parent else None, "chosen": best["dir"], "fidelity": best["fidelity"],
            "fidelity_to_parent": best["fidelity_to_parent"], "children": children, "finished": time.time()}


def _child_config(cfg: ChainConfig, link: Link, out: Path, seed: int, parent: Path | None) -> TrainConfig:
    train = cfg.train
    student = replace(train.student, architecture=link.architecture, width=link.width)
    return replace(train, out=out, student=student, resume=RunDir(out).has_checkpoint,
                   optim=replace(train.optim, seed=seed, lr=student.default_lr if cfg.lr is None else cfg.lr),
                   teachers=train.teachers if parent is None else (TeacherChoice(run=parent),),
                   hint=cfg.hint if parent is not None else None)


def _open_state(cfg: ChainConfig) -> dict:
    """The chain's state: read back when the directory holds the same chain, else started.

    Raises:
        ConfigError: when the directory holds a chain with other settings, or something else.
    """
    out = cfg.train.out
    identity = json.loads(json.dumps(cfg.identity(), default=str))
    if RunDir(out).is_chain:
        state = RunDir(out).chain_state()
        if state["config"] != identity:
            raise ConfigError(f"{out} holds a chain with other settings; rerun it with the flags it was started "
                              f"with (see {out / CHAIN_FILE}) or choose a new --out")
        return state
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty and holds no chain; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    state = {"config": identity, "links": [], "stopped_at": None, "status": "running", "started": time.time()}
    RunDir(out).write_chain_state(state)
    return state


def _summary(state: dict, cfg: ChainConfig) -> str:
    links = state["links"]
    first = links[0]["fidelity"]
    lines = [f"chain {cfg.train.out}: {len(links)} of {len(cfg.links)} links trained"
             + (f", stopped at link {state['stopped_at']} (drop > {cfg.stop_drop} points)"
                if state["stopped_at"] is not None else ""),
             "| link | student | fidelity to teacher | to parent | drop from first (points) |",
             "|---|---|---:|---:|---:|"]
    for entry in links:
        to_parent = entry["fidelity_to_parent"]
        lines.append(f"| {entry['dir']} | {entry['architecture']} w{entry['width']} | {entry['fidelity']:.1%} | "
                     f"{'n/a' if to_parent is None else format(to_parent, '.1%')} | "
                     f"{100 * (first - entry['fidelity']):.1f} |")
    lines.append(f"next: extractor report {cfg.train.out}")
    return "\n".join(lines)
