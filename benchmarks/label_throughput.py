"""Labeling throughput against its limits, measured in one run on this machine.

(a) light teacher, decode-bound: the emotion teacher over the LFW faces. D = decode + preprocess
    img/s on all cores (no teacher), I = raw onnxruntime img/s on the same images already in
    memory; the one-machine limit is 1 / (1/D + 1/I). Target: end-to-end >= 0.85 x limit.
(b) heavy teacher, inference-bound: facenet-pytorch's InceptionResnetV1 with random weights
    (~110 MB ONNX) at 160 px. Target: end-to-end >= 0.9 x raw onnxruntime img/s.
(c) warm re-run over cold: >= 20x faster, zero teacher queries.

    python benchmarks/label_throughput.py [--images DIR] [--limit N] [--heavy-limit N]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractor.config import LabelConfig  # noqa: E402
from extractor.datasets.folder import hash_files, list_files  # noqa: E402
from extractor.datasets.loading import LoadRequest, load_many, load_parallel  # noqa: E402
from extractor.datasets.transforms import PreprocessSpec, normalize  # noqa: E402
from extractor.labeling.job import label_dataset  # noqa: E402
from extractor.store.label_store import LabelStore  # noqa: E402
from extractor.teachers.onnx import OnnxTeacher  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_pair import EMOTION, IMAGES  # noqa: E402

EMOTION_SPEC = PreprocessSpec(size=48, channels="gray", mean=(127.5,), std=(127.5,), center_crop=0.4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images in (a)")
    parser.add_argument("--heavy-limit", type=int, default=1280, help="images for the heavy teacher (b)")
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as scratch:
        images = _image_folder(args.images, Path(scratch), args.limit)
        print(f"machine: {workers} cores; images: {images} ({len(list_files(images))} files)\n")
        light(images, Path(scratch), workers)
        heavy(images, Path(scratch), workers, args.heavy_limit)


def light(images: Path, scratch: Path, workers: int) -> None:
    teacher = _light_teacher(scratch)
    spec = EMOTION_SPEC if teacher.layout.height == 48 else PreprocessSpec(size=teacher.layout.height)
    requests = _requests(images, spec)
    decode_rate, pixels = _decode_rate(requests, workers)
    batch = normalize(np.stack(pixels), spec)
    inference_rate = _inference_rate(teacher, batch)
    limit = 1 / (1 / decode_rate + 1 / inference_rate)
    store = scratch / "light.db"
    cfg = LabelConfig(images=images, store=store, preprocess=spec, workers=workers, quiet=True)
    with LabelStore(store) as label_store:
        cold = label_dataset(cfg, teacher, label_store)
        warm = label_dataset(cfg, teacher, label_store)
    end_to_end = cold.labeled / cold.seconds
    print("(a) light teacher, decode-bound")
    print(f"    D decode+preprocess, {workers} processes : {decode_rate:8.0f} img/s")
    print(f"    I raw onnxruntime, batch 64       : {inference_rate:8.0f} img/s")
    print(f"    limit 1/(1/D + 1/I)               : {limit:8.0f} img/s")
    print(f"    end-to-end `label` (cold)         : {end_to_end:8.0f} img/s  ({cold.labeled} images, {cold.seconds:.2f} s)")
    print(f"    ratio end-to-end / limit          : {end_to_end / limit:8.2f}   (target >= 0.85)")
    print("(c) warm re-run over cold")
    print(f"    cold {cold.seconds:.3f} s, warm {warm.seconds:.3f} s, warm queries {warm.queries}")
    print(f"    ratio cold / warm                 : {cold.seconds / warm.seconds:8.1f}   (target >= 20, 0 queries)\n")


def heavy(images: Path, scratch: Path, workers: int, limit: int) -> None:
    model = _inception_resnet(scratch / "inception_resnet_v1.onnx")
    teacher = OnnxTeacher(model)
    spec = PreprocessSpec(size=160, channels="rgb", mean=(127.5,), std=(128.0,))
    subset = scratch / "heavy_images"
    subset.mkdir()
    for file in sorted(list_files(images), key=lambda f: f.relative_path)[:limit]:
        (subset / file.path.name).symlink_to(file.path)
    pixels = [item.pixels for item in load_many(_requests(subset, spec)[:64]) if item.pixels is not None]
    raw = _inference_rate(teacher, normalize(np.stack(pixels), spec), runs=3)
    store = scratch / "heavy.db"
    cfg = LabelConfig(images=subset, store=store, preprocess=spec, workers=workers, quiet=True)
    with LabelStore(store) as label_store:
        cold = label_dataset(cfg, teacher, label_store)
    end_to_end = cold.labeled / cold.seconds
    print(f"(b) heavy teacher, inference-bound: InceptionResnetV1 ({model.stat().st_size / 1e6:.0f} MB ONNX) at 160 px")
    print(f"    raw onnxruntime, batch 64         : {raw:8.1f} img/s")
    print(f"    end-to-end `label`                : {end_to_end:8.1f} img/s  ({cold.labeled} images, {cold.seconds:.1f} s)")
    print(f"    ratio end-to-end / raw            : {end_to_end / raw:8.2f}   (target >= 0.9)")


def _requests(images: Path, spec: PreprocessSpec) -> list[LoadRequest]:
    return [LoadRequest(f.path, f.digest, spec) for f in hash_files(list_files(images), {})]


def _decode_rate(requests: list[LoadRequest], workers: int) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    with load_parallel(requests, workers) as loaded:
        pixels = [item.pixels for item in loaded if item.pixels is not None]
    return len(requests) / (time.perf_counter() - start), pixels


def _inference_rate(teacher: OnnxTeacher, batch: np.ndarray, runs: int = 1) -> float:
    teacher.predict(batch[:64])
    start = time.perf_counter()
    for _ in range(runs):
        for offset in range(0, len(batch), 64):
            teacher.predict(batch[offset:offset + 64])
    return runs * len(batch) / (time.perf_counter() - start)


def _light_teacher(scratch: Path) -> OnnxTeacher:
    if EMOTION.exists():
        return OnnxTeacher(EMOTION)
    from extractor.cli.demo_assets import build_demo_assets

    print("(the shared emotion teacher is absent: using the demo's digits CNN)")
    return OnnxTeacher(build_demo_assets(scratch / "demo").teacher)


def _image_folder(images: Path, scratch: Path, limit: int | None) -> Path:
    """The given folder (optionally its first N files), or scikit-image's LFW subset written as PNG."""
    if images.is_dir() and limit is None:
        return images
    folder = scratch / "images"
    folder.mkdir()
    if images.is_dir():
        for file in list_files(images)[:limit]:
            (folder / file.path.name).symlink_to(file.path)
        return folder
    from PIL import Image
    from skimage.data import lfw_subset

    print(f"({images} is absent: using scikit-image's lfw_subset)")
    for index, face in enumerate(lfw_subset()):
        Image.fromarray((face * 255).astype(np.uint8)).resize((250, 250)).save(folder / f"face_{index:03d}.png")
    return folder


def _inception_resnet(path: Path) -> Path:
    import torch
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1(pretrained=None, classify=True, num_classes=8).eval()  # random weights: a cost stand-in
    torch.onnx.export(model, (torch.randn(1, 3, 160, 160),), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    return path


if __name__ == "__main__":
    multiprocessing.freeze_support()
    main()
