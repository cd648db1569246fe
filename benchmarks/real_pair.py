"""The real teachers, faces and CIFAR-10 images the benchmarks use, from ../shared/assets (never committed here)."""
from __future__ import annotations

import csv
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
IMAGES = ASSETS / "lfw_gender_6k" / "images"
LABELS = ASSETS / "lfw_gender_6k" / "labels.csv"
EMOTION = ASSETS / "teacher_emotion_fer2013" / "emotion-fer2013.onnx"
GENDER = ASSETS / "teacher_gender_dlib" / "gender-v1.onnx"
EMOTION_FLAGS = ["--channels", "gray", "--size", "48", "--mean", "127.5", "--std", "127.5"]
GENDER_FLAGS = ["--channels", "rgb", "--size", "32", "--mean", "122.782,117.001,104.298", "--std", "256"]
CENTRE_CROP = ["--center-crop", "0.4"]
"""The crop that puts an LFW face (250 px, centred) where both teachers expect it."""
LFW_TEACHERS = {"emotion": (EMOTION, EMOTION_FLAGS), "gender": (GENDER, GENDER_FLAGS)}
"""name -> (ONNX file, `extractor label` flags) of the two teachers over the LFW faces, without a crop."""
GENDER_CLASSES = "female,male"
"""The gender teacher's classes, in its output order."""
GENDER_TRUTH = ["--ground-truth", LABELS, "--label-column", "gender", "--classes", GENDER_CLASSES]
"""`extractor report` flags measuring the gender teacher and its students against labels.csv."""
CIFAR = ASSETS / "cifar10_jpg"
"""All 60,000 CIFAR-10 JPEGs (train.zip, test.zip) and their labels (train_labels.csv, test_labels.csv)."""
CIFAR_TEACHER = ASSETS / "teacher_cifar10_winml" / "ImageClassifier.onnx"
CIFAR_NORMALISE = 127.5
"""The CIFAR teacher's input is ``(x - 127.5) / 127.5`` on the 0-255 scale, per channel."""
CIFAR_FLAGS = ["--mean", str(CIFAR_NORMALISE), "--std", str(CIFAR_NORMALISE)]
CIFAR_CLASSES = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck"
SPLIT_GROUPS = {"train": "cifar-train", "test": "cifar-test"}
"""The split group ``cifar_pool`` writes for each CIFAR-10 split, for `--split-by CSV split`."""
HELDOUT = 0.3
"""With this fraction the split hash holds out "cifar-test" (0.09) and keeps "cifar-train" (0.50)."""


def prepare_cifar_out(out: Path) -> None:
    """Makes the output folder of a benchmark on the CIFAR-10 pair; exits first where the shared CIFAR teacher
    is absent."""
    if not CIFAR_TEACHER.exists():
        raise SystemExit(f"{CIFAR_TEACHER} is absent: this benchmark needs the shared CIFAR-10 pair")
    out.mkdir(parents=True, exist_ok=True)


def cifar_images(split: str, count: int) -> Iterator[tuple[str, str, bytes]]:
    """The first ``count / 10`` images of each class of the CIFAR-10 ``split`` ("train" or "test"), in
    labels-file order, as (class name, file name such as ``0042.jpg``, JPEG bytes)."""
    per_class: dict[str, list[str]] = defaultdict(list)
    with open(CIFAR / f"{split}_labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if len(per_class[row["class_name"]]) < count // 10:
                per_class[row["class_name"]].append(row["path_in_zip"])
    with zipfile.ZipFile(CIFAR / f"{split}.zip") as archive:
        for class_name, paths in per_class.items():
            for path in paths:
                yield class_name, Path(path).name, archive.read(path)


def cifar_pool(folder: Path, train: int, test: int | None = None) -> Path:
    """A class-balanced pool of CIFAR-10 JPEGs, kept when already built.

    Without ``test``: the first ``train / 10`` train images of each class as ``folder/<class>/NNNN.jpg``;
    returns ``folder``, reused when it holds that many images. With ``test``: also the first ``test / 10``
    test images, every image named ``folder/<class>/{train,test}-NNNN.jpg``, and ``folder.csv`` giving each
    image's split group (SPLIT_GROUPS), written last; returns that CSV, reused when it exists.
    """
    if test is None:
        if folder.is_dir() and sum(1 for _ in folder.rglob("*.jpg")) == train // 10 * 10:
            return folder
        for class_name, name, data in cifar_images("train", train):
            (folder / class_name).mkdir(parents=True, exist_ok=True)
            (folder / class_name / name).write_bytes(data)
        return folder
    split_csv = folder.with_suffix(".csv")
    if split_csv.exists():
        return split_csv
    rows = []
    for split, count in (("train", train), ("test", test)):
        for class_name, name, data in cifar_images(split, count):
            relative = f"{class_name}/{split}-{name}"
            (folder / class_name).mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(data)
            rows.append({"path": relative, "split": SPLIT_GROUPS[split]})
    with open(split_csv, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return split_csv
