"""Plain configuration of students and their training: no torch, so the CLI can build it at once."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from extractor.errors import ConfigError

Targets = Literal["joint", "hard", "soft"]
TARGETS: tuple[str, ...] = ("joint", "hard", "soft")


def require_at_least(flag: str, value: float, minimum: float, note: str = "") -> None:
    """Raises ConfigError naming ``flag`` where ``value < minimum``; ``note`` (a unit, a reason) follows the
    minimum in the message."""
    if value < minimum:
        raise ConfigError(f"{flag} must be >= {minimum}{note}, got {value}")


@dataclass(frozen=True)
class DistillConfig:
    """What the student is trained to match."""

    targets: Targets = "joint"
    """The terms trained on: "joint" is hard + alpha * soft, "hard" labels only, "soft" alpha * soft only."""
    alpha: float = 1.0
    """Weight of the soft (KL) term."""
    temperature: float = 4.0
    """Softmax temperature T applied to both teacher and student for the soft term."""

    def __post_init__(self) -> None:
        if self.targets not in TARGETS:
            raise ConfigError(f"--targets must be one of {TARGETS}, got {self.targets!r}")
        if not math.isfinite(self.alpha) or self.alpha < 0:
            raise ConfigError(f"--alpha must be a finite number >= 0, got {self.alpha}")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ConfigError(f"--temperature must be a finite number > 0, got {self.temperature}")
        if self.targets == "soft" and self.alpha == 0:
            raise ConfigError("--targets soft with --alpha 0 trains on nothing; use --alpha > 0 or --targets hard")


@dataclass(frozen=True)
class OptimConfig:
    """How the student is optimised.

    The defaults (AdamW, short linear warmup, cosine decay to 0, batch 32) were chosen on the gender/LFW
    pair for a good first run: ResNet-20 reached 91.1% held-out fidelity after 4 epochs at lr 6e-3
    against 90.4% at 3e-3 and 88.6% at 3e-3 with batch 16 (README, "Train").
    """

    epochs: int = 30
    """Passes over the training tensors."""
    batch_size: int = 32
    """Images per optimizer step."""
    lr: float = 6e-3
    """Peak AdamW learning rate, reached after the warmup (``StudentConfig.default_lr`` is each
    student's own, which the CLI uses when --lr is not given)."""
    weight_decay: float = 0.05
    """Decoupled weight decay, applied to weights but not biases."""
    warmup_frac: float = 0.05
    """Fraction of all steps spent ramping the learning rate up linearly from ~0."""
    seed: int = 0
    """Seeds the shuffling and augmentation of every epoch (and, by the caller, the initial weights)."""

    def __post_init__(self) -> None:
        require_at_least("--epochs", self.epochs, 1)
        require_at_least("--batch-size", self.batch_size, 1)
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"--lr must be a finite number > 0, got {self.lr}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise ConfigError(f"--warmup must be in [0, 1), got {self.warmup_frac}")
        require_at_least("--seed", self.seed, 0)


@dataclass(frozen=True)
class StudentConfig:
    """Which student learns, at what input size."""

    architecture: str = "resnet20"
    """A name from ``students.zoo.STUDENTS``."""
    width: float = 1.0
    """Channel multiplier (mobilenet_v3_small and the ResNets)."""
    size: int | None = None
    """Input side in pixels; None takes the teacher's own input side (at least 32)."""

    def __post_init__(self) -> None:
        if self.size is not None:
            require_at_least("--size", self.size, 32, " pixels")

    @property
    def default_lr(self) -> float:
        """This student's peak AdamW rate when --lr is not given. SqueezeNet has no BatchNorm: above
        ~1e-3 it diverges or stalls from scratch; the BatchNorm students learn fastest near 6e-3."""
        return 1e-3 if self.architecture == "squeezenet1_1" else OptimConfig.lr


@dataclass(frozen=True)
class HintConfig:
    """A FitNet hint (Romero et al. 2015): a child feature map regressed onto a white-box parent's."""

    weight: float = 1.0
    """Weight of the hint term, the mean squared error between the adapted child map and the parent's."""
    student_layer: str = "features"
    """The child's module whose output is hinted (a ``named_modules`` name); every zoo student's
    ``features`` is its last feature map, before pooling."""
    parent_layer: str = "features"
    """The parent's module whose output is the hint."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight) or self.weight <= 0:
            raise ConfigError(f"--hint-weight must be a finite number > 0, got {self.weight}")
        if not self.student_layer or not self.parent_layer:
            raise ConfigError("--hint-layer takes CHILD_MODULE or CHILD_MODULE:PARENT_MODULE, e.g. features")

    @classmethod
    def from_flags(cls, hint: bool, weight: float, layer: str) -> HintConfig | None:
        """--hint, --hint-weight and --hint-layer CHILD[:PARENT]; None without --hint."""
        if not hint:
            return None
        student_layer, _, parent_layer = layer.partition(":")
        return cls(weight=weight, student_layer=student_layer, parent_layer=parent_layer or student_layer)




Inplace = Literal["none", "teacher", "ta"]
INPLACE: tuple[str, ...] = ("none", "teacher", "ta")


@dataclass(frozen=True)
class SlimmableConfig:
    """One slimmable student trained at several widths at once, and who teaches each width."""

    widths: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)
    """Channel multipliers in (0, 1] of the architecture (--slimmable); kept widest first."""
    inplace: Inplace = "ta"
    """Who teaches the narrower widths (the widest always learns from the black-box teacher's answers):
    "none" the teacher's answers too, "teacher" the widest width (IPKD), "ta" the next wider width (IPKD-TA)."""
    sandwich: bool = True
    """Each step trains the widest and narrowest widths plus ``random_widths`` of those between; False trains all."""
    random_widths: int = 1
    """Widths drawn per step from between the widest and the narrowest under the sandwich rule."""
    calibration_images: int = 512
    """Training images forwarded at each width to re-estimate its BatchNorm statistics after training."""

    def __post_init__(self) -> None:
        widths = self.widths
        if not widths or any(not 0.0 < w <= 1.0 for w in widths) or len(set(widths)) != len(widths):
            raise ConfigError(f"--slimmable takes distinct widths in (0, 1], e.g. 1.0,0.75,0.5,0.25; got {widths}")
        object.__setattr__(self, "widths", tuple(sorted(widths, reverse=True)))
        if self.inplace not in INPLACE:
            raise ConfigError(f"--inplace must be one of {', '.join(INPLACE)}, got {self.inplace!r}")
        require_at_least("random_widths", self.random_widths, 0)
        require_at_least("calibration_images", self.calibration_images, 2, " (BatchNorm statistics)")

    @classmethod
    def from_flags(cls, widths: str | None, inplace: str | None, sandwich: bool) -> SlimmableConfig | None:
        """--slimmable '1.0,0.75,...', --inplace and --sandwich/--no-sandwich; None without --slimmable.

        Raises:
            ConfigError: On widths that are not numbers, or --inplace without --slimmable.
        """
        if widths is None:
            if inplace is not None:
                raise ConfigError("--inplace applies to slimmable students; add --slimmable WIDTHS")
            return None
        try:
            values = tuple(float(part) for part in widths.replace(",", " ").split())
        except ValueError:
            raise ConfigError(f"--slimmable takes comma-separated widths, e.g. 1.0,0.75,0.5,0.25; got {widths!r}") from None
        return cls(widths=values, inplace=inplace or cls.inplace, sandwich=sandwich)  # type: ignore[arg-type]
