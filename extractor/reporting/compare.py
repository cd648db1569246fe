"""Several training runs side by side: one table, and fidelity against the teacher queries each run cost."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from extractor.result import Result
from extractor.run_dir import RunDir

COLUMNS = ("run", "student", "augment", "views", "queries", "fidelity", "macro_agreement", "kappa",
           "majority_baseline", "ceiling_share")


def query_cost(run: dict) -> int:
    """Teacher queries a run's training data cost: plain answers, bought views, and the invariance probe."""
    return int(run["queries"]) + int(run.get("probe_queries") or 0)


def efficiency_points(run_dir: Path, runs: Sequence[Path]) -> list[dict]:
    """(queries, fidelity) of each of ``runs`` that shares ``run_dir``'s teacher and preprocessing, or [] when
    fewer than two do (one point says nothing about efficiency)."""
    own = RunDir(run_dir).run()
    points = []
    for other in dict.fromkeys([run_dir, *runs]):
        run = RunDir(other).run()
        if (run["teacher"]["fingerprint"], run["preprocess_fingerprint"]) != \
                (own["teacher"]["fingerprint"], own["preprocess_fingerprint"]):
            continue
        points.append({"run": other.name, "queries": query_cost(run), "fidelity": run["fidelity"],
                       "this": other == run_dir})
    return points if len(points) > 1 else []


def compare_runs(reports: Sequence[dict], out: Path) -> Result:
    """One row per run from each run's report data; writes ``out/comparison.{md,csv,json}``."""
    rows = []
    for data in reports:
        run = RunDir(Path(data["run"])).run()
        policy = run.get("augment_policy") or {}
        rows.append({"run": data["run"], "student": data["student"]["architecture"],
                     "augment": ",".join(run.get("augment") or []) or "none",
                     "views": run.get("views", 1), "queries": query_cost(run), "fidelity": data["fidelity"],
                     "macro_agreement": data.get("macro_agreement"), "kappa": data.get("kappa"),
                     "majority_baseline": data.get("majority_baseline"), "ceiling_share": data.get("ceiling_share"),
                     "policy": policy})
    table = pd.DataFrame(rows, columns=[*COLUMNS, "policy"])
    out.mkdir(parents=True, exist_ok=True)
    table.drop(columns="policy").to_csv(out / "comparison.csv", index=False)
    (out / "comparison.json").write_text(json.dumps(rows, indent=2, default=str))
    lines = ["| run | student | augment | views | teacher queries | fidelity | macro | kappa | majority | "
             "of ceiling |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['run']} | {row['student']} | {row['augment']} | {row['views']} | {row['queries']:,} | "
                     f"{_pct(row['fidelity'])} | {_pct(row['macro_agreement'])} | {_num(row['kappa'])} | "
                     f"{_pct(row['majority_baseline'])} | {_pct(row['ceiling_share'], '.0%')} |")
    text = "\n".join(lines) + "\n"
    (out / "comparison.md").write_text(text)
    return Result({"runs": rows}, text + f"\nwritten: {out}/comparison.md, comparison.csv, comparison.json")


def _pct(value: float | None, spec: str = ".1%") -> str:
    return "n/a" if value is None else format(value, spec)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
