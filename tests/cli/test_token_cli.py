"""`veritee token verify`: exit codes, the JSON contract, the rich tables, JWKS by URL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from local_pcs import LocalServer, Reply, refused_url
from typer.testing import CliRunner

from veritee.cli.token import JWKS_ENV, app
from veritee.token.ear import EarSettings, SubmodAppraisal, ear_claims
from veritee.token.signer import TokenSigner

root = typer.Typer()
root.add_typer(app, name="token")
runner = CliRunner()


@pytest.fixture(scope="module")
def signer() -> TokenSigner:
    return TokenSigner.generate()


@pytest.fixture(scope="module")
def attacker() -> TokenSigner:
    return TokenSigner.generate()


@pytest.fixture
def jwks_file(tmp_path: Path, signer: TokenSigner) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(signer.jwks()))
    return path


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer().start()
    yield srv
    srv.stop()


def claims(*, now: int | None = None, emulated: bool = False, **changes: Any) -> dict[str, Any]:
    appraisals = [
        SubmodAppraisal(
            "cpu0",
            {"configuration": 36, "executables": 3, "hardware": 2},
            "default",
            {"report_data": "00"},
            emulated=emulated,
        ),
        SubmodAppraisal("gpu0", {"hardware": 97}, "default", {}),
    ]
    base = ear_claims(appraisals, EarSettings(), now=now if now is not None else int(time.time()))
    base.update(changes)
    return base


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(
        root, ["token", "verify", *args], input=stdin, env={"COLUMNS": "200", JWKS_ENV: ""}
    )
    return result.exit_code, result.output


# --- invalid tokens: exit 1 ---------------------------------------------------------------


def test_forged_token_exits_1(attacker: TokenSigner, jwks_file: Path) -> None:
    code, out = run(attacker.sign(claims()), "--jwks", str(jwks_file))
    assert code == 1
    assert "invalid" in out
    assert "bad_signature" in out


def test_forged_token_json(attacker: TokenSigner, jwks_file: Path) -> None:
    code, out = run(attacker.sign(claims()), "--jwks", str(jwks_file), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["valid"] is False
    assert doc["claims"] is None
    assert doc["error"].startswith("bad_signature: ")


def test_expired_token(signer: TokenSigner, jwks_file: Path) -> None:
    old = signer.sign(claims(now=int(time.time()) - 3600))
    code, out = run(old, "--jwks", str(jwks_file), "--json")
    assert code == 1
    assert json.loads(out)["error"].startswith("expired: ")


def test_leeway_option(signer: TokenSigner, jwks_file: Path) -> None:
    stale = signer.sign(claims(now=int(time.time()) - 330))  # expired 30 s ago
    assert run(stale, "--jwks", str(jwks_file))[0] == 0
    assert run(stale, "--jwks", str(jwks_file), "--leeway", "0")[0] == 1


def test_wrong_profile(signer: TokenSigner, jwks_file: Path) -> None:
    token = signer.sign(claims(eat_profile="other"))
    code, out = run(token, "--jwks", str(jwks_file))
    assert code == 1
    assert "wrong_profile" in out


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "eyJ.eyJ"])
def test_garbage_exits_1(garbage: str, jwks_file: Path) -> None:
    code, out = run(garbage, "--jwks", str(jwks_file), "--json")
    assert code == 1
    assert json.loads(out)["error"].startswith("malformed: ")


# --- usage and unusable keys: exit 2 ------------------------------------------------------


def test_without_jwks_is_a_usage_error(signer: TokenSigner) -> None:
    code, out = run(signer.sign(claims()))
    assert code == 2
    assert "--jwks" in out


def test_without_jwks_json(signer: TokenSigner) -> None:
    code, out = run(signer.sign(claims()), "--json")
    assert code == 2
    assert json.loads(out) == {
        "valid": False,
        "error": f"no trusted keys: pass --jwks FILE|URL (or set {JWKS_ENV})",
        "claims": None,
    }


def test_no_arguments() -> None:
    assert run()[0] == 2


def test_missing_jwks_file(signer: TokenSigner, tmp_path: Path) -> None:
    code, out = run(signer.sign(claims()), "--jwks", str(tmp_path / "none.json"), "--json")
    assert code == 2
    assert json.loads(out)["error"].startswith("jwks: cannot read")


def test_jwks_url_404(signer: TokenSigner, server: LocalServer) -> None:
    code, out = run(signer.sign(claims()), "--jwks", f"{server.url}/jwks.json", "--json")
    assert code == 2
    assert "HTTP 404" in json.loads(out)["error"]


def test_jwks_url_refused(signer: TokenSigner) -> None:
    code, out = run(signer.sign(claims()), "--jwks", f"{refused_url()}/jwks.json")
    assert code == 2
    assert "jwks" in out


# --- valid tokens -------------------------------------------------------------------------


def test_valid_json(signer: TokenSigner, jwks_file: Path) -> None:
    expected = claims()
    code, out = run(signer.sign(expected), "--jwks", str(jwks_file), "--json")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"valid", "error", "claims"}
    assert doc["valid"] is True
    assert doc["error"] is None
    assert doc["claims"] == expected


def test_valid_table(signer: TokenSigner, jwks_file: Path) -> None:
    code, out = run(signer.sign(claims()), "--jwks", str(jwks_file))
    assert code == 0
    for text in (
        "valid",
        "CoCo-Attestation-Service",
        "cpu0",
        "gpu0",
        "configuration",
        "36",
        "executables",
        "affirming",
        "warning",
        "contraindicated",
        "policy default",
    ):
        assert text in out
    assert "EMULATED" not in out


def test_emulated_is_shown(signer: TokenSigner, jwks_file: Path) -> None:
    code, out = run(signer.sign(claims(emulated=True)), "--jwks", str(jwks_file))
    assert code == 0
    assert "EMULATED" in out
    assert "(emulated)" in out


def test_token_from_file(signer: TokenSigner, jwks_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "token.jwt"
    path.write_text(signer.sign(claims()) + "\n")
    assert run(str(path), "--jwks", str(jwks_file))[0] == 0


def test_token_from_stdin(signer: TokenSigner, jwks_file: Path) -> None:
    code, out = run("-", "--jwks", str(jwks_file), "--json", stdin=signer.sign(claims()) + "\n")
    assert code == 0
    assert json.loads(out)["valid"] is True


def test_jwks_by_url(signer: TokenSigner, attacker: TokenSigner, server: LocalServer) -> None:
    body = json.dumps(signer.jwks()).encode()
    server.routes["/.well-known/jwks.json"] = Reply(200, body, {"Content-Type": "application/json"})
    url = f"{server.url}/.well-known/jwks.json"
    assert run(signer.sign(claims()), "--jwks", url)[0] == 0
    assert run(attacker.sign(claims()), "--jwks", url)[0] == 1
    assert server.hits["/.well-known/jwks.json"] == 2


def test_jwks_from_environment(signer: TokenSigner, jwks_file: Path) -> None:
    result = runner.invoke(
        root,
        ["token", "verify", signer.sign(claims()), "--json"],
        env={JWKS_ENV: str(jwks_file)},
    )
    assert result.exit_code == 0
    assert json.loads(result.output)["valid"] is True


def test_unreadable_token_file(jwks_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "token.bin"
    path.write_bytes(b"\xff\xfe\x00")
    code, out = run(str(path), "--jwks", str(jwks_file))
    assert code == 2
    assert "cannot read" in out
