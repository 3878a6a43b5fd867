"""Where veritee keeps its state by default: $VERITEE_HOME, else ~/.local/share/veritee."""

from __future__ import annotations

import os
from pathlib import Path


def veritee_home() -> Path:
    return Path(os.environ.get("VERITEE_HOME", Path.home() / ".local" / "share" / "veritee"))


def default_cache_path() -> Path:
    return veritee_home() / "collateral.db"
