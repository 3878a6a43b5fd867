"""Admin authentication: Ed25519 bearer JWTs, DenyAll, and first-start credentials."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from veritee.auth.admin import (
    AdminAuthError,
    DenyAll,
    Ed25519AdminAuth,
    InsecureAllowAll,
    ensure_admin_credentials,
    load_public_key,
    sign_admin_token,
)


@pytest.fixture
def creds(tmp_path: Path):  # type: ignore[no-untyped-def]
    return ensure_admin_credentials(tmp_path)


def test_first_start_creates_private_files(creds, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert creds.created
    for name in ("admin.key", "admin.token"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    again = ensure_admin_credentials(tmp_path)
    assert not again.created
    token = creds.token_path.read_text().strip()
    again.auth.authorize(f"Bearer {token}", path="/policy")


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer not.a.jwt"])
def test_missing_or_malformed(creds, header: str | None) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AdminAuthError):
        creds.auth.authorize(header, path="/policy")


def test_token_of_another_key_is_refused(creds) -> None:  # type: ignore[no-untyped-def]
    other = sign_admin_token(ed25519.Ed25519PrivateKey.generate(), lifetime_s=600)
    with pytest.raises(AdminAuthError, match="does not verify"):
        creds.auth.authorize(f"Bearer {other}", path="/policy")


def test_expired_token_is_refused() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    auth = Ed25519AdminAuth(key.public_key())
    with pytest.raises(AdminAuthError, match="expired"):
        auth.authorize(f"Bearer {sign_admin_token(key, lifetime_s=-120)}", path="/policy")


def test_tampered_token_is_refused(creds) -> None:  # type: ignore[no-untyped-def]
    token = creds.token_path.read_text().strip()
    head, payload, sig = token.split(".")
    with pytest.raises(AdminAuthError):
        creds.auth.authorize(f"Bearer {head}.{payload}x.{sig}", path="/policy")


def test_deny_all_and_allow_all() -> None:
    with pytest.raises(AdminAuthError, match="DenyAll"):
        DenyAll().authorize("Bearer x", path="/policy")
    InsecureAllowAll().authorize(None, path="/policy")


def test_legacy_auth_public_key_file(creds, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    auth = load_public_key(tmp_path / "admin.pub")
    auth.authorize(f"Bearer {creds.token_path.read_text().strip()}", path="/x")
