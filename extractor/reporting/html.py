"""report.html: the report as one self-contained page (inline CSS, images as data URIs, no network) that a
browser opens from disk, written beside report.md from the same data as report.json.

Every figure of the summary sits in an element with ``data-key`` (its dotted path in report.json, e.g.
``student.latency_ms.1``) and ``data-value`` (the JSON value), so a test can compare the page with
report.json; sections have ids (``summary``, ``training``, ``confusion``, ``per-class``, ``gallery``,
``invariance``, ``size``). A small inline script records, once the page has loaded, each image's
``naturalWidth`` in ``data-natural-width`` and the count of loaded images on ``<body>``.
"""
from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from extractor.reporting.disagreements import GALLERY_CAP, find_disagreements
from extractor.reporting.html_figures import fidelity_against_queries, fidelity_against_size, training_curves
from extractor.result import Result
from extractor.run_dir import METRICS_FILE, RunDir

HTML_FILE = "report.html"
COMPARISON_FILE = "comparison.html"
JOB_FILE = "job.toml"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;
color:#1d2330;background:#fff}
h1{font-size:1.5em;margin:.2em 0}
h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid #dde;padding-bottom:.2em}
.sub{color:#5a6270}table{border-collapse:collapse;margin:.4em 0}th,td{padding:.25em .6em;border:1px solid #dde;
text-align:right}th{background:#f3f5f9}td.name,th.name{text-align:left}img.plot{max-width:100%;display:block}
.bar{display:inline-block;height:.8em;background:#4c78a8;vertical-align:middle;margin-right:.4em}
.gallery{display:flex;flex-wrap:wrap;gap:.6em}.gallery figure{margin:0;width:140px;border:1px solid #dde;padding:.3em;
font-size:12px}.gallery img{width:112px;height:auto;display:block;margin:0 auto}.gallery .missing{height:60px;
color:#999;text-align:center;padding-top:40px}td.diag{outline:2px solid #1d2330;outline-offset:-2px}
pre{background:#f6f8fa;padding:.8em;overflow:auto}.note{color:#5a6270;font-size:12px}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) {
    images[i].setAttribute("data-natural-width", String(images[i].naturalWidth));
    if (images[i].complete && images[i].naturalWidth > 0) { loaded++; }
  }
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-images-loaded", String(loaded));
});
"""

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
        _header(f"extractor report: {run_dir}", [
            f"teacher {_text(data['teacher'].get('kind') or 'black box')} {_text(data['teacher']['fingerprint'][:12])}",
            f"student {_text(data['student']['architecture'])} ({_text(data['student']['input'])})",
            f"trained on {_text(data.get('targets'))} targets, {data['eval_images']:,} held-out images"]),
        _section("summary", "Summary", _models_table(data) + _figures_table(data)),
        _section("training", "Training", _image(curves, "fidelity and loss during training") if curves
                 else '<p class="note">no held-out evaluation in metrics.jsonl</p>'),
        _section("confusion", "Confusion matrix: teacher (rows) against student (columns), held out",
                 _confusion(heldout, names)),
        _section("per-class", "Per-class agreement (held out, by the teacher's answer)", _per_class(data)),
        _section("gallery", f"Disagreements: {total:,} held-out images", _gallery(total, shown, names),
                 {"data-disagreements": total, "data-shown": len(shown), "data-cap": GALLERY_CAP}),
        _section("invariance", "Invariance probe", _invariance(data)),
        _section("size", "Fidelity against size and queries", _size_section(data)),
        _config(run_dir),
    ]
    return _page(f"report: {run_dir.name}", sections)


def _models_table(data: dict) -> str:
    rows = []
    for model in ("teacher", "student"):
        entry = data[model]
        latency = entry.get("latency_ms") or {}
        b1_key = "1" if "1" in latency or "image_p50" not in latency else "image_p50"
        fidelity = (_cell(None, 1.0, "%") if model == "teacher" else _cell("fidelity", data.get("fidelity"), "%"))
        rows.append(f'<tr data-model="{model}"><td class="name">{model}</td>'
                    + _cell(f"{model}.size_mb", entry.get("size_mb"), ".3f")
                    + _cell(f"{model}.params", entry.get("params"), ",")
                    + _cell(f"{model}.latency_ms.{b1_key}", latency.get(b1_key), ".3f",
                            suffix=" (HTTP p50)" if b1_key == "image_p50" else "")
                    + _cell(f"{model}.latency_ms.64", latency.get("64"), ".3f")
                    + fidelity + _cell(f"{model}.accuracy", entry.get("accuracy"), "%") + "</tr>")
    for index, entry in enumerate(data.get("widths", [])):
        latency = entry.get("latency_ms") or {}
        rows.append(f'<tr data-model="width {entry["width"]}"><td class="name">student w{entry["width"]}</td>'
                    + _cell(f"widths.{index}.size_mb", entry.get("size_mb"), ".3f")
                    + _cell(f"widths.{index}.params", entry.get("params"), ",")
                    + _cell(f"widths.{index}.latency_ms.1", latency.get("1"), ".3f")
                    + _cell(f"widths.{index}.latency_ms.64", latency.get("64"), ".3f")
                    + _cell(f"widths.{index}.fidelity", entry.get("fidelity"), "%")
                    + _cell(f"widths.{index}.accuracy", entry.get("accuracy"), "%") + "</tr>")
    head = ("<tr><th class=name>model</th><th>size (MB)</th><th>params</th><th>latency b1 (ms/img)</th>"
            "<th>latency b64 (ms/img)</th><th>fidelity</th><th>accuracy</th></tr>")
    return f'<table id="models">{head}{"".join(rows)}</table>'


def _figures_table(data: dict) -> str:
    rows = [f'<tr><td class="name">{_text(label)}</td>{_cell(key, _lookup(data, key), spec)}</tr>'
            for key, label, spec in SUMMARY_FIGURES]
    return f'<table id="figures">{"".join(rows)}</table>'


def _confusion(heldout: pd.DataFrame, names: list[str]) -> str:
    if heldout.empty:
        return '<p class="note">no held-out images</p>'
    counts = pd.crosstab(heldout["teacher_label"], heldout["student_label"]).reindex(
        index=range(len(names)), columns=range(len(names)), fill_value=0)
    head = "<tr><th class=name>teacher \\ student</th>" + "".join(f"<th>{_text(n)}</th>" for n in names) + "</tr>"
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
        rows.append(f'<tr><th class="name">{_text(name)}</th>{"".join(cells)}</tr>')
    return f'<table id="confusion-matrix">{head}{"".join(rows)}</table>'


def _per_class(data: dict) -> str:
    rows = []
    for index, row in enumerate(data["per_class"]):
        value = row["agreement"]
        bar = f'<span class="bar" style="width:{120 * value:.0f}px"></span>' if value is not None else ""
        rows.append(f'<tr><td class="name">{_text(row["class"])}</td><td>{row["images"]:,}</td>'
                    f'<td class="name" data-key="per_class.{index}.agreement" data-value="{_json(value)}">'
                    f'{bar}{_fmt(value, "%")}</td></tr>')
    return ('<table id="per-class-table"><tr><th class=name>teacher class</th><th>held-out images</th>'
            f'<th class=name>agreement</th></tr>{"".join(rows)}</table>')


def _gallery(total: int, shown: list, names: list[str]) -> str:
    if not total:
        return '<p class="note">the student agrees with the teacher on every held-out image</p>'
    figures = []
    for item in shown:
        picture = (f'<img src="{item.thumbnail}" alt="{_text(item.relative_path)}">' if item.thumbnail
                   else '<div class="missing">image not found</div>')
        confidence = _fmt(item.teacher_confidence, "%")
        figures.append(
            f'<figure class="disagreement" data-digest="{item.digest}" data-teacher="{item.teacher_label}" '
            f'data-student="{item.student_label}" data-confidence="{_json(item.teacher_confidence)}">{picture}'
            f'<figcaption>teacher <b>{_text(_name(names, item.teacher_label))}</b> ({confidence})<br>'
            f'student <b>{_text(_name(names, item.student_label))}</b><br>'
            f'<span class="note">{_text(item.relative_path)}</span></figcaption></figure>')
    note = (f'<p class="note">the {len(shown)} of {total:,} on which the teacher was most confident</p>'
            if total > len(shown) else "")
    return note + f'<div class="gallery">{"".join(figures)}</div>'


def _invariance(data: dict) -> str:
    ceiling = data.get("teacher_self_agreement")
    lines = [f'<p>The teacher agrees with itself under a one-pixel shift on <b>{_fmt(ceiling["value"], "%")}</b> of '
             f'{ceiling["images"]} probed images: no student can be expected to agree with it more.</p>'
             if ceiling else '<p class="note">no invariance probe: the teacher against itself is unknown</p>']
    probe = data.get("invariance")
    if probe:
        rows = "".join(f'<tr><td class="name">{_text(name)}</td>'
                       f'{_cell(f"invariance.{name}.changed", entry["changed"], "%")}'
                       f'<td class="name">{_text(entry["policy"] or "probe only")}</td></tr>'
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
        rows = "".join(f'<tr><td class="name">{_text(row["variant"])}</td>'
                       f'<td>{row["bits"]}/{row["activation_bits"]}</td>'
                       f'{_cell(f"variants.{i}.size_bytes", row["size_bytes"], ",")}'
                       f'{_cell(f"variants.{i}.fidelity", row["fidelity"], "%")}'
                       f'{_cell(f"variants.{i}.agreement_with_fp32", row["agreement_with_fp32"], "%")}'
                       f'{_cell(f"variants.{i}.accuracy", row["accuracy"], "%")}</tr>'
                       for i, row in enumerate(variants))
        parts.append('<table id="variants"><tr><th class=name>variant</th><th>bits (w/a)</th><th>size (bytes)</th>'
                     f'<th>fidelity</th><th>agreement with fp32</th><th>accuracy</th></tr>{rows}</table>')
    rounds = [row for row in data.get("rounds") or [] if row.get("queries") and row.get("fidelity") is not None]
    size_plot = fidelity_against_size(points)
    queries_plot = fidelity_against_queries(
        data.get("efficiency") or [{"run": f"round {i}", "queries": row["queries"], "fidelity": row["fidelity"],
                                    "this": i == len(rounds) - 1} for i, row in enumerate(rounds)],
        (data.get("teacher_self_agreement") or {}).get("value"))
    parts += [_image(size_plot, "fidelity against size") if size_plot else "",
              _image(queries_plot, "fidelity against queries") if queries_plot else ""]
    if not size_plot and not queries_plot:
        parts.append('<p class="note">one model and one run: report variants (`extractor quantize`), slimmable '
                     "widths, or several runs (`extractor report RUN1 RUN2`) to compare sizes and queries</p>")
    return "".join(parts)


def _config(run_dir: Path) -> str:
    job = run_dir / JOB_FILE
    if not job.is_file():
        return ""
    return _section("config", "Configuration (job.toml)",
                    f"<pre>{_text(job.read_text(encoding='utf-8'))}</pre>"
                    f'<p class="note">extractor train --config {_text(str(job))} --out NEW_RUN repeats the run</p>')


# --- a chain ----------------------------------------------------------------------------------------------

def _chain_page(chain_dir: Path, data: dict) -> str:
    teacher = data["teacher"]
    head = ("<tr><th class=name>link</th><th class=name>student</th><th class=name>parent</th><th>size (MB)</th>"
            "<th>params</th><th>fidelity to the teacher</th><th>to its parent</th><th>accuracy</th>"
            "<th>train min</th></tr>")
    rows = [(f'<tr data-model="teacher"><td class="name">teacher</td><td class="name">black box</td><td></td>'
             f'{_cell("teacher.size_mb", teacher.get("size_mb"), ".3f")}'
             f'{_cell("teacher.params", teacher.get("params"), ",")}{_cell(None, 1.0, "%")}<td></td>'
             f'{_cell("teacher.accuracy", teacher.get("accuracy"), "%")}<td></td></tr>')]
    for i, row in enumerate(data["chain"]):
        stop = " (stop)" if row["stop"] else ""
        rows.append(f'<tr data-model="link {row["link"]}"><td class="name">{row["link"]}{stop}'
                    f'</td><td class="name">{_text(row["architecture"])} w{row["width"]}</td>'
                    f'<td class="name">{_text(row["parent"])}</td>{_cell(f"chain.{i}.size_mb", row["size_mb"], ".3f")}'
                    f'{_cell(f"chain.{i}.params", row["params"], ",")}'
                    f'{_cell(f"chain.{i}.fidelity", row["fidelity"], "%")}'
                    f'{_cell(f"chain.{i}.fidelity_to_parent", row["fidelity_to_parent"], "%")}'
                    f'{_cell(f"chain.{i}.accuracy", row["accuracy"], "%")}'
                    f'{_cell(f"chain.{i}.train_minutes", row["train_minutes"], ".1f")}</tr>')
    points = ([{"label": "teacher", "group": "teacher", "size_mb": teacher["size_mb"], "fidelity": 1.0}]
              if teacher.get("size_mb") else [])
    points += [{"label": f"{row['link']}: {row['architecture']} w{row['width']}", "group": "chain links",
                "size_mb": row["size_mb"], "fidelity": row["fidelity"]} for row in data["chain"]]
    size_plot = fidelity_against_size(points)
    curves = training_curves([(f"link {row['link']}", _metrics(chain_dir / row["dir"])) for row in data["chain"]])
    sections = [
        _header(f"extractor chain report: {chain_dir}", [
            (f"{len(data['chain'])} of {data['links_planned']} links trained ({_text(data['status'])}); fidelity on "
             f"{data['eval_images']:,} held-out images, always to the original black box")]),
        _section("summary", "Links", f'<table id="models">{head}{"".join(rows)}</table>'),
        _section("size", "Fidelity against size", _image(size_plot, "fidelity against size") if size_plot else ""),
        _section("training", "Training, link by link", _image(curves, "training curves") if curves else ""),
    ]
    return _page(f"chain report: {chain_dir.name}", sections)


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
        rows.append(f'<tr data-run="{_text(str(run_dir))}"><td class="name"><a href="{_text(link)}">'
                    f'{_text(str(run_dir))}</a></td>'
                    + "".join(_cell(f"{index}.{key}", _lookup(data, key), spec) for key, _, spec in columns) + "</tr>")
        points.append({"run": run_dir.name, "queries": (data.get("queries") or 0) + (data.get("probe_queries") or 0),
                       "fidelity": data.get("fidelity"), "this": False})
        sizes.append({"label": run_dir.name, "group": "runs", "size_mb": data["student"].get("size_mb"),
                      "fidelity": data.get("fidelity")})
    queries_plot = fidelity_against_queries(points)
    size_plot = fidelity_against_size(sizes)
    curves = training_curves([(run_dir.name, _metrics(run_dir)) for run_dir, data in reports if "chain" not in data])
    sections = [
        _header("extractor comparison", [f"{len(reports)} runs; each one's own report is linked"]),
        _section("summary", "Runs", f'<table id="runs">{head}{"".join(rows)}</table>'),
        _section("size", "Fidelity against queries and size",
                 (_image(queries_plot, "fidelity against queries") if queries_plot else "")
                 + (_image(size_plot, "fidelity against size") if size_plot else "")),
        _section("training", "Training", _image(curves, "training curves") if curves else ""),
    ]
    out.write_text(_page("comparison", sections), encoding="utf-8")
    return out


# --- pieces -----------------------------------------------------------------------------------------------

def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _page(title: str, sections: list[str]) -> str:
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_text(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(section for section in sections if section)
            + f"\n<script>{_SCRIPT}</script>\n</body></html>\n")


def _header(title: str, lines: list[str]) -> str:
    subtitles = "".join(f'<div class="sub">{line}</div>' for line in lines)
    return f"<header><h1>{_text(title)}</h1>{subtitles}</header>"


def _section(section_id: str, title: str, body: str, attributes: dict[str, Any] | None = None) -> str:
    extra = "".join(f' {name}="{_text(str(value))}"' for name, value in (attributes or {}).items())
    return f'<section id="{section_id}"{extra}><h2>{_text(title)}</h2>{body}</section>'


def _image(uri: str, alt: str) -> str:
    return f'<img class="plot" src="{uri}" alt="{_text(alt)}">'


def _cell(key: str | None, value: Any, spec: str, suffix: str = "") -> str:
    """A table cell that shows ``value`` formatted and carries it exactly, with its report.json key (None: a
    figure report.json does not hold, such as the teacher's agreement with itself, 1)."""
    keyed = f' data-key="{_text(key)}" data-value="{_text(_json(value))}"' if key is not None else ""
    return f"<td{keyed}>{_text(_fmt(value, spec) + suffix)}</td>"


def _lookup(data: Any, key: str) -> Any:
    """The value at a dotted path in report.json's data (list indices as numbers), or None."""
    for part in key.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if spec == "%":
        return f"{100 * value:.1f}%"
    if spec == "s":
        return str(value)
    if spec.endswith("x"):
        return format(value, spec[:-1]) + "x"
    return format(value, spec)


def _json(value: Any) -> str:
    return json.dumps(value)


def _name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)
