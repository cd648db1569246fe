"""One prepared command for a lent GPU (issue 25): the seeds' claims at the seeds' scale, each step timed against an
estimate, written to one JSON file and one Markdown table.

Steps, in order; every training goes through `extractor` (``--device auto``: CUDA when present) or, for the strong
teacher, the product's trainer, and every fidelity/accuracy is on the CIFAR-10 test images (the held-out split):

1. the CUDA tests: pytest, as a subprocess, on every test file that checks ``torch.cuda.is_available``;
2. train_throughput's pipeline: the full pipeline against a bare loop on each device (GPU target >= 0.9), and the
   GPU's speed-up over the CPU;
3. the zoo row of ResNet-20 from all 50,000 answers of the CIFAR pair, 60 epochs, crop+flip (then the probe's
   choice, when its estimate fits the time left): target >= 82% fidelity;
4. seed 000: binary and ternary ResNet-20 distilled for 4 epochs from step 3's crop+flip run, against
   `--no-distill` for 30 epochs;
5. seed 004: slimmable ResNet-20, in-place distillation `ta` against `teacher` and against each width trained
   on its own, 60 epochs;
6. seed 003: a ResNet-56 teacher trained on the CIFAR labels (cifar_teacher.py) labels the pool; ResNet-8 direct
   against ResNet-8 through a ResNet-20 assistant.

Each step prints its estimate (seconds on an H100, from the named assumptions below) before it starts; with
``--budget-s`` a step whose estimate exceeds the time left is skipped and the table says so. A step that fails is
recorded and the suite goes on. ``--tiny`` runs every step on 150 images (100 train, 50 test) for one epoch, so
the whole suite runs on a CPU. Runs already in ``--work`` are kept, so a second call continues where one stopped.

    python benchmarks/gpu_suite.py [--budget-s N] [--tiny] [--steps 1 2 ...] [--out runs/gpu_suite] [--work DIR]
        [--json PATH] [--table PATH]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chain_table
import cifar_teacher
import quantize_table
import slimmable_table
import train_throughput
import zoo_table
from cli_runs import extractor, label_cifar_split
from real_pair import CIFAR, CIFAR_CLASSES, CIFAR_TEACHER, HELDOUT, ROOT
from suite_runner import Budget, Outcome, Skipped, Step, run_steps

H100_IMG_S = {"resnet8": 30_000, "resnet20": 15_000, "resnet56": 6_000}
"""Assumed training images/s on one H100 (eager PyTorch, batch 128, bf16 autocast, the tensor cache on the device).
Networks this small are bound by the CPU's per-op dispatch, not by FLOPs: one training step (augmentation
included) dispatches about 510, 1,010 and 2,530 aten ops for ResNet-8/20/56 (counted on the CPU with a
TorchDispatchMode); at an assumed 8 us per op that is 4, 8 and 20 ms per 128 images."""
QUANTIZED_COST = 1.5
"""Assumed cost of a binary/ternary step in plain steps: STE weight quantisation of every conv (and, distilled,
the fp32 parent's forward)."""
SANDWICH_COST = 3.5
"""Assumed cost of a slimmable step in plain steps: three widths (widest, narrowest, one random) and their targets."""
LABEL_IMG_S = 2_000
"""Assumed `extractor label` rate (JPEG decode, sha256, the ONNX teacher) on the lent machine's 16 CPU cores;
also the rate of writing the pool's JPEGs and of the teacher's test-accuracy pass."""
CPU_IMG_S = 1_000
"""Assumed ResNet-20 training rate on those 16 CPU cores (the CPU half of step 2)."""
RUN_OVERHEAD_S = 30
"""Assumed fixed cost of one training run: interpreter and torch start, tensor cache, ONNX export, held-out
check through the ONNX file, `extractor report`."""
TESTS_S = 30
"""Assumed time of the CUDA tests, CUDA start included."""
STUDENT = "resnet20"
ZOO_AUGMENT = "flip,crop"
"""Step 3's first run, the fp32 parent of step 4; step 5 trains with it too."""


@dataclass(frozen=True)
class Scale:
    """How much each step does."""

    images: int
    """CIFAR-10 train images the black box labels (class-balanced): the pool every student learns from."""
    test_images: int
    """CIFAR-10 test images: the held-out split."""
    epochs: int
    """Epochs of the zoo row, the slimmable runs and each student of step 6."""
    quantized_epochs: int
    """Epochs of the distilled binary/ternary variants."""
    baseline_epochs: int
    """Epochs of their `--no-distill` baseline."""
    teacher_epochs: int
    """Epochs of the ResNet-56 teacher on the CIFAR labels."""
    bits: tuple[int, ...]
    """Step 4's variants: 1 binary, 2 ternary."""
    widths: tuple[float, ...]
    """The slimmable widths of step 5; the first, 1.0, trained on its own is step 3's first run."""
    inplace: tuple[str, ...]
    """Step 5's `--inplace` modes."""
    zoo_augments: tuple[str, ...]
    """`--augment` of step 3's runs, in order; the first is ZOO_AUGMENT."""
    throughput_images: int
    """Synthetic images of step 2."""
    throughput_epochs: int
    """Epochs of step 2, per run."""


FULL = Scale(images=50_000, test_images=10_000, epochs=60, quantized_epochs=4, baseline_epochs=30, teacher_epochs=30,
             bits=(1, 2), widths=(1.0, 0.75, 0.5, 0.25), inplace=("teacher", "ta"), zoo_augments=(ZOO_AUGMENT, "auto"),
             throughput_images=8192, throughput_epochs=2)
TINY = Scale(images=100, test_images=50, epochs=1, quantized_epochs=1, baseline_epochs=1, teacher_epochs=1, bits=(2,),
             widths=(1.0, 0.5), inplace=("ta",), zoo_augments=(ZOO_AUGMENT,), throughput_images=128,
             throughput_epochs=1)
"""One run per code path: the other bits and in-place mode differ only by a flag, and each command starts torch."""


def train_s(student: str, image_epochs: float, cost: float = 1.0) -> float:
    """Estimated seconds of one training run on an H100."""
    return image_epochs * cost / H100_IMG_S[student] + RUN_OVERHEAD_S


def pool_s(scale: Scale) -> float:
    """Estimated seconds to write a pool and label it (or to pass the teacher over it)."""
    return (scale.images + scale.test_images) / LABEL_IMG_S


@dataclass(frozen=True)
class Suite:
    scale: Scale
    work: Path
    """Where the pools, stores and runs go."""
    budget: Budget
    zoo_rows: dict[str, dict] = field(default_factory=dict)
    """Step 3's rows by `--augment`, as ``zoo_row`` returns them."""

    @functools.cached_property
    def cifar(self) -> tuple[Path, Path, Path]:
        """The CIFAR pool labeled by the shared black box: pool folder, split CSV, store (label_cifar_split)."""
        return label_cifar_split(self.work, self.scale.images, self.scale.test_images)

    def zoo_run(self, augment: str) -> Path:
        return self.work / f"{STUDENT}-{self.cifar[0].name}-e{self.scale.epochs}-{augment.replace(',', '+')}"

    def zoo_row(self, augment: str) -> dict:
        """``zoo_table.zoo_row`` of step 3's run with ``augment``: trained when missing, reported once."""
        if augment not in self.zoo_rows:
            _, split_csv, store = self.cifar
            self.zoo_rows[augment] = zoo_table.zoo_row(self.zoo_run(augment), store, split_csv, STUDENT,
                                                       self.scale.epochs, 0, "--augment", augment)
        return self.zoo_rows[augment]

    def parent(self) -> tuple[Path, dict]:
        """Step 3's first run and its row: the fp32 parent of step 4, width 1.0 alone of step 5 (same flags)."""
        run = self.zoo_run(ZOO_AUGMENT)
        if not (run / "run.json").exists():
            raise RuntimeError(f"step 3's run {run} is missing: run step 3 first")
        return run, self.zoo_row(ZOO_AUGMENT)


def cuda_tests(suite: Suite) -> Outcome:
    import torch

    if not torch.cuda.is_available():
        raise Skipped("no CUDA")
    files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py")
                   if "cuda.is_available" in path.read_text())
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-300:]
    counts = {word: int(count) for count, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", last)}
    return Outcome(last, {"files": files, "counts": counts, "returncode": result.returncode,
                          "output": result.stdout[-4000:]}, ok=result.returncode == 0)


def throughput(suite: Suite) -> Outcome:
    data = train_throughput.synthetic_data(suite.scale.throughput_images, 3, 32)
    rows = train_throughput.pipeline(data, STUDENT, 128, suite.scale.throughput_epochs, report=print)
    parts = [f"{device} full/bare {row['ratio']:.2f} ({row['full']:.0f} img/s)" for device, row in rows.items()
             if isinstance(row, dict)]
    if "cuda" in rows:
        parts.append(f"GPU target >= 0.9 {'met' if rows['cuda']['ratio'] >= 0.9 else 'NOT met'}, "
                     f"GPU {rows['gpu_speedup']:.1f}x the CPU")
    return Outcome("; ".join(parts), rows)


def run_figures(run: Path, report: dict) -> dict:
    """Fidelity and accuracy from ``report``, and the training rate of the whole run (setup included)."""
    trained = json.loads((run / "run.json").read_text())
    return {"fidelity": report["fidelity"], "accuracy": report["accuracy"], "train_s": trained["train_seconds"],
            "img_s": trained["train_images"] * trained["epochs"] / trained["train_seconds"],
            "augment": trained["augment"]}


def zoo(suite: Suite) -> Outcome:
    scale, rows = suite.scale, {}
    for augment in scale.zoo_augments:
        reason = suite.budget.skip_reason(train_s(STUDENT, scale.images * scale.epochs))
        if rows and reason:  # the first run is the step's own estimate
            rows[augment] = {"status": reason}
            print(f"--augment {augment}: {reason}", flush=True)
            continue
        rows[augment] = run_figures(suite.zoo_run(augment), suite.zoo_row(augment)["report"])
    summary = "; ".join(f"{augment}: " + (f"fidelity {100 * row['fidelity']:.1f}% (target >= 82%), accuracy "
                                          f"{100 * row['accuracy']:.1f}%, {row['img_s']:.0f} img/s"
                                          if "fidelity" in row else row["status"]) for augment, row in rows.items())
    return Outcome(summary, rows)


def quantized(suite: Suite) -> Outcome:
    (run, _), scale = suite.parent(), suite.scale
    for bits in scale.bits:
        quantize_table.quantize_variants(run, bits, scale.quantized_epochs, [scale.baseline_epochs], 0)
    report = extractor("report", run, "--ground-truth", "folders", "--classes", CIFAR_CLASSES)
    rows = {row["dir"]: {"fidelity": row["fidelity"], "accuracy": row["accuracy"]} for row in report["variants"]
            if row["dir"] != "."}
    summary = "; ".join(f"{name} {100 * row['fidelity']:.1f}%" for name, row in rows.items())
    return Outcome(f"fidelity: {summary}", rows)


def slimmable(suite: Suite) -> Outcome:
    _, split_csv, store = suite.cifar
    scale, (_, widest) = suite.scale, suite.parent()
    common = ["--store", store, "--student", STUDENT, "--epochs", scale.epochs, "--split-by", split_csv, "split",
              "--heldout", HELDOUT, "--augment", ZOO_AUGMENT]
    runs = {f"separate-w{scale.widths[0]}": widest,
            **slimmable_table.width_runs(suite.work / f"{STUDENT}-slimmable-e{scale.epochs}", common,
                                         list(scale.widths), list(scale.widths[1:]), scale.inplace, seed=0)}
    rows = {}
    for width in scale.widths:
        row = {"separate": runs[f"separate-w{width}"]["report"]["fidelity"]}
        for mode in scale.inplace:
            row[mode] = next(entry["fidelity"] for entry in runs[mode]["report"]["widths"] if entry["width"] == width)
        rows[str(width)] = row
    summary = "; ".join(f"w{width}: " + ", ".join(f"{name} {100 * value:.1f}" for name, value in row.items())
                        for width, row in rows.items())
    return Outcome(f"fidelity %: {summary}", rows)


def teacher_assistant(suite: Suite) -> Outcome:
    scale = suite.scale
    teacher = cifar_teacher.train_teacher(suite.work / "teacher", "resnet56", scale.images, scale.teacher_epochs)
    accuracy = cifar_teacher.cifar_test_accuracy(teacher, scale.test_images)
    out = suite.work / "chain"
    _, split_csv, store = label_cifar_split(out, scale.images, scale.test_images, teacher=teacher)
    rows, _ = chain_table.ta_seed(out, store, split_csv, scale.epochs, 0, chain_table.TA_LINKS, None, {"direct": []})
    results = {"teacher_accuracy": accuracy, **rows}
    return Outcome(f"ResNet-56 teacher {100 * accuracy:.1f}% accurate; ResNet-8 fidelity through the ResNet-20 "
                   f"assistant {100 * rows['ta_student']['fidelity']:.1f}% vs direct "
                   f"{100 * rows['direct']['fidelity']:.1f}%", results)


STEPS: tuple[tuple[str, Callable[[Scale], float], Callable[[Suite], Outcome]], ...] = (
    ("CUDA tests", lambda s: TESTS_S, cuda_tests),
    ("training throughput: pipeline vs bare loop, GPU vs CPU",
     lambda s: 2 * s.throughput_images * s.throughput_epochs / CPU_IMG_S
     + train_s(STUDENT, 3 * s.throughput_images * s.throughput_epochs), throughput),
    ("zoo row: ResNet-20, crop+flip then the probe's choice (each run alone estimated)",
     lambda s: pool_s(s) + train_s(STUDENT, s.images * s.epochs), zoo),
    ("seed 000: binary/ternary distilled vs --no-distill",
     lambda s: len(s.bits) * (train_s(STUDENT, s.images * s.quantized_epochs, QUANTIZED_COST)
                              + train_s(STUDENT, s.images * s.baseline_epochs, QUANTIZED_COST)), quantized),
    ("seed 004: slimmable ResNet-20, ta vs teacher vs separate widths",
     lambda s: (len(s.widths) - 1) * train_s(STUDENT, s.images * s.epochs)
     + len(s.inplace) * train_s(STUDENT, s.images * s.epochs, SANDWICH_COST), slimmable),
    ("seed 003: ResNet-56 teacher, ResNet-8 direct vs through a ResNet-20 assistant",
     lambda s: train_s("resnet56", s.images * s.teacher_epochs) + 3 * pool_s(s)
     + train_s(STUDENT, s.images * s.epochs) + 2 * train_s("resnet8", s.images * s.epochs), teacher_assistant),
)
"""Each step's title, estimate (seconds on an H100 at a scale, from the assumptions above) and run."""


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU only ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, help="skip the steps whose estimate exceeds the time left")
    parser.add_argument("--tiny", action="store_true", help="150 images, one epoch: a check on a CPU")
    parser.add_argument("--steps", type=int, nargs="+", default=list(range(1, len(STEPS) + 1)))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_suite", help="where the results go")
    parser.add_argument("--work", type=Path, help="pools, stores and runs [OUT/work]")
    parser.add_argument("--json", type=Path, help="[OUT/gpu_suite.json]")
    parser.add_argument("--table", type=Path, help="[OUT/gpu_suite.md]")
    args = parser.parse_args()
    if not (CIFAR / "train.zip").exists() or not CIFAR_TEACHER.exists():
        raise SystemExit(f"{CIFAR} or {CIFAR_TEACHER} is absent: the suite needs the shared CIFAR-10 pair")
    suite = Suite(TINY if args.tiny else FULL, args.work or args.out / "work", Budget(args.budget_s))
    suite.work.mkdir(parents=True, exist_ok=True)
    header = {"device": device_name(), "tiny": args.tiny, "budget_s": args.budget_s,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "scale": asdict(suite.scale),
              "assumptions": {"h100_img_s": H100_IMG_S, "quantized_cost": QUANTIZED_COST,
                              "sandwich_cost": SANDWICH_COST, "label_img_s": LABEL_IMG_S, "cpu_img_s": CPU_IMG_S,
                              "run_overhead_s": RUN_OVERHEAD_S, "tests_s": TESTS_S}}
    title = (f"GPU suite on {header['device']}, {'--tiny' if args.tiny else 'full scale'}, budget "
             f"{args.budget_s or 'none'} s, started {header['started']}; estimates: seconds on an H100 from "
             "benchmarks/gpu_suite.py's assumptions")
    steps = [Step(name, estimate(suite.scale), functools.partial(run, suite)) for name, estimate, run in STEPS]
    records = run_steps(steps, suite.budget, set(args.steps), header, title, args.json or args.out / "gpu_suite.json",
                        args.table or args.out / "gpu_suite.md")
    sys.exit(1 if any(record["status"].startswith("failed") for record in records) else 0)


if __name__ == "__main__":
    main()
