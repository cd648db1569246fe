"""Which teacher a job talks to (a local ONNX file or an HTTP endpoint), and opening it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from extractor.errors import ConfigError
from extractor.teachers.base import Teacher
from extractor.teachers.http import DEFAULT_MAX_ANSWER_MB


@dataclass(frozen=True)
class TeacherSource:
    """The teacher flags of `extractor label`, before anything is opened."""

    teacher: str
    """An .onnx file, or an http(s):// base URL."""
    protocol: str | None = None
    """Serving protocol for a URL, one of ``extractor.teachers.http.registry.PROTOCOLS``."""
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
    tensor_format: str = "auto"
    """kserve-v2: tensors as binary, json, or auto (binary unless the server refuses it)."""
    max_answer_mb: float = DEFAULT_MAX_ANSWER_MB
    """The largest HTTP answer body read, in MiB after decompression; a larger one fails its request."""

    @property
    def is_http(self) -> bool:
        return self.teacher.startswith(("http://", "https://"))

    def __post_init__(self) -> None:
        if not self.is_http and self.protocol:
            raise ConfigError("--protocol applies to http(s):// teachers; an .onnx file needs none")
        if self.is_http and not self.protocol:
            from extractor.teachers.http.registry import PROTOCOLS

            raise ConfigError(f"an http(s):// teacher needs --protocol ({', '.join(PROTOCOLS)})")
        if not self.is_http and self.input_name is not None:
            raise ConfigError("--input-name applies to --protocol kserve-v2; an .onnx file names its own input")
        if not self.is_http and self.tensor_format != "auto":
            raise ConfigError("--tensor-format applies to --protocol kserve-v2; an .onnx file is run here")
        if not self.is_http and self.max_answer_mb != DEFAULT_MAX_ANSWER_MB:
            raise ConfigError("--max-answer-mb applies to http(s):// teachers; an .onnx file sends no answers")

    def as_data(self) -> dict:
        """What reaches this teacher again, as plain data for the store: never a header value (--header
        values are left out; --header-env keeps only the variable's name)."""
        data = {field.name: getattr(self, field.name) for field in fields(self) if field.name != "headers"}
        if not self.is_http:
            data["teacher"] = str(Path(self.teacher).resolve())
        elif "@" in urlsplit(self.teacher).netloc or urlsplit(self.teacher).query:
            data["teacher"] = None  # credentials in the URL: not stored; --teacher-source gives it again
        data.update(classes=list(self.classes), header_env=list(self.header_env),
                    json_spec=str(self.json_spec) if self.json_spec else None,
                    ca_bundle=str(self.ca_bundle) if self.ca_bundle else None,
                    header_names=[header.partition(":")[0].strip() for header in self.headers])
        return data

    @classmethod
    def from_data(cls, data: dict, teacher: str | None = None) -> TeacherSource:
        """The source ``as_data`` recorded, reaching ``teacher`` (a file or URL) instead where given."""
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in data.items() if key in known and key != "headers"}
        for key in ("classes", "header_env"):
            values[key] = tuple(values.get(key) or ())
        for key in ("json_spec", "ca_bundle"):
            values[key] = Path(values[key]) if values.get(key) else None
        if teacher is None and not values.get("teacher"):
            raise ConfigError("the label job's teacher URL held credentials, which are not stored; pass "
                              "--teacher-source URL")
        if teacher is not None:
            values["teacher"] = teacher
            if not teacher.startswith(("http://", "https://")):
                values = {key: value for key, value in values.items()
                          if key in ("teacher", "output_policy", "output_name", "classes")}
        return cls(**values)


def open_teacher(source: TeacherSource, *, threads: int | None = None) -> Teacher:
    """Opens the teacher: loads the ONNX model, or reads the HTTP endpoint's metadata.

    Each kind's module is imported here, when it is used: the HTTP stack (requests, about 0.1 s)
    is no part of an ONNX job's start-up.

    Args:
        source: the teacher flags.
        threads: ONNX inference threads; None for all cores.
    """
    if not source.is_http:
        from extractor.teachers.onnx import OnnxTeacher

        return OnnxTeacher(source.teacher, output_policy=source.output_policy,  # type: ignore[arg-type]
                           output_name=source.output_name, threads=threads)
    from extractor.teachers.http.config import HttpConfig, parse_header, parse_header_env
    from extractor.teachers.http.json_spec import JsonSpec
    from extractor.teachers.http.teacher import HttpTeacher

    config = HttpConfig(
        url=source.teacher, protocol=source.protocol or "", model=source.model_name,
        model_version=source.model_version, headers=tuple(parse_header(h) for h in source.headers),
        header_env=tuple(parse_header_env(h) for h in source.header_env), timeout_s=source.timeout_s,
        retries=source.retries, max_rps=source.max_rps, output_policy=source.output_policy,  # type: ignore[arg-type]
        class_names=source.classes, json_spec=JsonSpec.from_file(source.json_spec) if source.json_spec else None,
        batch_size=source.request_batch, input_name=source.input_name, output_name=source.output_name,
        verify_tls=str(source.ca_bundle) if source.ca_bundle else True, tensor_format=source.tensor_format,
        max_answer_mb=source.max_answer_mb)
    return HttpTeacher(config)


@dataclass(frozen=True)
class TeacherOpener:
    """Opens the same teacher in another process (a Ray worker, maybe on another machine); picklable.

    The values of the --header-env variables are read here, in the driver, whose environment has them,
    and travel with the opener (never printed: ``repr`` leaves them out).
    """

    source: TeacherSource
    env: dict[str, str] = field(default_factory=dict, repr=False)
    """The values of the --header-env variables."""

    @classmethod
    def of(cls, source: TeacherSource) -> TeacherOpener:
        variables = (entry.partition("=")[2].strip() for entry in source.header_env)
        return cls(source, {name: os.environ[name] for name in variables if name in os.environ})

    def __call__(self, *, threads: int | None = None, rate_share: float = 1.0) -> Teacher:
        """Opens it with ``threads`` inference threads, allowed ``rate_share`` of --max-rps (the workers
        together never send faster than the flag says)."""
        source = self.source
        if source.header_env:
            resolved = []
            for entry in source.header_env:
                name, _, variable = (part.strip() for part in entry.partition("="))
                if variable not in self.env:
                    raise ConfigError(f"--header-env {name}={variable}: {variable} was not set where the job started")
                resolved.append(f"{name}: {self.env[variable]}")
            source = replace(source, headers=source.headers + tuple(resolved), header_env=())
        if source.max_rps is not None:
            source = replace(source, max_rps=source.max_rps * rate_share)
        return open_teacher(source, threads=threads)


def read_classes(text: str | None) -> tuple[str, ...]:
    """--classes: a comma-separated list, or a file with one class name per line."""
    if not text:
        return ()
    path = Path(text)
    if path.is_file():
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return tuple(name.strip() for name in text.split(","))
