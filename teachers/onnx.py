"""A local ONNX model run by onnxruntime, queried as an opaque teacher."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import onnxruntime as ort

from extractor.errors import ConfigError
from extractor.teachers.base import (
    OUTPUT_POLICIES,
    OutputKind,
    OutputPolicy,
    TeacherError,
    TeacherOutput,
    guess_kind,
    output_from_scores,
)

if TYPE_CHECKING:
    from extractor.ledger import Ledger

log = logging.getLogger(__name__)

_PROBABILITY_OPS = {"Softmax"}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


@dataclass(frozen=True)
class InputLayout:
    """What the model's input looks like, read from the graph."""

    name: str
    dtype: type
    channels_first: bool
    channels: int | None
    height: int | None
    width: int | None
    fixed_batch: int | None


class OnnxTeacher:
    """An ONNX classifier: reads its input layout from the model and keeps what it really outputs.

    Args:
        path: the .onnx file.
        output_policy: "auto" decides logits vs probabilities from the graph (a final Softmax)
            or else from the first answer (non-negative rows summing to 1); "logits"/"probs" override.
        output_name: which model output holds the class scores; default the first one.
        threads: onnxruntime intra-op threads; default all cores.
    """

    input_format = "tensor"

    def __init__(self, path: str | os.PathLike, output_policy: OutputPolicy = "auto",
                 output_name: str | None = None, threads: int | None = None) -> None:
        if output_policy not in OUTPUT_POLICIES:
            raise ConfigError(f"--output-policy must be one of {OUTPUT_POLICIES}, got {output_policy!r}")
        self.path = Path(path)
        try:
            model_bytes = self.path.read_bytes()
        except OSError as exc:
            raise TeacherError(f"cannot read teacher model {self.path}: {exc.strerror}") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.log_severity_level = 3
        # No busy-waiting: the cores are shared with the decode workers feeding this session.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise TeacherError(f"{self.path} is not a loadable ONNX model: {str(exc).splitlines()[0]}") from None
        self.layout = _read_layout(self.session)
        self.input_shape = (self.layout.channels, self.layout.height, self.layout.width)
        self.output_name = output_name or self.session.get_outputs()[0].name
        outputs = {out.name: out for out in self.session.get_outputs()}
        if self.output_name not in outputs:
            raise ConfigError(f"--output-name {self.output_name!r} is not a model output; valid: {sorted(outputs)}")
        classes = outputs[self.output_name].shape[-1]
        self.output_policy = output_policy
        self._kind: OutputKind | None = {"logits": "logits", "probs": "probs"}.get(output_policy)
        # "auto" is decided at the first answer: reading the graph imports onnx (~0.05 s), which a
        # re-run that sends nothing never needs. The bytes are held until then (the session holds more).
        self._graph: bytes | None = model_bytes if self._kind is None else None
        self._kind_lock = threading.Lock()
        self.num_classes: int = classes if isinstance(classes, int) else 0
        self.max_batch: int | None = self.layout.fixed_batch
        self.fingerprint = hashlib.sha256(
            hashlib.sha256(model_bytes).hexdigest().encode()
            + json.dumps({"output": self.output_name, "policy": output_policy}, sort_keys=True).encode()
        ).hexdigest()
        self.size_bytes = len(model_bytes)

    def describe(self) -> dict:
        """Plain data that names this teacher in the store and reports."""
        return {"type": "onnx", "path": str(self.path.resolve()), "output_policy": self.output_policy,
                "output": self.output_name, "size_bytes": self.size_bytes}

    def use_ledger(self, ledger: Ledger) -> bool:
        """A local call has no attempts or retries of its own: the job charges and records each call."""
        return False

    def predict(self, batch: np.ndarray | Sequence[np.ndarray]) -> TeacherOutput:
        """Runs (B, C, H, W) float32 inputs, looping when the model has a fixed batch size."""
        batch = np.asarray(batch)
        layout = self.layout
        if batch.ndim != 4 or batch.dtype != np.float32:
            raise TypeError(f"expected float32 (B, C, H, W), got {batch.dtype} {batch.shape}")
        if layout.channels is not None and batch.shape[1] != layout.channels:
            raise ValueError(f"teacher expects {layout.channels} channels, got {batch.shape[1]} "
                             f"(set --channels {'gray' if layout.channels == 1 else 'rgb'})")
        expected = (layout.height, layout.width)
        if None not in expected and batch.shape[2:] != expected:
            raise ValueError(f"teacher expects {expected[0]}x{expected[1]} inputs, got "
                             f"{batch.shape[2]}x{batch.shape[3]} (set --size)")
        inputs = batch if layout.channels_first else batch.transpose(0, 2, 3, 1)
        inputs = np.ascontiguousarray(inputs, dtype=layout.dtype)
        step = layout.fixed_batch or len(inputs)
        chunks = [self._run(inputs[start:start + step]) for start in range(0, len(inputs), step)]
        scores = np.concatenate(chunks)[: len(batch)].astype(np.float32)
        if scores.ndim != 2:
            raise TeacherError(f"output {self.output_name!r} has shape {scores.shape}; expected (batch, classes)")
        return output_from_scores(scores, self._kind or self._decide_kind(scores))

    def _decide_kind(self, scores: np.ndarray) -> OutputKind:
        """For --output-policy auto: probabilities if the graph ends in a Softmax, else what the first
        answer looks like (calls may run on several threads: all of them get the same decision)."""
        with self._kind_lock:
            if self._kind is None:
                if self._graph is not None and _ends_in_softmax(self._graph, self.output_name):
                    self._kind = "probs"
                else:
                    self._kind = guess_kind(scores)
                    log.info("teacher %s outputs %s (decided from its first answer)", self.path.name, self._kind)
                self._graph = None
            return self._kind

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        fixed = self.layout.fixed_batch
        if fixed and len(chunk) < fixed:  # pad a short final chunk for a fixed-batch model
            pad = np.repeat(chunk[-1:], fixed - len(chunk), axis=0)
            chunk = np.concatenate([chunk, pad])
        return self.session.run([self.output_name], {self.layout.name: chunk})[0]


def _read_layout(session: ort.InferenceSession) -> InputLayout:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise TeacherError(f"teacher must take one image input, it takes {[i.name for i in inputs]}")
    spec = inputs[0]
    if spec.type not in _DTYPES:
        raise TeacherError(f"unsupported input type {spec.type}; supported: {sorted(_DTYPES)}")
    shape = [dim if isinstance(dim, int) and dim > 0 else None for dim in spec.shape]
    if len(shape) != 4:
        raise TeacherError(f"teacher input {spec.name!r} has shape {spec.shape}; expected 4-D images")
    channels_first = shape[1] in (1, 3) or shape[3] not in (1, 3)
    channels, height, width = shape[1:] if channels_first else (shape[3], shape[1], shape[2])
    return InputLayout(spec.name, _DTYPES[spec.type], channels_first, channels, height, width, shape[0])


def _ends_in_softmax(model_bytes: bytes, output_name: str) -> bool:
    import onnx  # only needed once, to read the graph

    graph = onnx.load_from_string(model_bytes).graph
    return any(output_name in node.output and node.op_type in _PROBABILITY_OPS for node in graph.node)
