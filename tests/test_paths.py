"""Where state lives, and private files written owner-only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from veritee.paths import default_cache_path, veritee_home, write_private


def test_home_follows_veritee_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VERITEE_HOME", str(tmp_path))
    assert veritee_home() == tmp_path
    assert default_cache_path() == tmp_path / "collateral.db"


def test_private_files_are_0600_even_when_they_existed_wider(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.key"
    write_private(fresh, b"secret")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert fresh.read_bytes() == b"secret"
    existing = tmp_path / "existing.key"
    existing.write_bytes(b"an older, longer content")
    existing.chmod(0o644)
    write_private(existing, b"new")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600
    assert existing.read_bytes() == b"new"
