"""The serving protocols an HTTP teacher speaks: a name -> codec factory registry.

A new protocol is a new codec class (see :class:`~extractor.teachers.http.codec.CodecFactory`) and one
line here; the flags' checks, the CLI help and the teacher read what it needs and takes from its class.
"""
from __future__ import annotations

from typing import Any

from extractor.errors import MalformedAnswer, TeacherError, UnknownNameError
from extractor.teachers.http.codec import Codec, CodecFactory, CodecOptions, ModelInfo
from extractor.teachers.http.json_spec import JsonCodec, JsonSpec
from extractor.teachers.http.kserve import KServeV1Codec, KServeV2Codec
from extractor.teachers.http.torchserve import TorchServeCodec

REGISTRY: dict[str, type[CodecFactory]] = {
    "kserve-v2": KServeV2Codec,
    "kserve-v1": KServeV1Codec,
    "torchserve": TorchServeCodec,
    "json": JsonCodec,
}
PROTOCOLS: tuple[str, ...] = tuple(REGISTRY)


def factory(protocol: str) -> type[CodecFactory]:
    """The codec class of ``protocol``; UnknownNameError listing the valid names otherwise."""
    try:
        return REGISTRY[protocol]
    except KeyError:
        raise UnknownNameError(f"unknown protocol {protocol!r}; valid protocols: {', '.join(PROTOCOLS)}") from None


def protocols_with(flag: str) -> tuple[str, ...]:
    """The protocols that take (or need) ``flag``, e.g. "input_name", in registry order."""
    return tuple(name for name, codec in REGISTRY.items() if flag in codec.takes | codec.needs)


def metadata_path(protocol: str, model: str) -> str | None:
    """Where a protocol serves model metadata, or None if it has no such endpoint."""
    return factory(protocol).metadata_path(model)


def parse_metadata(protocol: str, answer: Any) -> ModelInfo:
    """Reads versions, input and outputs from a metadata answer (Open Inference Protocol, TF Serving)."""
    if not isinstance(answer, dict):
        raise MalformedAnswer(f"model metadata is not a JSON object, got {type(answer).__name__}")
    return factory(protocol).parse_metadata(answer)


def make_codec(protocol: str, *, model: str, version: str | None, class_names: tuple[str, ...],
               spec: JsonSpec | None, input_name: str | None, output_name: str | None,
               info: ModelInfo, binary: bool = False) -> Codec:
    """The codec for ``protocol``, with gaps the flags leave filled in from the server's metadata.

    Args:
        version: the version to name in request paths; None lets the server choose.
        input_name, output_name: kserve-v2 tensor names (``output_name`` also picks a named output
            in TF Serving rows); None takes them from ``info``.
        binary: kserve-v2 tensors travel with the binary tensor data extension.
    """
    known_outputs = [name for name, _ in info.outputs]
    if output_name is not None and known_outputs and output_name not in known_outputs:
        raise TeacherError(f"--output-name {output_name!r} is not a model output; valid: {known_outputs}")
    options = CodecOptions(model=model, version=version, class_names=class_names, spec=spec,
                           input_name=input_name, output_name=output_name, binary=binary)
    return factory(protocol).build(options, info)
