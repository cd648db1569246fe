"""The quantized variants of a run (written by `extractor quantize`): found on disk, measured, as report rows."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from extractor.errors import ConfigError
from extractor.reporting.profile import profile_onnx
from extractor.run_dir import RUN_FILE, RunDir

_ORDER = {"fp32": 0, "int8": 1, "ternary": 2, "binary": 3}


def find_variants(run_dir: Path) -> list[tuple[Path, dict]]:
    """(directory, run.json) of every variant in or under ``run_dir``, fp32 -> int8 -> ternary -> binary."""
    found = []
    for path in run_dir.rglob(RUN_FILE):
        if path.parent == run_dir:
            continue
        run = RunDir(path.parent).run()
        if "variant" in run:
            found.append((path.parent, run))
    return sorted(found, key=lambda item: (_ORDER[item[1]["variant"]["kind"]], item[1]["variant"]["name"], str(item[0])))


def variant_rows(run_dir: Path, run: dict, heldout: pd.DataFrame, fp32_latency_ms: dict[str, float],
                 accuracy: Callable[[pd.Series], float | None], batch_sizes: tuple[int, ...]) -> list[dict]:
    """One row for the fp32 student and one per variant: size, params, latency, fidelity, agreement, accuracy.

    Args:
        run_dir: The fp32 run.
        run: Its run.json.
        heldout: Its heldout.csv; every variant was scored on the same images.
        fp32_latency_ms: The fp32 student's latency by batch size, already measured.
        accuracy: Scores predicted labels against the ground truth (None without one).
        batch_sizes: Batch sizes to time each variant at.
    """
    rows = [{"variant": "fp32", "kind": "fp32", "bits": 32, "activation_bits": 32, "distilled": None, "init": None,
             "dir": ".", "size_bytes": (run_dir / "student.onnx").stat().st_size, "size_file": "student.onnx",
             "params": run["student"]["params"], "latency_ms": fp32_latency_ms,
             "fidelity": _agreement(heldout["student_label"], heldout["teacher_label"]),
             "agreement_with_fp32": 1.0, "accuracy": accuracy(heldout["student_label"])}]
    for directory, variant_run in find_variants(run_dir):
        variant = variant_run["variant"]
        predicted = _aligned_predictions(directory, heldout)
        profile = profile_onnx(directory / "student.onnx", input_size=run["student"]["size"], batch_sizes=batch_sizes)
        rows.append({"variant": variant["name"], "kind": variant["kind"], "bits": variant["bits"],
                     "activation_bits": variant["activation_bits"], "distilled": variant["distilled"],
                     "init": variant["init"], "dir": str(directory.relative_to(run_dir)),
                     "size_bytes": variant["size_bytes"], "size_file": variant["size_file"],
                     "params": variant_run["student"]["params"],
                     "latency_ms": {str(batch): ms for batch, ms in profile.latency_ms.items()},
                     "fidelity": _agreement(predicted, heldout["teacher_label"]),
                     "agreement_with_fp32": _agreement(predicted, heldout["student_label"]),
                     "accuracy": accuracy(predicted)})
    return rows


def _agreement(a: pd.Series, b: pd.Series) -> float | None:
    return float((a.to_numpy() == b.to_numpy()).mean()) if len(a) else None


def _aligned_predictions(directory: Path, heldout: pd.DataFrame) -> pd.Series:
    frame = RunDir(directory).heldout()
    if list(frame["digest"]) != list(heldout["digest"]):
        raise ConfigError(f"{directory} was scored on other held-out images than its run; quantize the run again")
    return frame["student_label"].set_axis(heldout.index)


def slower_than_fp32(rows: list[dict], batch: str = "1") -> list[str]:
    """Names of the int8 variants slower than the fp32 student at ``batch`` on this machine."""
    fp32 = rows[0]["latency_ms"][batch]
    return [row["variant"] for row in rows if row["kind"] == "int8" and row["latency_ms"][batch] > fp32]


def variants_markdown(rows: list[dict]) -> str:
    """The variants table and what to read into it."""

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    lines = ["", ("| variant | bits (w/a) | size (bytes) | params | latency b1 (ms/img) | fidelity | "
                  "agreement with fp32 | accuracy |"), "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['bits']}/{row['activation_bits']} | {row['size_bytes']:,} | "
                     f"{row['params']:,} | {fmt(row['latency_ms'].get('1'), '.3f')} | {fmt(row['fidelity'], '.1%')} | "
                     f"{fmt(row['agreement_with_fp32'], '.1%')} | {fmt(row['accuracy'], '.1%')} |")
    lines.append("")
    lines.append("- size: student.onnx for fp32 and int8, student.packed (1 or 2 bits per quantized weight) for "
                 "binary and ternary. Their student.onnx holds dequantized float weights: onnxruntime has no 1- or "
                 "2-bit kernels, so their saving is in storage and download, not in CPU latency.")
    slow = slower_than_fp32(rows)
    if slow:
        lines.append(f"- int8 is slower than fp32 at batch 1 on this CPU ({', '.join(slow)}): here it saves size, "
                     "not time.")
    return "\n".join(lines) + "\n"
