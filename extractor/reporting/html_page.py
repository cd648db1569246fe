"""The markup of report.html's pages: page, header, section, image and figure cells, escaped and formatted."""
from __future__ import annotations

import html
import json
import math
from typing import Any

CSS = """
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

SCRIPT = """
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

def page(title: str, sections: list[str]) -> str:
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(section for section in sections if section)
            + f"\n<script>{SCRIPT}</script>\n</body></html>\n")


def header(title: str, lines: list[str]) -> str:
    subtitles = "".join(f'<div class="sub">{line}</div>' for line in lines)
    return f"<header><h1>{escape(title)}</h1>{subtitles}</header>"


def section(section_id: str, title: str, body: str, attributes: dict[str, Any] | None = None) -> str:
    extra = "".join(f' {name}="{escape(str(value))}"' for name, value in (attributes or {}).items())
    return f'<section id="{section_id}"{extra}><h2>{escape(title)}</h2>{body}</section>'


def image(uri: str, alt: str) -> str:
    return f'<img class="plot" src="{uri}" alt="{escape(alt)}">'


def cell(key: str | None, value: Any, spec: str, suffix: str = "") -> str:
    """A table cell that shows ``value`` formatted and carries it exactly, with its report.json key (None: a
    figure report.json does not hold, such as the teacher's agreement with itself, 1)."""
    keyed = f' data-key="{escape(key)}" data-value="{escape(json_value(value))}"' if key is not None else ""
    return f"<td{keyed}>{escape(format_value(value, spec) + suffix)}</td>"


def lookup(data: Any, key: str) -> Any:
    """The value at a dotted path in report.json's data (list indices as numbers), or None."""
    for part in key.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def format_value(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if spec == "%":
        return f"{100 * value:.1f}%"
    if spec == "s":
        return str(value)
    if spec.endswith("x"):
        return format(value, spec[:-1]) + "x"
    return format(value, spec)


def json_value(value: Any) -> str:
    return json.dumps(value)


def class_name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)
