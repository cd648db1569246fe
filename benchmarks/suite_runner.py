"""Numbered benchmark steps under a time budget: each step's estimate is printed before it starts, a step that
would not finish in the time left is skipped, a failure is recorded and the next step runs; the records go to a
JSON file and a Markdown table after every step, so a run killed mid-way keeps what it had done."""
from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class Skipped(Exception):
    """A step that cannot run here; its message says why."""


@dataclass(frozen=True)
class Outcome:
    summary: str
    """One line for the table."""
    results: dict
    """Every figure, for the JSON file."""
    ok: bool = True


@dataclass(frozen=True)
class Step:
    title: str
    estimate_s: float
    run: Callable[[], Outcome]


class Budget:
    """The seconds left of ``seconds`` from now (infinite without a budget)."""

    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def left_s(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def skip_reason(self, estimate_s: float) -> str | None:
        """The status of a part estimated at ``estimate_s`` that would not finish in time, else None."""
        left = self.left_s()
        return f"skipped: estimate {estimate_s:.0f} s > {left:.0f} s left" if estimate_s > left else None


def run_step(number: int, step: Step, budget: Budget, selected: bool) -> dict:
    """Runs ``step`` unless it is not selected or would not finish in time; never raises."""
    record = {"step": number, "title": step.title, "estimate_s": round(step.estimate_s), "seconds": None,
              "summary": "", "results": {}}
    if not selected:
        return {**record, "status": "skipped: not in --steps"}
    if reason := budget.skip_reason(step.estimate_s):
        return {**record, "status": reason}
    started = time.monotonic()
    try:
        outcome = step.run()
        record.update(status="ok" if outcome.ok else "failed", summary=outcome.summary, results=outcome.results)
    except Skipped as reason:
        record["status"] = f"skipped: {reason}"
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the benchmarks exit on a failed command; go on
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        record.update(status=f"failed: {type(error).__name__}: {first_line}", error=traceback.format_exc())
    record["seconds"] = round(time.monotonic() - started, 1)
    return record


def markdown(title: str, records: Sequence[dict]) -> str:
    """``title``, then one table row per step."""
    lines = [title, "", "| step | status | estimate (s) | wall (s) | result |", "|---|---|---:|---:|---|"]
    for record in records:
        wall = "" if record["seconds"] is None else record["seconds"]
        lines.append(f"| {record['step']} {record['title']} | {record['status']} | {record['estimate_s']} | {wall} | "
                     f"{record['summary'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def run_steps(steps: Sequence[Step], budget: Budget, selected: set[int], header: dict, title: str, json_path: Path,
              table_path: Path) -> list[dict]:
    """Runs ``steps`` (numbered from 1) in order; ``header`` opens the JSON file, ``title`` the table."""
    print(title, flush=True)
    records: list[dict] = []
    for number, step in enumerate(steps, 1):
        print(f"\n[{number}/{len(steps)}] {step.title}: estimate {step.estimate_s:.0f} s", flush=True)
        records.append(run_step(number, step, budget, number in selected))
        print(f"[{number}] {records[-1]['status']}: {records[-1]['summary']}", flush=True)
        for path, text in ((json_path, json.dumps({**header, "steps": records}, indent=2, default=str)),
                           (table_path, markdown(title, records))):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    print("\n" + markdown(title, records), flush=True)
    return records
