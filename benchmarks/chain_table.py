"""Distillation chains on the real pairs: teacher assistants on CIFAR-10 (Mirzadeh et al. 2020, seed 003), and
the seed-002 table (memory reduction vs fidelity drop along an iterative chain) on CIFAR-10 and gender/LFW.

CIFAR-10: the shared CIFAR teacher (teacher_cifar10_winml) is the black box. It labels a class-balanced pool
of train images plus test images; the test images are the held-out split (real_pair's SPLIT_GROUPS), so
fidelity (agreement with the black box) and accuracy (CIFAR labels) are measured on CIFAR test images through
each student's ONNX file. Per seed:

- TA: `extractor chain --links resnet20,resnet8`: teacher -> ResNet-20 -> ResNet-8, the ResNet-8 learning from
  the ResNet-20's answers only (the teacher assistant), at no query to the black box;
- direct: `extractor train --student resnet8`: teacher -> ResNet-8;
- hard: `extractor train --student resnet8 --targets hard`: the teacher's hard labels only.

Seed 0's chain goes on to resnet8:0.5 and resnet8:0.25 under `--stop-drop` (the seed-002 table). Gender/LFW:
teacher_gender_dlib labels the 6,049 LFW faces (centre crop 0.4, 32 px RGB), and the same four-link chain
distils from it (10% held out by content); accuracy is against labels.csv.

    python benchmarks/chain_table.py [--images 5000] [--test-images 1000] [--epochs 15] [--seeds 0 1 2]
        [--stop-drop 10] [--teacher ONNX] [--skip-lfw] [--out runs/chain_table]

`--teacher` replaces the shared CIFAR black box with a stronger one normalised like it, e.g. a ResNet-20
trained on the train labels by `cifar_teacher.py` (give it its own `--out`).

Every run is skipped when its directory already holds it: a rerun only prints the tables.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cli_runs
from cli_runs import label_cifar_split, mean_sd
from real_pair import (
    CENTRE_CROP,
    CIFAR_CLASSES,
    CIFAR_TEACHER,
    GENDER,
    GENDER_FLAGS,
    GENDER_TRUTH,
    HELDOUT,
    IMAGES,
    ROOT,
)

TA_LINKS = "resnet20,resnet8"
LONG_LINKS = "resnet20,resnet8,resnet8:0.5,resnet8:0.25"
AUGMENT = "flip,shift"
RESNET8_RUNS = {"direct": [], "hard": ["--targets", "hard"]}
"""The ResNet-8 trained on the teacher's answers beside each chain: name -> extra `extractor train` flags."""
CIFAR_TRUTH = ["--ground-truth", "folders", "--classes", CIFAR_CLASSES]
TAKD_ANCHOR = ("TAKD (Mirzadeh et al. 2020, Table 2), CIFAR-100, ResNet-110 teacher, ResNet-8 student: "
               "61.41% accuracy distilled directly, 61.82% through a teacher assistant")
extractor = partial(cli_runs.extractor, nice=True)
"""Every command at a lower priority with passive OpenMP waits: these trainings share the machine."""


def ta_seed(out: Path, store: Path, split_csv: Path, epochs: int, seed: int, links: str, stop_drop: float | None,
            resnet8_runs: dict[str, list[str]]) -> tuple[dict[str, dict], dict]:
    """One seed on the labeled CIFAR pool: `extractor chain --links LINKS` and, for each of ``resnet8_runs`` (name ->
    extra flags), `extractor train --student resnet8`; a run already in ``out`` is kept (or resumed).

    Returns:
        Rows by name ("ta": the chain's first link, "ta_student": its second, then ``resnet8_runs``'s), with
        fidelity, accuracy, size_mb and train_minutes; and the chain's report.
    """
    common = ["--store", store, "--epochs", epochs, "--split-by", split_csv, "split", "--heldout", HELDOUT,
              "--augment", AUGMENT, "--quiet"]
    chain = out / f"cifar-chain-seed{seed}"
    if not (chain / "chain.json").exists() or json.loads((chain / "chain.json").read_text())["status"] == "running":
        extractor("chain", "--out", chain, "--links", links, "--seed", seed,
                  *(["--stop-drop", stop_drop] if stop_drop is not None else []), *common)
    chain_report = extractor("report", chain, *CIFAR_TRUTH)
    rows = {"ta": chain_report["chain"][0], "ta_student": chain_report["chain"][1]}
    for name, extra in resnet8_runs.items():
        run = out / f"cifar-resnet8-{name}-seed{seed}"
        if not (run / "run.json").exists():
            extractor("train", "--out", run, "--student", "resnet8", "--seed", seed, *common, *extra,
                      *(["--resume"] if (run / "last.pt").exists() else []))
        report = extractor("report", run, *CIFAR_TRUTH)
        minutes = json.loads((run / "run.json").read_text())["train_seconds"] / 60
        rows[name] = {"fidelity": report["fidelity"], "accuracy": report["accuracy"],
                      "size_mb": report["student"]["size_mb"], "train_minutes": minutes}
    print(f"seed {seed}: " + ", ".join(f"{name} {row['fidelity']:.3f}" for name, row in rows.items()), flush=True)
    return rows, chain_report


def cifar(args: argparse.Namespace) -> tuple[str, str]:
    """Runs the CIFAR-10 experiments; returns the teacher-assistant table and seed 0's chain table."""
    _, split_csv, store = label_cifar_split(args.out, args.images, args.test_images, teacher=args.teacher, nice=True)
    rows: dict[str, list[dict]] = {"ta": [], "ta_student": [], "direct": [], "hard": []}
    chain_report: dict = {}
    for seed in args.seeds:
        links = LONG_LINKS if seed == args.seeds[0] else TA_LINKS
        found, report = ta_seed(args.out, store, split_csv, args.epochs, seed, links, args.stop_drop, RESNET8_RUNS)
        for key, row in found.items():
            rows[key].append(row)
        if seed == args.seeds[0]:
            chain_report = report
    teacher = chain_report["teacher"]
    lines = [f"CIFAR-10: black box {args.teacher.stem} ({teacher['size_mb']:.2f} MB, {teacher['params']:,} params, "
             f"{100 * teacher['accuracy']:.1f}% accurate on these test images); pool {args.images} train images, "
             f"held out {chain_report['eval_images']} test images; {args.epochs} epochs per student, 32 px, "
             f"{AUGMENT}; seeds {args.seeds} (mean ± sd); 2-core CPU shared with other jobs",
             "", "| student | learns from | size (MB) | fidelity % | accuracy % | train min |",
             "|---|---|---:|---:|---:|---:|"]
    for label, source, key in (("ResNet-20 (the assistant)", "teacher", "ta"),
                               ("ResNet-8, through the assistant", "ResNet-20's answers", "ta_student"),
                               ("ResNet-8, direct", "teacher (hard + soft)", "direct"),
                               ("ResNet-8, hard labels only", "teacher's top-1 only", "hard")):
        group = rows[key]
        # percentages averaged, not fractions: a mean on a .x5 tie rounds as in the tables already reported
        fidelity, accuracy = ([100 * r[name] for r in group if r[name] is not None]
                              for name in ("fidelity", "accuracy"))
        lines.append(f"| {label} | {source} | {group[0]['size_mb']:.3f} | {mean_sd(fidelity, scale=1)} | "
                     f"{mean_sd(accuracy, scale=1)} | "
                     f"{statistics.mean(r['train_minutes'] for r in group):.1f} |")
    lines += ["", f"anchor: {TAKD_ANCHOR}"]
    return "\n".join(lines), chain_table(f"CIFAR-10, {args.teacher.stem}", chain_report, args)


def lfw(args: argparse.Namespace) -> str:
    """Runs the four-link chain on the gender/LFW pair; returns its table."""
    store = args.out / "lfw-gender.db"
    extractor("label", "--teacher", GENDER, "--images", IMAGES, "--store", store, *GENDER_FLAGS, *CENTRE_CROP,
              "--quiet")
    chain = args.out / "lfw-gender-chain"
    if not (chain / "chain.json").exists() or json.loads((chain / "chain.json").read_text())["status"] == "running":
        extractor("chain", "--store", store, "--out", chain, "--links", LONG_LINKS, "--epochs", args.epochs,
                  "--stop-drop", args.stop_drop, "--seed", args.seeds[0], "--augment", AUGMENT, "--quiet")
    report = extractor("report", chain, *GENDER_TRUTH)
    return chain_table("gender/LFW, teacher_gender_dlib", report, args)


def chain_table(title: str, report: dict, args: argparse.Namespace) -> str:
    """The seed-002 table: each link's memory reduction against its fidelity drop."""
    teacher = report["teacher"]
    lines = [f"{title}: {teacher['size_mb']:.2f} MB teacher, {report['eval_images']} held-out images, "
             f"{args.epochs} epochs per link, stop rule: more than {report['stop_drop']} points below link 0"
             + (f" (stopped at link {report['stopped_at']})" if report["stopped_at"] is not None else ""),
             "", "| link | student | params | size (MB) | memory reduction vs teacher | fidelity % | drop vs teacher "
             "(points) | drop vs link 0 (points) | fidelity to parent % | accuracy % | train min |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| teacher | black box | {teacher['params']:,} | {teacher['size_mb']:.3f} | | 100.0 | | | | "
             f"{100 * teacher['accuracy']:.1f} | |"]
    for row in report["chain"]:
        reduction = 100 * (1 - 1 / row["size_reduction_vs_teacher"])
        lines.append(f"| {row['link']}{' (stop)' if row['stop'] else ''} | {row['architecture']} w{row['width']} | "
                     f"{row['params']:,} | {row['size_mb']:.3f} | {reduction:+.0f}% | {100 * row['fidelity']:.1f} | "
                     f"{100 * (1 - row['fidelity']):.1f} | {row['drop_from_first_points']:.1f} | "
                     f"{100 * row['fidelity_to_parent']:.1f} | {100 * row['accuracy']:.1f} | "
                     f"{row['train_minutes']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="CIFAR train images in the pool (class-balanced)")
    parser.add_argument("--test-images", type=int, default=1000, help="CIFAR test images, the held-out split")
    parser.add_argument("--epochs", type=int, default=15, help="epochs per student")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--stop-drop", type=float, default=10.0, help="chain stop rule, fidelity points")
    parser.add_argument("--teacher", type=Path, default=CIFAR_TEACHER,
                        help="the CIFAR black box: the shared one, or one from cifar_teacher.py")
    parser.add_argument("--skip-lfw", action="store_true", help="CIFAR only")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "chain_table")
    args = parser.parse_args()
    for path in (args.teacher, GENDER, IMAGES):
        if not path.exists():
            raise SystemExit(f"{path} is absent: this benchmark needs the shared real pairs")
    args.out.mkdir(parents=True, exist_ok=True)
    ta_table, cifar_chain = cifar(args)
    tables = [ta_table, cifar_chain] if args.skip_lfw else [ta_table, cifar_chain, lfw(args)]
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
