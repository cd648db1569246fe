"""TorchServe's ``/predictions/{model}``: one encoded image per request, a ``{label: probability}`` answer,
usually the top 5; it publishes no metadata this teacher reads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np

from extractor.teachers.base import InputFormat
from extractor.teachers.http.bodies import parse_json
from extractor.teachers.http.codec import (
    Answer,
    CodecOptions,
    HttpRequest,
    ModelInfo,
    WithoutMetadata,
    encode_image,
    scores_from_mapping,
    segment,
)

if TYPE_CHECKING:
    from extractor.teachers.http.json_spec import JsonSpec


@dataclass(frozen=True)
class TorchServeCodec(WithoutMetadata):
    """TorchServe: ``POST /predictions/{model}[/{version}]`` with one PNG, answered ``{label: probability}``."""

    model: str
    version: str | None
    class_names: tuple[str, ...]
    input_format: ClassVar[InputFormat] = "image"
    needs: ClassVar[frozenset[str]] = frozenset({"model"})
    takes: ClassVar[frozenset[str]] = frozenset()
    versioned: ClassVar[bool] = False

    @classmethod
    def batches(cls, spec: JsonSpec | None) -> bool:
        return False

    @classmethod
    def dense(cls, spec: JsonSpec | None) -> bool:
        return False

    @classmethod
    def build(cls, options: CodecOptions, info: ModelInfo) -> TorchServeCodec:
        return cls(options.model, options.version, options.class_names)

    def encode(self, batch: Sequence[np.ndarray]) -> HttpRequest:
        if len(batch) != 1:
            raise ValueError(f"torchserve takes one image per request, got {len(batch)}")
        version = f"/{segment(self.version)}" if self.version else ""
        return HttpRequest(f"/predictions/{segment(self.model)}{version}", encode_image(batch[0], "png"), "image/png")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> Any:
        return parse_json(body)

    def decode(self, answer: Any) -> Answer:
        if isinstance(answer, list) and len(answer) == 1:  # batch-aware handlers wrap the answer
            answer = answer[0]
        scores, complete = scores_from_mapping(answer, self.class_names)
        return Answer(scores[None], None, "probs" if complete else "topk")
