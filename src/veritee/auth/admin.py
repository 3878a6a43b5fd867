"""Admin API authentication: default authenticated, never open unless said so loudly.

The embedded default is Trustee's legacy form: an Ed25519 key pair, whose
public half the service trusts, and bearer JWTs (EdDSA, with ``exp``) signed by
the private half, which is what ``kbs-client config --auth-private-key`` sends.
``veritee serve`` generates the pair and a long-lived admin token in its data
directory on first start.  ``InsecureAllowAll`` exists for tests and demos and
logs a warning every time a service starts with it.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from veritee.errors import VeriteeError
from veritee.paths import write_private

log = logging.getLogger("veritee.auth")

ADMIN_KEY = "admin.key"
ADMIN_PUB = "admin.pub"
ADMIN_TOKEN = "admin.token"  # noqa: S105 (a file name)
_LEEWAY_S = 60


class AdminAuthError(VeriteeError):
    """An admin request that is not authenticated; the message never echoes the token."""


class AdminAuth(Protocol):
    def authorize(self, authorization: str | None, *, path: str) -> None:
        """Return if the ``Authorization`` header grants admin access, else raise."""


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AdminAuthError("no Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AdminAuthError("the Authorization header is not a Bearer token")
    return token.strip()


@dataclass(frozen=True)
class Ed25519AdminAuth:
    """Bearer JWTs signed by the admin Ed25519 key (alg EdDSA), with ``exp`` checked."""

    public_key: ed25519.Ed25519PublicKey
    _jose: OKPKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Imported once: the key is fixed for the life of this object.
        pem = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        object.__setattr__(self, "_jose", OKPKey.import_key(pem))

    def authorize(self, authorization: str | None, *, path: str) -> None:
        token = _bearer(authorization)
        try:
            with _eddsa_compat():
                decoded = jwt.decode(token, self._jose, algorithms=["EdDSA", "Ed25519"])
        except (JoseError, ValueError) as exc:
            raise AdminAuthError(f"admin token for {path} does not verify") from exc
        exp = decoded.claims.get("exp")
        now = time.time()
        if not isinstance(exp, int | float) or exp + _LEEWAY_S < now:
            raise AdminAuthError("admin token has expired or has no exp claim")
        iat = decoded.claims.get("iat")
        if isinstance(iat, int | float) and iat - _LEEWAY_S > now:
            raise AdminAuthError("admin token is not valid yet")


@dataclass(frozen=True)
class DenyAll:
    def authorize(self, authorization: str | None, *, path: str) -> None:
        raise AdminAuthError("admin access denied as DenyAll authorization_mode is enabled")


@dataclass(frozen=True)
class InsecureAllowAll:
    def authorize(self, authorization: str | None, *, path: str) -> None:
        return None


def warn_insecure(service: str) -> None:
    log.warning(
        "INSECURE: %s admin API accepts every request (InsecureAllowAll); "
        "never use this outside a test",
        service,
    )


def sign_admin_token(private_key: ed25519.Ed25519PrivateKey, *, lifetime_s: int) -> str:
    """An EdDSA admin JWT with ``iat`` and ``exp``, as kbs-client makes them."""
    key = OKPKey.import_key(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    now = int(time.time())
    with _eddsa_compat():
        return jwt.encode(
            {"alg": "EdDSA", "typ": "JWT"},
            {"iat": now, "exp": now + lifetime_s},
            key,
            algorithms=["EdDSA"],
        )


@contextlib.contextmanager
def _eddsa_compat() -> Iterator[None]:
    """kbs-client signs admin tokens with alg "EdDSA", which RFC 9864 deprecates in favour
    of "Ed25519"; both name the same Ed25519 signature, so joserfc's warning is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated")
        yield


@dataclass(frozen=True)
class AdminCredentials:
    auth: Ed25519AdminAuth
    key_path: Path
    token_path: Path
    created: bool


def ensure_admin_credentials(
    data_dir: Path, *, token_lifetime_s: int = 365 * 24 * 3600
) -> AdminCredentials:
    """Load the admin key pair from ``data_dir``, creating it (and a token) on first start."""
    key_path, pub_path, token_path = (
        data_dir / ADMIN_KEY,
        data_dir / ADMIN_PUB,
        data_dir / ADMIN_TOKEN,
    )
    created = False
    if not key_path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        private = ed25519.Ed25519PrivateKey.generate()
        write_private(
            key_path,
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        pub_path.write_bytes(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        write_private(
            token_path, (sign_admin_token(private, lifetime_s=token_lifetime_s) + "\n").encode()
        )
        created = True
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise VeriteeError(f"{key_path} is not an Ed25519 private key")
    if pub_path.exists():
        stored = serialization.load_pem_public_key(pub_path.read_bytes())
        mine = loaded.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        if not isinstance(stored, ed25519.Ed25519PublicKey) or not hmac.compare_digest(
            stored.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw), mine
        ):
            raise VeriteeError(f"{pub_path} does not match {key_path}")
    return AdminCredentials(Ed25519AdminAuth(loaded.public_key()), key_path, token_path, created)


def load_public_key(path: Path) -> Ed25519AdminAuth:
    """Trustee's ``auth_public_key``: a PEM Ed25519 public key."""
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise VeriteeError(f"{path} is not an Ed25519 public key")
    return Ed25519AdminAuth(key)
