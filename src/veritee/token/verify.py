"""Verify an attestation token (JWT) against trusted keys.

All JOSE work is joserfc's.  The rules:

* only asymmetric algorithms are accepted (ES256/384/512, RS256/384/512, PS256/384/512);
  ``none`` and every HMAC algorithm are refused before any key is touched, so a public key
  can never be used as an HMAC secret;
* the signature must verify with one of the *trusted* keys (a JWKS or a list of keys the
  caller supplies).  The token's own header ``jwk`` is never a trust anchor; when present it
  must be the very key that verified the token;
* ``exp`` is required (``exp + leeway < now`` is expired); ``iat`` and ``nbf``, when present,
  must not lie in the future beyond the leeway; ``eat_profile`` must match when a profile
  is asked for.

Every failure is a :class:`TokenError` whose ``kind`` is stable (see ``KINDS``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidPayloadError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry

from veritee.errors import VeriteeError
from veritee.token.ear import EAR_PROFILE

#: Accepted JWS algorithms and the key each needs: (kty, EC curve or None).
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}
DEFAULT_LEEWAY = 60
JWKS_TIMEOUT_S = 10.0

PublicKey = ECKey | RSAKey
TrustedKey = ECKey | RSAKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey | Mapping[str, Any]


class TokenError(VeriteeError):
    """A token that is not valid, or keys that cannot be used; ``kind`` is stable."""

    kind: ClassVar[str] = "token"

    def __init__(self, message: str) -> None:
        self.detail = message
        super().__init__(f"{self.kind}: {message}")


class MalformedToken(TokenError):
    """Not a JWS compact serialization, bad base64url, or a header/payload that is not JSON."""

    kind = "malformed"


class UnsupportedAlgorithm(TokenError):
    """``alg`` missing, ``none``, symmetric (HS*), or unknown."""

    kind = "unsupported_algorithm"


class BadSignature(TokenError):
    """No trusted key verifies the signature, or the header ``jwk`` is not that key."""

    kind = "bad_signature"


class Expired(TokenError):
    kind = "expired"


class NotYetValid(TokenError):
    """``iat`` or ``nbf`` lies in the future beyond the leeway."""

    kind = "not_yet_valid"


class WrongProfile(TokenError):
    kind = "wrong_profile"


class InvalidClaims(TokenError):
    """A required claim is missing (``exp``) or a time claim is not a number."""

    kind = "claims"


class JwksError(TokenError):
    """Trusted keys that cannot be loaded or used."""

    kind = "jwks"


KINDS: tuple[str, ...] = tuple(
    cls.kind
    for cls in (
        MalformedToken,
        UnsupportedAlgorithm,
        BadSignature,
        Expired,
        NotYetValid,
        WrongProfile,
        InvalidClaims,
        JwksError,
    )
)


class TokenRegistry(JWSRegistry):
    """joserfc's JWS registry with room for Trustee tokens.

    A Trustee header carries the signer's certificate chain (``jwk.x5c``), far over
    joserfc's 512-byte default, and verbose annotated evidence can exceed 128 kB.
    """

    max_header_length = 64 * 1024
    max_payload_length = 16 * 1024 * 1024


def registry(alg: str, *, strict_header: bool) -> TokenRegistry:
    return TokenRegistry(algorithms=[alg], strict_check_header=strict_header)


def _import_key(value: TrustedKey) -> PublicKey:
    if isinstance(value, ECKey | RSAKey):
        return value
    if isinstance(value, ec.EllipticCurvePublicKey):
        return ECKey.import_key(value)
    if isinstance(value, rsa.RSAPublicKey):
        return RSAKey.import_key(value)
    if isinstance(value, Mapping):
        kty = value.get("kty")
        try:
            if kty == "EC":
                return ECKey.import_key(dict(value))
            if kty == "RSA":
                return RSAKey.import_key(dict(value))
        except (JoseError, ValueError, TypeError) as exc:
            raise JwksError(f"cannot import {kty} key: {exc}") from exc
        raise JwksError(f"unsupported key type {kty!r} (only EC and RSA public keys)")
    raise JwksError(f"unsupported trusted key {type(value).__name__}")


def trusted_keys(keys: Mapping[str, Any] | Sequence[TrustedKey]) -> list[PublicKey]:
    """Trusted keys from a JWKS (``{"keys": [...]}``) or a sequence of keys."""
    if isinstance(keys, Mapping):
        members = keys.get("keys")
        if not isinstance(members, list):
            raise JwksError('a JWKS is an object with a "keys" array')
        items: Sequence[Any] = members
    else:
        items = keys
    out: list[PublicKey] = []
    for item in items:
        if isinstance(item, Mapping) and item.get("kty") not in ("EC", "RSA"):
            continue  # symmetric and other keys can never verify an accepted algorithm
        out.append(_import_key(item))
    if not out:
        raise JwksError("no usable EC or RSA public key among the trusted keys")
    return out


def _thumbprint(key: PublicKey) -> str:
    return str(key.thumbprint())


def _fits(key: PublicKey, alg: str) -> bool:
    kty, curve = ALGORITHMS[alg]
    if key.key_type != kty:
        return False
    if curve is not None and key.get("crv") != curve:
        return False
    if kty == "RSA" and key.raw_value.key_size < 2048:
        return False
    declared = key.get("alg")
    return declared is None or declared == alg


def _header(token: bytes) -> dict[str, Any]:
    if token.count(b".") != 2:
        raise MalformedToken("not a JWS compact serialization (expected three dot-separated parts)")
    try:
        obj = jws.extract_compact(token, registry=TokenRegistry(strict_check_header=False))
    except (JoseError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise MalformedToken(f"cannot decode the JWS: {_describe(exc)}") from exc
    header = obj.headers()
    if not isinstance(header, dict):
        raise MalformedToken("the JWS header is not a JSON object")
    try:
        # registered parameters well-typed; every "crit" parameter understood
        TokenRegistry(strict_check_header=False).check_header(header)
    except (JoseError, ValueError, TypeError) as exc:
        raise MalformedToken(f"bad JWS header: {_describe(exc)}") from exc
    return dict(header)


def _describe(exc: Exception) -> str:
    if isinstance(exc, JoseError):
        return exc.description or exc.error
    return str(exc) or type(exc).__name__


def _check_alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise UnsupportedAlgorithm("the header has no alg")
    if alg not in ALGORITHMS:
        raise UnsupportedAlgorithm(
            f"{alg!r} is not accepted (only {', '.join(ALGORITHMS)}; never none or HMAC)"
        )
    return alg


def _decode(token: bytes, alg: str, candidates: Sequence[PublicKey]) -> tuple[PublicKey, Any]:
    reg = registry(alg, strict_header=False)
    problem = ""
    for key in candidates:
        try:
            decoded = jwt.decode(token, key, algorithms=[alg], registry=reg)
        except BadSignatureError:
            continue
        except InvalidPayloadError as exc:
            raise MalformedToken("the payload is not JSON") from exc
        except (JoseError, ValueError, TypeError) as exc:
            # e.g. a key joserfc refuses for this algorithm: try the next trusted key
            problem = problem or f" ({_describe(exc)})"
            continue
        return key, decoded.claims
    raise BadSignature(f"the {alg} signature does not verify with any trusted key{problem}")


def _check_header_jwk(header: Mapping[str, Any], verified_by: PublicKey) -> None:
    jwk = header.get("jwk")
    if jwk is None:
        return
    if not isinstance(jwk, Mapping):
        raise MalformedToken("the header jwk is not a JSON object")
    try:
        claimed = _import_key(jwk)
    except JwksError as exc:
        raise BadSignature(f"the header jwk is not a usable key: {exc.detail}") from exc
    if _thumbprint(claimed) != _thumbprint(verified_by):
        raise BadSignature("the header jwk is not the trusted key that verified the token")


def _check_claims(
    claims: dict[str, Any], now: int | None, leeway: int, profile: str | None
) -> None:
    validator = jwt.JWTClaimsRegistry(now=now, leeway=leeway, exp={"essential": True})
    try:
        validator.validate(claims)
    except ExpiredTokenError as exc:
        raise Expired(f"expired at {claims.get('exp')} (leeway {leeway} s)") from exc
    except MissingClaimError as exc:
        raise InvalidClaims(f"missing claim(s): {exc.claim}") from exc
    except InvalidClaimError as exc:
        name = exc.claim
        value = claims.get(name)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if name in ("iat", "nbf") and numeric:
            raise NotYetValid(f"{name} {value} is in the future (leeway {leeway} s)") from exc
        raise InvalidClaims(f"invalid claim {name}: {_describe(exc)}") from exc
    if profile is not None and claims.get("eat_profile") != profile:
        raise WrongProfile(f"eat_profile is {claims.get('eat_profile')!r}, expected {profile!r}")


def verify_token(
    token: str | bytes,
    keys: Mapping[str, Any] | Sequence[TrustedKey],
    *,
    now: int | None = None,
    leeway: int = DEFAULT_LEEWAY,
    profile: str | None = EAR_PROFILE,
) -> dict[str, Any]:
    """The claims of ``token`` once its signature, times and profile check out.

    ``keys`` is a JWKS dict or a sequence of public keys (joserfc keys, ``cryptography``
    public keys or JWK dicts).  ``profile=None`` accepts any ``eat_profile``.
    Raises a :class:`TokenError` subclass naming what failed.
    """
    raw = (token.encode() if isinstance(token, str) else token).strip()
    header = _header(raw)
    alg = _check_alg(header)
    trusted = trusted_keys(keys)
    candidates = [key for key in trusted if _fits(key, alg)]
    kid = header.get("kid")
    if isinstance(kid, str):
        # kid is only a hint: keys with that kid first, then the rest.
        candidates.sort(key=lambda key: key.kid != kid and _thumbprint(key) != kid)
    if not candidates:
        raise BadSignature(f"no trusted key can verify {alg}")
    verified_by, claims = _decode(raw, alg, candidates)
    _check_header_jwk(header, verified_by)
    if not isinstance(claims, dict):
        raise MalformedToken("the payload is not a JSON object")
    _check_claims(claims, now, leeway, profile)
    return claims


def unverified_header(token: str | bytes) -> dict[str, Any]:
    """The protected header, decoded but NOT verified (for display and diagnostics)."""
    raw = (token.encode() if isinstance(token, str) else token).strip()
    return _header(raw)


def load_jwks(source: str) -> dict[str, Any]:
    """A JWKS from an http(s) URL or a file path; every failure is a :class:`JwksError`."""
    if source.startswith(("http://", "https://")):
        try:
            response = httpx.get(source, timeout=JWKS_TIMEOUT_S, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise JwksError(f"GET {source}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != httpx.codes.OK:
            raise JwksError(f"GET {source}: HTTP {response.status_code}")
        body = response.content
    else:
        try:
            body = Path(source).read_bytes()
        except OSError as exc:
            raise JwksError(f"cannot read {source}: {exc.strerror or exc}") from exc
    try:
        jwks = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwksError(f"{source}: not JSON") from exc
    if not isinstance(jwks, dict):
        raise JwksError(f'{source}: not a JWKS object with a "keys" array')
    try:
        trusted_keys(jwks)
    except JwksError as exc:
        raise JwksError(f"{source}: {exc.detail}") from exc
    return jwks


__all__ = [
    "ALGORITHMS",
    "DEFAULT_LEEWAY",
    "KINDS",
    "BadSignature",
    "Expired",
    "InvalidClaims",
    "JwksError",
    "MalformedToken",
    "NotYetValid",
    "TokenError",
    "TokenRegistry",
    "UnsupportedAlgorithm",
    "WrongProfile",
    "load_jwks",
    "trusted_keys",
    "unverified_header",
    "verify_token",
]
