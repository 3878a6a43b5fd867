"""Run `python -m veritee …` as a real server process for one test module."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def veritee_server(args: list[str], log: Path, *, timeout_s: float = 60) -> Iterator[str]:
    """Start ``veritee <args> --port P``, wait for /healthz, yield its URL; output goes to
    ``log``."""
    port = free_port()
    with _running([*args, "--port", str(port)], log, port, "/healthz", timeout_s) as url:
        yield url


@contextmanager
def veritee_agent(args: list[str], log: Path, *, timeout_s: float = 60) -> Iterator[str]:
    """Start ``veritee agent serve <args> --bind 127.0.0.1:P``, wait for /info, yield its URL."""
    port = free_port()
    command = ["agent", "serve", *args, "--bind", f"127.0.0.1:{port}"]
    with _running(command, log, port, "/info", timeout_s) as url:
        yield url


@contextmanager
def _running(
    args: list[str], log: Path, port: int, ready: str, timeout_s: float
) -> Iterator[str]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "veritee", *args], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{url}{ready}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
