"""The seed table on the shared CIFAR-10 pair, one row per student of the zoo.

The CIFAR teacher (teacher_cifar10_winml, the black box) labels a class-balanced pool of train images plus
test images; the test images are the held-out split (real_pair's SPLIT_GROUPS), so fidelity (agreement
with the black box) and accuracy (CIFAR labels) are on CIFAR test images, through each student's ONNX file.
Every student trains with `extractor train`'s defaults (augmentations chosen by the invariance probe,
its own default learning rate) for the same epochs; MobileNetV3 downsamples 32x, so it trains at 64 px.

Rows: params, size on disk (the ONNX file), onnxruntime latency at batch 1, fidelity, accuracy, teacher
queries (answers + probe) and training minutes. Target (issue 9): >= 82% fidelity with the best student at
<= 3 MB, from 50,000 answers at 60 epochs (a GPU's work: `--images 50000 --test-images 10000 --epochs 60`).

    python benchmarks/zoo_table.py [--images 5000] [--test-images 2000] [--epochs 12] [--seeds 0]
        [--students squeezenet1_1 mobilenet_v3_small resnet8 resnet20] [--out runs/zoo_table]

Every run is skipped when its directory already holds it: a rerun only prints the table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_runs import extractor, label_cifar_split, mean_sd
from real_pair import CIFAR_CLASSES, HELDOUT, ROOT, prepare_cifar_out

STUDENTS = ("squeezenet1_1", "mobilenet_v3_small", "resnet8", "resnet20")
SIZE = {"mobilenet_v3_small": 64}
"""Students that need more than the teacher's 32 px."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="train images in the pool (class-balanced)")
    parser.add_argument("--test-images", type=int, default=2000, help="test images, the held-out split")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=STUDENTS)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "zoo_table")
    args = parser.parse_args()
    prepare_cifar_out(args.out)
    pool, split_csv, store = label_cifar_split(args.out, args.images, args.test_images)
    rows: dict[str, list[dict]] = {}
    for student in args.students:
        for seed in args.seeds:
            run = args.out / f"{student}-{pool.name}-e{args.epochs}-seed{seed}"
            rows.setdefault(student, []).append(zoo_row(run, store, split_csv, student, args.epochs, seed))
    print()
    print(table(rows, args))


def zoo_row(run: Path, store: Path, split_csv: Path, student: str, epochs: int, seed: int, *extra: object) -> dict:
    """`extractor train` (skipped when ``run`` already holds it; ``extra``: more train flags) and its report.

    Returns:
        ``{"report", "minutes", "queries"}``: the report's dict, training minutes, answers + probe queries.
    """
    if not (run / "run.json").exists():
        size = ["--size", SIZE[student]] if student in SIZE else []
        extractor("train", "--store", store, "--out", run, "--student", student, "--epochs", epochs,
                  "--split-by", split_csv, "split", "--heldout", HELDOUT, "--seed", seed, "--quiet", *size, *extra)
    report = extractor("report", run, "--ground-truth", "folders", "--classes", CIFAR_CLASSES)
    trained = json.loads((run / "run.json").read_text())
    print(f"{run.name}: fidelity {report['fidelity']:.3f} accuracy {report['accuracy']:.3f}", flush=True)
    return {"report": report, "minutes": trained["train_seconds"] / 60,
            "queries": trained["queries"] + trained["probe_queries"]}


def table(rows: dict[str, list[dict]], args: argparse.Namespace) -> str:
    first = next(iter(rows.values()))[0]["report"]
    teacher = first["teacher"]
    lines = [f"CIFAR-10 teacher -> zoo, {args.images} train images labeled, held out: {first['eval_images']} CIFAR "
             f"test images; {args.epochs} epochs; seeds {args.seeds}", "",
             "| model | params | size (MB) | latency b1 (ms) | fidelity | accuracy | teacher queries | train min |",
             "|---|---:|---:|---:|---:|---:|---:|---:|",
             f"| teacher (black box) | {teacher['params']:,} | {teacher['size_mb']:.2f} | "
             f"{teacher['latency_ms']['1']:.2f} | 100% | {100 * teacher['accuracy']:.1f}% | | |"]
    for student, runs in rows.items():
        report = runs[0]["report"]["student"]
        lines.append(
            f"| {student} ({report['input']}) | {report['params']:,} | {report['size_mb']:.2f} | "
            f"{report['latency_ms']['1']:.2f} | {mean_sd([r['report']['fidelity'] for r in runs], unit='%')} | "
            f"{mean_sd([r['report']['accuracy'] for r in runs], unit='%')} | {runs[0]['queries']:,} | "
            f"{statistics.mean(r['minutes'] for r in runs):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
