"""Where the tests' data lives: ``tests/data`` in this repository (see its SOURCES.md).

Tests never read the sibling ``shared`` folder: a bare clone tests itself.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
VECTORS = DATA / "vectors"
TRUSTEE = DATA / "trustee"
GUEST_COMPONENTS = DATA / "guest-components"
SEEDS = DATA / "seeds"
