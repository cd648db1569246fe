"""What every protocol's codec shares: the request and answer types, the codec contracts, and the helpers
that turn answers into (B, C) float32 scores.

A codec never talks to the network: ``encode`` builds an :class:`HttpRequest`, ``parse`` reads an answer
body (:mod:`~extractor.teachers.http.bodies`), ``decode`` turns what it read into an :class:`Answer` or
raises :class:`~extractor.errors.MalformedAnswer` with a one-line reason. A codec's class is its
protocol's :class:`CodecFactory`: what the protocol needs and takes, where its metadata lives, and how a
codec is built from the flags and that metadata.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol, Sequence
from urllib.parse import quote

import numpy as np
import orjson

from extractor.errors import MalformedAnswer
from extractor.teachers.base import InputFormat, OutputKind

if TYPE_CHECKING:
    from extractor.teachers.http.json_spec import JsonSpec

JSON = "application/json"
_JPEG_QUALITY = 95


@dataclass(frozen=True)
class HttpRequest:
    """One request to the teacher, relative to its base URL."""

    path: str
    """Appended to the base URL, e.g. ``/v2/models/emotion/infer``."""
    body: bytes | None = None
    """The raw body, or None for a multipart request."""
    content_type: str | None = None
    """The body's media type."""
    files: tuple[tuple[str, tuple[str, bytes, str]], ...] = ()
    """Multipart file fields as ``(field, (file name, bytes, media type))``."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers this body needs, e.g. the binary tensor data extension's."""


@dataclass(frozen=True)
class ModelInfo:
    """What a server's metadata endpoint says about a model; empty when it has none."""

    versions: tuple[str, ...] = ()
    """Versions the server has ready."""
    input_name: str | None = None
    """The one input's name."""
    input_datatype: str | None = None
    """The input's datatype (Open Inference Protocol names, e.g. FP32)."""
    input_shape: tuple[int | None, ...] | None = None
    """The input's shape, None for a dynamic dimension."""
    outputs: tuple[tuple[str, int | None], ...] = ()
    """Each output's name and class count (its last dimension), in the server's order."""
    published: bool = field(default=False, compare=False)
    """Whether the server answered the metadata request at all (its answer may still list no tensors);
    where the information came from, not part of it, so left out of comparisons."""


@dataclass(frozen=True)
class Answer:
    """A decoded answer, before the teacher checks it against what it expects."""

    scores: np.ndarray | None
    """(B, C) float32 scores; None for a label-only answer."""
    labels: np.ndarray | None
    """(B,) int64 class indices, for a label-only answer only."""
    kind: OutputKind | None
    """What the scores are; None for dense scores whose kind the output policy decides."""
    model_version: str | None = None
    """The model version the answer says it came from, if it says."""


@dataclass(frozen=True)
class CodecOptions:
    """The flags a codec is built from; each protocol reads those it takes."""

    model: str = ""
    """The model's name on the server (--model-name)."""
    version: str | None = None
    """The version to name in request paths; None lets the server choose."""
    class_names: tuple[str, ...] = ()
    """Class names in index order (--classes)."""
    spec: JsonSpec | None = None
    """The request and answer layout of --protocol json."""
    input_name: str | None = None
    """The input tensor's name (--input-name); None takes it from the metadata."""
    output_name: str | None = None
    """Which named output holds the scores (--output-name); None takes the first."""
    binary: bool = False
    """Whether tensors travel with the binary tensor data extension."""


class Codec(Protocol):
    """Encodes a batch for one protocol and reads its answers."""

    input_format: InputFormat

    def encode(self, batch: np.ndarray | Sequence[np.ndarray]) -> HttpRequest: ...

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Any: ...

    def decode(self, answer: Any) -> Answer: ...


class WithoutMetadata:
    """The metadata half of a ``CodecFactory`` for a protocol whose servers publish none that this teacher reads."""

    @classmethod
    def metadata_path(cls, model: str) -> str | None:
        return None

    @classmethod
    def parse_metadata(cls, answer: dict[str, Any]) -> ModelInfo:
        return ModelInfo()


class CodecFactory(Protocol):
    """A protocol's codec class, before any codec is built."""

    needs: ClassVar[frozenset[str]]
    """The flags the protocol requires: "model" (--model-name), "json_spec" (--json-spec)."""
    takes: ClassVar[frozenset[str]]
    """The optional flags that apply to it: "input_name", "output_name", "tensor_format"."""
    versioned: ClassVar[bool]
    """Whether its servers name model versions in their metadata (a teacher without one pinned warns)."""

    @classmethod
    def batches(cls, spec: JsonSpec | None) -> bool:
        """Whether one request can carry several images."""

    @classmethod
    def dense(cls, spec: JsonSpec | None) -> bool:
        """Whether answers are plain score vectors whose kind --output-policy decides."""

    @classmethod
    def metadata_path(cls, model: str) -> str | None:
        """Where the server describes ``model``, or None where the protocol has no such endpoint."""

    @classmethod
    def parse_metadata(cls, answer: dict[str, Any]) -> ModelInfo:
        """What a metadata answer (a JSON object) says; called only where ``metadata_path`` gave a path."""

    @classmethod
    def build(cls, options: CodecOptions, info: ModelInfo) -> Codec:
        """The codec, with the gaps the flags leave filled in from the server's metadata."""


def field_of(value: Any, key: str, kind: type) -> Any:
    """``value[key]``, which must be a ``kind``; MalformedAnswer naming the key otherwise."""
    if not isinstance(value, dict) or key not in value:
        raise MalformedAnswer(f"the answer has no {key!r} field")
    if not isinstance(value[key], kind):
        raise MalformedAnswer(f"the answer's {key!r} is a {type(value[key]).__name__}, not a {kind.__name__}")
    return value[key]


def numbers(values: Any, where: str) -> np.ndarray:
    """Nested lists of numbers -> float32 array; NaN stays NaN for the caller to refuse."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise MalformedAnswer(f"{where} is not a rectangular list of numbers") from None
    with np.errstate(over="ignore"):
        return array.astype(np.float32)


def matrix(rows: Any, where: str) -> np.ndarray:
    """One list of scores per image -> (B, C) float32."""
    values = numbers(rows, where)
    if values.ndim != 2:
        raise MalformedAnswer(f"{where} should hold one list of scores per image, got shape {values.shape}")
    return values


def scores_from_mapping(mapping: Any, class_names: Sequence[str]) -> tuple[np.ndarray, bool]:
    """``{label: score}`` -> (C,) float32 scores with unnamed classes 0, and whether every class was named."""
    if not isinstance(mapping, dict):
        raise MalformedAnswer(f"expected a {{label: score}} object, got {type(mapping).__name__}")
    if not mapping:
        raise MalformedAnswer("the answer names no classes")
    scores = np.zeros(len(class_names), dtype=np.float32)
    for label, score in mapping.items():
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise MalformedAnswer(f"the score of class {label!r} is {score!r}, not a number")
        scores[label_index(label, class_names)] = score
    return scores, len(mapping) == len(class_names)


def label_index(label: Any, class_names: Sequence[str]) -> int:
    """A class name or index from an answer -> its index among ``class_names``."""
    if isinstance(label, str):
        if label not in class_names:
            raise MalformedAnswer(f"the answer names class {label!r}, which is not among --classes {list(class_names)}")
        return class_names.index(label)
    if isinstance(label, int) and not isinstance(label, bool):
        if not 0 <= label < len(class_names):
            raise MalformedAnswer(f"the answer names class index {label}; --classes has {len(class_names)} classes")
        return label
    raise MalformedAnswer(f"expected a class name or index, got {type(label).__name__}")


def encode_image(pixels: np.ndarray, image_format: str) -> bytes:
    """uint8 (H, W) or (H, W, 1|3) pixels -> PNG (lossless) or JPEG (quality 95) bytes."""
    from PIL import Image

    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (H, W, C) pixels, got {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"images must be (H, W), (H, W, 1) or (H, W, 3), got {pixels.shape}")
    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(pixels), "L" if pixels.ndim == 2 else "RGB")
    if image_format == "jpeg":
        image.save(buffer, "JPEG", quality=_JPEG_QUALITY)
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()


def segment(name: str) -> str:
    """A model name or version as one URL path segment."""
    return quote(name, safe="")


def json_bytes(body: Any) -> bytes:
    """Compact JSON of ``body``; numpy arrays become nested lists of numbers.

    orjson writes a float32 array as the shortest decimals that read back as the same float32s, about 20x
    faster than the hand-written writer it replaced (35 ms vs 750 ms for 32x3x64x64 values, here). It
    writes NaN as null: callers check that inputs are finite first (``HttpTeacher.predict`` does).
    """
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
