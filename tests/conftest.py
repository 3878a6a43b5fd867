"""Shared fixtures: where the real vectors live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VERITEE_SHARED", REPO.parent / "shared"))
VECTORS = SHARED / "testdata" / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.fail(f"test vectors not found at {VECTORS}; set VERITEE_SHARED")
    return VECTORS


@pytest.fixture(scope="session")
def test_root(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One emulator test root for the whole session (about a second: RSA-4096 ARKs)."""
    from veritee.emulator.root import TestRoot

    return TestRoot.init(tmp_path_factory.mktemp("roots") / "root")
