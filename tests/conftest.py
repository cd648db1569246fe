"""Shared fixtures: the read-only shared assets and real HTTP model servers on 127.0.0.1."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.servers.model_server import ModelServer

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"


@pytest.fixture(scope="session")
def assets() -> Path:
    """The shared real teachers and faces (read-only; tests that need them skip when absent)."""
    return ASSETS


@pytest.fixture
def serve() -> Iterator[Callable[..., ModelServer]]:
    """Starts ``ModelServer(model, protocol, **options)`` servers, all stopped after the test."""
    servers: list[ModelServer] = []

    def start(model: str | Path | bytes, protocol: str, **options: Any) -> ModelServer:
        server = ModelServer(model, protocol, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
