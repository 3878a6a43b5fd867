"""A session-wide emulator test root (creating one costs about a second: RSA-4096 ARKs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from veritee.emulator.root import TestRoot


@pytest.fixture(scope="session")
def test_root(tmp_path_factory: pytest.TempPathFactory) -> TestRoot:
    return TestRoot.init(tmp_path_factory.mktemp("roots") / "root")


@pytest.fixture(scope="session")
def root_dir(test_root: TestRoot) -> Path:
    return test_root.directory
