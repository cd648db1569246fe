"""Ray on one node vs the local executor on the same cores: the overhead ratio and where the rest goes.

The emotion teacher over LFW faces (../shared/assets), each run into a fresh store (cold: every image is
sent). Local: `--executor local` (decode processes + an onnxruntime session on all cores). Ray: a local
cluster with the same CPUs, one label worker per CPU (each decodes, preprocesses and runs its own
single-threaded session), the driver committing. Target: Ray >= 0.8 x local img/s.

Where the rest goes: the Ray run's fixed cost (cluster join, workers started and teachers loaded: the time
to label 8 images), and the per-batch round trip of a Ray actor call carrying a batch's requests.

    python benchmarks/ray_throughput.py [--limit 3000] [--cpus 2] [--batch-size 64] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_pair import EMOTION, IMAGES  # noqa: E402

from extractor.config import LabelConfig  # noqa: E402
from extractor.datasets.transforms import PreprocessSpec  # noqa: E402
from extractor.labeling.job import label_dataset  # noqa: E402
from extractor.store.label_store import LabelStore  # noqa: E402
from extractor.teachers.source import TeacherOpener, TeacherSource, open_teacher  # noqa: E402

EMOTION_SPEC = PreprocessSpec(size=48, channels="gray", mean=(127.5,), std=(127.5,), center_crop=0.4)
TARGET = 0.8


def run(folder: Path, executor: str, work: Path, cpus: int, batch_size: int, **options) -> float:
    """Seconds to label ``folder`` into a fresh store."""
    source = TeacherSource(str(EMOTION))
    store = work / f"{executor}-{time.monotonic_ns()}.db"
    cfg = LabelConfig(images=folder, store=store, preprocess=EMOTION_SPEC, batch_size=batch_size, workers=cpus,
                      quiet=True, executor=executor, **options)
    with LabelStore(store) as label_store:
        clock = time.perf_counter()
        summary = label_dataset(cfg, open_teacher(source), label_store, opener=TeacherOpener.of(source))
        seconds = time.perf_counter() - clock
    assert summary.labeled == sum(1 for _ in folder.iterdir()), summary
    return seconds


def round_trip_ms(requests: int, calls: int = 200) -> float:
    """Milliseconds per Ray actor call that carries ``requests`` load requests and returns a small answer."""
    import ray

    from extractor.datasets.loading import LoadRequest

    @ray.remote(num_cpus=0)
    class Echo:
        def answer(self, batch: list) -> int:
            return len(batch)

    echo = Echo.remote()
    batch = [LoadRequest(IMAGES / f"{i}.jpg", "0" * 64, EMOTION_SPEC) for i in range(requests)]
    ray.get(echo.answer.remote(batch))
    clock = time.perf_counter()
    ray.get([echo.answer.remote(batch) for _ in range(calls)])
    seconds = time.perf_counter() - clock
    ray.kill(echo)
    return seconds / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=3000, help="LFW faces to label per run")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not IMAGES.is_dir():
        raise SystemExit(f"{IMAGES} is missing: this benchmark needs ../shared/assets")
    import ray

    work = Path(tempfile.mkdtemp(prefix="ray_throughput_"))
    folder, small = work / "faces", work / "small"
    folder.mkdir()
    small.mkdir()
    for index, source in enumerate(sorted(IMAGES.iterdir())[: args.limit]):
        shutil.copy2(source, folder / source.name)
        if index < 8:
            shutil.copy2(source, small / source.name)
    clock = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    cluster_start_s = time.perf_counter() - clock
    local, remote = [], []
    for _ in range(args.repeats):  # interleaved: a shared machine's load drifts
        local.append(run(folder, "local", work, args.cpus, args.batch_size))
        remote.append(run(folder, "ray", work, args.cpus, args.batch_size))
    fixed_s = min(run(small, "ray", work, args.cpus, args.batch_size) for _ in range(2))
    trip_ms = round_trip_ms(args.batch_size)
    ray.shutdown()
    shutil.rmtree(work)

    images, local_s, ray_s = args.limit, min(local), min(remote)
    batches = -(-images // args.batch_size)
    steady_s = max(ray_s - fixed_s, 1e-9)
    figures = {
        "images": images, "cpus": args.cpus, "load_average": os.getloadavg()[0], "batch_size": args.batch_size,
        "local_img_s": images / local_s, "ray_img_s": images / ray_s, "ratio": local_s / ray_s,
        "ray_fixed_s": fixed_s, "ray_steady_img_s": images / steady_s, "ratio_steady": local_s / steady_s,
        "round_trip_ms": trip_ms, "dispatch_share": batches * trip_ms / 1000 / ray_s,
        "cluster_start_s": cluster_start_s, "local_runs_s": local, "ray_runs_s": remote,
    }
    print(json.dumps(figures, indent=1))
    print(f"\n{images} LFW faces, emotion teacher, {args.cpus} CPUs (load average {figures['load_average']:.1f}), "
          f"batches of {args.batch_size}; best of {args.repeats} cold runs each")
    print(f"  local executor  {figures['local_img_s']:8.0f} img/s")
    print(f"  ray executor    {figures['ray_img_s']:8.0f} img/s = {figures['ratio']:.2f} x local "
          f"(target >= {TARGET}) {'ok' if figures['ratio'] >= TARGET else 'MISSED'}")
    print(f"  where the rest goes: {fixed_s:.2f} s fixed per job (join, start {args.cpus} workers, load the "
          f"teacher in each) = {fixed_s / ray_s:.0%} of the Ray run; after it {figures['ray_steady_img_s']:.0f} "
          f"img/s = {figures['ratio_steady']:.2f} x local; actor round trips {trip_ms:.2f} ms x {batches} "
          f"batches = {figures['dispatch_share']:.0%}")
    print(f"  (starting the local Ray cluster itself, once per machine: {cluster_start_s:.1f} s)")


if __name__ == "__main__":
    main()
