"""Fidelity by answer format on the shared CIFAR-10 pair: what top-k, rounded, label-only and perturbed answers cost.

The zoo table's black box (the CIFAR teacher) answers through ``extractor.teachers.simulated`` as: full
probabilities; top-5; top-3; top-1 with its score; the label only; probabilities rounded to 2 decimals; and ART's
reverse-sigmoid perturbation (beta 1, gamma 0.1). Each format labels the zoo's pool (``cifar_pool``: a
class-balanced 5,000 train images, and 2,000 test images that are the held-out split) into a store of its own,
through the product's label job, with the invariance probe's views of the same 256 images (so `--augment auto`
decides as in the zoo table, and the report can check the scores against the one-pixel shift). ResNet-8 then
trains with `extractor train`'s defaults on each store.

Two handlings of the same answers: "new" is extractor's (top-k as k + 1 outcomes with the hidden mass, rounded
zeros raised to half a grid step); "today" is what it did before, obtained by having the simulated API answer the
visible scores renormalised to 1 (``AnswerFormat.renormalise``), which extractor then trains on exactly as its
former loss did (renormalised visible classes; zeros, rounded or not, probability 0). Full, label-only and
reverse-sigmoid answers train the same way under both.

Fidelity is agreement with the real teacher's top-1 (the full format's stored labels) on the held-out test
images, through each student's ONNX file, so formats whose own labels differ (rounding ties, the perturbation)
are judged against the same reference; accuracy is against the CIFAR labels.

    python benchmarks/answer_formats.py [--images 5000] [--test-images 2000] [--epochs 12] [--seeds 0 1 2]
        [--formats full top5 top3 top1 label round2 rsig] [--out runs/answer_formats]

Every run is skipped when its directory already holds it: a rerun only prints the table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd
from cli_runs import extractor, mean_sd
from real_pair import CIFAR_CLASSES, CIFAR_NORMALISE, CIFAR_TEACHER, HELDOUT, ROOT, cifar_pool, prepare_cifar_out

from extractor.config import LabelConfig, ProbeConfig, TrainConfig
from extractor.labeling.job import label_dataset
from extractor.labeling.preprocess import resolve_preprocess
from extractor.reporting.answer_format import store_answer_formats
from extractor.store.label_store import LabelStore
from extractor.teachers.simulated import ART_REVERSE_SIGMOID, AnswerFormat, SimulatedTeacher
from extractor.training.invariance import probe_views

STUDENT = "resnet8"
FORMATS: dict[str, AnswerFormat] = {
    "full": AnswerFormat(), "top5": AnswerFormat(topk=5), "top3": AnswerFormat(topk=3), "top1": AnswerFormat(topk=1),
    "label": AnswerFormat(label_only=True), "round2": AnswerFormat(decimals=2),
    "rsig": AnswerFormat(reverse_sigmoid=ART_REVERSE_SIGMOID),
}
TITLES = {"full": "full probabilities", "top5": "top-5", "top3": "top-3", "top1": "top-1 with its score",
          "label": "label only", "round2": "rounded to 2 decimals", "rsig": "reverse sigmoid (ART, beta 1, gamma 0.1)"}
CHANGED = ("top5", "top3", "top1", "round2")
"""Formats whose handling changed: they also train on the renormalised answers ("today")."""
_TRAIN_DEFAULTS = {field.name: field.default for field in dataclasses.fields(TrainConfig)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="train images in the pool (class-balanced)")
    parser.add_argument("--test-images", type=int, default=2000, help="test images, the held-out split")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "answer_formats")
    args = parser.parse_args()
    prepare_cifar_out(args.out)
    started = time.perf_counter()
    pool = args.out / f"cifar-{args.images}-{args.test_images}"
    split_csv = cifar_pool(pool, args.images, args.test_images)
    variants = [(name, handling) for name in args.formats for handling in (("new", "today") if name in CHANGED else ("new",))]
    stores = {variant: label_variant(pool, args.out, *variant) for variant in dict.fromkeys(
        [("full", "new"), *variants])}
    reference = reference_labels(stores[("full", "new")])
    rows: dict[tuple[str, str], list[dict]] = {}
    detected = {}
    for variant in variants:
        with LabelStore(stores[variant]) as store:
            found = store_answer_formats(store)[0]
        signs = {"flattened": "flattened", "does not rise": "perturbed", "precision": "precision"}
        flags = sorted({flag for text in found["warnings"] for sign, flag in signs.items() if sign in text})
        detected[variant] = found["line"].rsplit(" (", 1)[0] + (f"; warns: {', '.join(flags)}" if flags else "")
        for seed in args.seeds:
            run = args.out / f"{STUDENT}-{variant[0]}-{variant[1]}-e{args.epochs}-seed{seed}"
            if not (run / "run.json").exists():
                extractor("train", "--store", stores[variant], "--out", run, "--student", STUDENT, "--epochs",
                          args.epochs, "--split-by", split_csv, "split", "--heldout", HELDOUT, "--seed", seed,
                          "--quiet", nice=True)
            row = measure(run, reference)
            rows.setdefault(variant, []).append(row)
            print(f"{run.name}: fidelity to the teacher {row['fidelity']:.3f}, accuracy {row['accuracy']:.3f}, "
                  f"{row['minutes']:.1f} min", flush=True)
    shown = next((variant for variant in variants if variant[0] in CHANGED), variants[-1])
    report = extractor("report", args.out / f"{STUDENT}-{shown[0]}-{shown[1]}-e{args.epochs}-seed{args.seeds[0]}")
    print()
    print(table(rows, detected, args, time.perf_counter() - started))
    print(f"\nthe report of {report['run']} says: {json.dumps((report.get('answer_format') or {}).get('line'))}")


def label_variant(pool: Path, out: Path, name: str, handling: str) -> Path:
    """Labels ``pool`` with the CIFAR teacher answering in format ``name`` (renormalised for "today"), plus the
    invariance probe's views of its sample; returns the store."""
    answers = dataclasses.replace(FORMATS[name], renormalise=handling == "today")
    store_path = out / f"{pool.name}-{name}-{handling}.db"
    teacher = SimulatedTeacher.from_onnx(str(CIFAR_TEACHER), answers, threads=1)
    spec = resolve_preprocess(teacher, None, None, str(CIFAR_NORMALISE), str(CIFAR_NORMALISE), 1.0)
    cfg = LabelConfig(images=pool, store=store_path, preprocess=spec, workers=1, quiet=True)
    with LabelStore(store_path) as store:
        summary = label_dataset(cfg, teacher, store)
        # The probe asks about the first digests of the plain answers (``invariance.run_probe``): answer them
        # here, as `extractor train` would have asked a reachable teacher.
        plain = store.labels(teacher=teacher.fingerprint, preprocess=summary.preprocess)
        sample = tuple(sorted(plain["digest"])[:ProbeConfig().images])
        views = tuple(probe_views(_TRAIN_DEFAULTS["shift_frac"], _TRAIN_DEFAULTS["crop_scale"]).values())
        label_dataset(dataclasses.replace(cfg, views=views, only=sample), teacher, store)
    return store_path


def reference_labels(store_path: Path) -> dict[str, int]:
    """The real teacher's top-1 by image digest (the full format's answers)."""
    with LabelStore(store_path) as store:
        (teacher, preprocess, _), *_ = [s for s in store.label_sources() if "view" not in store.preprocess_spec(s[1])]
        frame = store.labels(teacher=teacher, preprocess=preprocess)
    return dict(zip(frame["digest"], frame["label"].astype(int)))


def measure(run: Path, reference: dict[str, int]) -> dict:
    """Held-out fidelity to the real teacher and accuracy against the CIFAR class folders."""
    heldout = pd.read_csv(run / "heldout.csv", dtype={"relative_path": str})
    classes = CIFAR_CLASSES.split(",")
    truth = [classes.index(path.split("/")[0]) for path in heldout["relative_path"]]
    trained = json.loads((run / "run.json").read_text())
    return {"fidelity": float((heldout["student_label"] == heldout["digest"].map(reference)).mean()),
            "fidelity_to_answers": float((heldout["student_label"] == heldout["teacher_label"]).mean()),
            "accuracy": float((heldout["student_label"] == pd.Series(truth)).mean()),
            "minutes": trained["train_seconds"] / 60, "augment": trained.get("augment", [])}


def table(rows: dict[tuple[str, str], list[dict]], detected: dict, args: argparse.Namespace, seconds: float) -> str:
    def cell(name: str, handling: str, key: str = "fidelity") -> str:
        return mean_sd([row[key] for row in rows.get((name, handling), [])], unit="%")

    first = next(iter(rows.values()))[0]
    title = (f"CIFAR-10 teacher -> {STUDENT}, {args.images} train images labeled, held out: {args.test_images} CIFAR "
             f"test images; {args.epochs} epochs; seeds {args.seeds}; augmentations used: "
             f"{','.join(first['augment']) or 'none'}; whole benchmark {seconds / 60:.0f} min")
    lines = [title, "",
             "| answers | detected | fidelity, today | fidelity, new | accuracy, new | train min |",
             "|---|---|---:|---:|---:|---:|"]
    for name in args.formats:
        today = cell(name, "today") if name in CHANGED else "same"
        minutes = statistics.mean(row["minutes"] for row in rows[(name, "new")])
        lines.append(f"| {TITLES[name]} | {detected[(name, 'new')]} | {today} | {cell(name, 'new')} | "
                     f"{cell(name, 'new', 'accuracy')} | {minutes:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
