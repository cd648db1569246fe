"""Tiny real ONNX classifiers built by tests (no downloads)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear_classifier(path: Path, *, channels: int = 3, size: int = 16, classes: int = 3,
                      batch: int | str = "batch", dtype: str = "float32", softmax: bool = False,
                      seed: int = 0, channels_last: bool = False) -> Path:
    """Writes flatten -> matmul (-> softmax) as an ONNX model with the given input layout."""
    rng = np.random.default_rng(seed)
    features = channels * size * size
    weight = numpy_helper.from_array(rng.normal(0, 1, (features, classes)).astype(np.float32), "weight")
    elem = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    shape = [batch, size, size, channels] if channels_last else [batch, channels, size, size]
    nodes = [helper.make_node("Cast", ["input"], ["input32"], to=TensorProto.FLOAT),
             helper.make_node("Flatten", ["input32"], ["flat"]),
             helper.make_node("MatMul", ["flat", "weight"], ["scores" if softmax else "output"])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["scores"], ["output"], axis=1))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", elem, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, classes])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
