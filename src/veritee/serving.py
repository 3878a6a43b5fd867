"""How veritee's HTTP services are run by uvicorn: the options every ``serve`` command shares.

Kept apart from the commands so that the choice of event loop and HTTP parser is made,
measured and documented in one place (docs/PERFORMANCE.md).
"""

from __future__ import annotations

from typing import Any


def server_options() -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` beyond host, port and TLS."""
    return {"log_level": "warning"}


__all__ = ["server_options"]
