"""``veritee client`` (Trustee's kbs-client, flag for flag) against the real KBS, served by
uvicorn on loopback: attest, get-resource with the cookie or a token, the config
commands, refusals printed as kbs-client prints them, and usage errors."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from kbs_live import ALLOW, DENY, ERRORS, SECRET, Kbs, live_kbs, seed_denial
from live_server import serve_app
from typer.testing import CliRunner, Result

import veritee.cli.client as cli_client
from veritee.as_.config import AsSettings
from veritee.auth.admin import AdminAuthError, Ed25519AdminAuth
from veritee.cli.client import app, sample_reference_value_message
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_protocol import token_claims, token_is_valid
from veritee.kbs.bootstrap import KbsSettings, build_kbs


@pytest.fixture(scope="module")
def real_kbs(test_root: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    with live_kbs(test_root.directory, tmp_path_factory.mktemp("kbs")) as kbs:
        yield kbs



def cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(app, name="client")

    @root.callback()
    def main() -> None:
        """Root command (a group, so that 'client' is a subcommand)."""

    return root


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


@dataclass
class CliKbs:
    url: str
    requests: list[httpx.Request]


@pytest.fixture
def kbs(real_kbs: Kbs, monkeypatch: pytest.MonkeyPatch) -> CliKbs:
    """The real KBS for the CLI; an event hook on the CLI's own httpx.Client keeps its requests."""
    seen = CliKbs(real_kbs.url, [])
    original = cli_client._client

    def observed(target: Any, **kwargs: Any) -> KbsClient:
        client = original(target, **kwargs)
        hooks = client.http.event_hooks
        client.http.event_hooks = {**hooks, "request": [*hooks["request"], seen.requests.append]}
        return client

    monkeypatch.setattr(cli_client, "_client", observed)
    return seen


def run(runner: CliRunner, kbs: CliKbs, *args: str) -> Result:
    return runner.invoke(cli(), ["client", "--url", kbs.url, *args])


def test_cli_attest_and_get_resource(
    runner: CliRunner, kbs: CliKbs, real_kbs: Kbs, test_root: Any, tmp_path: Path
) -> None:
    real_kbs.set_policy(ALLOW)
    root = str(test_root.directory)
    key_file = tmp_path / "tee.pem"
    result = run(runner, kbs, "attest", "--emulated", root, "--tee-key-file", str(key_file))
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token_is_valid(token)
    assert key_file.stat().st_mode & 0o777 == 0o600
    result = run(runner, kbs, "get-resource", "--path", "default/key/1", "--emulated", root)
    assert result.exit_code == 0, result.output
    assert result.stdout == base64.b64encode(SECRET).decode() + "\n"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    sent = len(kbs.requests)
    result = run(
        runner,
        kbs,
        "get-resource",
        "--path",
        "default/key/1",
        "--attestation-token",
        str(token_file),
        "--tee-key-file",
        str(key_file),
    )
    assert result.exit_code == 0, result.output
    assert base64.b64decode(result.stdout) == SECRET
    (get,) = kbs.requests[sent:]
    assert get.headers["authorization"] == f"Bearer {token}"
    assert "cookie" not in get.headers


def test_cli_prints_a_denial_like_kbs_client(
    runner: CliRunner, kbs: CliKbs, real_kbs: Kbs, test_root: Any
) -> None:
    real_kbs.set_policy(DENY)
    result = run(
        runner, kbs, "get-resource", "--path", "a/b/c", "--emulated", str(test_root.directory)
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == seed_denial()


def test_cli_prints_attest_refusals(runner: CliRunner, test_root: Any, tmp_path: Path) -> None:
    # A KBS as shipped refuses the sample TEE's evidence (it carries no hardware signature).
    parts = build_kbs(
        KbsSettings(attestation=AsSettings(data_dir=tmp_path, trust_root=test_root.directory))
    )
    with serve_app(parts.app) as url:
        result = run(
            runner,
            CliKbs(url, []),
            "attest",
            "--tee",
            "sample",
            "--emulated",
            str(test_root.directory),
        )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: KBS attest unauthorized, Error Info: ErrorInformation { error_type: "
        f'"{ERRORS}AttestationError", '
        'detail: "Attestation error: RCAR handshake Attest failed" }\n'
    )


def _admin_key(tmp_path: Path) -> tuple[Path, ed25519.Ed25519PrivateKey]:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "admin.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, key


def test_cli_config_commands(
    runner: CliRunner, kbs: CliKbs, real_kbs: Kbs, test_root: Any, tmp_path: Path
) -> None:
    key_path = real_kbs.parts.attestation.admin.key_path  # the server's own admin key
    emulated = ["--emulated", str(test_root.directory)]
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cr3t")
    policy = tmp_path / "p.rego"
    policy.write_text("package policy\n")
    admin = ["config", "--auth-private-key", str(key_path)]
    result = run(
        runner, kbs, *admin, "set-resource", "--path", "r/t/x", "--resource-file", str(secret)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Set resource success \n resource: czNjcjN0\n"
    bearer = kbs.requests[-1].headers["authorization"].removeprefix("Bearer ")
    real_kbs.parts.admin.authorize(f"Bearer {bearer}", path="/kbs/v0/resource")
    claims = token_claims(bearer)  # the signature was checked just above
    assert claims["exp"] - claims["iat"] == 7200
    with pytest.raises(AdminAuthError):  # signed with that key, not any other
        Ed25519AdminAuth(_admin_key(tmp_path)[1].public_key()).authorize(
            f"Bearer {bearer}", path="/kbs/v0/resource"
        )
    result = run(runner, kbs, *admin, "set-resource-policy", "--policy-file", str(policy))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Set resource policy success \n policy: cGFja2FnZSBwb2xpY3kK\n"
    result = run(runner, kbs, "get-resource", "--path", "r/t/x", *emulated)
    assert result.exit_code == 1  # that policy (no allow rule) really applies
    assert "PolicyDeny" in result.stderr
    result = run(runner, kbs, *admin, "set-resource-policy", "--allow-all")
    assert result.exit_code == 0
    assert "Set resource policy success" in result.stdout
    result = run(runner, kbs, "get-resource", "--path", "r/t/x", *emulated)
    assert result.exit_code == 0, result.output
    assert base64.b64decode(result.stdout) == b"s3cr3t"  # the resource really is stored
    result = run(
        runner, kbs, *admin, "set-attestation-policy", "--policy-file", str(policy), "--id", "x"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Set attestation policy success \n policy: cGFja2FnZSBwb2xpY3kK\n"
    assert json.loads(kbs.requests[-1].content)["policy_id"] == "x"
    result = run(runner, kbs, *admin, "set-sample-reference-value", "cli-svn", "1", "--as-integer")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Reference Values Updated\n"
    assert json.loads(kbs.requests[-1].content) == sample_reference_value_message(
        "cli-svn", "1", as_integer=True
    )
    result = run(runner, kbs, *admin, "get-reference-value", "--id", "cli-svn")
    assert result.stdout == '"[1]"\n'
    message = tmp_path / "m.json"
    payload = base64.b64encode(b'{"cli-svn":["1"]}').decode()
    message.write_text(f'{{"version":"0.1.0","type":"sample","payload":"{payload}"}}')
    result = run(runner, kbs, *admin, "set-reference-value", "--message-file", str(message))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Reference Values Updated\n"
    result = run(runner, kbs, *admin, "get-reference-value", "--id", "cli-svn")
    assert result.stdout == '"[\\"1\\"]"\n'
    result = run(runner, kbs, *admin, "get-resource-policy")
    assert result.stdout == '["resource-policy"]\n'
    result = run(runner, kbs, *admin, "delete-resource", "--path", "r/t/x")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Delete resource success\n"
    result = run(runner, kbs, "get-resource", "--path", "r/t/x", *emulated)
    assert result.exit_code == 1  # really deleted
    assert result.stdout == ""
    admin_calls = [
        r
        for r in kbs.requests
        if not r.url.path.endswith(("/auth", "/attest"))
        and not (r.method == "GET" and "/resource/" in r.url.path)
    ]
    assert len(admin_calls) == 10
    assert all(r.headers["authorization"].startswith("Bearer ") for r in admin_calls)
    assert all("authorization" not in r.headers for r in kbs.requests if r not in admin_calls)


def test_cli_admin_refusal(runner: CliRunner, kbs: CliKbs, tmp_path: Path) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text("NOT-THE-TOKEN\n")
    result = run(
        runner, kbs, "config", "--admin-token-file", str(token_file), "get-resource-policy"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith('Error: Request Failed, Response: "{\\"type\\":')
    assert f"{ERRORS}AdminAuthAccess" in result.stderr
    assert "NOT-THE-TOKEN" not in result.stderr
    (sent,) = kbs.requests
    assert sent.headers["authorization"] == "Bearer NOT-THE-TOKEN"


def test_sample_reference_value_messages() -> None:
    def payload(**kwargs: bool) -> Any:
        message = sample_reference_value_message("svn", "1", **kwargs)
        assert message["version"] == "0.1.0"
        assert message["type"] == "sample"
        return json.loads(base64.b64decode(message["payload"]))

    assert payload() == {"svn": ["1"]}
    assert payload(as_integer=True) == {"svn": [1]}
    assert payload(as_single_value=True) == {"svn": "1"}
    assert json.loads(
        base64.b64decode(sample_reference_value_message("d", "true", as_bool=True)["payload"])
    ) == {"d": [True]}


@pytest.mark.parametrize(
    "args",
    [
        ["get-resource"],  # --path is required
        ["attest", "--tee", "cca", "--emulated", "."],
        ["attest", "--emulated", "/nonexistent/root"],
        ["get-resource", "--path", "a/b/c", "--attestation-token", "TOKENFILE"],
        ["config", "set-resource-policy"],
        ["config", "set-resource-policy", "--allow-all", "--deny-all"],
        ["config", "set-sample-reference-value", "svn", "x", "--as-integer"],
        ["config", "set-sample-reference-value", "svn", "yes", "--as-bool"],
        ["config", "set-sample-reference-value", "svn", "1", "--as-bool", "--as-integer"],
        ["config", "--auth-private-key", "TOKENFILE", "get-resource-policy"],
        [
            "config",
            "--auth-private-key",
            "KEYFILE",
            "--admin-token-file",
            "TOKENFILE",
            "get-resource-policy",
        ],
        ["config", "set-reference-value", "--message-file", "TOKENFILE"],
        ["config", "set-resource", "--path", "a/b/c", "--resource-file", "/nonexistent"],
        ["--cert-file", "/nonexistent", "attest"],
        ["frobnicate"],
    ],
)
def test_cli_usage_errors_exit_2(
    runner: CliRunner, kbs: CliKbs, tmp_path: Path, args: list[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not json, not a key\n")
    key_path, _ = _admin_key(tmp_path)
    args = [
        str(token_file) if a == "TOKENFILE" else str(key_path) if a == "KEYFILE" else a
        for a in args
    ]
    result = run(runner, kbs, *args)
    assert result.exit_code == 2, result.output
    assert kbs.requests == []


@pytest.mark.parametrize("command", [["get-resource", "--path", "a/b/c"], ["attest"]])
def test_on_a_host_without_a_tee_it_says_so(
    runner: CliRunner, kbs: CliKbs, command: list[str]
) -> None:
    """This test host has no TEE interface: without --emulated or --tee sample the
    client names every interface it looked for, and says what to do instead."""
    result = run(runner, kbs, *command)
    assert result.exit_code == 1
    assert "no TEE found; looked for: configfs-tsm" in result.stderr
    assert "/dev/tdx_guest (absent)" in result.stderr
    assert "--emulated ROOTDIR" in result.stderr
    assert "--tee sample" in result.stderr
    assert result.stdout == ""
    assert kbs.requests == []


def test_sample_evidence_without_the_emulator(runner: CliRunner, kbs: CliKbs) -> None:
    """`--tee sample` attests with Trustee's sample attester, no test root needed (the
    fixture's KBS accepts sample evidence)."""
    result = run(runner, kbs, "attest", "--tee", "sample")
    assert result.exit_code == 0, result.output
    assert result.stdout.count(".") == 2  # a JWT


