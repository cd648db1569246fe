"""Slimmable students on the CIFAR-10 pair: in-place distillation with teacher assistants (IPKD-TA) vs
in-place distillation from the widest width (IPKD) vs every width from the teacher's answers, vs each width
trained on its own.

The CIFAR teacher (teacher_cifar10_winml) labels a class-balanced subset of the CIFAR-10 train images as
an unlabeled pool; students learn from its stored answers; fidelity (agreement with the teacher) and
accuracy (against the CIFAR labels) are measured on the held-out part of the pool through each width's
ONNX file. Targets: ta >= teacher at the two smallest widths; each width within 1 point of its separately
trained counterpart; total time <= 1.5x the widest alone.

    python benchmarks/slimmable_table.py [--images 4000] [--epochs 6] [--student resnet8] [--seeds 0]
        [--batch-size 32] [--lr 0.006] [--widths 1.0,0.75,0.5,0.25] [--out runs/slimmable_table]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_runs import extractor, mean_sd
from real_pair import CIFAR_CLASSES, CIFAR_FLAGS, CIFAR_TEACHER, ROOT, cifar_pool, prepare_cifar_out

MODES = ("none", "teacher", "ta")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="pool size (train images, class-balanced)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=6e-3)
    parser.add_argument("--widths", default="1.0,0.75,0.5,0.25")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--heldout", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "slimmable_table")
    args = parser.parse_args()
    prepare_cifar_out(args.out)
    images = cifar_pool(args.out / f"cifar{args.images}", args.images)
    store = args.out / f"cifar{args.images}.db"
    extractor("label", "--teacher", CIFAR_TEACHER, "--images", images, "--store", store, *CIFAR_FLAGS, "--quiet")
    widths = [float(w) for w in args.widths.split(",")]
    # every setting pinned, so that a changed default never mixes two recipes in one table
    common = ["--store", store, "--student", args.student, "--epochs", args.epochs, "--heldout", args.heldout,
              "--batch-size", args.batch_size, "--lr", args.lr, "--augment", "flip,shift", "--temperature", 4]
    prefix = args.out / f"{args.student}-{args.images}-e{args.epochs}-b{args.batch_size}-lr{args.lr}"
    runs = {(name, seed): entry for seed in args.seeds
            for name, entry in width_runs(prefix, common, widths, widths, MODES, seed).items()}
    print()
    print(table(runs, widths, args))
    print(step_cost(args.student, widths))


def width_runs(prefix: Path, common: list, widths: list[float], separate: list[float], modes: tuple[str, ...],
               seed: int) -> dict[str, dict]:
    """`extractor train` (``common`` flags) of each ``separate`` width on its own and of one slimmable student of
    ``widths`` per in-place mode, into ``<prefix>-<name>-seed<seed>`` (a run already there is kept), and each
    run's report.

    Returns:
        name ("separate-w<width>" or the mode) -> ``{"report", "run"}`` (the report's dict, run.json).
    """
    plans = {f"separate-w{w}": ["--width", w] for w in separate}
    plans.update({mode: ["--slimmable", ",".join(map(str, widths)), "--inplace", mode] for mode in modes})
    runs = {}
    for name, extra in plans.items():
        out = prefix.with_name(f"{prefix.name}-{name}-seed{seed}")
        if not (out / "run.json").exists():
            extractor("train", *common, "--out", out, "--seed", seed, "--quiet", *extra)
        report = extractor("report", out, "--ground-truth", "folders", "--classes", CIFAR_CLASSES)
        run = json.loads((out / "run.json").read_text())
        runs[name] = {"report": report, "run": run}
        print(f"{name:14s} seed {seed}: fidelity {report['fidelity']:.3f}, {run['train_seconds'] / 60:.1f} min",
              flush=True)
    return runs


def table(runs: dict, widths: list[float], args: argparse.Namespace) -> str:
    def values(name: str, width: float, key: str) -> list[float]:
        """Per seed: a slimmable run's row for ``width``, or a separate run's own figure."""
        found = []
        for (run_name, _), entry in runs.items():
            if run_name == name:
                rows = entry["report"].get("widths") or [{"width": width, key: entry["report"][key]}]
                found += [row[key] for row in rows if row["width"] == width and row[key] is not None]
        return found

    def mean(name: str, width: float) -> float:
        return statistics.mean(values(name, width, "fidelity"))

    def cell(name: str, width: float, key: str = "fidelity") -> str:
        return mean_sd(values(name, width, key))

    def minutes(names: list[str]) -> float:
        return statistics.mean(sum(runs[(name, seed)]["run"]["train_seconds"] for name in names)
                               for seed in args.seeds) / 60

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    first = runs[("ta", args.seeds[0])]
    sizes = {row["width"]: row for row in first["report"]["widths"]}
    lines = [(f"CIFAR-10 teacher -> slimmable {args.student}: {first['run']['train_images']} pool images trained on, "
              f"{first['run']['heldout_images']} held out, {args.epochs} epochs, batch {args.batch_size}, "
              f"lr {args.lr}, flip+shift, T 4, CPU, seeds {args.seeds}"),
             "fidelity to the teacher % (accuracy against the CIFAR labels %) on the held-out pool images", "",
             "| width | params | ONNX MB | separate | none | teacher (IPKD) | ta (IPKD-TA) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for width in widths:
        cells = [f"{cell(name, width)} ({cell(name, width, 'accuracy')})"
                 for name in (f"separate-w{width}", *MODES)]
        lines.append(f"| {width} | {sizes[width]['params']:,} | {sizes[width]['size_mb']:.2f} | "
                     + " | ".join(cells) + " |")
    widest = minutes([f"separate-w{widths[0]}"])
    lines += ["", f"training minutes per run (CPU, the whole `extractor train`): widest alone {widest:.1f}, "
                  f"every width separately {minutes([f'separate-w{w}' for w in widths]):.1f}, "
              + ", ".join(f"{mode} {minutes([mode]):.1f} ({minutes([mode]) / widest:.2f}x)" for mode in MODES)]
    small = widths[-2:]
    lines += ["", "targets:",
              "- ta >= teacher at the two smallest widths: "
              + ", ".join(f"w{w} {cell('ta', w)} vs {cell('teacher', w)}" for w in small)
              + f" ({met(all(mean('ta', w) >= mean('teacher', w) for w in small))})"]
    for mode in MODES:
        gaps = {w: mean(mode, w) - mean(f"separate-w{w}", w) for w in widths}
        lines.append(f"- {mode}: each width within 1 point of its separately trained counterpart: "
                     + ", ".join(f"w{w} {100 * gap:+.1f}" for w, gap in gaps.items())
                     + f" ({met(all(gap >= -0.01 for gap in gaps.values()))})")
    lines.append(f"- ta total time <= 1.5x the widest alone: {minutes(['ta']) / widest:.2f}x "
                 f"({met(minutes(['ta']) <= 1.5 * widest)})")
    return "\n".join(lines)


def step_cost(student: str, widths: list[float], steps: int = 40, batch: int = 64) -> str:
    """CPU seconds per training step, slimmable (ta, sandwich) vs the widest alone, and each width of the
    slimmable network trained on its own against its share of the widest's FLOPs (about width^2),
    interleaved step by step in one process so that a shared machine's changing load falls on all alike."""
    import torch

    from extractor.students.batches import Batch
    from extractor.students.config import DistillConfig, OptimConfig, SlimmableConfig
    from extractor.students.slimmable import build_slimmable
    from extractor.students.tasks import DistillTask, InplaceDistillTask
    from extractor.students.trainer import build_optimizer
    from extractor.students.zoo import build_student

    torch.manual_seed(0)
    distill = DistillConfig()
    tasks = {"widest alone": DistillTask(build_student(student, 10, 3), distill),
             "slimmable": InplaceDistillTask(build_slimmable(student, 10, 3, widths), distill,
                                             SlimmableConfig(widths=tuple(widths), inplace="ta"))}
    for width in widths:
        single = build_slimmable(student, 10, 3, widths)
        single.set_width(width)
        tasks[f"w{width}"] = DistillTask(single, distill)
    optimizers = {name: build_optimizer(task, OptimConfig(), steps)[0] for name, task in tasks.items()}
    data = Batch(inputs=torch.randn(batch, 3, 32, 32), labels=torch.randint(0, 10, (batch,)),
                 teacher_log_probs=torch.log_softmax(torch.randn(batch, 10), dim=1),
                 soft_mask=torch.ones(batch, dtype=torch.bool), truth=None)
    seconds = dict.fromkeys(tasks, 0.0)
    for step in range(steps + 2):
        for name, task in tasks.items():
            started = time.process_time()
            loss = task(data)["loss"]
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()
            if step >= 2:  # the first steps allocate
                seconds[name] += time.process_time() - started
    widest = seconds["widest alone"]
    ratio = seconds["slimmable"] / widest
    return (f"training step cost, CPU seconds per {batch}-image step over {steps} interleaved steps: widest alone "
            f"{widest / steps:.3f}, slimmable {len(widths)} widths (ta, sandwich) "
            f"{seconds['slimmable'] / steps:.3f} = {ratio:.2f}x ({'met' if ratio <= 1.5 else 'NOT met'}: <= 1.5x)\n"
            "one width of the slimmable network trained alone, as a share of the widest alone (FLOPs ~ width^2): "
            + ", ".join(f"w{w} {seconds[f'w{w}'] / widest:.0%} ({w * w:.0%})" for w in widths))


if __name__ == "__main__":
    main()
