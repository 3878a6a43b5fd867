"""``veritee secret keygen|seal|unseal`` through the real ``veritee`` command group: bad
secrets exit 1, usage and unusable keys exit 2, then keys, sealing and unsealing work with
our own keys and with guest-components' test keys (tests/data/SOURCES.md)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from datadir import GUEST_COMPONENTS
from typer.testing import CliRunner, Result

from veritee.cli import app
from veritee.guest.sealed_secret import (
    load_verifying_jwk,
    open_sealed_secret,
    seal_secret,
)

TESTS = GUEST_COMPONENTS / "confidential-data-hub" / "hub" / "src" / "secret" / "tests"
TEST_KEY = TESTS / "test-key.json"
TEST_KEY_2 = TESTS / "test-key-2.json"
VAULT_1 = json.loads((TESTS / "vault-1.json").read_text())
VAULT_2 = json.loads((TESTS / "vault-2.json").read_text())
KID = "kbs:///default/sealed-secret-key/1"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def run(runner: CliRunner, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["secret", *args], input=stdin)


@pytest.fixture
def public(tmp_path: Path) -> Path:
    """The public half of upstream's test-key.json."""
    path = tmp_path / "test-key.pub.json"
    path.write_text(
        json.dumps({k: v for k, v in json.loads(TEST_KEY.read_text()).items() if k != "d"})
    )
    return path


# --- refusals ------------------------------------------------------------------------------------


def test_bad_secrets_exit_1(runner: CliRunner, public: Path) -> None:
    good = seal_secret(VAULT_2, TEST_KEY.read_text(), KID)
    head, _, signature = good.removeprefix("sealed.").split(".")
    other = base64.urlsafe_b64encode(json.dumps(VAULT_1).encode()).rstrip(b"=").decode()
    cases = {
        seal_secret(VAULT_2, TEST_KEY_2.read_text(), KID): "does not verify",
        f"sealed.{head}.{other}.{signature}": "does not verify",
        good.removeprefix("sealed."): "starts with 'sealed.'",
        "sealed.fakejwsheader.e30.fakesignature": "not a compact JWS",
        "sealed.eyJhbGciOiJIUzI1NiJ9.e30.AAAA": "signed with ES256 only",
    }
    for secret, reason in cases.items():
        result = run(runner, "unseal", secret, "--public-key", str(public))
        assert result.exit_code == 1, (secret, result.output)
        assert reason in result.stderr
        assert result.stdout == ""


def test_usage_errors_exit_2(runner: CliRunner, public: Path, tmp_path: Path) -> None:
    good = seal_secret(VAULT_2, TEST_KEY.read_text(), KID)
    garbage = tmp_path / "garbage.jwk"
    garbage.write_text("{}")
    cases = [
        (("unseal", good, "--public-key", str(tmp_path / "missing.jwk")), "cannot read"),
        (("unseal", good, "--public-key", str(garbage)), "not an EC P-256 JWK"),
        (("unseal", good), "Missing option '--public-key'"),
        (
            ("seal", "--name", "kbs:///a/../b", "--signing-key", str(TEST_KEY), "--kid", "k"),
            "segment 2 is '..'",
        ),
        (
            ("seal", "--name", "kbs:///a/b/c", "--signing-key", str(public), "--kid", "k"),
            "is a public key",
        ),
        (
            ("seal", "--name", "kbs:///a/b/c", "--signing-key", str(TEST_KEY), "--kid", ""),
            "non-empty",
        ),
        (
            (
                "seal",
                "--type",
                "envelope",
                "--name",
                "kbs:///a/b/c",
                "--signing-key",
                "k",
                "--kid",
                "k",
            ),
            "--type",
        ),
        (("seal", "--name", "kbs:///a/b/c", "--kid", "k"), "Missing option '--signing-key'"),
    ]
    for args, reason in cases:
        result = run(runner, *args)
        assert result.exit_code == 2, (args, result.output)
        assert reason in result.output, (args, result.output)
        assert json.loads(TEST_KEY.read_text())["d"] not in result.output


def test_keygen_does_not_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "signer.jwk"
    out.write_text("precious")
    result = run(runner, "keygen", str(out))
    assert result.exit_code == 2
    assert "exists (--force replaces it)" in result.stderr
    assert out.read_text() == "precious"


# --- what works ----------------------------------------------------------------------------------


def test_keygen_seal_unseal(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "signer.jwk"
    result = run(runner, "keygen", str(out))
    assert result.exit_code == 0, result.output
    public = tmp_path / "signer.pub.jwk"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    private_jwk = json.loads(out.read_text())
    public_jwk = json.loads(public.read_text())
    assert private_jwk["kty"] == "EC"
    assert private_jwk["crv"] == "P-256"
    assert private_jwk["alg"] == "ES256"
    assert "d" in private_jwk
    assert "d" not in public_jwk
    assert {k: v for k, v in private_jwk.items() if k != "d"} == public_jwk
    assert str(public) in result.stdout

    sealed = run(
        runner, "seal", "--name", "kbs:///one/2/trois", "--signing-key", str(out), "--kid", KID
    )
    assert sealed.exit_code == 0, sealed.output
    secret = sealed.stdout.strip()
    assert secret.startswith("sealed.")
    # the library (the CDH's own check) agrees with the command
    opened = open_sealed_secret(secret, lambda kid: load_verifying_jwk(public_jwk))
    assert json.loads(opened.model_dump_json()) == VAULT_2

    shown = run(runner, "unseal", secret, "--public-key", str(public))
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == VAULT_2  # the name, not the value: nothing is fetched
    piped = run(runner, "unseal", "-", "--public-key", str(public), stdin=secret + "\n")
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == shown.stdout

    forced = run(runner, "keygen", "--force", str(out))
    assert forced.exit_code == 0, forced.output
    assert json.loads(out.read_text())["d"] != private_jwk["d"]
    stale = run(runner, "unseal", secret, "--public-key", str(public))
    assert stale.exit_code == 1  # the new key did not sign it


def test_upstream_test_keys(runner: CliRunner, public: Path) -> None:
    sealed = run(
        runner,
        "seal",
        "--name",
        "xxx",
        "--provider",
        "aliyun",
        "--signing-key",
        str(TEST_KEY),
        "--kid",
        "test-key.pub.json",
    )
    assert sealed.exit_code == 0, sealed.output
    shown = run(runner, "unseal", sealed.stdout.strip(), "--public-key", str(public))
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == VAULT_1  # upstream's vault-1 payload, byte for byte
    # a private JWK works as the public key too (only its public half is used)
    again = run(runner, "unseal", sealed.stdout.strip(), "--public-key", str(TEST_KEY))
    assert again.exit_code == 0, again.output
    envelope = seal_secret(
        json.loads((TESTS / "envelope-1.json").read_text()), TEST_KEY.read_text(), "k"
    )
    shown = run(runner, "unseal", envelope, "--public-key", str(public))
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["type"] == "envelope"


def test_keygen_without_a_suffix(runner: CliRunner, tmp_path: Path) -> None:
    result = run(runner, "keygen", str(tmp_path / "signer"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "signer.pub").is_file()
