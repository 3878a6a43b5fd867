"""`veritee serve` (all in one) as a real process, driven by `veritee client` (seed 002)."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.root import TestRoot

runner = CliRunner()
ALLOW_ALL = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def kbs(
    tmp_path_factory: pytest.TempPathFactory, test_root: TestRoot
) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("allinone")
    port = _port()
    log = data / "out.txt"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "veritee",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data / "state"),
                "--trust-root",
                str(test_root.directory),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.1)
        yield url, data
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _client(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["client", "--url", url, *args])
    return result.exit_code, result.output


def test_seed_002_flow(kbs: tuple[str, Path], test_root: TestRoot, tmp_path: Path) -> None:
    url, data = kbs
    log = (data / "out.txt").read_text()
    assert "admin token" in log
    token_file = data / "state" / "admin.token"
    secret = tmp_path / "secret"
    secret.write_bytes(b'{"default": [{"type": "insecureAcceptAnything"}], "transports": {}}')
    code, out = _client(
        url,
        "config",
        "--admin-token-file",
        str(token_file),
        "set-resource",
        "--path",
        "default/container-policy/insecure-accept-all",
        "--resource-file",
        str(secret),
    )
    assert code == 0, out
    code, out = _client(
        url,
        "get-resource",
        "--path",
        "default/container-policy/insecure-accept-all",
        "--tee",
        "tdx",
        "--emulated",
        str(test_root.directory),
    )
    assert code != 0
    assert "PolicyDeny" in out
    assert "Access denied by policy" in out
    policy = tmp_path / "allow.rego"
    policy.write_text(ALLOW_ALL)
    code, out = _client(
        url,
        "config",
        "--admin-token-file",
        str(token_file),
        "set-resource-policy",
        "--policy-file",
        str(policy),
    )
    assert code == 0, out
    code, out = _client(
        url,
        "get-resource",
        "--path",
        "default/container-policy/insecure-accept-all",
        "--tee",
        "tdx",
        "--emulated",
        str(test_root.directory),
    )
    assert code == 0, out
    assert base64.b64decode(out.strip()) == secret.read_bytes()


def test_admin_without_token_is_refused(kbs: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = kbs
    policy = tmp_path / "allow.rego"
    policy.write_text(ALLOW_ALL)
    code, out = _client(url, "config", "set-resource-policy", "--policy-file", str(policy))
    assert code != 0
    assert "AdminAuthAccess" in out
