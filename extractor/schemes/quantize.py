"""The quantize job: a trained run's fp32 student -> a binary, ternary or int8 variant, with no new queries.

A variant is a run directory of its own (``RUN_DIR/binary`` by default) holding student.onnx,
heldout.csv and a run.json with a ``"variant"`` entry, so ``extractor report RUN_DIR`` finds it. It
is trained and measured on exactly the parent run's images and held-out split (same store, same
config), from the teacher's stored answers only.

- ``bits=1|2``: the fp32 student's conv layers become binary/ternary (``students.quant``), starting
  from its weights and distilled from it and the stored answers (``tasks.QuantizeTask``) for a few
  epochs (Alizadeh & Lane 2018: 4). ``distill=False`` is the seed paper's baseline, trained "with
  conventional methods": random initial weights and the teacher's hard labels only, no fp32 network.
  The weights are kept in ``student.packed`` (``students.packed``), whose bytes are the variant's size;
  student.onnx holds the dequantized float weights, the portable form.
- ``bits=8``: the fp32 student.onnx is quantized after training by onnxruntime (static, QDQ,
  per-channel), calibrated on stored training images (``students.export.export_int8``).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from extractor.errors import ConfigError, InputNotFound
from extractor.result import Result
from extractor.run_dir import RunDir
from extractor.students.config import require_at_least

if TYPE_CHECKING:
    from torch import nn

    from extractor.config import TrainConfig
    from extractor.students.trainer import Trainer
    from extractor.training.pipeline import TrainData, TrainResult

VARIANT_KINDS = {1: "binary", 2: "ternary", 8: "int8"}
"""Variant kind by weight bits."""


@dataclass(frozen=True)
class QuantizeConfig:
    """What `extractor quantize` does."""

    run: Path
    """A run directory written by `extractor train` (the fp32 parent)."""
    bits: int
    """1: binary weights, 2: ternary weights, 8: int8 weights and activations (post-training)."""
    out: Path | None = None
    """The variant's directory; None is ``run / name``."""
    epochs: int = 4
    """Training epochs of a binary or ternary variant (the seed paper's 4)."""
    activations: int = 32
    """1 also binarises the inputs of every quantized layer; 32 keeps them float."""
    distill: bool = True
    """False trains the seed's baseline: the teacher's hard labels only, no fp32 parent."""
    from_parent: bool | None = None
    """Start from the parent's weights; None means: when distilling (random weights otherwise)."""
    parent_weight: float = 1.0
    """Weight of the KL term to the fp32 parent's tempered outputs."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    weight_decay: float = 0.0
    """0 by default: decay pulls latent weights towards 0, where their signs flip back and forth."""
    seed: int = 0
    """Seeds the initial weights (with from_parent False), the order and the augmentation."""
    calibration_images: int = 256
    """int8: stored training images whose activation ranges set the quantization scales."""
    workers: int = 1
    """Decode processes, should the parent's tensor cache be gone."""
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.bits not in VARIANT_KINDS:
            raise ConfigError(f"--bits must be 1, 2 or 8, got {self.bits}")
        if self.activations not in (1, 32):
            raise ConfigError(f"--activations must be 1 or 32, got {self.activations}")
        if self.bits == 8 and (self.activations != 32 or not self.distill):
            raise ConfigError("--bits 8 quantizes the trained fp32 student after training (activations to 8 bits "
                              "too): --activations 1 and --no-distill apply to --bits 1 and 2")
        require_at_least("--epochs", self.epochs, 1)
        require_at_least("--calibration-images", self.calibration_images, 1)
        require_at_least("parent_weight", self.parent_weight, 0)

    @property
    def name(self) -> str:
        """e.g. "binary", "binary-a1", "ternary-nodistill", "int8"; an initialisation other than the
        default for the distill setting is named too ("-fp32init", "-randinit")."""
        init = ""
        if self.bits != 8 and self.initialised_from_parent != self.distill:
            init = "-fp32init" if self.initialised_from_parent else "-randinit"
        return (VARIANT_KINDS[self.bits] + ("-a1" if self.activations == 1 else "")
                + ("" if self.distill else "-nodistill") + init)

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else self.run / self.name

    @property
    def initialised_from_parent(self) -> bool:
        return self.distill if self.from_parent is None else self.from_parent


def run_quantize(cfg: QuantizeConfig) -> Result:
    """Builds the variant described by ``cfg`` and returns its summary."""

    from extractor.students.config import DistillConfig, OptimConfig
    from extractor.students.zoo import build_student
    from extractor.training.pipeline import prepare_data

    started = time.perf_counter()
    run = _parent_run(cfg.run)
    if RunDir(cfg.out_dir).is_finished or RunDir(cfg.out_dir).has_checkpoint:
        raise ConfigError(f"{cfg.out_dir} already holds a variant or a run; delete it or choose another --out")
    parent_cfg = _parent_train_config(run["config"], cfg)
    train_cfg = replace(parent_cfg, optim=OptimConfig(epochs=cfg.epochs, batch_size=parent_cfg.optim.batch_size,
                                                      lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed),
                        distill=parent_cfg.distill if cfg.distill
                        else DistillConfig(targets="hard", temperature=parent_cfg.distill.temperature))
    data = prepare_data(train_cfg)
    parent = build_student(train_cfg.student.architecture, data.answers.num_classes, data.spec.num_channels,
                           train_cfg.student.width)
    parent.load_state_dict(RunDir(cfg.run).best_weights())
    parent.eval()
    variant = {"kind": VARIANT_KINDS[cfg.bits], "name": cfg.name, "bits": cfg.bits,
               "activation_bits": 8 if cfg.bits == 8 else cfg.activations,
               "distilled": None if cfg.bits == 8 else cfg.distill,
               "init": "parent" if cfg.bits == 8 or cfg.initialised_from_parent else "random",
               "parent_run": str(cfg.run.resolve())}
    if cfg.bits == 8:
        result, variant = _int8(cfg, train_cfg, data, parent, variant, started)
    else:
        result, variant = _trained(cfg, train_cfg, data, parent, variant, started)
    parent_bytes = (cfg.run / "student.onnx").stat().st_size
    text = (f"{cfg.name} variant of {train_cfg.student.architecture}: {result.fidelity:.1%} held-out fidelity "
            f"(fp32 student {run['fidelity']:.1%}) on {result.heldout_images} images\n"
            f"size {variant['size_bytes']:,} bytes ({variant['size_file']}), fp32 student.onnx {parent_bytes:,} bytes: "
            f"{parent_bytes / variant['size_bytes']:.1f}x smaller\n"
            f"next: extractor report {cfg.run}")
    return Result({**result.as_dict(), "variant": variant, "parent_fidelity": run["fidelity"],
                   "parent_size_bytes": parent_bytes}, text)


def _parent_run(run_dir: Path) -> dict:
    run = RunDir(run_dir).require_finished("quantize").run()
    if "widths" in run:
        raise ConfigError(f"{run_dir} is a slimmable run; quantize applies to a run with one student")
    if "variant" in run:
        raise ConfigError(f"{run_dir} is already a {run['variant']['kind']} variant; quantize its fp32 run "
                          f"{run['variant']['parent_run']}")
    return run


def _parent_train_config(data: dict, cfg: QuantizeConfig) -> TrainConfig:
    """The parent's TrainConfig (same store, teachers, student and split), writing to the variant's directory."""
    from extractor.config import TeacherChoice, TrainConfig
    from extractor.students.config import DistillConfig, OptimConfig, StudentConfig

    split_by = data.get("split_by")
    if not Path(data["store"]).exists():
        raise InputNotFound(f"the run's label store {data['store']} is not there; run quantize from the directory "
                            "that `extractor train` ran in")
    return TrainConfig(store=Path(data["store"]), out=cfg.out_dir,
                       teachers=tuple(TeacherChoice(**choice) for choice in data.get("teachers", ())),
                       student=StudentConfig(**data["student"]), distill=DistillConfig(**data["distill"]),
                       optim=OptimConfig(**data["optim"]), augment=tuple(data["augment"]), heldout=data["heldout"],
                       split_by=(Path(split_by[0]), split_by[1]) if split_by else None, workers=cfg.workers,
                       device=data.get("device", "auto"), quiet=cfg.quiet)


def _int8(cfg: QuantizeConfig, train_cfg: TrainConfig, data: TrainData, parent: nn.Module, variant: dict,
          started: float) -> tuple[TrainResult, dict]:
    """int8 after training: onnxruntime static quantization of the parent's student.onnx."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from extractor.students.batches import normalize
    from extractor.students.export import export_int8
    from extractor.students.zoo import count_parameters
    from extractor.training.pipeline import record

    calibration = normalize(data.train.images[:cfg.calibration_images], data.inputs).numpy()
    onnx_path = train_cfg.out / "student.onnx"
    export_int8(cfg.run / "student.onnx", onnx_path, calibration)
    check = normalize(data.heldout.images[:64], data.inputs)
    with torch.inference_mode():
        expected = parent(check).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    diff = float(np.abs(session.run(["logits"], {"input": check.numpy()})[0] - expected).max())
    variant = {**variant, "size_bytes": onnx_path.stat().st_size, "size_file": "student.onnx",
               "calibration_images": len(calibration)}
    result = record(train_cfg, data, onnx_path, params=count_parameters(parent), epochs=0, started=started,
                    onnx_max_abs_diff=diff, extra={"variant": variant})
    return result, variant


def _trained(cfg: QuantizeConfig, train_cfg: TrainConfig, data: TrainData, parent: nn.Module, variant: dict,
             started: float) -> tuple[TrainResult, dict]:
    """Binary or ternary: swap the layers, train on the seam, freeze, pack, export what the packed file holds."""
    from extractor.training.recipe import run_scheme

    scheme = _QuantizeScheme(cfg, parent, variant)
    return run_scheme(train_cfg, scheme, data), scheme.variant


class _QuantizeScheme:
    """The recipe's task and export for a binary or ternary variant of ``parent``."""

    def __init__(self, cfg: QuantizeConfig, parent: nn.Module, variant: dict) -> None:
        from extractor.students.quant import QuantSpec

        self.cfg, self.parent, self.variant = cfg, parent, variant
        self.spec = QuantSpec(bits=cfg.bits, binary_activations=cfg.activations == 1)
        self.layers = 0

    def task(self, train_cfg: TrainConfig, data: TrainData) -> tuple[nn.Module, nn.Module]:
        from extractor.students.quant import quantize_layers
        from extractor.students.tasks import DistillTask, QuantizeTask
        from extractor.students.zoo import build_student

        cfg = self.cfg
        student = (copy.deepcopy(self.parent) if cfg.initialised_from_parent
                   else build_student(train_cfg.student.architecture, data.answers.num_classes,
                                      data.spec.num_channels, train_cfg.student.width))
        self.layers = len(quantize_layers(student, self.spec))
        task = (QuantizeTask(student, self.parent, train_cfg.distill, cfg.parent_weight) if cfg.distill
                else DistillTask(student, train_cfg.distill))
        return task, student

    def export(self, train_cfg: TrainConfig, data: TrainData, student: nn.Module, trainer: Trainer,
               started: float) -> TrainResult:
        from extractor.students.packed import Architecture, load_packed, pack
        from extractor.students.quant import freeze
        from extractor.training.pipeline import finish

        arch = Architecture(train_cfg.student.architecture, data.answers.num_classes, data.spec.num_channels,
                            train_cfg.student.width)
        packed_path = train_cfg.out / "student.packed"
        size = pack(freeze(student.cpu()), arch, self.spec, packed_path)
        self.variant = {**self.variant, "size_bytes": size, "size_file": "student.packed",
                        "quantized_layers": self.layers,
                        "parent_weight": self.cfg.parent_weight if self.cfg.distill else 0.0, **asdict(self.spec)}
        return finish(train_cfg, data, load_packed(packed_path), epochs=trainer.state.epoch, started=started,
                      extra={"variant": self.variant})
