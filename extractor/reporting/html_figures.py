"""report.html's plots, each drawn with matplotlib and returned as a ``data:image/png;base64`` URI, so the
page is one file that needs no network and no file beside it."""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence

SizePoint = dict
"""``{"label", "group", "size_mb", "fidelity"}``: one model in a fidelity-against-size plot."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _data_uri(figure: object) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def training_curves(runs: Sequence[tuple[str, list[dict]]]) -> str | None:
    """Held-out fidelity (and accuracy, where known) at each evaluation, and the training loss, against the
    optimizer step, with the epochs on a second axis; one line per run of ``(name, metrics.jsonl records)``."""
    runs = [(name, records) for name, records in runs if any(r.get("split") == "heldout" for r in records)]
    if not runs:
        return None
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, records in runs:
        held = [r for r in records if r.get("split") == "heldout" and r.get("fidelity") is not None]
        label = f"{name}: " if len(runs) > 1 else ""
        left.plot([r["step"] for r in held], [100 * r["fidelity"] for r in held], "-o", ms=4,
                  label=f"{label}fidelity")
        if any(r.get("accuracy") is not None for r in held):
            left.plot([r["step"] for r in held if r.get("accuracy") is not None],
                      [100 * r["accuracy"] for r in held if r.get("accuracy") is not None], "--s", ms=4,
                      mfc="none", label=f"{label}accuracy")
        train = [r for r in records if r.get("split") == "train" and r.get("loss") is not None]
        right.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label=name)
    left.set(xlabel="optimizer step", ylabel="held-out %", title="fidelity to the teacher during training")
    left.legend(loc="lower right", fontsize=8)
    if len(runs) == 1:  # the epochs of one run on the top axis, at the steps their evaluations were taken
        held = [r for r in runs[0][1] if r.get("split") == "heldout"]
        top = left.twiny()
        top.set_xlim(left.get_xlim())
        every = max(1, len(held) // 12)
        top.set_xticks([r["step"] for r in held][::every], [str(r["epoch"]) for r in held][::every])
        top.set_xlabel("epoch", fontsize=8)
    right.set(xlabel="optimizer step", ylabel="loss", title="training loss")
    if len(runs) > 1:
        right.legend(fontsize=8)
    return _data_uri(figure)


def fidelity_against_size(points: Sequence[SizePoint]) -> str | None:
    """Fidelity against model size (log scale): one line per group (widths, variants, chain links)."""
    points = [p for p in points if p.get("size_mb") and p.get("fidelity") is not None]
    if len(points) < 2:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for group in dict.fromkeys(p["group"] for p in points):
        members = sorted((p for p in points if p["group"] == group), key=lambda p: p["size_mb"])
        axis.plot([p["size_mb"] for p in members], [100 * p["fidelity"] for p in members],
                  "s" if group == "teacher" else "-o", ms=7 if group == "teacher" else 5, label=group)
        for point in members:
            axis.annotate(point["label"], (point["size_mb"], 100 * point["fidelity"]), textcoords="offset points",
                          xytext=(4, 5), fontsize=7)
    axis.set(xscale="log", xlabel="model size (MB, log)", ylabel="held-out fidelity (%)",
             title="fidelity against size")
    axis.legend(loc="best", fontsize=8)
    return _data_uri(figure)


def fidelity_against_queries(points: Sequence[dict], ceiling: float | None = None) -> str | None:
    """Fidelity against the teacher queries each run cost (``{"run", "queries", "fidelity", "this"}``)."""
    points = [p for p in points if p.get("queries") and p.get("fidelity") is not None]
    if len(points) < 2:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for point in sorted(points, key=lambda p: p["queries"]):
        axis.scatter(point["queries"], 100 * point["fidelity"], s=70 if point.get("this") else 40,
                     marker="o" if point.get("this") else "x")
        axis.annotate(point["run"], (point["queries"], 100 * point["fidelity"]), textcoords="offset points",
                      xytext=(4, 4), fontsize=7)
    if ceiling is not None:
        axis.axhline(100 * ceiling, linestyle="--", color="grey", label="teacher vs itself (1 px)")
        axis.legend(loc="lower right", fontsize=8)
    axis.set(xscale="log", xlabel="teacher queries (log)", ylabel="held-out fidelity (%)",
             title="fidelity against queries")
    return _data_uri(figure)
