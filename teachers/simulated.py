"""A local teacher that answers as real prediction APIs do: top-k, rounded, label only, or perturbed.

A test and benchmark aid, not a user flag: it wraps a teacher that gives full scores (an ``OnnxTeacher``)
so that each answer format can be measured against the same model, locally or behind the test HTTP
server (``tests/servers/model_server.py``, ``answers=``). The formats follow what deployed APIs give:
TorchServe's image classifier answers its top 5 classes; cloud vision APIs a few labels with scores
rounded to 2-4 decimals; IBM ART ships "rounded", "reverse sigmoid" and "high confidence" postprocessors
as defences against extraction (Lee et al. 2019, "Defending Against NN Model Stealing Attacks Using
Deceptive Perturbations", https://arxiv.org/abs/1806.00054).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from extractor.errors import ConfigError
from extractor.teachers.base import Teacher, TeacherOutput

if TYPE_CHECKING:
    from extractor.ledger import Ledger

ART_REVERSE_SIGMOID = (1.0, 0.1)
"""(beta, gamma): the defaults of ART's ``ReverseSigmoid`` postprocessor."""
_CLIP = 1e-9
"""ART clips probabilities to [1e-9, 1 - 1e-9] before the logit of the reverse sigmoid."""


@dataclass(frozen=True)
class AnswerFormat:
    """What a simulated API does to the model's probabilities, in this order: perturb, keep the top k,
    round, renormalise, or answer the label alone. The default answers the full probabilities."""

    topk: int | None = None
    """Answer the k most probable classes; the others answer 0 (kind "topk")."""
    decimals: int | None = None
    """Round every answered probability to this many decimals."""
    label_only: bool = False
    """Answer the top-1 class alone (kind "label")."""
    reverse_sigmoid: tuple[float, float] | None = None
    """(beta, gamma) of ART's reverse-sigmoid perturbation, ``p - beta * (sigmoid(gamma * logit p) - 1/2)``,
    clipped to [0, 1] and renormalised; ``ART_REVERSE_SIGMOID`` are ART's defaults."""
    renormalise: bool = False
    """Divide the answered scores by their sum and answer them as "probs": a top-k answer as extractor
    trained on it before it kept the hidden mass (the benchmark's "today" handling)."""

    def __post_init__(self) -> None:
        if self.topk is not None and self.topk < 1:
            raise ConfigError(f"topk must be >= 1, got {self.topk}")
        if self.decimals is not None and not 0 <= self.decimals <= 8:
            raise ConfigError(f"decimals must be in [0, 8], got {self.decimals}")
        if self.reverse_sigmoid is not None:
            beta, gamma = self.reverse_sigmoid
            if not (beta > 0 and gamma > 0):
                raise ConfigError(f"reverse_sigmoid (beta, gamma) must both be > 0, got {self.reverse_sigmoid}")
        if self.label_only and (self.topk or self.decimals is not None or self.renormalise):
            raise ConfigError("label_only answers no scores: topk, decimals and renormalise do not apply")

    def as_data(self) -> dict:
        """The fields that differ from the full answer, as plain data (part of the teacher's fingerprint)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        if "reverse_sigmoid" in data:
            data["reverse_sigmoid"] = list(data["reverse_sigmoid"])
        return data

    @property
    def name(self) -> str:
        """A short name: "full", "top5", "round2", "top3-renorm", "label", "rsig1-0.1", ..."""
        parts = []
        if self.reverse_sigmoid is not None:
            parts.append(f"rsig{self.reverse_sigmoid[0]:g}-{self.reverse_sigmoid[1]:g}")
        if self.label_only:
            parts.append("label")
        if self.topk is not None:
            parts.append(f"top{self.topk}")
        if self.decimals is not None:
            parts.append(f"round{self.decimals}")
        if self.renormalise:
            parts.append("renorm")
        return "-".join(parts) or "full"

    def apply(self, probs: np.ndarray) -> TeacherOutput:
        """(B, C) probabilities -> the answer this API gives about them.

        The label is the top-1 of the (perturbed) probabilities before rounding: an API ranks by its
        exact score and rounds what it shows, so ties in the shown scores keep the API's own order.
        """
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] < 2:
            raise ValueError(f"expected (B, C>=2) probabilities, got shape {probs.shape}")
        if self.reverse_sigmoid is not None:
            probs = reverse_sigmoid(probs, *self.reverse_sigmoid)
        labels = probs.argmax(axis=1).astype(np.int64)
        if self.label_only:
            return TeacherOutput(labels=labels, probs=None, kind="label")
        kind = "probs"
        if self.topk is not None and self.topk < probs.shape[1]:
            hidden = np.argsort(-probs, axis=1, kind="stable")[:, self.topk:]
            probs = probs.copy()
            np.put_along_axis(probs, hidden, 0.0, axis=1)
            kind = "topk"
        if self.decimals is not None:
            probs = np.round(probs, self.decimals)
        if self.renormalise:
            total = probs.sum(axis=1, keepdims=True)
            probs = np.divide(probs, total, out=np.zeros_like(probs), where=total > 0)
            probs[total[:, 0] == 0, labels[total[:, 0] == 0]] = 1.0  # everything rounded to 0: the label
            kind = "probs"
        return TeacherOutput(labels=labels, probs=probs.astype(np.float32), kind=kind)  # type: ignore[arg-type]


def reverse_sigmoid(probs: np.ndarray, beta: float, gamma: float) -> np.ndarray:
    """ART's reverse-sigmoid perturbation of (B, C) probabilities (``ReverseSigmoid.__call__``, C > 1).

    ``r = beta * (sigmoid(gamma * log(p / (1 - p))) - 1/2)`` with p clipped to [1e-9, 1 - 1e-9];
    ``p - r`` clipped to [0, 1] and renormalised. It flattens confident answers and lifts tiny classes
    towards ``beta / 2`` before the renormalisation, so it can reorder them (and the top-1 of an
    unconfident answer).
    """
    clipped = np.clip(probs, _CLIP, 1.0 - _CLIP)
    perturbation = beta * (1.0 / (1.0 + np.exp(-gamma * np.log(clipped / (1.0 - clipped)))) - 0.5)
    perturbed = np.clip(probs - perturbation, 0.0, 1.0)
    return perturbed / perturbed.sum(axis=1, keepdims=True)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row softmax in float64."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class SimulatedTeacher:
    """A teacher that gives full scores, answering through an ``AnswerFormat``.

    Args:
        teacher: gives "probs" or "logits" (logits are turned into probabilities first).
        answers: what the simulated API does to them.
    """

    def __init__(self, teacher: Teacher, answers: AnswerFormat) -> None:
        self.teacher, self.answers = teacher, answers
        self.num_classes = teacher.num_classes
        self.input_format = teacher.input_format
        self.max_batch = teacher.max_batch
        self.input_shape = teacher.input_shape
        self.fingerprint = hashlib.sha256(
            f"{teacher.fingerprint}|{json.dumps(answers.as_data(), sort_keys=True)}".encode()).hexdigest()

    @classmethod
    def from_onnx(cls, path: str, answers: AnswerFormat, **options: object) -> SimulatedTeacher:
        """Wraps ``OnnxTeacher(path, **options)``."""
        from extractor.teachers.onnx import OnnxTeacher

        return cls(OnnxTeacher(path, **options), answers)  # type: ignore[arg-type]

    def describe(self) -> dict:
        """The wrapped teacher's description (its model file is still what the report profiles) and the
        answer format."""
        describe = getattr(self.teacher, "describe", None)
        inner = describe() if callable(describe) else {"type": type(self.teacher).__name__}
        return {**inner, "simulated": {"name": self.answers.name, **self.answers.as_data()}}

    def use_ledger(self, ledger: Ledger) -> bool:
        return self.teacher.use_ledger(ledger)

    def predict(self, batch: np.ndarray | Sequence[np.ndarray]) -> TeacherOutput:
        output = self.teacher.predict(batch)
        if output.kind not in ("probs", "logits") or output.probs is None:
            raise ValueError(f"a simulated API needs a teacher that gives full scores, this one gives {output.kind!r}")
        probs = softmax(output.probs.astype(np.float64)) if output.kind == "logits" else output.probs
        return self.answers.apply(probs)


__all__ = ["ART_REVERSE_SIGMOID", "AnswerFormat", "SimulatedTeacher", "reverse_sigmoid", "softmax"]
