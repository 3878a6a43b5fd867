"""Test-root anchors load only from a real test-root directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from veritee.errors import InputError
from veritee.verifier.trust_root import load_test_anchors


def test_not_a_test_root(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a veritee test root"):
        load_test_anchors(tmp_path)


def test_wrong_manifest(tmp_path: Path) -> None:
    (tmp_path / "veritee-test-root.json").write_text('{"kind": "something-else"}')
    with pytest.raises(InputError, match="not a veritee test-root manifest"):
        load_test_anchors(tmp_path)


def test_manifest_without_roots(tmp_path: Path) -> None:
    (tmp_path / "veritee-test-root.json").write_text('{"kind": "veritee-test-root"}')
    with pytest.raises(InputError, match="holds neither"):
        load_test_anchors(tmp_path)


def test_garbage_root(tmp_path: Path) -> None:
    (tmp_path / "veritee-test-root.json").write_text('{"kind": "veritee-test-root"}')
    (tmp_path / "intel").mkdir()
    (tmp_path / "intel" / "root.pem").write_text("not a certificate")
    with pytest.raises(InputError, match="test root"):
        load_test_anchors(tmp_path)
