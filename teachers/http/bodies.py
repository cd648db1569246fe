"""Reading answer bodies: JSON, or a JSON header followed by raw tensors (the binary tensor data extension).

A body that cannot be read at all raises :class:`~extractor.errors.UnreadableAnswer`, which the teacher
retries like a 5xx; one that reads but says something impossible raises a plain ``MalformedAnswer``.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson

from extractor.errors import MalformedAnswer, UnreadableAnswer

BINARY_HEADER = "Inference-Header-Content-Length"
"""The binary tensor data extension's header: the length of the JSON part of a body; raw tensors follow it
(Triton's docs/protocol/extension_binary_data.md; KServe's ``INFERENCE_CONTENT_LENGTH_HEADER``)."""
V2_DTYPES = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2"), "FP64": np.dtype("<f8")}
V2_FLOAT_TYPES: tuple[str, ...] = tuple(V2_DTYPES)


def parse_json(content: bytes) -> Any:
    """Parses an answer body, or raises UnreadableAnswer saying why not."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    try:  # Python servers write NaN and Infinity, which orjson refuses: read them, for decode to refuse
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnreadableAnswer(f"the answer is not JSON ({exc}); {len(content)} bytes received") from None


def parse_body(content: bytes, json_length: str | None = None) -> Any:
    """Reads an answer body: JSON, or (``json_length`` from :data:`BINARY_HEADER`) a JSON header followed by
    the binary data of the outputs whose ``parameters`` give a ``binary_data_size``, in order, which land in
    their ``data`` as numpy arrays of their datatype.

    Raises:
        UnreadableAnswer: the body is not JSON, or its binary part does not add up (cut short, or longer).
    """
    if json_length is None:
        return parse_json(content)
    try:
        length = int(json_length)
    except ValueError:
        raise UnreadableAnswer(f"{BINARY_HEADER} is {json_length[:20]!r}, not a length") from None
    if not 0 <= length <= len(content):
        raise UnreadableAnswer(f"{BINARY_HEADER} is {length} but the body has {len(content)} bytes")
    answer = parse_json(content[:length])
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    offset = length
    for output in outputs if isinstance(outputs, list) else []:
        parameters = output.get("parameters") if isinstance(output, dict) else None
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        dtype = V2_DTYPES.get(output.get("datatype"))
        if dtype is None:
            raise MalformedAnswer(f"binary output datatype {output.get('datatype')!r} is not one of {V2_FLOAT_TYPES}")
        if not isinstance(size, int) or size < 0 or size % dtype.itemsize:
            raise MalformedAnswer(f"binary_data_size {size!r} is not a whole number of {output['datatype']} values")
        if offset + size > len(content):
            raise UnreadableAnswer(f"the answer's binary data is cut short: {len(content) - length} bytes after "
                                   f"the header, the outputs need more than {offset + size - length}")
        output["data"] = np.frombuffer(content, dtype, size // dtype.itemsize, offset)
        offset += size
    if offset != len(content):
        raise UnreadableAnswer(f"the answer has {len(content) - offset} bytes after its outputs' binary data")
    return answer
