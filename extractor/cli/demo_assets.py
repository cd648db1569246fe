"""The built-in demo's black box and images, made from what installed packages ship.

scikit-learn ships 1,797 handwritten digits. The demo trains a small CNN on half of them,
exports it to ONNX and from then on treats that file as an opaque teacher; all digits are
written as PNG files in class-per-folder layout, so ground truth exists for the report.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DEMO_SIZE = 32


@dataclass(frozen=True)
class DemoAssets:
    teacher: Path
    images: Path
    teacher_train_accuracy: float


def build_demo_assets(folder: Path, *, seed: int = 0, epochs: int = 8) -> DemoAssets:
    """Writes ``folder/teacher.onnx`` and ``folder/images/<digit>/<n>.png`` (idempotent)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.stack([_upsample(image) for image in digits.images])  # (N, 32, 32) uint8
    images = folder / "images"
    for index, (image, target) in enumerate(zip(pixels, digits.target)):
        path = images / str(target) / f"digit_{index:04d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, "L").save(path)
    teacher = folder / "teacher.onnx"
    accuracy = float("nan")
    if not teacher.exists():
        accuracy = _train_teacher(pixels[::2], digits.target[::2], teacher, seed=seed, epochs=epochs)
    return DemoAssets(teacher=teacher, images=images, teacher_train_accuracy=accuracy)


def _upsample(image: np.ndarray) -> np.ndarray:
    scaled = (image * (255.0 / 16.0)).astype(np.uint8)
    return np.asarray(Image.fromarray(scaled, "L").resize((DEMO_SIZE, DEMO_SIZE), Image.BICUBIC))


def _train_teacher(pixels: np.ndarray, targets: np.ndarray, out: Path, *, seed: int, epochs: int) -> float:
    import torch  # only when the demo teacher is built: `extractor label` never imports torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        # A wide classifier head makes the black box ~8 MB, so the demo shows a real size trade.
        nn.Flatten(), nn.Linear(64 * 8 * 8, 512), nn.ReLU(), nn.Dropout(0.3), nn.Linear(512, 10),
    )
    x = torch.from_numpy(pixels).float().unsqueeze(1).div(255.0)
    y = torch.from_numpy(targets).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (x[:1],), str(out), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    log.info("demo teacher trained: %.1f%% on its own training digits", accuracy * 100)
    return accuracy
