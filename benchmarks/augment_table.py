"""Augmentation policy by measurement, on four teacher/data pairs: fidelity with all augmentations (flip,
shift, crop with the stored answer), with none, and with the invariance probe's choice (`--augment auto`,
the default).

Pairs: the demo's digits CNN over scikit-learn's digits; the dlib gender CNN and the FER2013 emotion CNN over
LFW faces (centre crop 0.4, as in tests/assets.py); the Windows-ML CIFAR-10 CNN over CIFAR-10 train JPEGs
(class-balanced). Each pair: label a pool of images, probe the teacher (256 images x 4 probe views, charged
to the label job's ledger), then train one student per setting with the same seed, split and epochs. The
probe's choice is read first (from the stored probe answers); when it is exactly "all" or "none", that run
is the same configuration and is not repeated.

    python benchmarks/augment_table.py [--pairs digits gender emotion cifar] [--images 2000] [--epochs 8]
        [--student resnet8] [--size 32] [--heldout 0.5] [--seeds 0] [--out runs/augment_table]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_runs import extractor, mean_sd
from real_pair import (
    CENTRE_CROP,
    CIFAR_FLAGS,
    CIFAR_TEACHER,
    EMOTION,
    EMOTION_FLAGS,
    GENDER,
    GENDER_FLAGS,
    IMAGES,
    ROOT,
    cifar_pool,
)

SETTINGS = {"all": "flip,shift,crop", "none": "none", "probe": "auto"}
AUGMENTATIONS = ("flip", "shift", "crop")


def same_augmentations(chosen: list[str], setting: str) -> bool:
    """Whether the probe chose exactly the augmentations of ``setting`` ("all" or "none")."""
    named = set(SETTINGS[setting].split(",")) - {"none"}
    return set(chosen) == named


def lfw_pool(folder: Path, count: int) -> Path:
    """The first ``count`` LFW faces (sorted by name), copied."""
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for source in sorted(IMAGES.iterdir())[:count]:
            shutil.copy2(source, folder / source.name)
    return folder


def digits_pool(folder: Path) -> tuple[Path, Path]:
    from extractor.cli.demo_assets import build_demo_assets

    assets = build_demo_assets(folder)
    return assets.teacher, assets.images


def pairs(out: Path, count: int) -> dict[str, Callable[[], tuple[Path, Path, list[str]]]]:
    """name -> a function making (teacher, images, label flags), so only the pairs asked for are built."""
    return {
        "digits": lambda: (*digits_pool(out / "digits"), ["--channels", "gray", "--size", "32", "--std", "255"]),
        "gender": lambda: (GENDER, lfw_pool(out / "lfw", count), GENDER_FLAGS + CENTRE_CROP),
        "emotion": lambda: (EMOTION, lfw_pool(out / "lfw", count), EMOTION_FLAGS + CENTRE_CROP),
        "cifar": lambda: (CIFAR_TEACHER, cifar_pool(out / "cifar", count), CIFAR_FLAGS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=["digits", "gender", "emotion", "cifar"])
    parser.add_argument("--images", type=int, default=2000, help="pool size (digits: all 1,797)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="[default: the student's own, as extractor train]")
    parser.add_argument("--heldout", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--probe-only", action="store_true", help="label and probe; train nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "augment_table")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    makers = pairs(args.out, args.images)
    results: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for name in args.pairs:
        teacher, images, flags = makers[name]()
        store = args.out / f"{name}.db"
        extractor("label", "--teacher", teacher, "--images", images, "--store", store, *flags, "--quiet")
        measured, chosen = probe(store)
        print(name, json.dumps(measured), "->", ",".join(chosen) or "none", flush=True)
        if args.probe_only:
            continue
        for seed in args.seeds:
            done: dict[str, dict] = {}
            for setting in ("all", "none", "probe"):
                out = args.out / f"{name}-{setting}-seed{seed}"
                same = [other for other in ("all", "none") if setting == "probe" and same_augmentations(chosen, other)]
                if same:
                    done[setting] = done[same[0]]  # the same configuration: the same run
                else:
                    if not (out / "run.json").exists():
                        extractor("train", "--store", store, "--out", out, "--augment", SETTINGS[setting],
                                  "--student", args.student, "--size", args.size, "--epochs", args.epochs,
                                  "--heldout", args.heldout, "--seed", seed, "--workers", 1, "--quiet",
                                  *(["--lr", args.lr] if args.lr else []))
                    done[setting] = json.loads((out / "run.json").read_text())
                results[(name, setting)].append(done[setting])
                run = done[setting]
                print(f"{name:8s} {setting:5s} seed {seed}: fidelity {run['fidelity']:.3f} augment "
                      f"{','.join(run['augment']) or 'none'}", flush=True)
    if not args.probe_only:
        print()
        print(table(results, args))


def probe(store: Path) -> tuple[dict, list[str]]:
    """The invariance probe `extractor train` runs (its answers stored: free after the first time), and the
    augmentations the default policy uses with the stored answer."""
    from extractor.config import AUTO, ProbeConfig, TrainConfig
    from extractor.training.invariance import STORED, choose_policy, run_probe
    from extractor.training.answers import select_answers
    from extractor.store.label_store import LabelStore

    defaults = TrainConfig(store=store, out=store)
    with LabelStore(store) as label_store:
        answers = select_answers(label_store, None)
        result = run_probe(label_store, answers, ProbeConfig(), shift_frac=defaults.shift_frac,
                           crop_scale=defaults.crop_scale, may_query=True, workers=1, quiet=True)
    policy = choose_policy(result, (AUTO,), [], defaults.probe.max_change)
    return result.as_dict(), [name for name, use in policy.items() if use == STORED]


def table(results: dict[tuple[str, str], list[dict]], args: argparse.Namespace) -> str:
    from extractor.config import ProbeConfig

    def cell(name: str, setting: str) -> str:
        # percentages averaged, not fractions: a mean on a .x5 tie rounds as in the tables already reported
        return mean_sd([100 * run["fidelity"] for run in results.get((name, setting), [])], scale=1, unit="%")

    lines = [f"{args.student} at {args.size} px, {args.epochs} epochs, pool of up to {args.images} images, "
             f"{args.heldout:.0%} held out, seeds {args.seeds}; the default uses augmentations with the stored "
             f"answer, least changing first, while their changes sum to less than {ProbeConfig().max_change:.0%}",
             "",
             "| pair | teacher's answer changed: flip / 1 px / shift / crop | probe's choice | all | none | "
             "probe's choice (default) |", "|---|---|---|---:|---:|---:|"]
    for name in args.pairs:
        runs = results.get((name, "probe"))
        if not runs:
            continue
        changed = runs[0]["invariance"]["changed"]  # the same probe for every run of a pair
        rates = " / ".join(f"{100 * changed[key]:.0f}%" for key in ("flip", "shift1", "shift", "crop"))
        lines.append(f"| {name} | {rates} | {','.join(runs[0]['augment']) or 'none'} | {cell(name, 'all')} | "
                     f"{cell(name, 'none')} | {cell(name, 'probe')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
