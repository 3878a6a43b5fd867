"""Emulator fixtures (the session test root itself is in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from veritee.emulator.root import TestRoot


@pytest.fixture(scope="session")
def root_dir(test_root: TestRoot) -> Path:
    return test_root.directory
