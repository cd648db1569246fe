"""Where a remote teacher lives and how to talk to it: :class:`HttpConfig`, its secret header values, and
the fingerprint and public URL derived from it."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from extractor.errors import ConfigError
from extractor.teachers.base import OUTPUT_POLICIES, OutputPolicy
from extractor.teachers.http import DEFAULT_MAX_ANSWER_MB, registry
from extractor.teachers.http.json_spec import JsonSpec
from extractor.teachers.http.kserve import TENSOR_FORMATS
from extractor.teachers.http.retry import Retry

log = logging.getLogger(__name__)

DEFAULT_REQUEST_BATCH = 32
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class Secret:
    """A header value that prints as ``***``: safe in repr, str, f-strings and logs; not JSON-serialisable."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_header(text: str) -> tuple[str, Secret]:
    """``"Name: value"`` (from ``--header``) -> ``(name, Secret(value))``; never echoes the value."""
    name, colon, value = text.partition(":")
    if not colon:
        raise ConfigError("--header must be 'Name: value' (a header name, a colon, the value); "
                         "the one given has no colon")
    name, value = name.strip(), value.strip()
    _check_header_name(name, "--header")
    if not value or any(char in value for char in "\r\n\0"):
        raise ConfigError(f"--header {name}: the value must be non-empty and on one line")
    return name, Secret(value)


def parse_header_env(text: str) -> tuple[str, str]:
    """``"Name=ENVVAR"`` (from ``--header-env``) -> ``(name, ENVVAR)``."""
    name, equals, variable = text.partition("=")
    name, variable = name.strip(), variable.strip()
    if not equals:
        raise ConfigError("--header-env must be 'Name=ENVVAR' (a header name, '=', an environment "
                         "variable name); the one given has no '='")
    _check_header_name(name, "--header-env")
    if not _ENV_NAME.fullmatch(variable):
        raise ConfigError(f"--header-env {name}: after '=' give the name of an environment variable "
                         "(letters, digits, '_'), not the value itself")
    return name, variable


@dataclass(frozen=True)
class HttpConfig:
    """Where a remote teacher lives, how to talk to it and how hard to try.

    Header values are :class:`Secret`; plain strings given here are wrapped. ``header_env`` is
    resolved when the config is built, so a missing variable fails before any work starts.
    """

    url: str
    """Base URL of the serving API (--teacher), e.g. ``https://host:8080``."""
    protocol: str
    """Serving protocol (--protocol), one of ``registry.PROTOCOLS``."""
    model: str = ""
    """Model name on the server (--model-name); required except for --protocol json."""
    model_version: str | None = None
    """Model version to pin (--model-version); None takes the one the server's metadata names."""
    headers: tuple[tuple[str, Secret], ...] = ()
    """Extra request headers (--header "Name: value")."""
    header_env: tuple[tuple[str, str], ...] = ()
    """Headers whose values come from environment variables (--header-env Name=ENVVAR)."""
    timeout_s: float = 30.0
    """Seconds to wait for a connection or for each read of the answer (--timeout)."""
    retries: int = 4
    """Retries after the first attempt on connection errors, timeouts, 429 and 5xx (--retries)."""
    backoff_s: float = 0.5
    """Base of the exponential backoff; attempt n sleeps uniform(0, backoff_s * 2**n) (--backoff)."""
    max_backoff_s: float = 30.0
    """Longest single sleep; a longer Retry-After gives up instead (--max-backoff)."""
    max_rps: float | None = None
    """Most request attempts per second over all threads; None for no limit (--max-rps)."""
    output_policy: OutputPolicy = "auto"
    """What dense scores are: "auto" decides from the first answer; "logits"/"probs" (--output-policy)."""
    class_names: tuple[str, ...] = ()
    """Class names in index order (--classes); required where answers name classes."""
    json_spec: JsonSpec | None = None
    """Request and answer layout for --protocol json (--json-spec)."""
    batch_size: int | None = None
    """Images per request (--request-batch); None: 32, or 1 where the protocol sends one image."""
    input_name: str | None = None
    """kserve-v2 input tensor name (--input-name); None reads it from the model metadata, and where that
    lists no inputs (KServe's own model server) sends "input-0" (``kserve.DEFAULT_V2_INPUT``)."""
    output_name: str | None = None
    """Which named output holds the scores (--output-name; kserve-v2, kserve-v1); None takes the first."""
    verify_tls: bool | str = True
    """TLS verification (--ca-bundle): True, or the path of a CA bundle; it cannot be turned off."""
    tensor_format: str = "auto"
    """kserve-v2 tensors as "binary" (the binary tensor data extension), "json", or "auto": binary unless
    the server refuses it (--tensor-format). Other protocols have one format each."""
    max_answer_mb: float = DEFAULT_MAX_ANSWER_MB
    """The largest answer body read, in MiB after decompression (--max-answer-mb); a larger one fails its
    request. It changes no answer, so the fingerprint leaves it out."""
    env_headers: tuple[tuple[str, Secret], ...] = field(default=(), init=False, compare=False)
    """The resolved ``header_env`` values."""
    retry: Retry = field(default_factory=Retry, init=False, compare=False, repr=False)
    """The retry policy ``retries``, ``backoff_s`` and ``max_backoff_s`` make."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--teacher must be an http:// or https:// URL, got {public_url(self.url)!r}")
        if parts.username is not None or parts.password is not None:
            raise ConfigError("--teacher must not embed credentials (user:password@host); pass them with --header-env")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        if self.protocol not in registry.PROTOCOLS:
            raise ConfigError(f"--protocol must be one of {registry.PROTOCOLS}, got {self.protocol!r}")
        needs = registry.factory(self.protocol).needs
        if "model" in needs and not self.model:
            raise ConfigError(f"--model-name is required with --protocol {self.protocol}")
        if ("json_spec" in needs) != (self.json_spec is not None):
            spec_protocols = " or ".join(registry.protocols_with("json_spec"))
            raise ConfigError(f"--json-spec is required with --protocol {spec_protocols} and applies to nothing else")
        self._check_numbers()
        self._check_outputs()
        self._check_headers()
        if self.verify_tls is False:
            raise ConfigError("TLS verification cannot be turned off; give --ca-bundle for a private CA")
        if isinstance(self.verify_tls, str) and not os.path.isfile(self.verify_tls):
            raise ConfigError(f"--ca-bundle {self.verify_tls!r} is not a file")

    @property
    def dense_answers(self) -> bool:
        """Whether answers are plain score vectors whose kind --output-policy decides."""
        return registry.factory(self.protocol).dense(self.json_spec)

    @property
    def batched(self) -> bool:
        """Whether the protocol can carry several images in one request."""
        return registry.factory(self.protocol).batches(self.json_spec)

    @property
    def max_answer_bytes(self) -> int:
        """``max_answer_mb`` in bytes."""
        return int(self.max_answer_mb * 2 ** 20)

    def header_names(self) -> list[str]:
        """Names of the extra headers, for reports; never their values."""
        return [name for name, _ in self.headers + self.env_headers]

    def secrets(self) -> tuple[Secret, ...]:
        """Every header value, for the redactor that keeps them out of messages."""
        return tuple(value for _, value in self.headers + self.env_headers)

    def reveal_headers(self) -> dict[str, str]:
        """The extra headers with their real values, for the session that sends them."""
        return {name: value.reveal() for name, value in self.headers + self.env_headers}

    def _check_numbers(self) -> None:
        if not self.timeout_s > 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout_s}")
        object.__setattr__(self, "retry", Retry(self.retries, self.backoff_s, self.max_backoff_s))
        if self.max_rps is not None and not self.max_rps > 0:
            raise ConfigError(f"--max-rps must be > 0, got {self.max_rps}")
        if not self.max_answer_mb > 0:
            raise ConfigError(f"--max-answer-mb must be > 0, got {self.max_answer_mb}")
        batch = self.batch_size
        if batch is None:
            object.__setattr__(self, "batch_size", DEFAULT_REQUEST_BATCH if self.batched else 1)
        elif batch < 1:
            raise ConfigError(f"--request-batch must be >= 1, got {batch}")
        elif batch > 1 and not self.batched:
            raise ConfigError(f"--request-batch must be 1 here: {self.protocol} sends one image per request")

    def _check_outputs(self) -> None:
        for flag, value, key in (("--input-name", self.input_name, "input_name"),
                                 ("--output-name", self.output_name, "output_name")):
            if value is not None and not value:
                raise ConfigError(f"{flag} must name a tensor, got an empty name")
            using = registry.protocols_with(key)
            if value is not None and self.protocol not in using:
                raise ConfigError(f"{flag} applies to --protocol {' or '.join(using)}, not {self.protocol}")
        if self.tensor_format not in TENSOR_FORMATS:
            raise ConfigError(f"--tensor-format must be one of {TENSOR_FORMATS}, got {self.tensor_format!r}")
        formats = registry.protocols_with("tensor_format")
        if self.tensor_format == "binary" and self.protocol not in formats:
            raise ConfigError(f"--tensor-format binary applies to --protocol {' or '.join(formats)}, "
                              f"not {self.protocol}")
        if self.output_policy not in OUTPUT_POLICIES:
            raise ConfigError(f"--output-policy must be one of {OUTPUT_POLICIES}, got {self.output_policy!r}")
        if self.output_policy != "auto" and not self.dense_answers:
            raise ConfigError("--output-policy applies to dense score answers; this teacher answers "
                             "with named classes, so leave it at 'auto'")
        names = self.class_names
        if names and (len(names) < 2 or len(set(names)) != len(names) or not all(names)):
            raise ConfigError(f"--classes must name >= 2 distinct, non-empty classes, got {list(names)}")
        if not names and not self.dense_answers:
            raise ConfigError("--classes is required: this teacher answers with class names")

    def _check_headers(self) -> None:
        headers = tuple((name, value if isinstance(value, Secret) else Secret(value)) for name, value in self.headers)
        object.__setattr__(self, "headers", headers)
        resolved = []
        for name, variable in self.header_env:
            value = os.environ.get(variable)
            if not value:
                raise ConfigError(f"--header-env {name}={variable}: environment variable {variable} "
                                  "is not set or empty")
            resolved.append((name, Secret(value)))
        object.__setattr__(self, "env_headers", tuple(resolved))
        seen: set[str] = set()
        for name, value in headers + self.env_headers:
            _check_header_name(name, "--header")
            if any(char in value.reveal() for char in "\r\n\0"):
                raise ConfigError(f"header {name}: the value must be on one line")
            if name.lower() in seen:
                raise ConfigError(f"header {name} is given twice (--header / --header-env)")
            seen.add(name.lower())
        host = urlsplit(self.url).hostname
        if seen and urlsplit(self.url).scheme == "http" and host not in _LOOPBACK:
            log.warning("sending %d auth header(s) over plain http to %s; anyone on the path can read them",
                        len(seen), host)


def fingerprint(config: HttpConfig, model_version: str | None) -> str:
    """Changes whenever answers could change: endpoint, protocol, model and version, request schema,
    classes and output policy. Header values (credentials) are left out on purpose."""
    spec = config.json_spec
    data = {"url": config.url, "protocol": config.protocol, "model": config.model,
            "model_version": model_version, "output": config.output_name,
            "schema": spec.as_data() if spec else None, "classes": list(config.class_names),
            "policy": config.output_policy}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def public_url(url: str) -> str:
    """The URL as it may appear in logs and reports: query values masked."""
    parts = urlsplit(url)
    query = urlencode([(key, "***") for key, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, ""))


def _check_header_name(name: str, flag: str) -> None:
    if not _HEADER_NAME.fullmatch(name):
        raise ConfigError(f"{flag}: a header name is letters, digits and !#$%&'*+-.^_`|~ only; "
                         "the one given is empty or has a space or other character")
