"""Detection vs centre crop on the LFW faces, for the emotion and gender teachers.

For each teacher: labels the faces twice through `extractor label` (MTCNN face crop vs the fixed
centre crop), then prints faces found, the teacher's mean confidence (max probability), how often
the two crops give the same label, the label spread, and for the gender teacher accuracy against
labels.csv for both crops.

    python benchmarks/face_crops.py [--limit N] [--out runs/face_crops]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_runs import extractor, run_cli
from real_pair import CENTRE_CROP, GENDER_CLASSES, IMAGES, LABELS, LFW_TEACHERS, ROOT

CLASSES = {"gender": GENDER_CLASSES.split(",")}
"""Teachers whose labels are checked against labels.csv, and their class names."""
CROPS = {"detect": ["--faces", "detect"], "centre 0.4": CENTRE_CROP}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "face_crops")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    truth = pd.read_csv(LABELS).set_index("filename")["gender"]
    print("| teacher | crop | labeled | mean confidence | same label as other crop | labels | accuracy (labels.csv) |")
    print("|---|---|---:|---:|---:|---|---:|")
    for name, (teacher, flags) in LFW_TEACHERS.items():
        classes = CLASSES.get(name)
        store = args.out / f"{name}.db"
        frames = {}
        for crop, crop_flags in CROPS.items():
            summary = extractor("label", "--teacher", teacher, "--images", IMAGES, "--store", store, *flags,
                                *crop_flags)
            frames[crop] = summary
        run_cli("export", "--store", store, "--format", "parquet", "--out", args.out / f"{name}.parquet")
        table = pd.read_parquet(args.out / f"{name}.parquet")
        by_crop = {p: group.set_index("relative_path") for p, group in table.groupby("preprocess")}
        # the face-crop preprocessing is the one with fewer labels only if some faces were missed; tell them
        # apart by the job summaries' order instead: the first registered preprocess is the detect run
        order = list(dict.fromkeys(table.sort_values("created")["preprocess"]))
        detect, centre = by_crop[order[0]], by_crop[order[1]]
        common = detect.index.intersection(centre.index)
        agree = (detect.loc[common, "label"] == centre.loc[common, "label"]).mean()
        for crop, frame in (("detect", detect), ("centre 0.4", centre)):
            probs = np.stack(frame["soft"].to_numpy())
            if frame["kind"].iloc[0] == "logits":
                probs = np.exp(probs - probs.max(1, keepdims=True))
                probs /= probs.sum(1, keepdims=True)
            spread = frame["label"].value_counts(normalize=True).round(2).to_dict()
            accuracy = "n/a"
            if classes:
                named = frame["label"].map(lambda i: classes[int(i)])
                accuracy = f"{(named == truth.loc[frame.index]).mean():.1%}"
            print(f"| {name} | {crop} | {len(frame)} (failed {frames[crop]['failed']}) | {probs.max(1).mean():.3f} "
                  f"| {agree:.1%} | {spread} | {accuracy} |")


if __name__ == "__main__":
    main()
