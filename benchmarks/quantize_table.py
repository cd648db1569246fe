"""Quantized variants on the CIFAR-10 pair: binary and ternary students distilled from their fp32 parent
and the teacher's stored answers (Alizadeh & Lane, seed 000) vs the seed's baseline trained without a
teacher network, and int8 (post-training) latency and fidelity.

The CIFAR teacher (teacher_cifar10_winml) labels a class-balanced subset of the CIFAR-10 train images
plus the first test images of each class. The test images are the held-out split: `--split-by` a CSV
whose `split` column holds "cifar-train" or "cifar-test", two group names that the product's salted
split hash puts on the two sides of `--heldout 0.3` (checked below). An fp32 student is trained once;
then, for each seed, `extractor quantize` derives:

- binary / ternary, distilled: the fp32 weights, then `--epochs` of CE(teacher label) + KL to the
  stored soft answers + KL to the fp32 parent (the default);
- binary / ternary, `--no-distill`: the seed's "conventional" baseline, random init, teacher hard
  labels only, for each epoch count in `--baseline-epochs` (default: the same epochs);
- binary / ternary, fp32 init + hard labels only (library call): separates the fp32 initialisation
  from the distillation;
- int8 (post-training static quantization of the fp32 ONNX file).

Fidelity (agreement with the teacher), agreement with the fp32 student and accuracy (CIFAR labels) are
measured on the held-out test images through each variant's ONNX file; latency is onnxruntime at batch 1
on this machine; size is student.onnx (fp32, int8) or student.packed (binary, ternary).

    python benchmarks/quantize_table.py [--images 5000] [--test-images 2000] [--student resnet8]
        [--fp32-epochs 12] [--epochs 4] [--baseline-epochs 4 [30 ...]] [--seeds 0] [--out runs/quantize_table]

The seed's own protocol (all 50k images, 4 epochs distilled vs 30 conventional, 3 seeds, ResNet-20):

    python benchmarks/quantize_table.py --images 50000 --test-images 10000 --student resnet20 \\
        --fp32-epochs 60 --epochs 4 --baseline-epochs 4 30 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_runs import extractor, label_cifar_split, mean_sd
from real_pair import CIFAR_CLASSES, HELDOUT, ROOT, prepare_cifar_out


def quantize_without_teacher_network(run: Path, bits: int, epochs: int, seed: int) -> None:
    """fp32 initialisation, teacher hard labels only: not a CLI combination, so through the library."""
    from extractor.schemes.quantize import QuantizeConfig, run_quantize

    cfg = QuantizeConfig(run=run, bits=bits, epochs=epochs, distill=False, from_parent=True, seed=seed, quiet=True)
    cfg = replace(cfg, out=run / f"{cfg.name}-e{epochs}-seed{seed}")
    if not (cfg.out_dir / "run.json").exists():
        run_quantize(cfg)
    print(f"{cfg.out_dir.name}: fidelity {json.loads((cfg.out_dir / 'run.json').read_text())['fidelity']:.3f}",
          flush=True)


def quantize_variants(run: Path, bits: int, epochs: int, baseline_epochs: list[int], seed: int) -> None:
    """`extractor quantize`: the ``bits`` variant distilled for ``epochs`` and `--no-distill` for each of
    ``baseline_epochs``, into ``run/<variant>-e<epochs>-seed<seed>``; a variant already there is kept."""
    kind = "binary" if bits == 1 else "ternary"
    plans = [(kind, epochs, [])] + [(f"{kind}-nodistill", count, ["--no-distill"]) for count in baseline_epochs]
    for name, count, extra in plans:
        out = run / f"{name}-e{count}-seed{seed}"
        if not (out / "run.json").exists():
            extractor("quantize", run, "--bits", bits, "--out", out, "--epochs", count, "--seed", seed, "--quiet",
                      *extra)
        print(f"{out.name}: fidelity {json.loads((out / 'run.json').read_text())['fidelity']:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="train images in the pool (class-balanced)")
    parser.add_argument("--test-images", type=int, default=2000, help="test images, the held-out split")
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--fp32-epochs", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the distilled binary/ternary variants")
    parser.add_argument("--baseline-epochs", type=int, nargs="+", default=None,
                        help="epoch counts of --no-distill, one run each [--epochs]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "quantize_table")
    args = parser.parse_args()
    baseline_epochs = args.baseline_epochs or [args.epochs]
    prepare_cifar_out(args.out)
    pool, split_csv, store = label_cifar_split(args.out, args.images, args.test_images)
    run = args.out / f"{args.student}-{pool.name}-e{args.fp32_epochs}"
    if not (run / "run.json").exists():
        extractor("train", "--store", store, "--out", run, "--student", args.student, "--epochs", args.fp32_epochs,
                  "--split-by", split_csv, "split", "--heldout", HELDOUT, "--seed", 0, "--quiet")
    held = [line.split(",")[1] for line in (run / "heldout.csv").read_text().splitlines()[1:]]
    if not held or not all("/test-" in path for path in held):
        raise SystemExit("the held-out split is not the test images; check SPLIT_GROUPS against the split hash")
    if not (run / "int8" / "run.json").exists():
        extractor("quantize", run, "--bits", 8, "--quiet")
    for seed in args.seeds:
        for bits in (1, 2):
            quantize_variants(run, bits, args.epochs, baseline_epochs, seed)
            quantize_without_teacher_network(run, bits, args.epochs, seed)
    report = extractor("report", run, "--ground-truth", "folders", "--classes", CIFAR_CLASSES)
    print()
    print(table(run, report, args, baseline_epochs))


def table(run_dir: Path, report: dict, args: argparse.Namespace, baseline_epochs: list[int]) -> str:
    run = json.loads((run_dir / "run.json").read_text())
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)  # seeds of one variant and epoch count
    for row in report["variants"]:
        variant_run = json.loads((run_dir / row["dir"] / "run.json").read_text())
        groups[(row["variant"], variant_run["epochs"])].append(
            {**row, "minutes": variant_run["train_seconds"] / 60, "epochs": variant_run["epochs"]})

    labels = {"fp32": "fp32 student", "int8": "int8 (post-training, onnxruntime QDQ)",
              "ternary": "ternary, distilled (fp32 init)", "ternary-nodistill": "ternary, no distill (random init)",
              "ternary-nodistill-fp32init": "ternary, fp32 init, labels only",
              "binary": "binary, distilled (fp32 init)", "binary-nodistill": "binary, no distill (random init)",
              "binary-nodistill-fp32init": "binary, fp32 init, labels only"}
    lines = [(f"CIFAR-10 teacher -> {args.student}, {run['train_images']} train images (pool), held out: the "
              f"{run['heldout_images']} CIFAR test images; fp32 {run['epochs']} epochs; variants: distilled "
              f"{args.epochs} epochs, no distill {'/'.join(map(str, baseline_epochs))}; seeds {args.seeds}; 2-core CPU"),
             f"teacher accuracy on these test images: {100 * report['teacher']['accuracy']:.1f}%", "",
             ("| variant | bits w/a | epochs | size (bytes) | fidelity % | agreement with fp32 % | accuracy % "
              "| latency b1 (ms) | train min |"), "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (name, _), rows in groups.items():
        first = rows[0]
        lines.append(f"| {labels.get(name, name)} | {first['bits']}/{first['activation_bits']} | {first['epochs']} | "
                     f"{first['size_bytes']:,} | {mean_sd(r['fidelity'] for r in rows)} | "
                     f"{mean_sd(r['agreement_with_fp32'] for r in rows)} | {mean_sd(r['accuracy'] for r in rows)} | "
                     f"{first['latency_ms']['1']:.3f} | "
                     f"{statistics.mean(row['minutes'] for row in rows):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
