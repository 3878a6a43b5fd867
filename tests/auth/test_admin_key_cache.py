"""Admin keys are imported once per key (the Ed25519 admin key per auth object, PEM
keys of Trustee's admin modes by their SPKI bytes): a token signed by any other key is
still refused, however warm the cache, and each key keeps accepting its own tokens."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jwt
from joserfc.jwk import ECKey

from veritee.auth.admin import AdminAuthError, Ed25519AdminAuth, sign_admin_token
from veritee.auth.trustee import (
    IdentityProvider,
    LegacyEd25519AdminAuth,
    PersonaAdminAuth,
    TrusteeAdminDenied,
)


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {"iat": now, "exp": now + 300, "role": "admin"}


def _eddsa(key: ed25519.Ed25519PrivateKey) -> str:
    return f"Bearer {sign_admin_token(key, lifetime_s=300)}"


def _es256(key: ec.EllipticCurvePrivateKey) -> str:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    token = jwt.encode({"alg": "ES256"}, _claims(), ECKey.import_key(pem), algorithms=["ES256"])
    return str(token)


def test_the_default_admin_auth_refuses_every_other_key() -> None:
    first, second = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    auth_first = Ed25519AdminAuth(first.public_key())
    auth_second = Ed25519AdminAuth(second.public_key())
    for _ in range(3):  # warm: every round reuses the imported keys
        auth_first.authorize(_eddsa(first), path="/kbs/v0/resource-policy")
        auth_second.authorize(_eddsa(second), path="/kbs/v0/resource-policy")
        with pytest.raises(AdminAuthError):
            auth_first.authorize(_eddsa(second), path="/kbs/v0/resource-policy")
        with pytest.raises(AdminAuthError):
            auth_second.authorize(_eddsa(first), path="/kbs/v0/resource-policy")
    # The imported key is the object's own, not part of its equality.
    assert Ed25519AdminAuth(first.public_key()) == Ed25519AdminAuth(first.public_key())


def test_a_rotated_legacy_key_refuses_the_old_tokens() -> None:
    old, new = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    before = LegacyEd25519AdminAuth(old.public_key())
    after = LegacyEd25519AdminAuth(new.public_key())
    before.authorize(_eddsa(old), path="/kbs/v0/resource")
    after.authorize(_eddsa(new), path="/kbs/v0/resource")
    with pytest.raises(TrusteeAdminDenied):
        after.authorize(_eddsa(old), path="/kbs/v0/resource")
    with pytest.raises(TrusteeAdminDenied):
        before.authorize(_eddsa(new), path="/kbs/v0/resource")


def test_personas_keep_their_own_keys() -> None:
    alice, bob = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    mallory = ed25519.Ed25519PrivateKey.generate()
    auth = PersonaAdminAuth((("alice", alice.public_key()), ("bob", bob.public_key())))
    for _ in range(2):
        auth.authorize(_eddsa(alice), path="/kbs/v0/resource")
        auth.authorize(_eddsa(bob), path="/kbs/v0/resource")
        with pytest.raises(TrusteeAdminDenied):
            auth.authorize(_eddsa(mallory), path="/kbs/v0/resource")


def test_identity_provider_pem_keys_refuse_another_signer() -> None:
    trusted, other = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    idp = IdentityProvider(pem_keys=(trusted.public_key(),))
    for _ in range(2):
        assert idp.verify(_es256(trusted))["role"] == "admin"
        with pytest.raises(ValueError, match="no trusted PEM key"):
            idp.verify(_es256(other))
