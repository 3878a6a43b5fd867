"""Where veritee keeps its state by default: $VERITEE_HOME, else ~/.local/share/veritee."""

from __future__ import annotations

import os
from pathlib import Path


def veritee_home() -> Path:
    return Path(os.environ.get("VERITEE_HOME", Path.home() / ".local" / "share" / "veritee"))


def default_cache_path() -> Path:
    return veritee_home() / "collateral.db"


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600, also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)
