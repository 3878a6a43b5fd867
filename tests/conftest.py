"""Shared fixtures: where the real vectors live, and a private VERITEE_HOME.

The suite never touches the user's state: before any test runs, ``VERITEE_HOME``
points at a fresh temporary directory (inherited by every process a test
starts), so the default collateral cache, data directory and admin credentials
all land there and are removed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from datadir import VECTORS
from services import postgres_dsn, redis_url  # noqa: F401 (fixtures)

_HOME = tempfile.mkdtemp(prefix="veritee-test-home-")
os.environ["VERITEE_HOME"] = _HOME


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The real hardware vectors in tests/data/vectors (tests/data/SOURCES.md)."""
    return VECTORS


@pytest.fixture(scope="session")
def test_root(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One emulator test root for the whole session (about a second: RSA-4096 ARKs)."""
    from veritee.emulator.root import TestRoot

    return TestRoot.init(tmp_path_factory.mktemp("roots") / "root")
