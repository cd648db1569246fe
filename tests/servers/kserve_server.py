"""KServe's own model server (``kserve.ModelServer``) serving one ONNX model on 127.0.0.1, for the `serving` tests.

The model is a plain ``kserve.Model`` subclass, so the server answers the Open Inference Protocol the way
KServe does for any such model: ``GET /v2/models/{name}`` lists ``"inputs": []`` and ``"outputs": []``,
and answers name their one output "output-0". Needs the ``kserve`` package, which this project does not
depend on.

Run: ``python -m tests.servers.kserve_server --model X.onnx --port P [--name model] [--input-name input-0]``;
``GET /v2/health/ready`` answers 200 once it serves.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import onnxruntime as ort

HOST = "127.0.0.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an .onnx file: float32 (N, C, H, W) -> (N, classes)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="model")
    parser.add_argument("--input-name", default="input-0", help="the input tensor the model takes")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported; our flags are not its own

    import kserve
    import uvicorn
    from kserve.errors import InvalidInput
    from kserve.utils.utils import get_predict_response

    class LoopbackConfig(uvicorn.Config):
        """kserve's REST server binds 0.0.0.0 (kserve/protocol/rest/server.py); tests bind loopback only."""

        def __init__(self, *positional: Any, **options: Any) -> None:
            super().__init__(*positional, **{**options, "host": HOST})

    uvicorn.Config = LoopbackConfig  # type: ignore[misc]

    class OnnxModel(kserve.Model):
        def __init__(self, name: str, path: str, input_name: str) -> None:
            super().__init__(name)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            self.input_name = input_name
            self.ready = True

        def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
            tensor = payload.get_input_by_name(self.input_name)
            if tensor is None:
                names = [given.name for given in payload.inputs]
                raise InvalidInput(f"unknown inputs {names}; the model takes {self.input_name!r}")
            inputs = tensor.as_numpy().astype(np.float32)
            scores = self.session.run(None, {self.session.get_inputs()[0].name: inputs})[0]
            return get_predict_response(payload, scores, self.name)  # output "output-0", as KServe's servers

    model = OnnxModel(args.name, args.model, args.input_name)
    kserve.ModelServer(http_port=args.port, enable_grpc=False, workers=1, grace_period=1).start([model])


if __name__ == "__main__":
    main()
