"""How veritee's HTTP services are run by uvicorn: the options every ``serve`` command shares.

Kept apart from the commands so that the choice of event loop and HTTP parser is made,
measured and documented in one place (docs/PERFORMANCE.md).

The event loop is uvloop and the HTTP/1.1 parser httptools when they are installed
(``pip install uvloop httptools``), else asyncio and h11: on ``benchmarks/kbs.py
--compare-http`` they cost the server less CPU per flow.  ``VERITEE_UVICORN_LOOP``
(``uvloop`` | ``asyncio``) and ``VERITEE_UVICORN_HTTP`` (``httptools`` | ``h11``) choose
explicitly, which is how that benchmark compares the two side by side; a choice that is
not installed falls back to the default stack rather than failing to start.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

__all__ = ["HTTP_ENV", "LOOP_ENV", "event_loop", "http_parser", "server_options"]

LOOP_ENV = "VERITEE_UVICORN_LOOP"
HTTP_ENV = "VERITEE_UVICORN_HTTP"

_LOOPS: dict[str, str | None] = {"uvloop": "uvloop", "asyncio": None}  # name -> module it needs
_PARSERS: dict[str, str | None] = {"httptools": "httptools", "h11": "h11"}


def _installed(module: str | None) -> bool:
    return module is None or importlib.util.find_spec(module) is not None


def _choose(env: str, choices: dict[str, str | None], fast: str, fallback: str) -> str:
    wanted = os.environ.get(env, "").strip().lower()
    if wanted in choices and _installed(choices[wanted]):
        return wanted
    return fast if _installed(choices[fast]) else fallback


def event_loop() -> str:
    """uvicorn's ``loop``: uvloop when installed (or asked for), else asyncio."""
    return _choose(LOOP_ENV, _LOOPS, "uvloop", "asyncio")


def http_parser() -> str:
    """uvicorn's ``http``: httptools when installed (or asked for), else h11."""
    return _choose(HTTP_ENV, _PARSERS, "httptools", "h11")


def server_options() -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` beyond host, port and TLS."""
    return {"log_level": "warning", "loop": event_loop(), "http": http_parser()}
