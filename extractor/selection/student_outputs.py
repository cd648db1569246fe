"""A trained student's ONNX file run over images: its logits and, for coverage, its penultimate features."""
from __future__ import annotations

from pathlib import Path

import numpy as np

_FEATURE_OUTPUT = "selection_features"
_HEADS = ("Gemm", "MatMul", "Conv")


class StudentOutputs:
    """Runs ``student.onnx`` (input "input", output "logits") on normalised float32 batches.

    With ``features=True`` the graph also returns what enters its last classifier layer (the last Gemm,
    MatMul or Conv), averaged over space when it is a feature map: the student's penultimate features.
    """

    def __init__(self, onnx_path: Path, *, features: bool = False, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        model = _with_feature_output(onnx_path) if features else str(onnx_path)
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.outputs = ["logits", _FEATURE_OUTPUT] if features else ["logits"]

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        results = self.session.run(self.outputs, {"input": batch})
        if len(results) == 1:
            return results[0], None
        features = results[1]
        if features.ndim == 4:
            features = features.mean(axis=(2, 3))
        return results[0], features.reshape(len(features), -1)


def _with_feature_output(onnx_path: Path) -> bytes:
    """The model's bytes with the input of its last classifier layer added as an output."""
    import onnx

    model = onnx.load(str(onnx_path))
    heads = [node for node in model.graph.node if node.op_type in _HEADS]
    if not heads:
        raise ValueError(f"{onnx_path} has no Gemm, MatMul or Conv layer to take features from")
    identity = onnx.helper.make_node("Identity", [heads[-1].input[0]], [_FEATURE_OUTPUT])
    model.graph.node.append(identity)
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(_FEATURE_OUTPUT))
    return model.SerializeToString()
