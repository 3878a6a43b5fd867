"""Trustee's resource response: a JWE in flattened JSON serialization (kbs-types ``Response``).

``{"protected", "encrypted_key", "iv", "ciphertext", "tag"}``, every field base64url
without padding; no ``aad`` (the KBS never sends one).  Content encryption is A256GCM
(random 32-byte CEK, 12-byte IV, 16-byte tag, AAD = the ASCII ``protected`` string).
Key management follows the TEE public key:

* EC P-256 / P-384 / P-521 with ``alg`` ``ECDH-ES+A256KW``: protected header
  ``{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv","kty","x","y"}}`` (keys in that
  order, compact JSON: the guest re-serialises the parsed header to compute the AAD, so
  the bytes must be exactly what serde would write back);
* RSA (2048 bits or more) with ``alg`` ``RSA-OAEP-256``: ``{"alg":"RSA-OAEP-256","enc":"A256GCM"}``.

Anything else is :class:`~veritee.kbs.errors.JweError`.  ``RSA1_5`` (deprecated, still
taken by Trustee) is refused here.  All cryptography is joserfc's: it produces the JWE
in compact form and this module only re-arranges the five segments as flattened JSON
(RFC 7516 §7.2.2).  joserfc's JSON serialization would put ``epk`` in an unprotected
per-recipient header and order it crv, x, y, kty; so the message is built with
joserfc's compact-encryption steps (``perform_encrypt``, ``represent_compact``, from its
``_rfc7516`` modules; joserfc is pinned to 1.6.x) around an ephemeral key imported in
serde's key order.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwe
from joserfc._rfc7516.compact import represent_compact
from joserfc._rfc7516.message import perform_encrypt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from veritee.kbs.errors import JweError

ENC = "A256GCM"
EC_ALG = "ECDH-ES+A256KW"
RSA_ALG = "RSA-OAEP-256"
# Coordinate length in bytes per supported curve.
CURVES = {"P-256": 32, "P-384": 48, "P-521": 66}
MIN_RSA_BITS = 2048
FIELDS = ("protected", "encrypted_key", "iv", "ciphertext", "tag")

_REGISTRY = jwe.JWERegistry(algorithms=[EC_ALG, RSA_ALG, ENC])


def _text(tee_pubkey: Mapping[str, Any], name: str) -> str:
    value = tee_pubkey.get(name)
    if not isinstance(value, str):
        raise JweError()
    return value


def _b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JweError() from exc


def _recipient_key(tee_pubkey: Mapping[str, Any]) -> tuple[str, ECKey | RSAKey]:
    """The key-management algorithm and the joserfc public key for a TEE key."""
    kty, alg = tee_pubkey.get("kty"), tee_pubkey.get("alg")
    try:
        if kty == "EC" and alg == EC_ALG:
            crv, x, y = (_text(tee_pubkey, name) for name in ("crv", "x", "y"))
            size = CURVES.get(crv)
            if size is None or len(_b64url(x)) != size or len(_b64url(y)) != size:
                raise JweError()
            return EC_ALG, ECKey.import_key({"kty": "EC", "crv": crv, "x": x, "y": y})
        if kty == "RSA" and alg == RSA_ALG:
            n, e = _text(tee_pubkey, "n"), _text(tee_pubkey, "e")
            if int.from_bytes(_b64url(n), "big").bit_length() < MIN_RSA_BITS or not _b64url(e):
                raise JweError()
            return RSA_ALG, RSAKey.import_key({"kty": "RSA", "n": n, "e": e})
    except (JoseError, ValueError, TypeError) as exc:  # not a point on the curve, ...
        raise JweError() from exc
    raise JweError()


def _ephemeral_key(crv: str) -> ECKey:
    """A fresh ephemeral key whose public JWK lists crv, kty, x, y in that order."""
    generated = ECKey.generate_key(crv).as_dict(private=True)
    return ECKey.import_key({name: generated[name] for name in ("crv", "kty", "x", "y", "d")})


def encrypt_for(tee_pubkey: Mapping[str, Any], plaintext: bytes) -> dict[str, str]:
    """Encrypt ``plaintext`` to the TEE public key (a kbs-types ``TeePubKey`` JWK)."""
    alg, key = _recipient_key(tee_pubkey)
    obj = jwe.CompactEncryption({"alg": alg, "enc": ENC}, bytes(plaintext))
    obj.attach_recipient(key)
    if isinstance(key, ECKey):
        recipient = obj.recipient
        assert recipient is not None  # attach_recipient just set it
        recipient.ephemeral_key = _ephemeral_key(key.curve_name)
    try:
        perform_encrypt(obj, _REGISTRY)
        compact = represent_compact(obj).decode("ascii")
    except (JoseError, ValueError) as exc:
        raise JweError() from exc
    return dict(zip(FIELDS, compact.split("."), strict=True))


PrivateKey = ECKey | RSAKey | Mapping[str, Any] | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _private_key(private_key: PrivateKey) -> ECKey | RSAKey:
    if isinstance(private_key, ECKey | RSAKey):
        return private_key
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(private_key)
    if isinstance(private_key, rsa.RSAPrivateKey):
        return RSAKey.import_key(private_key)
    jwk = dict(private_key)
    if jwk.get("kty") == "EC":
        return ECKey.import_key(jwk)
    if jwk.get("kty") == "RSA":
        return RSAKey.import_key(jwk)
    raise JweError()


def decrypt(response: Mapping[str, Any], private_key: PrivateKey) -> bytes:
    """Decrypt a resource response with the TEE's private key (client side, tests).

    Like the guest, any ``aad`` member is ignored; only ``ECDH-ES+A256KW`` and
    ``RSA-OAEP-256`` with ``A256GCM`` are accepted (the registry allows nothing else).
    """
    missing = [name for name in FIELDS if not isinstance(response.get(name), str)]
    if missing:
        raise JweError()
    data = {name: response[name] for name in FIELDS}
    try:
        key = _private_key(private_key)
        result = jwe.decrypt_json(data, key, registry=_REGISTRY)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise JweError() from exc
    if result.plaintext is None:
        raise JweError()
    return result.plaintext


__all__ = ["CURVES", "EC_ALG", "ENC", "FIELDS", "RSA_ALG", "decrypt", "encrypt_for"]
