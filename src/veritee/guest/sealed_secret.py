"""Sealed secrets: ``"sealed." + <compact JWS>`` (guest-components' CDH, since v0.18).

The header is ``{"alg":"ES256","kid":…}``; the payload JSON has version ``0.1.0`` and
``type`` vault or envelope.  ``kid`` names the public P-256 JWK that verifies it (a
resource URI or a file, resolved by the caller).  Only ES256 is accepted; all JOSE
work is joserfc's.  Opening without a key resolver skips the signature check and also
reads the old unsigned 4-part form (``sealed.<junk>.<payload>.<junk>``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError, MissingAlgorithmError
from joserfc.jwk import ECKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from veritee.guest.cdh_errors import (
    SealedSecretFormatError,
    SealedSecretKeyError,
    SealedSecretSignatureError,
    SealedSecretVersionError,
    UnsupportedSecretType,
    shorten,
)

__all__ = [
    "MAX_SEALED_SECRET",
    "SEALED_PREFIX",
    "SEALED_SECRET_ALG",
    "SEALED_SECRET_VERSION",
    "EnvelopeSecret",
    "KeyResolver",
    "SecretPayload",
    "VaultSecret",
    "load_signing_jwk",
    "load_verifying_jwk",
    "open_sealed_secret",
    "parse_secret_payload",
    "seal_secret",
]

KeyResolver = Callable[[str], ECKey]

SEALED_PREFIX = "sealed."
SEALED_SECRET_VERSION = "0.1.0"  # noqa: S105 (a format version, not a secret)
SEALED_SECRET_ALG = "ES256"  # noqa: S105 (an algorithm name)
MAX_SEALED_SECRET = 1 << 20  # a Kubernetes Secret's own limit
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


# --- the payload -------------------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class VaultSecret(_Payload):
    """The secret is stored elsewhere; ``name`` says where (a resource URI for ``kbs``)."""

    version: str = SEALED_SECRET_VERSION
    type: Literal["vault"] = "vault"
    name: str
    provider: str = "kbs"
    provider_settings: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)


class EnvelopeSecret(_Payload):
    """The secret travels encrypted under a data key that a KMS wraps."""

    version: str = SEALED_SECRET_VERSION
    type: Literal["envelope"] = "envelope"
    key_id: str
    encrypted_key: str
    encrypted_data: str
    wrap_type: Literal["A256GCM", "A256CTR"]
    iv: str
    provider: str
    provider_settings: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)


SecretPayload = VaultSecret | EnvelopeSecret
_PAYLOADS: dict[str, type[VaultSecret] | type[EnvelopeSecret]] = {
    "vault": VaultSecret,
    "envelope": EnvelopeSecret,
}


def parse_secret_payload(data: bytes) -> SecretPayload:
    """The payload of a sealed secret: version ``0.1.0``, ``type`` vault or envelope."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise SealedSecretFormatError("the payload is not JSON") from None
    if not isinstance(doc, dict):
        raise SealedSecretFormatError("the payload is not a JSON object")
    version = doc.get("version")
    if version != SEALED_SECRET_VERSION:
        raise SealedSecretVersionError(
            f"payload version {shorten(version)} is not supported (expected "
            f"{SEALED_SECRET_VERSION!r})"
        )
    kind = doc.get("type")
    if kind is None:
        raise SealedSecretFormatError("the payload has no 'type'")
    model = _PAYLOADS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise UnsupportedSecretType(
            f"secret type {shorten(kind)} is not supported (vault or envelope)"
        )
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SealedSecretFormatError(f"the {kind} payload: {problems}") from None


# --- keys --------------------------------------------------------------------------------------


def _jwk_document(source: Mapping[str, Any] | str | bytes, what: str) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    try:
        doc = json.loads(source)
    except (ValueError, UnicodeDecodeError):
        raise SealedSecretKeyError(f"{what} is not JWK JSON") from None
    if not isinstance(doc, dict):
        raise SealedSecretKeyError(f"{what} is not a JWK (a JSON object)")
    return doc


def _import_p256(doc: dict[str, Any], what: str) -> ECKey:
    if doc.get("kty") != "EC" or doc.get("crv") != "P-256":
        raise SealedSecretKeyError(f"{what} is not an EC P-256 JWK")
    try:
        return ECKey.import_key(doc)
    except (JoseError, ValueError, TypeError, KeyError):
        raise SealedSecretKeyError(f"{what} is not a valid EC P-256 JWK") from None


def load_verifying_jwk(source: Mapping[str, Any] | str | bytes, what: str = "the key") -> ECKey:
    """The public P-256 key of a JWK (of a private JWK, only its public half is kept)."""
    key = _import_p256(_jwk_document(source, what), what)
    return ECKey.import_key(key.as_dict(private=False))


def load_signing_jwk(source: Mapping[str, Any] | str | bytes, what: str = "the key") -> ECKey:
    """A private P-256 JWK (the signer's)."""
    key = _import_p256(_jwk_document(source, what), what)
    if not key.is_private:
        raise SealedSecretKeyError(f"{what} is a public key; sealing needs the private key")
    return key


# --- sealing and opening -----------------------------------------------------------------------


def seal_secret(
    payload: SecretPayload | Mapping[str, Any],
    signing_key_jwk: Mapping[str, Any] | str | bytes | ECKey,
    kid: str,
) -> str:
    """``sealed.`` + a compact ES256 JWS of ``payload`` with header ``{"alg","kid"}``."""
    if isinstance(payload, VaultSecret | EnvelopeSecret):
        model: SecretPayload = payload
    else:
        model = parse_secret_payload(json.dumps(dict(payload)).encode())
    if model.version != SEALED_SECRET_VERSION:
        raise SealedSecretVersionError(
            f"payload version {shorten(model.version)} is not supported "
            f"(expected {SEALED_SECRET_VERSION!r})"
        )
    if not kid or any(ord(ch) < 0x20 for ch in kid):
        raise SealedSecretKeyError("kid must be a non-empty string without control characters")
    if isinstance(signing_key_jwk, ECKey):
        key = signing_key_jwk
        if not key.is_private or key.curve_name != "P-256":
            raise SealedSecretKeyError("sealing needs a private EC P-256 key")
    else:
        key = load_signing_jwk(signing_key_jwk, "the signing key")
    header = {"alg": SEALED_SECRET_ALG, "kid": kid}
    body = model.model_dump_json().encode()
    return SEALED_PREFIX + jws.serialize_compact(header, body, key, algorithms=[SEALED_SECRET_ALG])


def _sealed_body(secret: bytes | str) -> str:
    if isinstance(secret, bytes):
        try:
            secret = secret.decode("utf-8")
        except UnicodeDecodeError:
            raise SealedSecretFormatError("a sealed secret is ASCII text") from None
    if len(secret) > MAX_SEALED_SECRET:
        raise SealedSecretFormatError(f"longer than {MAX_SEALED_SECRET} bytes")
    text = secret.strip()
    if not text.startswith(SEALED_PREFIX):
        raise SealedSecretFormatError(f"a sealed secret starts with {SEALED_PREFIX!r}")
    body = text[len(SEALED_PREFIX) :]
    if not body.isascii():
        raise SealedSecretFormatError("a sealed secret is ASCII text")
    return body


def _b64url_decode(part: str, what: str) -> bytes:
    if _B64URL.fullmatch(part) is None or len(part) % 4 == 1:
        raise SealedSecretFormatError(f"the {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise SealedSecretFormatError(f"the {what} is not base64url") from None


def open_sealed_secret(secret: bytes | str, resolve_key: KeyResolver | None) -> SecretPayload:
    """Check ``secret`` and return its payload.

    ``resolve_key`` maps the header's ``kid`` to the public key; ``None`` skips the
    signature (``skip_sealed_secret_verification``: any ``sealed.<a>.<payload>.<b>``).
    """
    body = _sealed_body(secret)
    parts = body.split(".")
    if len(parts) != 3:
        raise SealedSecretFormatError(
            "expected sealed.<header>.<payload>.<signature> (a compact JWS after 'sealed.')"
        )
    if resolve_key is None:
        return parse_secret_payload(_b64url_decode(parts[1], "payload"))
    try:
        header = jws.extract_compact(body.encode("ascii")).headers()
    except MissingAlgorithmError:
        raise SealedSecretSignatureError(
            f"the header names no 'alg': sealed secrets are signed with {SEALED_SECRET_ALG}"
        ) from None
    except (JoseError, ValueError):
        raise SealedSecretFormatError("not a compact JWS after 'sealed.'") from None
    alg = header.get("alg")
    if alg != SEALED_SECRET_ALG:
        raise SealedSecretSignatureError(
            f"alg {shorten(alg)} is not accepted: sealed secrets are signed with "
            f"{SEALED_SECRET_ALG} only"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SealedSecretKeyError("the header names no key ('kid')")
    key = resolve_key(kid)
    try:
        verified = jws.deserialize_compact(body, key, algorithms=[SEALED_SECRET_ALG])
    except BadSignatureError:
        raise SealedSecretSignatureError(
            f"the signature does not verify with the key {shorten(kid)}"
        ) from None
    except (JoseError, ValueError) as exc:
        reason = exc.error if isinstance(exc, JoseError) else "malformed"
        raise SealedSecretSignatureError(f"the JWS is refused ({reason})") from None
    return parse_secret_payload(verified.payload)
