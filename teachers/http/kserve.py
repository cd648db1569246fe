"""The tensor protocols: KServe v2 (the Open Inference Protocol) and KServe v1 / TensorFlow Serving REST.

- ``kserve-v2`` (KServe v2, Triton, MLServer, OpenVINO Model Server): tensors as JSON numbers or, with
  the binary tensor data extension, as raw little-endian bytes after a JSON header whose length the
  ``Inference-Header-Content-Length`` header gives.
- ``kserve-v1``: KServe v1 / TensorFlow Serving's REST ``:predict`` with ``{"instances": ...}``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from extractor.errors import MalformedAnswer, TeacherError
from extractor.teachers.base import InputFormat
from extractor.teachers.http.bodies import BINARY_HEADER, V2_DTYPES, V2_FLOAT_TYPES, parse_body, parse_json
from extractor.teachers.http.codec import (
    JSON,
    Answer,
    CodecOptions,
    HttpRequest,
    ModelInfo,
    field_of,
    json_bytes,
    matrix,
    numbers,
    segment,
)

if TYPE_CHECKING:
    from extractor.teachers.http.json_spec import JsonSpec

log = logging.getLogger(__name__)

DEFAULT_V2_INPUT = "input-0"
"""The kserve-v2 input name sent when the metadata lists no inputs, as KServe's own Python model server
(``kserve.Model``) does: KServe's v2 examples name the input "input-0" (and it names its outputs
"output-0", ...). --input-name overrides it."""
TENSOR_FORMATS: tuple[str, ...] = ("auto", "binary", "json")
"""How kserve-v2 tensors travel (--tensor-format): "binary" (the binary tensor data extension), "json"
(numbers in the JSON body), or "auto": JSON if the server refuses binary, else whichever of the two is
faster (:class:`~extractor.teachers.http.formats.TensorFormats` times both)."""
_OCTETS = "application/octet-stream"  # KServe reads a body as binary only when it is not declared JSON


@dataclass(frozen=True)
class _TensorProtocol:
    """What the two tensor protocols share: they batch, answer dense scores and publish metadata."""

    needs: ClassVar[frozenset[str]] = frozenset({"model"})
    versioned: ClassVar[bool] = True
    input_format: ClassVar[InputFormat] = "tensor"

    @classmethod
    def batches(cls, spec: JsonSpec | None) -> bool:
        return True

    @classmethod
    def dense(cls, spec: JsonSpec | None) -> bool:
        return True


@dataclass(frozen=True)
class KServeV2Codec(_TensorProtocol):
    """Open Inference Protocol: ``POST /v2/models/{name}[/versions/{v}]/infer`` with one tensor, as JSON
    numbers or (``binary``) as raw little-endian bytes of ``datatype`` after the JSON header."""

    model: str
    version: str | None
    input_name: str
    datatype: str = "FP32"
    """The input's datatype, from the model's metadata: FP16 inputs travel as 2-byte floats in binary."""
    output_name: str | None = None
    """Which output holds the scores; None takes the first one answered."""
    request_output: bool = False
    """Whether to ask for ``output_name`` explicitly in the request."""
    binary: bool = False
    """Whether tensors travel with the binary tensor data extension, both ways."""
    takes: ClassVar[frozenset[str]] = frozenset({"input_name", "output_name", "tensor_format"})

    @classmethod
    def metadata_path(cls, model: str) -> str | None:
        return f"/v2/models/{segment(model)}"

    @classmethod
    def parse_metadata(cls, answer: dict[str, Any]) -> ModelInfo:
        inputs, outputs = _tensor_specs(answer, "inputs"), _tensor_specs(answer, "outputs")
        if len(inputs) > 1:
            raise TeacherError(f"the model takes inputs {[i.get('name') for i in inputs]}; "
                               "a teacher takes one image input")
        info: dict[str, Any] = {"versions": tuple(str(version) for version in answer.get("versions") or ())}
        if inputs:
            shape = inputs[0].get("shape")
            info.update(input_name=inputs[0].get("name"), input_datatype=inputs[0].get("datatype"),
                        input_shape=tuple(_dim(dim) for dim in shape) if isinstance(shape, list) else None)
        info["outputs"] = tuple((str(output.get("name")), _dim((output.get("shape") or [None])[-1]))
                                for output in outputs)
        return ModelInfo(**info, published=True)

    @classmethod
    def build(cls, options: CodecOptions, info: ModelInfo) -> KServeV2Codec:
        """Where the metadata lists no input, sends it as :data:`DEFAULT_V2_INPUT`; where it lists no output,
        takes each answer's first output (each with one warning)."""
        model = options.model
        name = options.input_name or info.input_name
        if not name and not info.published:
            raise TeacherError("the server publishes no model metadata naming the input; pass --input-name")
        if not name:
            name = DEFAULT_V2_INPUT
            log.warning("model %s: the server's metadata names no input (as KServe's own model server does); "
                        "sending it as %r, KServe's convention; pass --input-name to use another name", model, name)
        datatype = info.input_datatype or "FP32"
        if datatype not in V2_FLOAT_TYPES:
            raise TeacherError(f"model input datatype {datatype} is not supported; supported: {V2_FLOAT_TYPES}")
        output = options.output_name or (info.outputs[0][0] if info.outputs else None)
        if output is None and info.published:
            log.warning("model %s: the server's metadata names no output; taking the first output of each "
                        "answer; pass --output-name to choose one", model)
        return cls(model, options.version, name, datatype, output, request_output=options.output_name is not None,
                   binary=options.binary)

    def encode(self, batch: np.ndarray) -> HttpRequest:
        version = f"/versions/{segment(self.version)}" if self.version else ""
        path = f"/v2/models/{segment(self.model)}{version}/infer"
        tensor: dict[str, Any] = {"name": self.input_name, "shape": list(batch.shape), "datatype": self.datatype}
        body: dict[str, Any] = {"inputs": [tensor]}
        if not self.binary:
            tensor["data"] = np.ascontiguousarray(batch, np.float32).ravel()
            if self.request_output:
                body["outputs"] = [{"name": self.output_name}]
            return HttpRequest(path, json_bytes(body), JSON)
        raw = np.ascontiguousarray(batch, V2_DTYPES[self.datatype]).tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        # binary_data_output asks for every output in binary; a named output asks for itself.
        body["parameters"] = {"binary_data_output": True}
        if self.request_output:
            body["outputs"] = [{"name": self.output_name, "parameters": {"binary_data": True}}]
        header = json_bytes(body)
        return HttpRequest(path, header + raw, _OCTETS, headers=((BINARY_HEADER, str(len(header))),))

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Any:
        return parse_body(body, headers.get(BINARY_HEADER))

    def decode(self, answer: Any) -> Answer:
        outputs = field_of(answer, "outputs", list)
        if not outputs:
            raise MalformedAnswer("the answer's 'outputs' list is empty")
        if self.output_name is None:
            output = outputs[0]
        else:
            named = [out for out in outputs if isinstance(out, dict) and out.get("name") == self.output_name]
            if not named:
                names = [out.get("name") for out in outputs if isinstance(out, dict)]
                raise MalformedAnswer(f"the answer has no output {self.output_name!r}; it has {names}")
            output = named[0]
        shape = field_of(output, "shape", list)
        if (len(shape) < 2 or not all(isinstance(dim, int) and dim >= 0 for dim in shape)
                or any(dim != 1 for dim in shape[1:-1])):
            raise MalformedAnswer(f"output shape {shape} is not (batch, classes)")
        datatype = output.get("datatype")
        if datatype is not None and datatype not in V2_FLOAT_TYPES:
            raise MalformedAnswer(f"output datatype {datatype!r} is not one of {V2_FLOAT_TYPES}")
        data = output.get("data")
        if isinstance(data, np.ndarray):  # binary tensor data, read by parse_body
            data = data.astype(np.float32)
        else:
            data = numbers(field_of(output, "data", list), "the output's 'data'").ravel()
        if int(np.prod(shape)) != data.size:
            raise MalformedAnswer(f"output shape {shape} needs {int(np.prod(shape))} values, 'data' has {data.size}")
        version = answer.get("model_version")
        return Answer(data.reshape(shape[0], shape[-1]), None, None, None if version is None else str(version))


@dataclass(frozen=True)
class KServeV1Codec(_TensorProtocol):
    """KServe v1 / TF Serving REST: ``POST /v1/models/{name}[/versions/{v}]:predict`` with nested CHW lists."""

    model: str
    version: str | None
    output_name: str | None = None
    """For answers whose rows are objects of named outputs: which one holds the scores."""
    takes: ClassVar[frozenset[str]] = frozenset({"output_name"})

    @classmethod
    def metadata_path(cls, model: str) -> str | None:
        return f"/v1/models/{segment(model)}"

    @classmethod
    def parse_metadata(cls, answer: dict[str, Any]) -> ModelInfo:
        """TF Serving answers ``model_version_status``; KServe v1 only ``{"name", "ready"}``."""
        statuses = answer.get("model_version_status") or []
        return ModelInfo(versions=tuple(str(status.get("version")) for status in statuses
                                        if isinstance(status, dict) and status.get("state") == "AVAILABLE"),
                         published=True)

    @classmethod
    def build(cls, options: CodecOptions, info: ModelInfo) -> KServeV1Codec:
        return cls(options.model, options.version, options.output_name)

    def encode(self, batch: np.ndarray) -> HttpRequest:
        version = f"/versions/{segment(self.version)}" if self.version else ""
        return HttpRequest(f"/v1/models/{segment(self.model)}{version}:predict",
                           json_bytes({"instances": np.ascontiguousarray(batch, np.float32)}), JSON)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Any:
        return parse_json(body)

    def decode(self, answer: Any) -> Answer:
        rows = field_of(answer, "predictions", list)
        if rows and all(isinstance(row, dict) for row in rows):  # TF Serving with named outputs
            names = sorted(rows[0])
            name = self.output_name or (names[0] if len(names) == 1 else None)
            if name is None or any(name not in row for row in rows):
                raise MalformedAnswer(f"answer rows have outputs {names}; name the scores with --output-name")
            rows = [row[name] for row in rows]
        return Answer(matrix(rows, "'predictions'"), None, None)


def _tensor_specs(metadata: dict[str, Any], key: str) -> list[dict[str, Any]]:
    specs = metadata.get(key) or []
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise MalformedAnswer(f"model metadata {key!r} is not a list of tensor objects")
    return specs


def _dim(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None
