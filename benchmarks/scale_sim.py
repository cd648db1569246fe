"""Schedule and cost of a large labeling job, from its limits: which stage binds, how long each takes, what
the driver and the store must sustain. A model, not a measurement: every rate is a flag (defaults: the
figures in docs/scale.md, store rates from benchmarks/store_scale.py).

    python benchmarks/scale_sim.py api  [--images 10e6] [--rps 50] [--per-request 32] [--usd-per-1000 1]
                                        [--latency-s 0.5] [--retry-rate 0.02] [--concurrency 32]
    python benchmarks/scale_sim.py onnx [--images 10e6] [--nodes 4] [--gpu-img-s 4000] [--cores 32]
                                        [--decode-img-s-core 250]
"""
from __future__ import annotations

import argparse
import math


def common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=float, default=10e6)
    parser.add_argument("--kb-per-image", type=float, default=110, help="mean file size (ImageNet-like JPEG)")
    parser.add_argument("--hash-mb-s", type=float, default=400, help="driver: read + sha256, shared storage")
    parser.add_argument("--store-rows-s", type=float, default=20_000,
                        help="driver: answers committed per second (one SQLite writer; store_scale.py)")
    parser.add_argument("--batch", type=int, default=64, help="images per committed batch")
    parser.add_argument("--driver-bytes-per-file", type=float, default=600,
                        help="driver memory per listed file (path, digest, stat; Python objects)")
    parser.add_argument("--store-bytes-per-answer", type=float, default=400,
                        help="SQLite bytes per answer with 10 classes (key, digest, source, soft, file row)")


def hours(seconds: float) -> str:
    return f"{seconds / 3600:6.2f} h" if seconds >= 360 else f"{seconds:6.0f} s"


def driver_lines(args: argparse.Namespace, label_img_s: float) -> list[str]:
    images = args.images
    hash_s = images * args.kb_per_image / 1024 / args.hash_mb_s
    commits_s = label_img_s / args.batch
    lines = [
        f"  list + hash      {hours(hash_s)}  {images * args.kb_per_image / 1024**2:,.0f} GB read once at "
        f"{args.hash_mb_s:.0f} MB/s (re-runs skip unchanged files: size + mtime)",
        f"  driver memory    {images * args.driver_bytes_per_file / 1024**3:6.1f} GB  the listed files held at once",
        f"  store            {images * args.store_bytes_per_answer / 1024**3:6.1f} GB  SQLite, "
        f"{label_img_s:,.0f} answers/s in {commits_s:,.0f} commits/s (capacity {args.store_rows_s:,.0f} rows/s: "
        f"{label_img_s / args.store_rows_s:.0%} used)",
    ]
    return lines


def api(args: argparse.Namespace) -> None:
    images, per = args.images, args.per_request
    requests = math.ceil(images / per)
    sent = images * (1 + args.retry_rate)  # a retried request is paid again
    by_rate = args.rps * per
    by_concurrency = args.concurrency * per / args.latency_s
    img_s = min(by_rate, by_concurrency) / (1 + args.retry_rate)
    label_s = images / img_s
    cost = sent / 1000 * args.usd_per_1000
    binding = "the rate limit" if by_rate <= by_concurrency else "concurrency x latency"
    print(f"{images:,.0f} images against a paid API: {args.rps:g} requests/s x {per} images, "
          f"${args.usd_per_1000:g} per 1,000 images, {args.latency_s:g} s per request, "
          f"{args.retry_rate:.0%} retried")
    print(f"  requests         {requests:,} (+{requests * args.retry_rate:,.0f} retries); in flight needed "
          f"{args.rps * args.latency_s:.0f} (have {args.concurrency})")
    print(f"  labeling         {hours(label_s)}  {img_s:,.0f} img/s, bound by {binding}")
    print(f"  cost             ${cost:,.0f}  ({sent:,.0f} images charged, retries included; --budget caps it)")
    print(f"  decode           {img_s / args.decode_img_s_core:6.1f} cores to keep up")
    for line in driver_lines(args, img_s):
        print(line)
    hash_s = images * args.kb_per_image / 1024 / args.hash_mb_s
    print(f"  schedule         hash {hours(hash_s)} then label {hours(label_s)} = {hours(hash_s + label_s)} "
          f"(hashing overlapped with labeling: {hours(max(hash_s, label_s))})")


def onnx(args: argparse.Namespace) -> None:
    images = args.images
    node_decode = args.cores * args.decode_img_s_core
    node_img_s = min(args.gpu_img_s, node_decode)
    cluster = args.nodes * node_img_s
    img_s = min(cluster, args.store_rows_s)
    label_s = images / img_s
    limits = {"the GPUs": args.nodes * args.gpu_img_s, "decoding (CPU)": args.nodes * node_decode,
              "the driver's store commits": args.store_rows_s}
    binding = min(limits, key=limits.get)
    print(f"{images:,.0f} images, ONNX teacher on {args.nodes} GPU node(s): {args.gpu_img_s:,.0f} img/s per GPU, "
          f"{args.cores} cores x {args.decode_img_s_core:g} img/s decoding per node")
    for name, value in limits.items():
        print(f"  limit            {value:>10,.0f} img/s  {name}")
    print(f"  labeling         {hours(label_s)}  {img_s:,.0f} img/s, bound by {binding}")
    print(f"  GPU-hours        {args.nodes * label_s / 3600:6.1f}   (busy {img_s / (args.nodes * args.gpu_img_s):.0%})")
    for line in driver_lines(args, img_s):
        print(line)
    nodes_for_store = math.ceil(args.store_rows_s / node_img_s)
    print(f"  more nodes help up to {nodes_for_store}; past it the one SQLite writer binds: commit several "
          "answered batches per transaction, or one store per node merged after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="teacher", required=True)
    paid = sub.add_parser("api", help="a rate-limited, paid HTTP API")
    common(paid)
    paid.add_argument("--rps", type=float, default=50)
    paid.add_argument("--per-request", type=int, default=32)
    paid.add_argument("--usd-per-1000", type=float, default=1.0)
    paid.add_argument("--latency-s", type=float, default=0.5)
    paid.add_argument("--retry-rate", type=float, default=0.02)
    paid.add_argument("--concurrency", type=int, default=32, help="requests in flight, all workers together")
    paid.add_argument("--decode-img-s-core", type=float, default=250)
    gpu = sub.add_parser("onnx", help="an ONNX teacher on GPU nodes")
    common(gpu)
    gpu.add_argument("--nodes", type=int, default=4)
    gpu.add_argument("--gpu-img-s", type=float, default=4000, help="teacher img/s on one GPU (e.g. ResNet-50 fp16)")
    gpu.add_argument("--cores", type=int, default=32)
    gpu.add_argument("--decode-img-s-core", type=float, default=250, help="full-size JPEG decode + resize per core")
    args = parser.parse_args()
    (api if args.teacher == "api" else onnx)(args)


if __name__ == "__main__":
    main()
