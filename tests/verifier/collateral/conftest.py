"""Fixtures: a real local PCCS/KDS server (see tests/support/local_pcs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from local_pcs import LocalServer, serve_kds, serve_pccs


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    server = LocalServer().start()
    yield server
    server.stop()


@pytest.fixture
def pccs(local_server: LocalServer, vectors: Path) -> LocalServer:
    serve_pccs(local_server, vectors)
    return local_server


@pytest.fixture
def kds(local_server: LocalServer, vectors: Path) -> LocalServer:
    serve_kds(local_server, vectors)
    return local_server
