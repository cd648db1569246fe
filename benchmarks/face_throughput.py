"""Measures face detection throughput (batched versus one image at a time) and its share of labeling time.

Rows, all on the same decoded images in one run:

- ``mtcnn defaults, single``: facenet-pytorch's MTCNN as most code calls it, one full-size image per call
  (the baseline);
- ``FaceDetector, single`` and ``FaceDetector, batched``: this project's detector (letterboxed canvas,
  channels-last nets), one image per call and ``--batch`` images per call;
- ``FaceDetector, batched, N procs``: the batched detector in ``--procs`` worker processes of one
  torch thread each, the way to use several cores (images travel to the workers already decoded).

Then the stages of labeling with the emotion teacher are timed separately on the same images
(decode, detect, face crop and teacher preprocessing, onnxruntime teacher) to show the share of the
total that detection takes.

Run from the repository root: ``python benchmarks/face_throughput.py [--images DIR] [--limit N]``.
Without ``--images`` it reads ``../shared/assets/lfw_gender_6k/images``, or scikit-image's
``data.lfw_subset()`` (200 25x25 crops, half of them faces) when that folder is absent.

``--threads`` sets the intra-op threads of torch (the baseline and `FaceDetector`'s ``threads``) and of
onnxruntime (default 1). On a 2-core machine that is also running anything else, 2 threads make MTCNN
many times slower, not faster: OpenMP workers spin at every barrier while their partner core is
taken (measured here: 5-30 img/s at 2 threads against about 100 at 1). Each figure is the best of
``--rounds`` rounds; the load average is printed because other processes move every figure, and the
CPU time per image, which they move less.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(ROOT))

from extractor.datasets.decode import decode_image  # noqa: E402
from extractor.datasets.faces import FaceDetector, FaceSpec, face_region  # noqa: E402
from extractor.datasets.transforms import (  # noqa: E402
    PreprocessSpec,
    crop_and_resize,
    normalize,
    to_pixels,
)

ASSETS = ROOT.parent / "shared" / "assets"
LFW = ASSETS / "lfw_gender_6k" / "images"
EMOTION_TEACHER = ASSETS / "teacher_emotion_fer2013" / "emotion-fer2013.onnx"
EMOTION_SPEC = PreprocessSpec(size=48, channels="gray", mean=(127.5,), std=(127.5,))
TEACHER_BATCH = 64

_worker_detector: FaceDetector | None = None


def load_files(folder: Path | None, limit: int) -> tuple[list[bytes], str]:
    """Encoded images (as the labeling job reads them) and where they came from."""
    folder = folder or (LFW if LFW.is_dir() else None)
    if folder is not None:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
        return [p.read_bytes() for p in paths], str(folder)
    from skimage import data

    encoded = []
    for face in data.lfw_subset()[:limit]:
        buffer = io.BytesIO()
        Image.fromarray((face * 255).round().astype(np.uint8), "L").save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    return encoded, "skimage.data.lfw_subset()"


def best_seconds(run: Callable[[], object], rounds: int) -> tuple[float, float, object]:
    """(wall s, process CPU s, result) of the fastest of ``rounds`` runs."""
    best = (float("inf"), 0.0, None)
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best[0]:
            best = (wall, cpu, result)
    return best


def naive_single(images: Sequence[Image.Image]) -> int:
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, select_largest=False, device=torch.device("cpu"))
    found = 0
    for img in images:
        boxes, _ = mtcnn.detect(img.convert("RGB"))
        found += boxes is not None
    return found


def _init_worker() -> None:
    global _worker_detector
    _worker_detector = FaceDetector()


def _detect_in_worker(images: list[Image.Image]) -> int:
    return sum(face is not None for face in _worker_detector.detect(images))


def detect_in_processes(pool: ProcessPoolExecutor, images: Sequence[Image.Image], chunk: int) -> int:
    chunks = [list(images[i:i + chunk]) for i in range(0, len(images), chunk)]
    return sum(pool.map(_detect_in_worker, chunks))


def teacher_session(threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(EMOTION_TEACHER), options, providers=["CPUExecutionProvider"])


def run_teacher(session, batch: np.ndarray) -> None:
    name = session.get_inputs()[0].name
    for start in range(0, len(batch), TEACHER_BATCH):
        session.run(None, {name: batch[start:start + TEACHER_BATCH]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder of images (default: the shared LFW faces)")
    parser.add_argument("--limit", type=int, default=384, help="images to use")
    parser.add_argument("--batch", type=int, default=16, help="images per detector call when batched")
    parser.add_argument("--threads", type=int, default=1, help="torch/onnxruntime threads in this process")
    parser.add_argument("--procs", type=int, default=2, help="worker processes for the multi-process row")
    parser.add_argument("--rounds", type=int, default=2, help="repeats per figure; the best is kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    encoded, source = load_files(args.images, args.limit)
    count = len(encoded)
    print(f"{count} images from {source}; {os.cpu_count()} cores, torch threads {args.threads}, "
          f"load average {os.getloadavg()[0]:.2f}")
    decode_s, _, images = best_seconds(lambda: [decode_image(data) for data in encoded], args.rounds)

    detector = FaceDetector(batch_size=args.batch, threads=args.threads)
    single = FaceDetector(batch_size=1, threads=args.threads)
    detector.detect(images[:2])  # warm-up: first-call allocations
    rows: list[tuple[str, float, float | None, int]] = []
    for name, run in (("mtcnn defaults, single", lambda: naive_single(images)),
                      ("FaceDetector, single", lambda: sum(f is not None for f in single.detect(images))),
                      ("FaceDetector, batched", lambda: detector.detect(images))):
        wall, cpu, result = best_seconds(run, args.rounds)
        found = result if isinstance(result, int) else sum(f is not None for f in result)
        rows.append((name, wall, cpu, found))
    with ProcessPoolExecutor(args.procs, initializer=_init_worker) as pool:
        detect_in_processes(pool, images[:args.procs * 2], 2)  # warm-up: start workers, load weights
        wall, _, found = best_seconds(lambda: detect_in_processes(pool, images, args.batch * 2), args.rounds)
        rows.append((f"FaceDetector, batched, {args.procs} procs", wall, None, found))  # CPU is in the workers

    print(f"\n{'detection':32s} {'img/s':>8s} {'cpu ms/img':>11s} {'faces':>6s}")
    for name, wall, cpu, found in rows:
        cpu_ms = "-" if cpu is None else f"{1e3 * cpu / count:.2f}"
        print(f"{name:32s} {count / wall:8.1f} {cpu_ms:>11s} {found:6d}")
    baseline, single_wall, batched_wall, procs_wall = (row[1] for row in rows)
    print(f"batched / mtcnn-defaults single: {baseline / batched_wall:.2f}x; batched / single: "
          f"{single_wall / batched_wall:.2f}x; {args.procs} procs / mtcnn-defaults single: "
          f"{baseline / procs_wall:.2f}x")
    baseline_cpu, single_cpu, batched_cpu = (row[2] for row in rows[:3])
    print(f"CPU per image, steadier than wall time on a shared machine: mtcnn-defaults single / batched "
          f"{baseline_cpu / batched_cpu:.2f}x; single / batched {single_cpu / batched_cpu:.2f}x")

    faces = detector.detect(images)
    spec = FaceSpec(mode="fallback-center")
    crop_s, _, batch = best_seconds(lambda: normalize(np.stack(
        [to_pixels(crop_and_resize(face_region(img, face, spec), EMOTION_SPEC), EMOTION_SPEC)
         for img, face in zip(images, faces)]), EMOTION_SPEC), args.rounds)
    stages = {"decode": decode_s, "detect (batched)": batched_wall, "crop + preprocess": crop_s}
    if EMOTION_TEACHER.is_file():
        session = teacher_session(args.threads)
        run_teacher(session, batch[:TEACHER_BATCH])
        stages["emotion teacher"] = best_seconds(lambda: run_teacher(session, batch), args.rounds)[0]
    else:
        print(f"\n{EMOTION_TEACHER} is absent: the teacher stage is left out")
    total = sum(stages.values())
    print(f"\n{'labeling stage (one process)':32s} {'ms/img':>8s} {'share':>7s}")
    for name, seconds in stages.items():
        print(f"{name:32s} {1e3 * seconds / count:8.2f} {seconds / total:7.1%}")
    print(f"{'total':32s} {1e3 * total / count:8.2f}   ({count / total:.0f} img/s); "
          f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
