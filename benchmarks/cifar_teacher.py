"""Trains a strong CIFAR-10 teacher on the train labels and exports it to ONNX, to be used from then on only
as a black box (the teacher-assistant experiment of `chain_table.py --teacher`).

The shared CIFAR teacher is small (50k params, 64% accurate): no student here is much smaller, so there is
no teacher-student gap for an assistant to bridge. This script gives one: a zoo network trained with the
product's own trainer on the ground-truth labels of the CIFAR-10 train images (hard targets, flip+shift),
exported with the students' ONNX export. Its inputs are normalised like the shared teacher's
(real_pair.CIFAR_FLAGS). The test accuracy printed is measured on the CIFAR-10
test images through the exported ONNX file.

    python benchmarks/cifar_teacher.py [--student resnet20] [--epochs 5] [--images 50000]
        [--batch-size 128] [--lr 0.006] [--device auto] [--out runs/cifar_teacher]

On a GPU, where there is one: `--student resnet56 --epochs 100` (several minutes); on 2 CPU cores a
ResNet-20 trains at about 240 images/s, so 5 epochs of all 50,000 images take about 17 minutes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_pair import CIFAR, CIFAR_CLASSES, CIFAR_NORMALISE, ROOT, cifar_images

from extractor.datasets.decode import decode_image
from extractor.students.batches import DistilTensors, InputConfig, num_batches
from extractor.students.config import DistillConfig, OptimConfig
from extractor.students.export import export_onnx
from extractor.students.hooks import LRScheduleHook, ProgressHook
from extractor.students.tasks import DistillTask
from extractor.students.trainer import Trainer, build_optimizer
from extractor.students.zoo import STUDENTS, CifarResNet, build_student
from extractor.training.pipeline import resolve_device

NORMALISE = InputConfig(mean=(CIFAR_NORMALISE,), std=(CIFAR_NORMALISE,), flip=True, shift_frac=0.125)
"""real_pair.CIFAR_FLAGS, with the augmentation the students use on CIFAR (flip+shift)."""


def cifar_split(split: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``real_pair.cifar_images(split, count)`` (class-balanced) as (N, 3, 32, 32) uint8 images and (N,)
    int64 labels in the standard class order."""
    classes = CIFAR_CLASSES.split(",")
    pixels, labels = [], []
    for class_name, _, data in cifar_images(split, count):
        pixels.append(np.asarray(decode_image(data).convert("RGB")))
        labels.append(classes.index(class_name))
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


def onnx_accuracy(path: Path, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of the ONNX model at ``path`` on uint8 ``images``, normalised as it was trained."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = ((images.float() - CIFAR_NORMALISE) / CIFAR_NORMALISE).numpy()
    predicted = np.concatenate([session.run(["logits"], {"input": inputs[start:start + batch]})[0].argmax(1)
                                for start in range(0, len(inputs), batch)])
    return float((predicted == labels.numpy()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="resnet20", help="a zoo architecture, or resnetN of any depth 6n+2")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--images", type=int, default=50000, help="train images used (class-balanced)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=6e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto: CUDA when present)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "cifar_teacher")
    args = parser.parse_args()
    if not (CIFAR / "train.zip").exists():
        raise SystemExit(f"{CIFAR} is absent: this benchmark needs the shared CIFAR-10 images")
    path = train_teacher(args.out, args.student, args.images, args.epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, device=args.device)
    accuracy = cifar_test_accuracy(path, 10000)
    seconds = json.loads(path.with_suffix(".json").read_text())["train_seconds"]
    print(f"{path}: {args.student}, {args.images} train images x {args.epochs} epochs in {seconds / 60:.1f} min; "
          f"CIFAR-10 test accuracy {100 * accuracy:.2f}% (10,000 images, through the ONNX file)")


def build_teacher(name: str) -> torch.nn.Module:
    """A zoo architecture, or ``resnetN``: the CIFAR ResNet of any depth N = 6n + 2 (the zoo has 8 and 20)."""
    depth = name.removeprefix("resnet")
    if name not in STUDENTS and depth.isdigit():
        return CifarResNet(int(depth), 10, 3)
    return build_student(name, 10, 3)


def train_teacher(out: Path, student: str, images: int, epochs: int, *, batch_size: int = 128, lr: float = 6e-3,
                  seed: int = 0, device: str = "auto") -> Path:
    """Trains ``student`` on the labels of ``images`` CIFAR-10 train images and exports it, unless its ONNX file
    is already in ``out``; on CUDA the images stay on the device and steps run under bfloat16 autocast, as in
    `extractor train`. Returns the ONNX file; beside it, ``.json`` holds the training seconds."""
    path = out / f"{student}-{images}-e{epochs}-seed{seed}.onnx"
    if path.exists():
        return path
    images_u8, labels = cifar_split("train", images)
    one_hot = torch.nn.functional.one_hot(labels, 10).float()
    data = DistilTensors.from_teacher(images_u8, labels, one_hot, "label", temperature=1.0)
    torch.manual_seed(seed)
    where = resolve_device(device)
    task = DistillTask(build_teacher(student), DistillConfig(targets="hard")).to(where)
    optim = OptimConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    optimizer, scheduler = build_optimizer(task, optim, num_batches(len(data), batch_size))
    started = time.perf_counter()
    Trainer(task, optimizer, data.to(where) if where.type == "cuda" else data,
            [LRScheduleHook(scheduler), ProgressHook(quiet=not sys.stderr.isatty())], epochs=epochs,
            batch_size=batch_size, seed=seed, inputs=NORMALISE, mixed_precision=where.type == "cuda").train()
    seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    error = export_onnx(task.student.cpu(), path, 3, 32)
    path.with_suffix(".json").write_text(json.dumps({"train_seconds": seconds, "onnx_max_abs_diff": error}))
    return path


def cifar_test_accuracy(path: Path, images: int) -> float:
    """``onnx_accuracy`` of the ONNX model at ``path`` on the first ``images`` CIFAR-10 test images (class-balanced)."""
    return onnx_accuracy(path, *cifar_split("test", images))


if __name__ == "__main__":
    main()
