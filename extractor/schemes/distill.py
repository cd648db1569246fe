"""`extractor distill`: the whole job in one command, the budget spent in rounds.

Round 1 buys a fair sample (the label plan's seeded order) and trains; each later round lets the last
student select what to buy next, buys it and trains again from scratch, until the budget is spent. The
held-out split is fixed by round 1's purchase: selection never picks a held-out image. Each round is
reported as it finishes (its report plots fidelity against queries over the rounds so far). Every step is
resumable: the label job buys only what is missing, a killed training resumes from its checkpoint, a
round's picks are kept in ``picks{r}.txt``, and ``distill.json`` records each finished round.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from extractor.config import LabelConfig, TrainConfig
from extractor.errors import ConfigError
from extractor.labeling.from_source import PreprocessFlags, label_from_source
from extractor.labeling.picks import read_picks
from extractor.reporting.forecast import fit_learning_curve
from extractor.reporting.report import build_report
from extractor.result import Result
from extractor.run_dir import RunDir
from extractor.selection.job import SelectConfig, select_images
from extractor.selection.strategies import STRATEGIES
from extractor.teachers.source import TeacherSource
from extractor.training.recipe import train_student

STATE_FILE = "distill.json"


@dataclass(frozen=True)
class DistillJob:
    """What `extractor distill` does."""

    source: TeacherSource
    label: LabelConfig
    """The label job's settings; its budget is set per round."""
    flags: PreprocessFlags
    train: TrainConfig
    """Each round's training settings; its ``out`` is set per round."""
    out: Path
    budget: int
    rounds: int = 1
    strategy: str = "random"

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ConfigError(f"--budget must be >= 1, got {self.budget}")
        if not 1 <= self.rounds <= self.budget:
            raise ConfigError(f"--rounds must be in [1, --budget], got {self.rounds}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")

    def budgets(self) -> list[int]:
        """The budget spent by the end of each round, in equal steps."""
        return [round(self.budget * (index + 1) / self.rounds) for index in range(self.rounds)]

    def identity(self) -> dict:
        """What a resumed distill must repeat."""
        return {"teacher": self.source.as_data(), "images": str(Path(self.label.images).resolve()),
                "store": str(self.label.store), "budget": self.budget, "rounds": self.rounds,
                "strategy": self.strategy, "seed": self.label.seed}


def run_distill(job: DistillJob) -> Result:
    """Spends ``job.budget`` in ``job.rounds`` rounds of buy -> train (-> select); reports the last round."""
    state = _open_state(job)
    budgets = job.budgets()
    for index, spent in enumerate(budgets):
        number = index + 1
        if number <= len(state["rounds"]):
            continue
        picks, selected = None, {}
        if index > 0:
            picks = job.out / f"picks{number}.txt"
            if not picks.exists():
                selected = select_images(SelectConfig(
                    run=_round_dir(job, number - 1), images=job.label.images, strategy=_strategy(job, number),
                    count=spent - budgets[index - 1], out=picks,
                    other=_round_dir(job, number - 2) if number > 2 else None, seed=job.label.seed,
                    workers=job.label.workers)).data
        only = read_picks(picks, job.label.images) if picks else None
        labeled = label_from_source(job.source, replace(job.label, budget=spent, only_paths=only), job.flags)
        if labeled.stopped:
            raise ConfigError(f"round {number}: the teacher stopped answering ({labeled.stopped}); "
                              "run the same command again to continue")
        run_dir = RunDir(_round_dir(job, number))
        if not run_dir.is_finished:
            train_student(replace(job.train, out=run_dir.path, resume=run_dir.has_checkpoint))
        run = run_dir.run()
        build_report(run_dir.path, peers=[_round_dir(job, done) for done in range(1, number + 1)])
        state["rounds"].append({"round": number, "budget": spent, "queries": run["queries"],
                                "fidelity": run["fidelity"], "heldout_images": run_dir.report()["eval_images"],
                                "strategy": "fair sample" if index == 0 else _strategy(job, number),
                                "run": run_dir.path.name, "picks": picks.name if picks else None,
                                "select_seconds": selected.get("seconds"),
                                "select_cpu_seconds": selected.get("cpu_seconds")})
        state["forecast"] = _forecast(state["rounds"], budgets, job.budget)
        _write_state(job.out, state)
    report = RunDir(_round_dir(job, job.rounds)).report()
    return Result({**state, "report": report}, _summary(job, state) + f"\nreport: {_round_dir(job, job.rounds)}/report.md")


def _forecast(rounds: list[dict], budgets: list[int], budget: int) -> dict | None:
    """What the next round and twice the budget are expected to reach, from the rounds so far."""
    sizes = [entry.get("heldout_images") for entry in rounds]  # absent in a state written before it was kept
    curve = fit_learning_curve([entry["queries"] for entry in rounds], [entry["fidelity"] for entry in rounds],
                               None if None in sizes else sizes)
    if curve is None:
        return None
    done = len(rounds)
    step = budgets[0]
    next_queries = rounds[-1]["queries"] + step
    return {"after_round": done, "next_round": curve.predict(next_queries).as_dict(),
            "twice_budget": curve.predict(2 * budget).as_dict(), "slope": curve.slope}


def _strategy(job: DistillJob, number: int) -> str:
    """The strategy of round ``number``: disagreement compares the last two rounds' students, so round 2,
    with one student so far, buys by entropy."""
    return "entropy" if job.strategy == "disagreement" and number == 2 else job.strategy


def _round_dir(job: DistillJob, number: int) -> Path:
    return job.out / f"round{number}"


def _open_state(job: DistillJob) -> dict:
    identity = json.loads(json.dumps(job.identity(), default=str))
    path = job.out / STATE_FILE
    if path.exists():
        state = json.loads(path.read_text())
        if state["config"] != identity:
            raise ConfigError(f"{job.out} holds a distill run with other settings (see {path}); rerun it with "
                              "the flags it was started with or choose a new --out")
        return state
    if job.out.exists() and any(job.out.iterdir()):
        raise ConfigError(f"{job.out} is not empty and holds no distill run; choose a new --out")
    job.out.mkdir(parents=True, exist_ok=True)
    state = {"config": identity, "rounds": [], "forecast": None}
    _write_state(job.out, state)
    return state


def _write_state(out: Path, state: dict) -> None:
    partial = out / (STATE_FILE + ".partial")
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(out / STATE_FILE)


def _summary(job: DistillJob, state: dict) -> str:
    lines = [f"distill {job.out}: {len(state['rounds'])} rounds, budget {job.budget}, strategy {job.strategy}",
             "| round | strategy | queries | held-out fidelity |", "|---:|---|---:|---:|"]
    lines += [f"| {entry['round']} | {entry['strategy']} | {entry['queries']} | {entry['fidelity']:.1%} |"
              for entry in state["rounds"]]
    forecast = state.get("forecast")
    if forecast:
        for name, label in (("next_round", "next round"), ("twice_budget", "twice the budget")):
            guess = forecast[name]
            interval = (f" (90% interval {guess['low']:.1%} to {guess['high']:.1%})"
                        if guess["low"] is not None else " (interval needs three rounds)")
            lines.append(f"forecast: {label}, {guess['queries']} queries: {guess['fidelity']:.1%}{interval}")
    return "\n".join(lines)
