"""An ocicrypt key-provider config that runs ``veritee keyprovider`` (as ocicrypt would)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def keyprovider_config(path: Path, *args: str) -> Path:
    """Write ``{"key-providers":{"attestation-agent":{"cmd":…}}}`` running
    ``python -m veritee keyprovider <args>`` to ``path``."""
    command = {"path": sys.executable, "args": ["-m", "veritee", "keyprovider", *args]}
    path.write_text(json.dumps({"key-providers": {"attestation-agent": {"cmd": command}}}))
    return path
