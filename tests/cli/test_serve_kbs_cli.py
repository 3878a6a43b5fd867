"""`veritee serve` (all in one) as a real process, driven by `veritee client` (seed 002)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from spawn import veritee_server
from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.evidence import EvidenceRequest, emulate
from veritee.emulator.root import TestRoot
from veritee.token.verify import load_jwks, verify_token

runner = CliRunner()
ALLOW_ALL = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'


@pytest.fixture(scope="module")
def kbs(
    tmp_path_factory: pytest.TempPathFactory, test_root: TestRoot
) -> Iterator[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("allinone")
    args = ["serve", "--data-dir", str(data / "state"), "--trust-root", str(test_root.directory)]
    with veritee_server(args, data / "out.txt") as url:
        yield url, data


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


def test_the_all_in_one_also_serves_the_as_rest_api(
    kbs: tuple[str, Path], test_root: TestRoot
) -> None:
    """`POST /attestation` on the KBS's port gives an EAR token that the JWKS on the same
    port verifies (the AS and the KBS share one signer)."""
    url, _ = kbs
    wire = emulate(test_root, EvidenceRequest(tee="tdx", report_data=b"seed 000")).wire_bytes()
    body = {
        "verification_requests": [
            {
                "tee": "tdx",
                "evidence": base64.urlsafe_b64encode(wire).rstrip(b"=").decode(),
                "runtime_data": {"raw": base64.urlsafe_b64encode(b"seed 000").decode()},
            }
        ],
        "policy_ids": [],
    }
    reply = httpx.post(f"{url}/attestation", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    claims = verify_token(reply.text, load_jwks(f"{url}/.well-known/jwks.json"))
    assert claims["submods"]["cpu0"]["ear.status"] in ("affirming", "warning")
    assert httpx.get(f"{url}/kbs/v0/resource-policy", timeout=10).status_code == 401
