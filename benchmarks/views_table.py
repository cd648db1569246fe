"""Bought augmented views on the CIFAR-10 pair: fidelity with 1, 4 and 8 views per image at equal epochs.

The CIFAR teacher (teacher_cifar10_winml) labels a class-balanced pool of CIFAR-10 train JPEGs with
`extractor label --views 8` (the plain image and 7 deterministic flip/shift views, each a query); each run
then trains with `--views K`: an epoch visits every training image once, through one of its first K stored
views drawn at random, with the teacher's own answer about exactly those pixels. Held-out fidelity is on the
plain images. Augmentations with the stored answer: the probe's choice (the default), the same for every K.
Query cost of K views: K x pool images (+ the probe's answers, the same for every K).

    python benchmarks/views_table.py [--images 2000] [--epochs 8] [--student resnet8] [--views 1 4 8]
        [--seeds 0 1 2] [--out runs/views_table]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_runs import extractor, mean_sd
from real_pair import CIFAR_CLASSES, CIFAR_FLAGS, CIFAR_TEACHER, ROOT, cifar_pool, prepare_cifar_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="class-balanced pool of CIFAR-10 train images")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--lr", type=float, default=None, help="[default: the student's own, as extractor train]")
    parser.add_argument("--heldout", type=float, default=0.3)
    parser.add_argument("--views", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "views_table")
    args = parser.parse_args()
    prepare_cifar_out(args.out)
    pool = cifar_pool(args.out / "cifar", args.images)
    store = args.out / "cifar.db"
    label = extractor("label", "--teacher", CIFAR_TEACHER, "--images", pool, "--store", store, *CIFAR_FLAGS,
                      "--views", max(args.views), "--quiet")
    print(f"labeled {label['images']} images x {label['views']} views: {label['queries']} queries now", flush=True)
    rows: dict[int, list[dict]] = {}
    for views in args.views:
        for seed in args.seeds:
            out = args.out / f"views{views}-seed{seed}"
            if not (out / "run.json").exists():
                extractor("train", "--store", store, "--out", out, "--views", views, "--student", args.student,
                          "--epochs", args.epochs, "--heldout", args.heldout, "--seed", seed, "--workers", 1,
                          "--quiet", *(["--lr", args.lr] if args.lr else []))
            report = extractor("report", out, "--ground-truth", "folders", "--classes", CIFAR_CLASSES)
            run = json.loads((out / "run.json").read_text())
            rows.setdefault(views, []).append({**report, "run_json": run})
            print(f"views {views} seed {seed}: fidelity {report['fidelity']:.3f} accuracy {report['accuracy']:.3f} "
                  f"queries {run['queries']} (+{run['probe_queries']} probe) augment {run['augment']}", flush=True)
    print()
    print(table(rows, args))


def table(rows: dict[int, list[dict]], args: argparse.Namespace) -> str:
    first = next(iter(rows.values()))[0]
    lines = [f"CIFAR-10 teacher -> {args.student}, {first['run_json']['train_images']} train / "
             f"{first['eval_images']} held-out images, {args.epochs} epochs, seeds {args.seeds} (mean ± sd); "
             f"augmentations with the stored answer: {','.join(first['run_json']['augment']) or 'none'}", "",
             "| views per image | teacher queries | fidelity (held-out) | accuracy (CIFAR labels) | "
             "CPU minutes per run |", "|---:|---:|---:|---:|---:|"]
    for views, entries in rows.items():
        run = entries[0]["run_json"]
        minutes = statistics.mean(entry["run_json"]["train_seconds"] for entry in entries) / 60
        lines.append(f"| {views} | {run['queries']:,} (+{run['probe_queries']} probe) | "
                     f"{mean_sd([e['fidelity'] for e in entries], unit='%')} | "
                     f"{mean_sd([e['accuracy'] for e in entries], unit='%')} | "
                     f"{minutes:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
