"""``--protocol json``: any other JSON API, described by a :class:`JsonSpec`, and the answer paths it uses.

Answer paths (``JsonSpec.scores``, ``labels``, ``model_version``) use a tiny syntax: ``a.b`` walks
object keys, ``[n]`` takes item n of a list, ``[*]`` maps the rest of the path over every item of a
list, and the empty path is the whole answer. Keys containing ``.``, ``[`` or ``]`` cannot be named.
Examples: ``result.scores``, ``predictions[*].label``, ``[*].top[0]``.
"""
from __future__ import annotations

import base64
import json
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, Sequence

import numpy as np

from extractor.errors import ConfigError, MalformedAnswer
from extractor.teachers.base import InputFormat
from extractor.teachers.http.bodies import parse_json
from extractor.teachers.http.codec import (
    JSON,
    Answer,
    CodecOptions,
    HttpRequest,
    ModelInfo,
    WithoutMetadata,
    encode_image,
    json_bytes,
    label_index,
    matrix,
    scores_from_mapping,
)

JSON_INPUTS: tuple[str, ...] = ("tensor", "base64", "multipart")
JSON_OUTPUTS: tuple[str, ...] = ("scores", "topk", "label")
IMAGE_FORMATS: tuple[str, ...] = ("png", "jpeg")
_PATH = re.compile(r"(?:[^.\[\]]+|\[(?:\*|\d+)\])(?:\.[^.\[\]]+|\[(?:\*|\d+)\])*")
_STEP = re.compile(r"[^.\[\]]+|\[\*\]|\[\d+\]")
_KEY_PATH = re.compile(r"[^.\[\]]+(?:\.[^.\[\]]+)*")

Step = str | int | None  # object key, list index, or None for "[*]"


@dataclass(frozen=True)
class JsonSpec:
    """How a generic JSON API takes images and where its answer keeps the prediction.

    Loaded from ``--json-spec`` (a .json or .toml file with these keys). Paths use the syntax in
    this module's docstring. With ``batch = false`` each path points at one image's value.
    """

    path: str = ""
    """Appended to the teacher URL, e.g. ``/predict``."""
    input: Literal["tensor", "base64", "multipart"] = "base64"
    """How images travel: "tensor" (preprocessed float lists), "base64" (encoded files in JSON) or
    "multipart" (file fields)."""
    input_key: str = "images"
    """Dotted key the inputs go under (JSON), or the multipart field name."""
    image_format: Literal["png", "jpeg"] = "png"
    """Encoding of base64 and multipart images: "png" (lossless) or "jpeg"."""
    batch: bool = True
    """True: one request carries a list of inputs; False: one input per request, not in a list."""
    output: Literal["scores", "topk", "label"] = "scores"
    """What the answer holds: "scores" (dense, kind from --output-policy), "topk" or "label"."""
    scores: str = ""
    """Path to the scores: a (B, C) list for "scores"; for "topk" either lists parallel to
    ``labels`` or ``{label: score}`` objects."""
    labels: str = ""
    """Path to class names or indices ("label", and "topk" with parallel lists)."""
    model_version: str = ""
    """Path to the model version in the answer; empty if the API does not report one."""
    fields: tuple[tuple[str, Any], ...] = ()
    """Constant top-level fields added to every JSON body, e.g. ``{"top_k": 7}``."""

    def __post_init__(self) -> None:
        choices = {"input": JSON_INPUTS, "output": JSON_OUTPUTS, "image_format": IMAGE_FORMATS}
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise ConfigError(f"--json-spec: {key!r} must be one of {valid}, got {getattr(self, key)!r}")
        if not isinstance(self.batch, bool):
            raise ConfigError(f"--json-spec: 'batch' must be true or false, got {self.batch!r}")
        if self.path and not self.path.startswith("/"):
            raise ConfigError(f"--json-spec: 'path' must start with '/', got {self.path!r}")
        if not _KEY_PATH.fullmatch(self.input_key):
            raise ConfigError(f"--json-spec: 'input_key' must be dotted key names like 'data.images', "
                             f"got {self.input_key!r}")
        for key in ("scores", "labels", "model_version"):
            parse_path(getattr(self, key), f"--json-spec {key!r}")
        needed = {"scores": ("scores",), "topk": ("scores",), "label": ("labels",)}[self.output]
        for key in needed:
            if not getattr(self, key):
                raise ConfigError(f"--json-spec: output {self.output!r} needs the path {key!r}")
        if self.fields and self.input == "multipart":
            raise ConfigError("--json-spec: 'fields' apply to JSON bodies, not to multipart input")
        try:
            json.dumps(dict(self.fields), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--json-spec: 'fields' must be plain JSON: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JsonSpec:
        """Builds a spec from plain data, refusing keys it does not know."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ConfigError(f"--json-spec: unknown keys {unknown}; valid keys: {valid}")
        data = dict(data)
        if "fields" in data:
            if not isinstance(data["fields"], dict):
                raise ConfigError("--json-spec: 'fields' must be an object of constant body fields")
            data["fields"] = tuple(sorted(data["fields"].items()))
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> JsonSpec:
        """Reads a spec from a .json or .toml file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--json-spec: cannot read {path}: {exc.strerror}") from None
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--json-spec: {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"--json-spec: {path} must hold an object of spec keys")
        return cls.from_dict(data)

    def as_data(self) -> dict[str, Any]:
        """The spec as plain data for fingerprints and reports, default values dropped."""
        data: dict[str, Any] = {}
        for spec_field in fields(self):
            value = getattr(self, spec_field.name)
            if value != spec_field.default:
                data[spec_field.name] = dict(value) if spec_field.name == "fields" else value
        return data


@dataclass(frozen=True)
class JsonCodec(WithoutMetadata):
    """A generic JSON API described by a :class:`JsonSpec`; it publishes no metadata."""

    spec: JsonSpec
    class_names: tuple[str, ...]
    needs: ClassVar[frozenset[str]] = frozenset({"json_spec"})
    takes: ClassVar[frozenset[str]] = frozenset()
    versioned: ClassVar[bool] = False

    @classmethod
    def batches(cls, spec: JsonSpec | None) -> bool:
        return spec is None or spec.batch

    @classmethod
    def dense(cls, spec: JsonSpec | None) -> bool:
        return spec is None or spec.output == "scores"

    @classmethod
    def build(cls, options: CodecOptions, info: ModelInfo) -> JsonCodec:
        if options.spec is None:
            raise ConfigError("--protocol json needs --json-spec")
        return cls(options.spec, options.class_names)

    @property
    def input_format(self) -> InputFormat:
        return "tensor" if self.spec.input == "tensor" else "image"

    def encode(self, batch: np.ndarray | Sequence[np.ndarray]) -> HttpRequest:
        spec = self.spec
        if not spec.batch and len(batch) != 1:
            raise ValueError(f"this JSON API takes one image per request (batch = false), got {len(batch)}")
        if spec.input == "multipart":
            mime = f"image/{spec.image_format}"
            files = tuple((spec.input_key, (f"image{index}.{spec.image_format}",
                                            encode_image(image, spec.image_format), mime))
                          for index, image in enumerate(batch))
            return HttpRequest(spec.path, files=files)
        if spec.input == "tensor":
            items: list[Any] = list(np.ascontiguousarray(batch, np.float32))
        else:
            items = [base64.b64encode(encode_image(image, spec.image_format)).decode("ascii") for image in batch]
        body = dict(spec.fields)
        _set_key(body, spec.input_key, items if spec.batch else items[0])
        return HttpRequest(spec.path, json_bytes(body), JSON)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Any:
        return parse_json(body)

    def decode(self, answer: Any) -> Answer:
        spec = self.spec
        version = None
        if spec.model_version:
            version = str(resolve(answer, spec.model_version))
        if spec.output == "scores":
            return Answer(matrix(self._per_image(answer, spec.scores), repr(spec.scores)), None, None, version)
        if spec.output == "label":
            labels = [label_index(label, self.class_names) for label in self._per_image(answer, spec.labels)]
            return Answer(None, np.asarray(labels, dtype=np.int64), "label", version)
        scores = self._per_image(answer, spec.scores)
        if spec.labels:
            names = self._per_image(answer, spec.labels)
            if len(names) != len(scores):
                raise MalformedAnswer(f"{spec.labels!r} has {len(names)} entries but {spec.scores!r} has {len(scores)}")
            scores = [_pairs_to_mapping(row_names, row_scores) for row_names, row_scores in zip(names, scores)]
        rows = [scores_from_mapping(mapping, self.class_names) for mapping in scores]
        values = np.stack([row for row, _ in rows]) if rows else np.zeros((0, len(self.class_names)), np.float32)
        complete = all(full for _, full in rows)
        return Answer(values, None, "probs" if complete else "topk", version)

    def _per_image(self, answer: Any, path: str) -> list[Any]:
        value = resolve(answer, path)
        if not self.spec.batch:
            return [value]
        if not isinstance(value, list):
            raise MalformedAnswer(f"{path!r} should be a list with one entry per image, got {type(value).__name__}")
        return value


def parse_path(path: str, what: str = "path") -> tuple[Step, ...]:
    """Splits ``a.b[*].c[0]`` into steps ``("a", "b", None, "c", 0)``; the empty path has no steps."""
    if not path:
        return ()
    if not _PATH.fullmatch(path):
        raise ConfigError(f"{what}: {path!r} is not a path like 'result.scores' or 'predictions[*].label'")
    steps: list[Step] = []
    for token in _STEP.findall(path):
        if token == "[*]":
            steps.append(None)
        elif token.startswith("["):
            steps.append(int(token[1:-1]))
        else:
            steps.append(token)
    return tuple(steps)


def resolve(answer: Any, path: str) -> Any:
    """The value at ``path`` in a parsed answer; ``[*]`` gives a list. Raises MalformedAnswer if absent."""
    return _walk(answer, parse_path(path), path, 0)


def _walk(value: Any, steps: tuple[Step, ...], path: str, done: int) -> Any:
    for position in range(done, len(steps)):
        step = steps[position]
        if step is None:
            if not isinstance(value, list):
                raise MalformedAnswer(f"{path!r}: expected a list before '[*]', got {type(value).__name__}")
            return [_walk(item, steps, path, position + 1) for item in value]
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                raise MalformedAnswer(f"{path!r}: no item [{step}] in the answer")
        elif not isinstance(value, dict) or step not in value:
            raise MalformedAnswer(f"the answer has no {path!r} (missing key {step!r})")
        value = value[step]
    return value


def _pairs_to_mapping(names: Any, scores: Any) -> dict[Any, Any]:
    if not isinstance(names, list) or not isinstance(scores, list) or len(names) != len(scores):
        raise MalformedAnswer("top-k labels and scores must be lists of the same length for each image")
    mapping = {}
    for name, score in zip(names, scores):
        if not isinstance(name, (str, int)) or isinstance(name, bool):
            raise MalformedAnswer(f"expected a class name or index, got {type(name).__name__}")
        if name in mapping:
            raise MalformedAnswer(f"the answer names class {name!r} twice for one image")
        mapping[name] = score
    return mapping


def _set_key(body: dict[str, Any], key_path: str, value: Any) -> None:
    *parents, last = key_path.split(".")
    for key in parents:
        body = body.setdefault(key, {})
    body[last] = value
