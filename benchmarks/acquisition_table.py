"""Which images to buy: selection strategies at fixed budgets on the shared CIFAR-10 pair.

The CIFAR teacher is the black box. The pool is CIFAR's train images (class-balanced, ``--pool``); the test
images (``--test-images``) are never offered to the teacher through the product: the benchmark asks the
teacher about them directly, once, to score every student. For each strategy, budget and seed,
`extractor distill --rounds R --strategy S` spends the budget in R rounds (round 1 a fair sample), the same
student and epochs in every round. Each round's student is scored through its ONNX file on the test images:
fidelity (agreement with the teacher) and accuracy (CIFAR labels). Also per strategy: the CPU seconds spent
selecting, and how well the forecast made after round R-1 predicted round R's held-out fidelity.

    python benchmarks/acquisition_table.py [--pool 50000] [--test-images 10000] [--budgets 1000 2000 4000 8000]
        [--rounds 4] [--epochs 10] [--seeds 0 1 2] [--strategies random entropy margin kcenter disagreement]
        [--student resnet8] [--out runs/acquisition]

Finished distill runs are kept: a rerun only scores and prints.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_runs import extractor, mean_sd
from real_pair import (
    CIFAR_CLASSES,
    CIFAR_FLAGS,
    CIFAR_NORMALISE,
    CIFAR_TEACHER,
    ROOT,
    cifar_images,
    cifar_pool,
    prepare_cifar_out,
)

STRATEGIES = ("random", "entropy", "margin", "kcenter", "disagreement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=50000, help="train images offered to the teacher")
    parser.add_argument("--test-images", type=int, default=10000, help="test images every student is scored on")
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "acquisition")
    args = parser.parse_args()
    prepare_cifar_out(args.out)
    pool = cifar_pool(args.out / f"pool-{args.pool}", args.pool)
    test, truth = _test_set(args.out, args.test_images)
    teacher_labels = _predict(CIFAR_TEACHER, test, input_name=None).argmax(axis=1)
    results = []
    for budget in args.budgets:
        for strategy in args.strategies:
            for seed in args.seeds:
                # The name holds every flag that changes a distill run: a finished run is reused only for the same ones.
                out = args.out / (f"{strategy}-b{budget}-r{args.rounds}-e{args.epochs}-{args.student}"
                                  f"-pool{args.pool}-seed{seed}")
                if not _finished(out, args.rounds):
                    extractor("distill", "--teacher", CIFAR_TEACHER, "--images", pool, "--budget", budget,
                              "--rounds", args.rounds, "--strategy", strategy, "--out", out, "--student",
                              args.student, "--epochs", args.epochs, "--seed", seed, "--augment", "shift,flip",
                              "--quiet", *CIFAR_FLAGS, nice=True)
                results.append(_score(out, budget, strategy, seed, test, teacher_labels, truth))
    (args.out / "acquisition.json").write_text(json.dumps(results, indent=2))
    print(_table(results, args))
    _plot(results, args.out / "acquisition.png")


def _test_set(out: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The test images as the teacher's normalised float32 inputs, and their CIFAR labels; cached."""
    import io

    from PIL import Image

    cache = out / f"test-{count}.npz"
    if cache.exists():
        saved = np.load(cache)
        return saved["images"], saved["labels"]
    classes = CIFAR_CLASSES.split(",")
    images, labels = [], []
    for class_name, _, data in cifar_images("test", count):
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
        images.append(((pixels - CIFAR_NORMALISE) / CIFAR_NORMALISE).transpose(2, 0, 1))
        labels.append(classes.index(class_name))
    np.savez(cache, images=np.stack(images), labels=np.array(labels))
    return np.stack(images), np.array(labels)


def _predict(onnx_path: Path, images: np.ndarray, input_name: str | None = "input") -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = input_name or session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[start:start + 500]})[0]
                           for start in range(0, len(images), 500)])


def _finished(out: Path, rounds: int) -> bool:
    path = out / "distill.json"
    return path.exists() and len(json.loads(path.read_text())["rounds"]) == rounds


def _score(out: Path, budget: int, strategy: str, seed: int, test: np.ndarray, teacher_labels: np.ndarray,
           truth: np.ndarray) -> dict:
    """Each round's student on the test images, with the forecast check (the teacher's normalisation is the
    students' own: the distill runs keep the teacher's mean and std)."""
    state = json.loads((out / "distill.json").read_text())
    rounds = []
    for entry in state["rounds"]:
        predicted = _predict(out / entry["run"] / "student.onnx", test).argmax(axis=1)
        rounds.append({**entry, "test_fidelity": float((predicted == teacher_labels).mean()),
                       "test_accuracy": float((predicted == truth).mean())})
    forecast_error = None
    if len(rounds) >= 4:
        from extractor.reporting.forecast import fit_learning_curve

        before = rounds[:-1]
        curve = fit_learning_curve([r["queries"] for r in before], [r["fidelity"] for r in before])
        forecast_error = curve.predict(rounds[-1]["queries"]).fidelity - rounds[-1]["fidelity"]
    return {"budget": budget, "strategy": strategy, "seed": seed, "rounds": rounds,
            "select_cpu_seconds": sum(r.get("select_cpu_seconds") or 0.0 for r in rounds),
            "forecast_error": forecast_error}


def _table(results: list[dict], args: argparse.Namespace) -> str:
    lines = [f"pool {args.pool} CIFAR train images, {args.test_images} test images, {args.rounds} rounds, "
             f"{args.student} {args.epochs} epochs per round, seeds {args.seeds}",
             "| budget | strategy | test fidelity | test accuracy | vs random (points) | select CPU s "
             "| forecast error, last round (points) |", "|---:|---|---:|---:|---:|---:|---:|"]
    for budget in args.budgets:
        random_mean = _mean([r["rounds"][-1]["test_fidelity"] for r in results
                             if r["budget"] == budget and r["strategy"] == "random"])
        for strategy in args.strategies:
            found = [r for r in results if r["budget"] == budget and r["strategy"] == strategy]
            fidelity = [r["rounds"][-1]["test_fidelity"] for r in found]
            gain = "n/a" if random_mean is None else f"{100 * (_mean(fidelity) - random_mean):+.1f}"
            lines.append(f"| {budget} | {strategy} | {mean_sd(fidelity)} | "
                         f"{mean_sd([r['rounds'][-1]['test_accuracy'] for r in found])} | {gain} | "
                         f"{mean_sd([r['select_cpu_seconds'] for r in found], scale=1.0)} | "
                         f"{mean_sd([r['forecast_error'] for r in found])} |")
    return "\n".join(lines)


def _mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    budget = max(r["budget"] for r in results)
    for strategy in dict.fromkeys(r["strategy"] for r in results):
        found = [r for r in results if r["budget"] == budget and r["strategy"] == strategy]
        queries = [entry["queries"] for entry in found[0]["rounds"]]
        fidelity = [statistics.mean(r["rounds"][i]["test_fidelity"] for r in found) for i in range(len(queries))]
        axis.plot(queries, fidelity, marker="o", label=strategy)
    axis.set(xlabel="teacher queries", ylabel="test fidelity", title=f"fidelity against queries (budget {budget})")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
