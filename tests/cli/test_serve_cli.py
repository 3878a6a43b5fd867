"""`veritee serve as` as a real process, and `veritee token verify` on what it issues."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from spawn import veritee_server
from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.evidence import EvidenceRequest, emulate
from veritee.emulator.root import TestRoot

runner = CliRunner()


@pytest.fixture(scope="module")
def served(
    test_root: TestRoot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("serve")
    args = [
        "serve",
        "as",
        "--data-dir",
        str(data / "state"),
        "--trust-root",
        str(test_root.directory),
    ]
    with veritee_server(args, data / "out.txt") as url:
        yield url, data


def test_first_start_says_where_the_admin_token_is(served: tuple[str, Path]) -> None:
    _, data = served
    text = (data / "out.txt").read_text()
    assert "admin token" in text
    assert (data / "state" / "admin.token").exists()
    assert "Attestation Service on http://127.0.0.1:" in text


def test_token_from_the_service_verifies_with_the_cli(
    served: tuple[str, Path], test_root: TestRoot, tmp_path: Path
) -> None:
    url, _ = served
    wire = emulate(test_root, EvidenceRequest(tee="tdx")).wire_bytes()
    evidence = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
    reply = httpx.post(
        f"{url}/attestation",
        json={"verification_requests": [{"tee": "tdx", "evidence": evidence}]},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    token_file = tmp_path / "token.jwt"
    token_file.write_text(reply.text)
    result = runner.invoke(
        app,
        ["token", "verify", str(token_file), "--jwks", f"{url}/.well-known/jwks.json", "--json"],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["valid"] is True
    assert doc["claims"]["submods"]["cpu0"]["ear.status"] == "warning"
    forged = reply.text[:-6] + ("AAAAAA" if not reply.text.endswith("AAAAAA") else "BBBBBB")
    token_file.write_text(forged)
    result = runner.invoke(
        app,
        ["token", "verify", str(token_file), "--jwks", f"{url}/.well-known/jwks.json", "--json"],
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["valid"] is False


def test_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "as.json"
    config.write_text(
        json.dumps({"rvps_config": {"type": "GrpcRemote", "address": "http://rvps:50003"}})
    )
    result = runner.invoke(
        app, ["serve", "as", "--config", str(config), "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 2
    assert "GrpcRemote" in result.output
