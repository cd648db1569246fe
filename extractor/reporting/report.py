"""What the user got: size, latency, fidelity and accuracy of teacher vs student, as tables and a plot."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from extractor.reporting.agreement import agreement_metrics
from extractor.reporting.answer_format import answer_format_lines, run_answer_format
from extractor.reporting.chain_report import build_chain_report
from extractor.reporting.compare import efficiency_points
from extractor.reporting.html import write_html
from extractor.errors import ConfigError
from extractor.reporting.profile import ModelProfile, profile_onnx
from extractor.reporting.remote_profile import remote_profile
from extractor.result import Result
from extractor.reporting.variants import find_variants, variant_rows, variants_markdown
from extractor.run_dir import RunDir

log = logging.getLogger(__name__)

BATCH_SIZES = (1, 64)


def build_report(run_dir: Path, *, ground_truth: Mapping[str, str] | None = None,
                 class_names: Sequence[str] | None = None, price_per_1000: float | None = None,
                 peers: Sequence[Path] = ()) -> Result:
    """Measures a trained run and writes report.json, report.csv, report.md and report.png.

    Args:
        run_dir: a directory written by `extractor train`, or by `extractor chain` (``chain_report``).
        ground_truth: true class name by image relative path (or file name); accuracy is
            reported where it is given, else null.
        class_names: names of the teacher's class indices (default: the teacher's own, else "0", "1", ...).
        price_per_1000: the teacher's price per 1000 images sent, for the cost of the queries.
        peers: other runs reported with this one; those of the same teacher and preprocessing are points of
            report.png's query-efficiency panel.
    """
    if RunDir(run_dir).is_chain:
        return write_html(run_dir, build_chain_report(run_dir, teacher_profile=_teacher_profile, accuracy=lambda run, heldout, column: _accuracy(
            heldout[column], _truth_column(heldout, ground_truth), _class_names(run, class_names))))
    run = RunDir(run_dir).run()
    heldout = RunDir(run_dir).heldout()
    names = _class_names(run, class_names)
    student = profile_onnx(run_dir / "student.onnx", input_size=run["student"]["size"], batch_sizes=BATCH_SIZES)
    teacher = _teacher_profile(run)
    agree = heldout["student_label"] == heldout["teacher_label"]
    truth = _truth_column(heldout, ground_truth)
    data = {
        "run": str(run_dir),
        "teacher": {**_profile_dict(teacher), "fingerprint": run["teacher"]["fingerprint"],
                    "kind": run["teacher"].get("type"), "accuracy": _accuracy(heldout["teacher_label"], truth, names)},
        "student": {**_profile_dict(student), "architecture": run["student"]["architecture"],
                    "input": f"{run['student']['size']}px {run['student']['channels']}",
                    "accuracy": _accuracy(heldout["student_label"], truth, names)},
        "compression": (teacher.size_mb / student.size_mb) if teacher else None,
        "fidelity": float(agree.mean()) if len(heldout) else None,
        "accuracy": _accuracy(heldout["student_label"], truth, names),
        "eval_images": int(len(heldout)),
        "ground_truth_images": int(truth.notna().sum()) if truth is not None else 0,
        "queries": run["queries"],
        "targets": run["config"]["targets"],
        "per_class": _per_class(heldout, names),
        **agreement_metrics(heldout["teacher_label"], heldout["student_label"], run.get("invariance"),
                            run.get("augment_policy")),
        "views": run.get("views", 1), "probe_queries": run.get("probe_queries", 0),
        "efficiency": efficiency_points(run_dir, peers) if peers else [],
        "onnx_max_abs_diff": run["onnx_max_abs_diff"],
        **({"widths": _widths(run_dir, run, heldout, truth, names)} if "widths" in run else {}),
        "ledger": remote_profile(run, price_per_1000),
        "answer_format": run_answer_format(run),
    }
    if run["teacher"].get("type") == "http" and data["ledger"]:  # no model file to time: its requests were timed
        data["teacher"]["latency_ms"] = data["ledger"]["latency_ms"]
    if find_variants(run_dir):
        data["variants"] = variant_rows(run_dir, run, heldout, data["student"]["latency_ms"],
                                        lambda predicted: _accuracy(predicted, truth, names), BATCH_SIZES)
    (run_dir / "report.json").write_text(json.dumps(data, indent=2))
    table = _table(data)
    table.to_csv(run_dir / "report.csv", index=False)
    markdown = _markdown(data, table) + (variants_markdown(data["variants"]) if "variants" in data else "")
    (run_dir / "report.md").write_text(markdown)
    _plot(data, run_dir / "report.png")
    return write_html(run_dir, Result(data, markdown), peers)  # report.html from the same data


def _class_names(run: dict, class_names: Sequence[str] | None) -> list[str]:
    names = list(class_names or run["teacher"].get("class_names") or map(str, range(run["num_classes"])))
    if len(names) != run["num_classes"]:
        raise ConfigError(f"--classes names {len(names)} classes, the teacher has {run['num_classes']}")
    return names


def _teacher_profile(run: dict) -> ModelProfile | None:
    teacher = run["teacher"]
    if teacher.get("type") != "onnx":
        log.info("a %s teacher has no model file here: its size and latency are not reported", teacher.get("type"))
        return None
    path = Path(teacher["path"])
    if not path.exists():
        log.warning("the teacher's model file %s is gone: its size and latency are not reported", path)
        return None
    return profile_onnx(path, input_size=run["teacher_input_size"], batch_sizes=BATCH_SIZES)


def _profile_dict(profile: ModelProfile | None) -> dict:
    if profile is None:
        return {"size_mb": None, "params": None, "latency_ms": None}
    return {"size_mb": profile.size_mb, "params": profile.params,
            "latency_ms": {str(batch): ms for batch, ms in profile.latency_ms.items()}}


def _truth_column(heldout: pd.DataFrame, ground_truth: Mapping[str, str] | None) -> pd.Series | None:
    if ground_truth is None:
        return None
    by_name = {Path(key).name: value for key, value in ground_truth.items()}
    return pd.Series([ground_truth.get(path, by_name.get(Path(path).name)) for path in heldout["relative_path"]],
                     index=heldout.index, dtype=object)


def _accuracy(predicted: pd.Series, truth: pd.Series | None, names: Sequence[str]) -> float | None:
    if truth is None or truth.notna().sum() == 0:
        return None
    known = truth.notna()
    return float((predicted[known].map(lambda index: names[int(index)]) == truth[known].astype(str)).mean())


def _widths(run_dir: Path, run: dict, heldout: pd.DataFrame, truth: pd.Series | None,
            names: Sequence[str]) -> list[dict]:
    """One entry per width of a slimmable run: its own ONNX file measured, its held-out predictions scored."""
    predictions = pd.read_csv(run_dir / "heldout_widths.csv", dtype={"relative_path": str})
    if list(predictions["relative_path"]) != list(heldout["relative_path"]):
        raise ConfigError(f"{run_dir}/heldout_widths.csv does not match heldout.csv; train the run again")
    rows = []
    for entry in run["widths"]:
        profile = profile_onnx(run_dir / entry["onnx"], input_size=run["student"]["size"], batch_sizes=BATCH_SIZES)
        predicted = predictions[f"w{float(entry['width'])}"]
        rows.append({"width": entry["width"], **_profile_dict(profile),
                     "fidelity": float((predicted == heldout["teacher_label"]).mean()) if len(heldout) else None,
                     "accuracy": _accuracy(predicted, truth, names)})
    return rows


def _per_class(heldout: pd.DataFrame, names: Sequence[str]) -> list[dict]:
    rows = []
    for index, name in enumerate(names):
        of_class = heldout[heldout["teacher_label"] == index]
        rows.append({"class": name, "images": int(len(of_class)),
                     "agreement": float((of_class["student_label"] == index).mean()) if len(of_class) else None})
    return rows


def _table(data: dict) -> pd.DataFrame:
    rows = []
    for model in ("teacher", "student"):
        entry = data[model]
        latency = entry["latency_ms"] or {}
        rows.append({"model": model, "size_mb": entry["size_mb"], "params": entry["params"],
                     "latency_ms_b1": latency.get("1"), "latency_ms_b64": latency.get("64"),
                     "latency_ms_p50": latency.get("image_p50"), "latency_ms_p95": latency.get("image_p95"),
                     "fidelity": 1.0 if model == "teacher" else data["fidelity"], "accuracy": entry["accuracy"],
                     **_chance_columns(data, model)})
    for entry in data.get("widths", []):
        latency = entry["latency_ms"]
        rows.append({"model": f"student w{entry['width']}", "size_mb": entry["size_mb"], "params": entry["params"],
                     "latency_ms_b1": latency.get("1"), "latency_ms_b64": latency.get("64"),
                     "fidelity": entry["fidelity"], "accuracy": entry["accuracy"]})
    return pd.DataFrame(rows)


def _chance_columns(data: dict, model: str) -> dict:
    """The CSV's chance and ceiling columns of one model row (the teacher agrees with itself fully)."""
    ceiling = data.get("teacher_self_agreement") or {}
    return {"majority_baseline": data.get("majority_baseline"),
            "macro_agreement": 1.0 if model == "teacher" else data.get("macro_agreement"),
            "kappa": 1.0 if model == "teacher" else data.get("kappa"),
            "teacher_self_agreement": ceiling.get("value")}


def _truth_lines(data: dict) -> list[str]:
    """Markdown: fidelity against chance, the teacher's own consistency, and what the probe found."""
    lines = [f"- chance: always answering the teacher's most frequent class agrees on "
             f"{_fmt(data.get('majority_baseline'), '.1%')} (majority baseline); macro agreement (mean over the "
             f"teacher's classes) {_fmt(data.get('macro_agreement'), '.1%')}; Cohen's kappa {_fmt(data.get('kappa'))}"]
    ceiling = data.get("teacher_self_agreement")
    if ceiling:
        lines.append(f"- ceiling: the teacher agrees with itself under a one-pixel shift on {ceiling['value']:.1%} "
                     f"of {ceiling['images']} probed images; the student's fidelity is "
                     f"{_fmt(data.get('ceiling_share'), '.0%')} of it")
    else:
        lines.append("- ceiling: n/a (no invariance probe: the teacher vs itself under a one-pixel shift is unknown)")
    if data.get("invariance"):
        lines += ["", "| augmentation | teacher's answer changed | used |", "|---|---:|---|"]
        lines += [f"| {name} | {_fmt(entry['changed'], '.1%')} | {entry['policy'] or 'probe only'} |"
                  for name, entry in data["invariance"].items()]
    return lines


def _fmt(value: object, spec: str = ".2f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, spec)


def _markdown(data: dict, table: pd.DataFrame) -> str:
    lines = ["| model | size (MB) | params | latency b1 (ms/img) | latency b64 (ms/img) | fidelity | accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in table.itertuples():
        b1 = _fmt(row.latency_ms_b1, ".3f")
        if pd.notna(row.latency_ms_p50):  # a remote teacher, timed by its requests
            b1 = f"{row.latency_ms_p50:.2f} p50, {row.latency_ms_p95:.2f} p95 (HTTP)"
        lines.append(f"| {row.model} | {_fmt(row.size_mb)} | {_fmt(row.params, ',')} | {b1}"
                     f" | {_fmt(row.latency_ms_b64, '.3f')} | {_fmt(row.fidelity, '.1%')} | {_fmt(row.accuracy, '.1%')} |")
    lines += ["", f"- fidelity: top-1 agreement with the teacher on {data['eval_images']} held-out images",
              f"- compression: the student is {_fmt(data['compression'], '.1f')}x smaller than the teacher; "
              f"{data['queries']} teacher answers used",
              *([_ledger_line(data["ledger"])] if data.get("ledger") else []),
              *answer_format_lines(data.get("answer_format")),
              f"- accuracy: against ground truth for {data['ground_truth_images']} held-out images"
              if data["ground_truth_images"] else "- accuracy: n/a (no ground truth given)",
              *_truth_lines(data),
              "", "| class | held-out images | agreement |", "|---|---:|---:|"]
    lines += [f"| {row['class']} | {row['images']} | {_fmt(row['agreement'], '.1%')} |" for row in data["per_class"]]
    return "\n".join(lines) + "\n"


def _ledger_line(ledger: dict) -> str:
    line = (f"- queries: {ledger['images_sent']:,} images sent in {ledger['requests']:,} requests "
            f"({ledger['retries']} retries, {ledger['failed_requests']} failed)")
    if ledger["latency_ms"]:
        latency = ledger["latency_ms"]
        line += f"; {latency['request_p50']:.1f} ms p50, {latency['request_p95']:.1f} ms p95 per request"
    if ledger["cost"] is not None:
        line += f"; cost {ledger['cost']:,.2f} at {ledger['price_per_1000']:g} per 1000 images"
    return line


def _plot_efficiency(axis: object, points: list[dict], ceiling: dict | None) -> None:
    """Fidelity against the teacher queries each run cost (runs of one teacher and preprocessing)."""
    for point in sorted(points, key=lambda p: p["queries"]):
        axis.scatter(point["queries"], 100 * point["fidelity"], s=80 if point["this"] else 40,
                     marker="o" if point["this"] else "x")
        axis.annotate(point["run"], (point["queries"], 100 * point["fidelity"]), textcoords="offset points",
                      xytext=(4, 4), fontsize=7)
    if ceiling:
        axis.axhline(100 * ceiling["value"], linestyle="--", color="grey", label="teacher vs itself (1 px)")
        axis.legend(loc="lower right", fontsize=8)
    axis.set(xscale="log", xlabel="teacher queries (log)", ylabel="held-out fidelity (%)",
             title="query efficiency (one point per run)")


def _plot(data: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    efficiency = data.get("efficiency") or []
    figure, axes = plt.subplots(1, 3 if efficiency else 2, figsize=(16.5 if efficiency else 11, 4))
    left, right = axes[0], axes[1]
    for model, marker in (("teacher", "s"), ("student", "o")):
        size = data[model]["size_mb"]
        if size is None:
            continue
        left.scatter(size, 100 * (1.0 if model == "teacher" else data["fidelity"]), marker=marker, s=80,
                     label=f"{model} fidelity")
        if data[model]["accuracy"] is not None:
            left.scatter(size, 100 * data[model]["accuracy"], marker=marker, s=80, facecolors="none",
                         edgecolors="black", label=f"{model} accuracy")
    widths = data.get("widths", [])
    if widths:
        sizes = [entry["size_mb"] for entry in widths]
        left.plot(sizes, [100 * entry["fidelity"] for entry in widths], "-^", label="widths: fidelity")
        for entry, size in zip(widths, sizes, strict=True):
            left.annotate(f"w{entry['width']}", (size, 100 * entry["fidelity"]), textcoords="offset points",
                          xytext=(4, -12), fontsize=8)
        if widths[0]["accuracy"] is not None:
            left.plot(sizes, [100 * entry["accuracy"] for entry in widths], "--^", mfc="none", label="widths: accuracy")
    left.set(xscale="log", xlabel="model size (MB, log)", ylabel="%", ylim=(0, 105),
             title="size vs fidelity / accuracy")
    left.legend(loc="lower right", fontsize=8)
    classes = [row for row in data["per_class"] if row["images"]]
    right.bar([row["class"] for row in classes], [100 * row["agreement"] for row in classes])
    right.set(ylabel="agreement with teacher (%)", ylim=(0, 105), title="per-class agreement (held-out)")
    right.tick_params(axis="x", rotation=45)
    if efficiency:
        _plot_efficiency(axes[2], efficiency, data.get("teacher_self_agreement"))
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
