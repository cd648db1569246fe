"""Which teacher a job talks to (a local ONNX file or an HTTP endpoint), and opening it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from extractor.errors import ConfigError
from extractor.teachers.base import Teacher


@dataclass(frozen=True)
class TeacherSource:
    """The teacher flags of `extractor label`, before anything is opened."""

    teacher: str
    """An .onnx file, or an http(s):// base URL."""
    protocol: str | None = None
    """Serving protocol for a URL: kserve-v2, kserve-v1, torchserve or json."""
    model_name: str = ""
    model_version: str | None = None
    headers: tuple[str, ...] = ()
    """'Name: value' request headers (secret)."""
    header_env: tuple[str, ...] = ()
    """'Name=ENVVAR' headers whose values come from the environment (secret)."""
    timeout_s: float = 30.0
    retries: int = 4
    max_rps: float | None = None
    request_batch: int | None = None
    classes: tuple[str, ...] = ()
    json_spec: Path | None = None
    output_policy: str = "auto"
    ca_bundle: Path | None = None
    input_name: str | None = None
    """kserve-v2: the input tensor's name; None reads it from the metadata, else "input-0"."""
    output_name: str | None = None
    """Which named output holds the scores (ONNX, kserve-v2, kserve-v1); None takes the first."""

    @property
    def is_http(self) -> bool:
        return self.teacher.startswith(("http://", "https://"))

    def __post_init__(self) -> None:
        if not self.is_http and self.protocol:
            raise ConfigError("--protocol applies to http(s):// teachers; an .onnx file needs none")
        if self.is_http and not self.protocol:
            raise ConfigError("an http(s):// teacher needs --protocol (kserve-v2, kserve-v1, torchserve or json)")
        if not self.is_http and self.input_name is not None:
            raise ConfigError("--input-name applies to --protocol kserve-v2; an .onnx file names its own input")


def open_teacher(source: TeacherSource) -> Teacher:
    """Opens the teacher: loads the ONNX model, or reads the HTTP endpoint's metadata.

    Each kind's module is imported here, when it is used: the HTTP stack (requests, about 0.1 s)
    is no part of an ONNX job's start-up.
    """
    if not source.is_http:
        from extractor.teachers.onnx import OnnxTeacher

        return OnnxTeacher(source.teacher, output_policy=source.output_policy,  # type: ignore[arg-type]
                           output_name=source.output_name)
    from extractor.teachers.http import HttpConfig, HttpTeacher, parse_header, parse_header_env
    from extractor.teachers.protocols import JsonSpec

    config = HttpConfig(
        url=source.teacher, protocol=source.protocol or "", model=source.model_name,
        model_version=source.model_version, headers=tuple(parse_header(h) for h in source.headers),
        header_env=tuple(parse_header_env(h) for h in source.header_env), timeout_s=source.timeout_s,
        retries=source.retries, max_rps=source.max_rps, output_policy=source.output_policy,  # type: ignore[arg-type]
        class_names=source.classes, json_spec=JsonSpec.from_file(source.json_spec) if source.json_spec else None,
        batch_size=source.request_batch, input_name=source.input_name, output_name=source.output_name,
        verify_tls=str(source.ca_bundle) if source.ca_bundle else True)
    return HttpTeacher(config)


def read_classes(text: str | None) -> tuple[str, ...]:
    """--classes: a comma-separated list, or a file with one class name per line."""
    if not text:
        return ()
    path = Path(text)
    if path.is_file():
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return tuple(name.strip() for name in text.split(","))
