"""The report of a chain (`extractor chain`): one row per link, its size against the teacher's and the first
student's, its fidelity to the original teacher and to its parent, its accuracy and its training minutes."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from extractor.reporting.profile import ModelProfile, profile_onnx
from extractor.result import Result
from extractor.run_dir import RunDir

Accuracy = Callable[[dict, pd.DataFrame, str], "float | None"]
"""(run.json, heldout.csv, column of predicted labels) -> accuracy against the ground truth, or None."""


def build_chain_report(chain_dir: Path, *, teacher_profile: Callable[[dict], ModelProfile | None],
                       accuracy: Accuracy) -> Result:
    """Measures every trained link of a chain and writes report.json (links under ``"chain"``), report.csv,
    report.md and report.png (fidelity and accuracy vs size).

    Args:
        chain_dir: a directory written by `extractor chain`.
        teacher_profile: measures the black-box teacher named by a run.json (None when it has no model file).
        accuracy: scores a link's predictions against the ground truth.
    """
    state = RunDir(chain_dir).chain_state()
    runs = [RunDir(chain_dir / entry["dir"]).run() for entry in state["links"]]
    teacher = teacher_profile(runs[0]) if runs else None
    first_heldout = RunDir(chain_dir / state["links"][0]["dir"]).heldout() if runs else None
    rows = []
    for entry, run in zip(state["links"], runs, strict=True):
        link_dir = chain_dir / entry["dir"]
        heldout = RunDir(link_dir).heldout()
        profile = profile_onnx(link_dir / "student.onnx", input_size=run["student"]["size"], batch_sizes=(1,),
                               budget_s=0.2)
        to_parent = run["fidelity_to_parent"] if entry["parent"] else run["fidelity"]  # link 0's parent: the teacher
        rows.append({
            "link": entry["index"], "dir": entry["dir"], "architecture": entry["architecture"], "width": entry["width"],
            "parent": entry["parent"] or "teacher", "size_mb": profile.size_mb, "params": profile.params,
            "latency_ms_b1": profile.latency_ms[1],
            "size_reduction_vs_teacher": teacher.size_mb / profile.size_mb if teacher else None,
            "size_reduction_vs_first": (rows[0]["size_mb"] if rows else profile.size_mb) / profile.size_mb,
            "fidelity": run["fidelity"], "fidelity_to_parent": to_parent,
            "drop_from_first_points": 100.0 * ((rows[0]["fidelity"] if rows else run["fidelity"]) - run["fidelity"]),
            "accuracy": accuracy(run, heldout, "student_label"),
            "train_minutes": run["train_seconds"] / 60,
            "link_minutes": sum(child["train_seconds"] for child in entry["children"]) / 60,
            "children": [{"seed": child["seed"], "fidelity": child["fidelity"]} for child in entry["children"]],
            "chosen": entry["chosen"], "stop": entry["index"] == state["stopped_at"],
        })
    data = {
        "chain": rows, "run": str(chain_dir), "status": state["status"], "stop_drop": state["config"]["stop_drop"],
        "stopped_at": state["stopped_at"], "links_planned": len(state["config"]["links"]),
        "teacher": {"fingerprint": runs[0]["teacher"]["fingerprint"] if runs else None,
                    "size_mb": teacher.size_mb if teacher else None, "params": teacher.params if teacher else None,
                    "accuracy": accuracy(runs[0], first_heldout, "teacher_label") if runs else None},
        "eval_images": int(len(first_heldout)) if first_heldout is not None else 0,
    }
    (chain_dir / "report.json").write_text(json.dumps(data, indent=2))
    pd.DataFrame(rows).drop(columns=["children"]).to_csv(chain_dir / "report.csv", index=False)
    markdown = _markdown(data)
    (chain_dir / "report.md").write_text(markdown)
    if rows:
        _plot(data, chain_dir / "report.png")
    return Result(data, markdown)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _markdown(data: dict) -> str:
    teacher = data["teacher"]
    lines = ["| link | student | parent | size (MB) | params | smaller than teacher | smaller than first | "
             "fidelity to teacher | to parent | drop from first (points) | accuracy | train min |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| teacher | black box | | {_fmt(teacher['size_mb'], '.3f')} | {_fmt(teacher['params'], ',')} | | | "
             f"100.0% | | | {_fmt(teacher['accuracy'], '.1%')} | |"]
    for row in data["chain"]:
        reduction = row["size_reduction_vs_teacher"]
        lines.append(
            f"| {row['link']}{' (stop)' if row['stop'] else ''} | {row['architecture']} w{row['width']} | "
            f"{row['parent']} | {row['size_mb']:.3f} | {row['params']:,} | "
            f"{_fmt(reduction, '.2f')}x ({_fmt(None if reduction is None else 100 * (1 - 1 / reduction), '.0f')}%) | "
            f"{row['size_reduction_vs_first']:.2f}x | {row['fidelity']:.1%} | {_fmt(row['fidelity_to_parent'], '.1%')} | "
            f"{row['drop_from_first_points']:.1f} | {_fmt(row['accuracy'], '.1%')} | {row['train_minutes']:.1f} |")
    lines += ["", f"- fidelity: top-1 agreement on {data['eval_images']} held-out images, always with the original "
                  "black-box teacher; 'to parent': with the student that taught the link (link 0: the teacher)",
              f"- {len(data['chain'])} of {data['links_planned']} links trained"
              + (f"; stopped at link {data['stopped_at']}: more than {data['stop_drop']} points below link 0"
                 if data["stopped_at"] is not None else "")]
    children = [row for row in data["chain"] if len(row["children"]) > 1]
    lines += [f"- link {row['link']} kept {row['chosen']} of "
              + ", ".join(f"seed{c['seed']} {c['fidelity']:.1%}" for c in row["children"]) for row in children]
    return "\n".join(lines) + "\n"


def _plot(data: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    rows = data["chain"]
    sizes = [row["size_mb"] for row in rows]
    axis.plot(sizes, [100 * row["fidelity"] for row in rows], "-o", label="fidelity to the teacher")
    for row in rows:
        axis.annotate(f"{row['link']}: {row['architecture']} w{row['width']}", (row["size_mb"], 100 * row["fidelity"]),
                      textcoords="offset points", xytext=(4, 6), fontsize=8)
    if all(row["accuracy"] is not None for row in rows):
        axis.plot(sizes, [100 * row["accuracy"] for row in rows], "--o", mfc="none", label="accuracy")
    teacher = data["teacher"]
    if teacher["size_mb"]:
        axis.scatter(teacher["size_mb"], 100, marker="s", s=70, label="teacher")
        if teacher["accuracy"] is not None:
            axis.scatter(teacher["size_mb"], 100 * teacher["accuracy"], marker="s", s=70, facecolors="none",
                         edgecolors="black", label="teacher accuracy")
    axis.set(xscale="log", xlabel="model size (MB, log)", ylabel="%", ylim=(0, 105), title="chain: fidelity vs size")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
