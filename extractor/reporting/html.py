"""report.html: the report as one self-contained page (inline CSS, images as data URIs, no network) that a
browser opens from disk, written beside report.md from the same data as report.json.

Every figure of the summary sits in an element with ``data-key`` (its dotted path in report.json, e.g.
``student.latency_ms.1``) and ``data-value`` (the JSON value), so a test can compare the page with
report.json; sections have ids (``summary``, ``training``, ``confusion``, ``per-class``, ``gallery``,
``invariance``, ``size``). A small inline script records, once the page has loaded, each image's
``naturalWidth`` in ``data-natural-width`` and the count of loaded images on ``<body>``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from extractor.reporting import html_page as markup
from extractor.reporting.disagreements import GALLERY_CAP, find_disagreements
from extractor.reporting.html_figures import fidelity_against_queries, fidelity_against_size, training_curves
from extractor.result import Result
from extractor.run_dir import METRICS_FILE, RunDir

HTML_FILE = "report.html"
COMPARISON_FILE = "comparison.html"
JOB_FILE = "job.toml"

SUMMARY_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("fidelity", "fidelity (top-1 agreement with the teacher, held out)", "%"),
    ("accuracy", "accuracy (against ground truth)", "%"),
    ("kappa", "Cohen's kappa (agreement beyond chance)", ".3f"),
    ("macro_agreement", "macro agreement (mean over the teacher's classes)", "%"),
    ("majority_baseline", "majority baseline (always the teacher's most frequent answer)", "%"),
    ("teacher_self_agreement.value", "teacher self-agreement (one-pixel shift)", "%"),
    ("ceiling_share", "share of that ceiling reached", "%"),
    ("compression", "compression (teacher size / student size)", ".1fx"),
    ("queries", "teacher queries (answers trained on)", ","),
    ("probe_queries", "invariance probe queries", ","),
    ("ledger.images_sent", "images sent (every attempt)", ","),
    ("ledger.cost", "cost of the queries", ",.2f"),
    ("eval_images", "held-out images", ","),
)
"""(report.json key, what it is, format) of the figures under the model table."""


def write_html(run_dir: Path, result: Result, peers: Sequence[Path] = ()) -> Result:
    """Writes ``run_dir/report.html`` from ``result.data`` (report.json's content) and returns ``result``.

    With ``peers`` (the runs of one `extractor report RUN1 RUN2 ...`), the last of them to be reported also
    writes the comparison page ``comparison.html`` into the first's directory, beside comparison.md.
    """
    data = result.data
    page = _chain_page(run_dir, data) if "chain" in data else _run_page(run_dir, data)
    (run_dir / HTML_FILE).write_text(page, encoding="utf-8")
    runs = list(dict.fromkeys(peers))
    if len(runs) > 1 and run_dir == runs[-1]:
        write_comparison(runs, runs[0] / COMPARISON_FILE)
    return result


# --- one run ----------------------------------------------------------------------------------------------

def _run_page(run_dir: Path, data: dict) -> str:
    directory = RunDir(run_dir)
    run = directory.run()
    heldout = directory.heldout()
    names = [row["class"] for row in data["per_class"]]
    records = _metrics(run_dir)
    total, shown = find_disagreements(run, heldout)
    curves = training_curves([(run_dir.name, records)])
    sections = [
        markup.header(f"extractor report: {run_dir}", [
            f"teacher {markup.escape(data['teacher'].get('kind') or 'black box')} {markup.escape(data['teacher']['fingerprint'][:12])}",
            f"student {markup.escape(data['student']['architecture'])} ({markup.escape(data['student']['input'])})",
            f"trained on {markup.escape(data.get('targets'))} targets, {data['eval_images']:,} held-out images"]),
        markup.section("summary", "Summary", _models_table(data) + _figures_table(data)),
        markup.section("training", "Training", markup.image(curves, "fidelity and loss during training") if curves
                 else '<p class="note">no held-out evaluation in metrics.jsonl</p>'),
        markup.section("confusion", "Confusion matrix: teacher (rows) against student (columns), held out",
                 _confusion(heldout, names)),
        markup.section("per-class", "Per-class agreement (held out, by the teacher's answer)", _per_class(data)),
        markup.section("gallery", f"Disagreements: {total:,} held-out images", _gallery(total, shown, names),
                 {"data-disagreements": total, "data-shown": len(shown), "data-cap": GALLERY_CAP}),
        markup.section("invariance", "Invariance probe", _invariance(data)),
        markup.section("size", "Fidelity against size and queries", _size_section(data)),
        _config(run_dir),
    ]
    return markup.page(f"report: {run_dir.name}", sections)


def _models_table(data: dict) -> str:
    rows = []
    for model in ("teacher", "student"):
        entry = data[model]
        latency = entry.get("latency_ms") or {}
        b1_key = "1" if "1" in latency or "image_p50" not in latency else "image_p50"
        fidelity = (markup.cell(None, 1.0, "%") if model == "teacher" else markup.cell("fidelity", data.get("fidelity"), "%"))
        rows.append(f'<tr data-model="{model}"><td class="name">{model}</td>'
                    + markup.cell(f"{model}.size_mb", entry.get("size_mb"), ".3f")
                    + markup.cell(f"{model}.params", entry.get("params"), ",")
                    + markup.cell(f"{model}.latency_ms.{b1_key}", latency.get(b1_key), ".3f",
                            suffix=" (HTTP p50)" if b1_key == "image_p50" else "")
                    + markup.cell(f"{model}.latency_ms.64", latency.get("64"), ".3f")
                    + fidelity + markup.cell(f"{model}.accuracy", entry.get("accuracy"), "%") + "</tr>")
    for index, entry in enumerate(data.get("widths", [])):
        latency = entry.get("latency_ms") or {}
        rows.append(f'<tr data-model="width {entry["width"]}"><td class="name">student w{entry["width"]}</td>'
                    + markup.cell(f"widths.{index}.size_mb", entry.get("size_mb"), ".3f")
                    + markup.cell(f"widths.{index}.params", entry.get("params"), ",")
                    + markup.cell(f"widths.{index}.latency_ms.1", latency.get("1"), ".3f")
                    + markup.cell(f"widths.{index}.latency_ms.64", latency.get("64"), ".3f")
                    + markup.cell(f"widths.{index}.fidelity", entry.get("fidelity"), "%")
                    + markup.cell(f"widths.{index}.accuracy", entry.get("accuracy"), "%") + "</tr>")
    head = ("<tr><th class=name>model</th><th>size (MB)</th><th>params</th><th>latency b1 (ms/img)</th>"
            "<th>latency b64 (ms/img)</th><th>fidelity</th><th>accuracy</th></tr>")
    return f'<table id="models">{head}{"".join(rows)}</table>'


def _figures_table(data: dict) -> str:
    rows = [f'<tr><td class="name">{markup.escape(label)}</td>{markup.cell(key, markup.lookup(data, key), spec)}</tr>'
            for key, label, spec in SUMMARY_FIGURES]
    return f'<table id="figures">{"".join(rows)}</table>'


def _confusion(heldout: pd.DataFrame, names: list[str]) -> str:
    if heldout.empty:
        return '<p class="note">no held-out images</p>'
    counts = pd.crosstab(heldout["teacher_label"], heldout["student_label"]).reindex(
        index=range(len(names)), columns=range(len(names)), fill_value=0)
    head = "<tr><th class=name>teacher \\ student</th>" + "".join(f"<th>{markup.escape(n)}</th>" for n in names) + "</tr>"
    rows = []
    for t, name in enumerate(names):
        total = int(counts.loc[t].sum())
        cells = []
        for s in range(len(names)):
            count = int(counts.loc[t, s])
            shade = 0.0 if total == 0 else count / total
            colour = f"rgba(76,120,168,{0.85 * shade:.2f})"
            cells.append(f'<td class="{"diag" if s == t else ""}" data-teacher="{t}" data-student="{s}" '
                         f'data-count="{count}" style="background:{colour}">{count}</td>')
        rows.append(f'<tr><th class="name">{markup.escape(name)}</th>{"".join(cells)}</tr>')
    return f'<table id="confusion-matrix">{head}{"".join(rows)}</table>'


def _per_class(data: dict) -> str:
    rows = []
    for index, row in enumerate(data["per_class"]):
        value = row["agreement"]
        bar = f'<span class="bar" style="width:{120 * value:.0f}px"></span>' if value is not None else ""
        rows.append(f'<tr><td class="name">{markup.escape(row["class"])}</td><td>{row["images"]:,}</td>'
                    f'<td class="name" data-key="per_class.{index}.agreement" data-value="{markup.json_value(value)}">'
                    f'{bar}{markup.format_value(value, "%")}</td></tr>')
    return ('<table id="per-class-table"><tr><th class=name>teacher class</th><th>held-out images</th>'
            f'<th class=name>agreement</th></tr>{"".join(rows)}</table>')


def _gallery(total: int, shown: list, names: list[str]) -> str:
    if not total:
        return '<p class="note">the student agrees with the teacher on every held-out image</p>'
    figures = []
    for item in shown:
        picture = (f'<img src="{item.thumbnail}" alt="{markup.escape(item.relative_path)}">' if item.thumbnail
                   else '<div class="missing">image not found</div>')
        confidence = markup.format_value(item.teacher_confidence, "%")
        figures.append(
            f'<figure class="disagreement" data-digest="{item.digest}" data-teacher="{item.teacher_label}" '
            f'data-student="{item.student_label}" data-confidence="{markup.json_value(item.teacher_confidence)}">{picture}'
            f'<figcaption>teacher <b>{markup.escape(markup.class_name(names, item.teacher_label))}</b> ({confidence})<br>'
            f'student <b>{markup.escape(markup.class_name(names, item.student_label))}</b><br>'
            f'<span class="note">{markup.escape(item.relative_path)}</span></figcaption></figure>')
    note = (f'<p class="note">the {len(shown)} of {total:,} on which the teacher was most confident</p>'
            if total > len(shown) else "")
    return note + f'<div class="gallery">{"".join(figures)}</div>'


def _invariance(data: dict) -> str:
    ceiling = data.get("teacher_self_agreement")
    lines = [f'<p>The teacher agrees with itself under a one-pixel shift on <b>{markup.format_value(ceiling["value"], "%")}</b> of '
             f'{ceiling["images"]} probed images: no student can be expected to agree with it more.</p>'
             if ceiling else '<p class="note">no invariance probe: the teacher against itself is unknown</p>']
    probe = data.get("invariance")
    if probe:
        rows = "".join(f'<tr><td class="name">{markup.escape(name)}</td>'
                       f'{markup.cell(f"invariance.{name}.changed", entry["changed"], "%")}'
                       f'<td class="name">{markup.escape(entry["policy"] or "probe only")}</td></tr>'
                       for name, entry in probe.items())
        lines.append('<table id="invariance-table"><tr><th class=name>augmentation</th>'
                     f'<th>teacher\'s answer changed</th><th class=name>training used it</th></tr>{rows}</table>')
    return "".join(lines)


def _size_section(data: dict) -> str:
    teacher = data["teacher"]
    points = []
    if teacher.get("size_mb"):
        points.append({"label": "teacher", "group": "teacher", "size_mb": teacher["size_mb"], "fidelity": 1.0})
    points.append({"label": data["student"]["architecture"], "group": "student",
                   "size_mb": data["student"]["size_mb"], "fidelity": data.get("fidelity")})
    points += [{"label": f"w{entry['width']}", "group": "slimmable widths", "size_mb": entry["size_mb"],
                "fidelity": entry["fidelity"]} for entry in data.get("widths", [])]
    parts = []
    variants = data.get("variants") or []
    if variants:
        points += [{"label": row["variant"], "group": "quantized variants", "size_mb": row["size_bytes"] / 1e6,
                    "fidelity": row["fidelity"]} for row in variants]
        rows = "".join(f'<tr><td class="name">{markup.escape(row["variant"])}</td>'
                       f'<td>{row["bits"]}/{row["activation_bits"]}</td>'
                       f'{markup.cell(f"variants.{i}.size_bytes", row["size_bytes"], ",")}'
                       f'{markup.cell(f"variants.{i}.fidelity", row["fidelity"], "%")}'
                       f'{markup.cell(f"variants.{i}.agreement_with_fp32", row["agreement_with_fp32"], "%")}'
                       f'{markup.cell(f"variants.{i}.accuracy", row["accuracy"], "%")}</tr>'
                       for i, row in enumerate(variants))
        parts.append('<table id="variants"><tr><th class=name>variant</th><th>bits (w/a)</th><th>size (bytes)</th>'
                     f'<th>fidelity</th><th>agreement with fp32</th><th>accuracy</th></tr>{rows}</table>')
    rounds = [row for row in data.get("rounds") or [] if row.get("queries") and row.get("fidelity") is not None]
    size_plot = fidelity_against_size(points)
    queries_plot = fidelity_against_queries(
        data.get("efficiency") or [{"run": f"round {i}", "queries": row["queries"], "fidelity": row["fidelity"],
                                    "this": i == len(rounds) - 1} for i, row in enumerate(rounds)],
        (data.get("teacher_self_agreement") or {}).get("value"))
    parts += [markup.image(size_plot, "fidelity against size") if size_plot else "",
              markup.image(queries_plot, "fidelity against queries") if queries_plot else ""]
    if not size_plot and not queries_plot:
        parts.append('<p class="note">one model and one run: report variants (`extractor quantize`), slimmable '
                     "widths, or several runs (`extractor report RUN1 RUN2`) to compare sizes and queries</p>")
    return "".join(parts)


def _config(run_dir: Path) -> str:
    job = run_dir / JOB_FILE
    if not job.is_file():
        return ""
    return markup.section("config", "Configuration (job.toml)",
                    f"<pre>{markup.escape(job.read_text(encoding='utf-8'))}</pre>"
                    f'<p class="note">extractor train --config {markup.escape(str(job))} --out NEW_RUN repeats the run</p>')


# --- a chain ----------------------------------------------------------------------------------------------

def _chain_page(chain_dir: Path, data: dict) -> str:
    teacher = data["teacher"]
    head = ("<tr><th class=name>link</th><th class=name>student</th><th class=name>parent</th><th>size (MB)</th>"
            "<th>params</th><th>fidelity to the teacher</th><th>to its parent</th><th>accuracy</th>"
            "<th>train min</th></tr>")
    rows = [(f'<tr data-model="teacher"><td class="name">teacher</td><td class="name">black box</td><td></td>'
             f'{markup.cell("teacher.size_mb", teacher.get("size_mb"), ".3f")}'
             f'{markup.cell("teacher.params", teacher.get("params"), ",")}{markup.cell(None, 1.0, "%")}<td></td>'
             f'{markup.cell("teacher.accuracy", teacher.get("accuracy"), "%")}<td></td></tr>')]
    for i, row in enumerate(data["chain"]):
        stop = " (stop)" if row["stop"] else ""
        rows.append(f'<tr data-model="link {row["link"]}"><td class="name">{row["link"]}{stop}'
                    f'</td><td class="name">{markup.escape(row["architecture"])} w{row["width"]}</td>'
                    f'<td class="name">{markup.escape(row["parent"])}</td>{markup.cell(f"chain.{i}.size_mb", row["size_mb"], ".3f")}'
                    f'{markup.cell(f"chain.{i}.params", row["params"], ",")}'
                    f'{markup.cell(f"chain.{i}.fidelity", row["fidelity"], "%")}'
                    f'{markup.cell(f"chain.{i}.fidelity_to_parent", row["fidelity_to_parent"], "%")}'
                    f'{markup.cell(f"chain.{i}.accuracy", row["accuracy"], "%")}'
                    f'{markup.cell(f"chain.{i}.train_minutes", row["train_minutes"], ".1f")}</tr>')
    points = ([{"label": "teacher", "group": "teacher", "size_mb": teacher["size_mb"], "fidelity": 1.0}]
              if teacher.get("size_mb") else [])
    points += [{"label": f"{row['link']}: {row['architecture']} w{row['width']}", "group": "chain links",
                "size_mb": row["size_mb"], "fidelity": row["fidelity"]} for row in data["chain"]]
    size_plot = fidelity_against_size(points)
    curves = training_curves([(f"link {row['link']}", _metrics(chain_dir / row["dir"])) for row in data["chain"]])
    sections = [
        markup.header(f"extractor chain report: {chain_dir}", [
            (f"{len(data['chain'])} of {data['links_planned']} links trained ({markup.escape(data['status'])}); fidelity on "
             f"{data['eval_images']:,} held-out images, always to the original black box")]),
        markup.section("summary", "Links", f'<table id="models">{head}{"".join(rows)}</table>'),
        markup.section("size", "Fidelity against size", markup.image(size_plot, "fidelity against size") if size_plot else ""),
        markup.section("training", "Training, link by link", markup.image(curves, "training curves") if curves else ""),
    ]
    return markup.page(f"chain report: {chain_dir.name}", sections)


# --- several runs -----------------------------------------------------------------------------------------

def write_comparison(run_dirs: Sequence[Path], out: Path) -> Path:
    """One page for several reported runs: their figures side by side, fidelity against queries and size,
    and their training curves, with a link to each run's own report.html."""
    reports = [(run_dir, json.loads((run_dir / "report.json").read_text())) for run_dir in run_dirs]
    columns = (("student.architecture", "student", "s"), ("student.size_mb", "size (MB)", ".3f"),
               ("queries", "queries", ","), ("probe_queries", "probe queries", ","), ("fidelity", "fidelity", "%"),
               ("accuracy", "accuracy", "%"), ("kappa", "kappa", ".3f"), ("majority_baseline", "majority", "%"),
               ("teacher_self_agreement.value", "teacher self-agreement", "%"), ("ceiling_share", "of ceiling", "%"))
    head = "<tr><th class=name>run</th>" + "".join(f"<th>{label}</th>" for _, label, _ in columns) + "</tr>"
    rows, points, sizes = [], [], []
    for index, (run_dir, data) in enumerate(reports):
        if "chain" in data:
            continue
        link = os.path.relpath(run_dir / HTML_FILE, out.parent)
        rows.append(f'<tr data-run="{markup.escape(str(run_dir))}"><td class="name"><a href="{markup.escape(link)}">'
                    f'{markup.escape(str(run_dir))}</a></td>'
                    + "".join(markup.cell(f"{index}.{key}", markup.lookup(data, key), spec) for key, _, spec in columns) + "</tr>")
        points.append({"run": run_dir.name, "queries": (data.get("queries") or 0) + (data.get("probe_queries") or 0),
                       "fidelity": data.get("fidelity"), "this": False})
        sizes.append({"label": run_dir.name, "group": "runs", "size_mb": data["student"].get("size_mb"),
                      "fidelity": data.get("fidelity")})
    queries_plot = fidelity_against_queries(points)
    size_plot = fidelity_against_size(sizes)
    curves = training_curves([(run_dir.name, _metrics(run_dir)) for run_dir, data in reports if "chain" not in data])
    sections = [
        markup.header("extractor comparison", [f"{len(reports)} runs; each one's own report is linked"]),
        markup.section("summary", "Runs", f'<table id="runs">{head}{"".join(rows)}</table>'),
        markup.section("size", "Fidelity against queries and size",
                 (markup.image(queries_plot, "fidelity against queries") if queries_plot else "")
                 + (markup.image(size_plot, "fidelity against size") if size_plot else "")),
        markup.section("training", "Training", markup.image(curves, "training curves") if curves else ""),
    ]
    out.write_text(markup.page("comparison", sections), encoding="utf-8")
    return out


# --- pieces -----------------------------------------------------------------------------------------------

def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
