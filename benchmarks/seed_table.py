"""Reproduces the seed's table on our real pair: the emotion teacher labels the LFW faces, SqueezeNet
1.1 learns from hard labels vs hard + soft outputs, under the same budget, over several seeds.

Rows: fidelity on held-out faces (10% of images), fidelity on held-out people (10% of people,
"new data"), student MB vs teacher MB, CPU training minutes. Targets: joint beats hard by >= 2
points of mean fidelity; joint reaches >= 73% on held-out faces; student ONNX <= 3 MB.
Then the gender teacher with accuracy against labels.csv. Training uses the default `--augment auto`: the
invariance probe (256 faces x 4 probe views) chooses the augmentations (for the emotion teacher: no flips);
the table adds the teacher's agreement with itself under a one-pixel shift (the ceiling) and the share of
it each target reaches.

    python benchmarks/seed_table.py [--epochs 20] [--size 48] [--seeds 0 1 2] [--people-seeds 1] [--augment auto]
        [--out runs/seed_table]

`--augment flip,shift --out runs/seed_table_flipshift` gives the table as it was before the probe.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_runs import extractor, mean_sd
from real_pair import CENTRE_CROP, GENDER_TRUTH, IMAGES, LABELS, LFW_TEACHERS, ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "seed_table")
    parser.add_argument("--people-seeds", type=int, default=1, help="how many of the seeds also run held-out people")
    parser.add_argument("--augment", default="auto",
                        help="`extractor train --augment` for every run (auto: the probe's choice; e.g. flip,shift)")
    args = parser.parse_args()
    if not IMAGES.is_dir():
        raise SystemExit(f"{IMAGES} is absent: this benchmark needs the shared LFW faces and teachers")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in ("emotion", "gender"):
        teacher, flags = LFW_TEACHERS[name]
        store = args.out / f"{name}.db"
        extractor("label", "--teacher", teacher, "--images", IMAGES, "--store", store, *flags, *CENTRE_CROP)
        targets = ("hard", "joint") if name == "emotion" else ("joint",)
        seeds = args.seeds if name == "emotion" else args.seeds[:1]
        for target in targets:
            for seed in seeds:
                for split in ("faces", "people"):
                    if split == "people" and (name == "gender" or seed not in args.seeds[:args.people_seeds]):
                        continue
                    out = args.out / f"{name}-{target}-{split}-seed{seed}"
                    extra = ["--split-by", LABELS, "person"] if split == "people" else []
                    if not (out / "run.json").exists():
                        extractor("train", "--store", store, "--out", out, "--student", "squeezenet1_1",
                                  "--targets", target, "--seed", seed, "--epochs", args.epochs, "--size", args.size,
                                  "--augment", args.augment, *extra)
                    report = extractor("report", out, *(GENDER_TRUTH if name == "gender" else []))
                    run = json.loads((out / "run.json").read_text())
                    rows.setdefault((name, target, split), []).append((report, run))
                    print(f"{name:7s} {target:5s} {split:6s} seed {seed}: fidelity {report['fidelity']:.3f}"
                          + (f", accuracy {report['accuracy']:.3f}" if report["accuracy"] is not None else ""),
                          flush=True)
    print()
    print(table(rows, args))


def table(rows: dict, args: argparse.Namespace) -> str:
    def cell(name: str, target: str, split: str, key: str) -> str:
        entries = rows.get((name, target, split), [])
        return mean_sd([report[key] for report, _ in entries], unit="%")

    def minutes(name: str, target: str) -> str:
        entries = rows.get((name, target, "faces"), [])
        return f"{statistics.mean(run['train_seconds'] for _, run in entries) / 60:.1f}" if entries else "n/a"

    def share(target: str) -> str:
        entries = rows.get(("emotion", target, "faces"), [])
        return mean_sd([report.get("ceiling_share") for report, _ in entries], unit="%")

    report = rows[("emotion", "joint", "faces")][0][0]
    lines = [f"Emotion teacher -> SqueezeNet 1.1 on {IMAGES.name} ({report['queries']} faces), "
             f"{args.epochs} epochs at {args.size} px, seeds {args.seeds} (mean ± sd)", "",
             "| | labels only (hard) | labels + softmax (joint) |", "|---|---:|---:|",
             f"| fidelity, held-out faces | {cell('emotion', 'hard', 'faces', 'fidelity')} | "
             f"{cell('emotion', 'joint', 'faces', 'fidelity')} |",
             f"| fidelity, held-out people (new data) | {cell('emotion', 'hard', 'people', 'fidelity')} | "
             f"{cell('emotion', 'joint', 'people', 'fidelity')} |",
             f"| student / teacher size | {report['student']['size_mb']:.2f} MB / {report['teacher']['size_mb']:.1f} MB"
             f" | same |",
             f"| share of the ceiling, held-out faces | {share('hard')} | {share('joint')} |",
             f"| CPU training minutes per run | {minutes('emotion', 'hard')} | {minutes('emotion', 'joint')} |"]
    ceiling = report.get("teacher_self_agreement")
    run = rows[("emotion", "joint", "faces")][0][1]
    lines += ["", f"Augmentations with the stored answer (probe's choice): {','.join(run.get('augment', [])) or 'none'}; "
              f"teacher vs itself under a one-pixel shift: "
              + (f"{100 * ceiling['value']:.1f}% of {ceiling['images']} probed faces" if ceiling else "n/a")]
    if ("gender", "joint", "faces") in rows:
        gender = rows[("gender", "joint", "faces")][0][0]
        lines += ["", "Gender teacher -> SqueezeNet 1.1 (joint), against labels.csv on held-out faces", "",
                  "| model | size | fidelity | accuracy |", "|---|---:|---:|---:|",
                  f"| teacher | {gender['teacher']['size_mb']:.2f} MB | 100% | {100 * gender['teacher']['accuracy']:.1f}% |",
                  f"| student | {gender['student']['size_mb']:.2f} MB | {100 * gender['fidelity']:.1f}% | "
                  f"{100 * gender['accuracy']:.1f}% |"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
