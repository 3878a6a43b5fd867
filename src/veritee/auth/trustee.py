"""Trustee's admin-API authentication, in all three of its configuration generations.

Built on :class:`veritee.auth.admin.AdminAuth`: ``authorize(authorization, path=...)``
returns or raises :class:`TrusteeAdminDenied` (an ``AdminAuthError``) whose message is
the Display string Trustee's ``admin::Error`` would have, so a KBS that wraps it into
``AdminAuthAccess`` produces Trustee's ``detail`` text.  ``path`` is what the ACL
regexes are matched against; Trustee matches the request URI, i.e. the path **plus**
``?query`` when there is one, so pass that.

**HEAD / v0.21+** — ``[admin] authorization_mode = ...`` (unknown keys are rejected):

* ``"InsecureAllowAll"``: every call allowed, no header needed (a loud warning);
* ``"DenyAll"``: every call → ``Admin access denied: Admin access denied as DenyAll
  authorization_mode is enabled``;
* ``"AuthenticatedAuthorization"`` with ``[admin.authentication.bearer_jwt]
  identity_providers = [{issuer?, audience?, public_key_uri?, jwk_set_uri?}, ...]``
  and ``[admin.authorization.regex_acl] acls = [{role, allowed_endpoints}, ...]``.
  Providers are tried in order; the first whose key verifies the token is used:
  ``public_key_uri`` is a PEM public key (EC P-256/P-384, RSA or Ed25519; ``https://``,
  ``file://`` or a plain path; the token's header ``alg`` must suit the key type, so HMAC
  never applies); ``jwk_set_uri`` is a JWKS (``https://`` — tried as a JWKS, then as an
  OIDC issuer through ``/.well-known/openid-configuration`` — ``file://`` or a path),
  the key is found by the token's ``kid`` and must carry ``alg``, which is the algorithm
  used.  A ``jwk`` in the token header is never trusted.  ``exp`` is required and
  checked with 60 s leeway (``nbf``/``iat``/``aud`` are not checked by the signature
  layer, as with Trustee's jsonwebtoken ``Validation``).  A verified token without a
  string ``role`` claim → ``Missing required `role` claim in JWT`` at once; then a
  provider's ``issuer`` must equal ``iss`` and its ``audience`` must be in ``aud``
  (string or array), otherwise the next provider is tried; none →
  ``Cannot verify token with any of the issuers``.  Authorization: an ACL whose
  ``role`` equals the claim and whose regex matches ``path`` allows, otherwise
  ``Role {role} not allowed for path {path}``.  Regexes must start with ``^/kbs`` and end
  with ``$`` (``Admin Role regex must be anchored.``).  A missing or non-Bearer header is
  ``Failed to parse HTTP Auth Bearer header``.
* **v0.17 – v0.20** — ``[admin] type = "Simple" | "InsecureAllowAll" | "DenyAll"`` with
  ``[[admin.personas]] id, public_key_path`` (Ed25519 PEM) and optional
  ``[[admin.roles]] id, allowed_endpoints``.  A Bearer JWT with ``alg`` EdDSA that
  verifies under a persona's key (``exp`` required, 60 s leeway) makes that persona's
  id the role; with no roles every persona may call every admin endpoint, otherwise
  the persona's role regex must match ``path``.  Every refusal is ``Admin Token could
  not be verified for any admin persona`` (as v0.18 – v0.20 report it); duplicate role
  ids are ``Duplicate Admin Role``.
* **≤ v0.16** — ``[admin] auth_public_key = "<Ed25519 PEM>"``, ``insecure_api = bool``
  (or, in the v0.9-era file, the same two keys at the top level, passed here as
  ``legacy_public_key``/``insecure_api``).  Verification follows jwt-simple's defaults:
  ``alg`` must be EdDSA, ``exp``/``nbf``/``iat`` are checked when present with a 15-minute
  tolerance, no claim is required.  Failure → ``Admin Token verification failed``;
  ``insecure_api = false`` without a key → ``ConfigError`` (`` `auth_public_key` is not
  set in the config file``).
* **No admin configuration at all** — veritee's own default (Trustee would refuse to
  start or, in ≤ v0.16, open nothing without a key): the Ed25519 admin key pair and token
  in the data directory (:func:`veritee.auth.admin.ensure_admin_credentials`).

Configuration problems raise :class:`~veritee.errors.ConfigError` with Trustee's
message where it has one (``Admin Role regex must be anchored.``, ``Failed to parse
regex: …``, ``admin configuration error: … (see kbs/docs/admin.md and
kbs/docs/config.md#admin-api-configuration)``, ``Invalid admin token verifier config: …``).

Differences from Trustee: the regexes are Python ``re`` patterns (the anchored subset
used in practice behaves the same; the final ``$`` matches only at the very end, as in
Rust); the Bearer scheme is matched case-insensitively; ``http://`` key sources are
refused as Trustee refuses them; keys are fetched once, when the service starts.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from veritee.auth.admin import (
    AdminAuth,
    AdminAuthError,
    InsecureAllowAll,
    ensure_admin_credentials,
)
from veritee.errors import ConfigError

__all__ = [
    "AclRule",
    "AdminSpec",
    "BearerJwtAdminAuth",
    "IdentityProvider",
    "LegacyEd25519AdminAuth",
    "PersonaAdminAuth",
    "TrusteeAdminDenied",
    "TrusteeDenyAll",
    "build_admin_auth",
    "parse_admin_section",
]

log = logging.getLogger("veritee.auth")

Generation = Literal["head", "persona", "legacy", "default"]

# Display strings of Trustee's admin::Error (HEAD) and of older releases.
BAD_HEADER = "Failed to parse HTTP Auth Bearer header"
DENY_ALL_REASON = "Admin access denied as DenyAll authorization_mode is enabled"
NO_ISSUER_REASON = "Cannot verify token with any of the issuers"
MISSING_ROLE_REASON = "Missing required `role` claim in JWT"
UNANCHORED = "Admin Role regex must be anchored."
PERSONA_DENIED = "Admin Token could not be verified for any admin persona"
LEGACY_DENIED = "Admin Token verification failed"
NO_PUBLIC_KEY = "`auth_public_key` is not set in the config file"
_ADMIN_DOCS = "(see kbs/docs/admin.md and kbs/docs/config.md#admin-api-configuration)"
INSECURE_WARNING = (
    "INSECURE: the KBS admin API accepts every request without authentication ({how}); "
    "anyone who can reach the KBS can write resources and policies. "
    "Never use this outside a test."
)

_LEEWAY_S = 60  # jsonwebtoken's default Validation leeway
_JWT_SIMPLE_TOLERANCE_S = 15 * 60  # jwt-simple's default time_tolerance
_HTTP_TIMEOUT_S = 10.0

_EC_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384"}
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})


class TrusteeAdminDenied(AdminAuthError):
    """An admin request refused; ``str()`` is Trustee's message, ``reason`` its inner reason."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        self.reason = reason
        super().__init__(message)


def _denied(reason: str) -> TrusteeAdminDenied:
    return TrusteeAdminDenied(f"Admin access denied: {reason}", reason=reason)


def _bearer(authorization: str | None, message: str) -> str:
    if not authorization:
        raise TrusteeAdminDenied(message)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise TrusteeAdminDenied(message)
    return token


# -- JWT helpers --------------------------------------------------------------


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    try:
        header = json.loads(_b64url(parts[0]))
    except (ValueError, binascii.Error) as exc:
        raise ValueError("unreadable JWS header") from exc
    if not isinstance(header, dict):
        raise ValueError("JWS header is not an object")
    return header


@contextmanager
def _quiet_eddsa() -> Iterator[None]:
    # "EdDSA" is deprecated by RFC 9864 in favour of "Ed25519"; kbs-client and Trustee use it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated")
        yield


JoseKey = ECKey | RSAKey | OKPKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def _algs_for(key: PublicKey) -> frozenset[str]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGS.get(key.curve.name)
        return frozenset({alg}) if alg else frozenset()
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_ALGS
    return frozenset({"EdDSA"})


def _jose_key(key: PublicKey) -> JoseKey:
    """The joserfc form of ``key``, imported once per distinct key (by its SPKI bytes)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _import_spki(der)


@functools.lru_cache(maxsize=64)
def _import_spki(der: bytes) -> JoseKey:
    key = serialization.load_der_public_key(der)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ECKey.import_key(pem)
    if isinstance(key, rsa.RSAPublicKey):
        return RSAKey.import_key(pem)
    return OKPKey.import_key(pem)


def _verify_signature(token: str, key: JoseKey, alg: str) -> dict[str, Any]:
    """The claims of ``token`` if its signature verifies under ``key`` with ``alg``."""
    try:
        with _quiet_eddsa():
            decoded = jwt.decode(token, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError) as exc:
        raise ValueError(f"signature does not verify: {exc}") from exc
    if decoded.header.get("alg") != alg:
        raise ValueError("unexpected alg")
    return dict(decoded.claims)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_exp_required(claims: Mapping[str, Any], now: float) -> None:
    """jsonwebtoken ``Validation::new(alg)``: ``exp`` required, numeric, 60 s leeway."""
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise ValueError("exp claim missing or not an integer")
    if exp < now - _LEEWAY_S:
        raise ValueError("token expired")


# -- HEAD: identity providers and regex ACLs ---------------------------------


@dataclass(frozen=True)
class IdentityProvider:
    """One trusted issuer: PEM public keys and/or a JWKS, plus optional iss/aud checks."""

    issuer: str | None = None
    audience: str | None = None
    pem_keys: tuple[PublicKey, ...] = ()
    jwks: KeySet | None = None
    source: str = ""

    def verify(self, token: str) -> dict[str, Any]:
        """Trustee's ``JwtVerifier::verify`` (no trusted certs, header jwk never trusted)."""
        header = _header(token)
        alg = header.get("alg")
        kid = header.get("kid")
        if "jwk" not in header and self.jwks is not None and isinstance(kid, str):
            jwk = _find_kid(self.jwks, kid)
            if jwk is not None:
                jwk_alg = jwk.alg
                if not isinstance(jwk_alg, str):
                    raise ValueError("JWK has no alg")
                if alg != jwk_alg:
                    raise ValueError("token alg differs from the JWK's alg")
                if jwk_alg.startswith("HS"):
                    raise ValueError("symmetric algorithms are not accepted")
                claims = _verify_signature(token, jwk, jwk_alg)
                _check_exp_required(claims, time.time())
                return claims
        if not self.pem_keys:
            raise ValueError("neither the JWKS nor a PEM key applies")
        for key in self.pem_keys:
            if not isinstance(alg, str) or alg not in _algs_for(key):
                continue
            try:
                claims = _verify_signature(token, _jose_key(key), alg)
            except ValueError:
                continue
            _check_exp_required(claims, time.time())
            return claims
        raise ValueError("no trusted PEM key verifies the token")


def _find_kid(keys: KeySet, kid: str) -> JoseKey | None:
    for key in keys.keys:
        if key.kid == kid and isinstance(key, ECKey | RSAKey | OKPKey):
            return key
    return None


@dataclass(frozen=True)
class AclRule:
    role: str
    allowed_endpoints: str
    regex: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def compile(cls, role: str, allowed_endpoints: str) -> AclRule:
        return cls(role, allowed_endpoints, _compile_anchored(allowed_endpoints))


def _compile_anchored(
    pattern: str, *, bad_regex: str = "Failed to parse regex: {0}"
) -> re.Pattern[str]:
    if not pattern.startswith("^/kbs") or not pattern.endswith("$"):
        raise ConfigError(UNANCHORED)
    # Rust's "$" matches only at the end of the text; Python's also before a final "\n".
    backslashes = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
    python_pattern = pattern[:-1] + r"\Z" if backslashes % 2 == 0 else pattern
    try:
        return re.compile(python_pattern)
    except re.error as exc:
        raise ConfigError(bad_regex.format(exc)) from exc


@dataclass(frozen=True)
class BearerJwtAdminAuth:
    """HEAD's ``AuthenticatedAuthorization``: bearer JWTs from identity providers + regex ACLs."""

    providers: tuple[IdentityProvider, ...]
    acls: tuple[AclRule, ...]

    def authorize(self, authorization: str | None, *, path: str) -> None:
        token = _bearer(authorization, BAD_HEADER)
        role = self._role(token)
        for acl in self.acls:
            if acl.role == role and acl.regex.search(path):
                return
        raise _denied(f"Role {role} not allowed for path {path}")

    def _role(self, token: str) -> str:
        for idp in self.providers:
            try:
                claims = idp.verify(token)
            except ValueError as exc:
                log.debug("admin token not verified by %s: %s", idp.source, exc)
                continue
            role = claims.get("role")
            if not isinstance(role, str):
                raise _denied(MISSING_ROLE_REASON)
            iss = claims.get("iss")
            if idp.issuer is not None and (iss if isinstance(iss, str) else "") != idp.issuer:
                log.error("admin token verified by %s but its issuer mismatches", idp.source)
                continue
            if idp.audience is not None and idp.audience not in _audiences(claims.get("aud")):
                log.error("admin token verified by %s but its audience mismatches", idp.source)
                continue
            return role
        raise _denied(NO_ISSUER_REASON)


def _audiences(aud: object) -> list[str]:
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


@dataclass(frozen=True)
class TrusteeDenyAll:
    """HEAD's ``authorization_mode = "DenyAll"`` with Trustee's message."""

    def authorize(self, authorization: str | None, *, path: str) -> None:
        raise _denied(DENY_ALL_REASON)


# -- v0.17 – v0.20: personas and roles ----------------------------------------


@dataclass(frozen=True)
class PersonaAdminAuth:
    """``[admin] type = "Simple"``: EdDSA JWTs per persona; the persona id is the role."""

    personas: tuple[tuple[str, ed25519.Ed25519PublicKey], ...]
    roles: Mapping[str, re.Pattern[str]] = field(default_factory=dict)

    def authorize(self, authorization: str | None, *, path: str) -> None:
        token = _bearer(authorization, PERSONA_DENIED)
        role = self._persona(token)
        if not self.roles:
            return
        regex = self.roles.get(role)
        if regex is not None and regex.search(path):
            return
        raise TrusteeAdminDenied(PERSONA_DENIED)

    def _persona(self, token: str) -> str:
        for persona_id, key in self.personas:
            try:
                if _header(token).get("alg") != "EdDSA":
                    raise ValueError("alg is not EdDSA")
                claims = _verify_signature(token, _jose_key(key), "EdDSA")
                _check_exp_required(claims, time.time())
            except ValueError as exc:
                log.info("admin token not verified for persona %s: %s", persona_id, exc)
                continue
            return persona_id
        raise TrusteeAdminDenied(PERSONA_DENIED)


@dataclass(frozen=True)
class PersonaDenyAll:
    """v0.18 – v0.20 ``type = "DenyAll"`` (reported as every other refusal of that era)."""

    def authorize(self, authorization: str | None, *, path: str) -> None:
        raise TrusteeAdminDenied(PERSONA_DENIED)


# -- ≤ v0.16: one Ed25519 key, jwt-simple semantics ---------------------------


@dataclass(frozen=True)
class LegacyEd25519AdminAuth:
    """``auth_public_key``: EdDSA JWTs checked as jwt-simple's ``verify_token`` does."""

    public_key: ed25519.Ed25519PublicKey
    tolerance_s: int = _JWT_SIMPLE_TOLERANCE_S

    def authorize(self, authorization: str | None, *, path: str) -> None:
        token = _bearer(authorization, BAD_HEADER)
        try:
            if _header(token).get("alg") != "EdDSA":
                raise ValueError("alg is not EdDSA")
            claims = _verify_signature(token, _jose_key(self.public_key), "EdDSA")
            self._check_times(claims, time.time())
        except ValueError as exc:
            log.info("legacy admin token for %s refused: %s", path, exc)
            raise TrusteeAdminDenied(LEGACY_DENIED) from exc

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _is_int(claims[name]):
                raise ValueError(f"{name} is not an integer")
        if "exp" in claims and claims["exp"] + self.tolerance_s < now:
            raise ValueError("token expired")
        if "nbf" in claims and claims["nbf"] - self.tolerance_s > now:
            raise ValueError("token not valid yet")
        if "iat" in claims and claims["iat"] - self.tolerance_s > now:
            raise ValueError("token issued in the future")


# -- configuration ------------------------------------------------------------

_HEAD_KEYS = frozenset({"authorization_mode", "authentication", "authorization"})
_PERSONA_KEYS = frozenset({"type", "personas", "roles"})
_LEGACY_KEYS = frozenset({"auth_public_key", "insecure_api"})
_HEAD_MODES = ("InsecureAllowAll", "DenyAll", "AuthenticatedAuthorization")
_PERSONA_TYPES = ("Simple", "InsecureAllowAll", "DenyAll")


@dataclass(frozen=True)
class AdminSpec:
    """The admin configuration, checked for shape (no key material read yet)."""

    generation: Generation
    #: InsecureAllowAll | DenyAll | AuthenticatedAuthorization | Simple | Ed25519 | Default
    mode: str
    identity_providers: tuple[Mapping[str, str], ...] = ()
    acls: tuple[tuple[str, str], ...] = ()
    personas: tuple[tuple[str, str], ...] = ()
    roles: tuple[tuple[str, str], ...] = ()
    public_key: Path | None = None


def _table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table")
    return value


def _reject_unknown(doc: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)}) "
            f"{_ADMIN_DOCS}"
        )


def _string(doc: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}.{key} is required")
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string")
    return value


def _array(doc: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{where}.{key} must be an array of tables")
    return [_table(item, f"{where}.{key}[{i}]") for i, item in enumerate(value)]


def parse_admin_section(
    admin_section: Mapping[str, Any] | None,
    *,
    legacy_public_key: Path | None = None,
    insecure_api: bool = False,
) -> AdminSpec:
    """Recognise the generation of ``[admin]`` and check its shape, as Trustee's serde does."""
    section = dict(admin_section or {})
    keys = set(section)
    top_level_legacy = legacy_public_key is not None or insecure_api
    if keys & _HEAD_KEYS:
        if top_level_legacy:
            raise ConfigError(
                "top-level auth_public_key/insecure_api cannot be combined with "
                "[admin] authorization_mode"
            )
        return _parse_head(section)
    if keys & _PERSONA_KEYS:
        if top_level_legacy:
            raise ConfigError(
                "top-level auth_public_key/insecure_api cannot be combined with [admin] type"
            )
        return _parse_persona(section)
    if keys & _LEGACY_KEYS:
        _reject_unknown(section, sorted(_LEGACY_KEYS), "[admin]")
        key = _string(section, "auth_public_key", "admin")
        insecure = section.get("insecure_api", False)
        if not isinstance(insecure, bool):
            raise ConfigError("admin.insecure_api must be a boolean")
        return _legacy_spec(Path(key) if key else legacy_public_key, insecure or insecure_api)
    if keys:
        _reject_unknown(section, sorted(_HEAD_KEYS), "[admin]")
    if top_level_legacy:
        return _legacy_spec(legacy_public_key, insecure_api)
    return AdminSpec("default", "Default")


def _legacy_spec(key: Path | None, insecure: bool) -> AdminSpec:
    if insecure:
        return AdminSpec("legacy", "InsecureAllowAll", public_key=key)
    if key is None:
        raise ConfigError(NO_PUBLIC_KEY)
    return AdminSpec("legacy", "Ed25519", public_key=key)


def _parse_head(section: Mapping[str, Any]) -> AdminSpec:
    mode = section.get("authorization_mode")
    if mode not in _HEAD_MODES:
        raise ConfigError(
            f"[admin] authorization_mode must be one of {', '.join(_HEAD_MODES)}, "
            f"not {mode!r} {_ADMIN_DOCS}"
        )
    if mode != "AuthenticatedAuthorization":
        _reject_unknown(section, ["authorization_mode"], "[admin]")
        return AdminSpec("head", str(mode))
    _reject_unknown(section, sorted(_HEAD_KEYS), "[admin]")
    if "authentication" not in section or "authorization" not in section:
        raise ConfigError(
            "[admin] AuthenticatedAuthorization needs [admin.authentication] "
            f"and [admin.authorization] {_ADMIN_DOCS}"
        )
    authn = _table(section["authentication"], "admin.authentication")
    _reject_unknown(authn, ["bearer_jwt"], "[admin.authentication]")
    if "bearer_jwt" not in authn:
        raise ConfigError(f"[admin.authentication] needs bearer_jwt {_ADMIN_DOCS}")
    bearer = _table(authn["bearer_jwt"], "admin.authentication.bearer_jwt")
    _reject_unknown(bearer, ["identity_providers"], "[admin.authentication.bearer_jwt]")
    where = "admin.authentication.bearer_jwt"
    idps: list[Mapping[str, str]] = []
    for i, idp in enumerate(_array(bearer, "identity_providers", where)):
        entry = f"{where}.identity_providers[{i}]"
        allowed = ["audience", "issuer", "jwk_set_uri", "public_key_uri"]
        _reject_unknown(idp, allowed, entry)
        idps.append({k: v for k in allowed if (v := _string(idp, k, entry)) is not None})
    authz = _table(section["authorization"], "admin.authorization")
    _reject_unknown(authz, ["regex_acl"], "[admin.authorization]")
    if "regex_acl" not in authz:
        raise ConfigError(f"[admin.authorization] needs regex_acl {_ADMIN_DOCS}")
    regex_acl = _table(authz["regex_acl"], "admin.authorization.regex_acl")
    _reject_unknown(regex_acl, ["acls"], "[admin.authorization.regex_acl]")
    acls: list[tuple[str, str]] = []
    for i, acl in enumerate(_array(regex_acl, "acls", "admin.authorization.regex_acl")):
        entry = f"admin.authorization.regex_acl.acls[{i}]"
        _reject_unknown(acl, ["allowed_endpoints", "role"], entry)
        role = _string(acl, "role", entry, required=True)
        assert role is not None
        acls.append((role, _string(acl, "allowed_endpoints", entry) or ""))
    return AdminSpec(
        "head", "AuthenticatedAuthorization", identity_providers=tuple(idps), acls=tuple(acls)
    )


def _parse_persona(section: Mapping[str, Any]) -> AdminSpec:
    _reject_unknown(section, sorted(_PERSONA_KEYS), "[admin]")
    kind = section.get("type", "Simple")
    if kind not in _PERSONA_TYPES:
        raise ConfigError(f"[admin] type must be one of {', '.join(_PERSONA_TYPES)}, not {kind!r}")
    personas: list[tuple[str, str]] = []
    for i, persona in enumerate(_array(section, "personas", "admin")):
        entry = f"admin.personas[{i}]"
        pid = _string(persona, "id", entry, required=True)
        path = _string(persona, "public_key_path", entry, required=True)
        assert pid is not None
        assert path is not None
        personas.append((pid, path))
    if personas and kind != "Simple":
        raise ConfigError(f'[[admin.personas]] only apply to type = "Simple", not {kind!r}')
    roles: list[tuple[str, str]] = []
    for i, role in enumerate(_array(section, "roles", "admin")):
        entry = f"admin.roles[{i}]"
        _reject_unknown(role, ["allowed_endpoints", "id"], entry)
        rid = _string(role, "id", entry, required=True)
        assert rid is not None
        roles.append((rid, _string(role, "allowed_endpoints", entry) or ""))
    return AdminSpec("persona", str(kind), personas=tuple(personas), roles=tuple(roles))


# -- building -----------------------------------------------------------------


def _http_get(url: str) -> bytes:
    """GET ``url`` (https only); tests replace this function."""
    response = httpx.get(url, timeout=_HTTP_TIMEOUT_S, follow_redirects=False)
    response.raise_for_status()
    return response.content


def _read_source(uri: str, base_dir: Path | None) -> bytes:
    """Trustee's sources: ``https://``, ``file://`` or a plain path (relative to ``base_dir``)."""
    parts = urlsplit(uri)
    if parts.scheme == "https":
        return _http_get(uri)
    if parts.scheme == "file":
        return Path(parts.path).read_bytes()
    if "://" in uri:
        raise ValueError(f"unsupported scheme in {uri}")
    path = Path(uri).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path.read_bytes()


def _load_pem_public_key(data: bytes) -> PublicKey:
    key = serialization.load_pem_public_key(data)
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_ALGS:
            raise ValueError(f"unsupported EC curve {key.curve.name}")
        return key
    if isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return key
    raise ValueError("not an EC, RSA or Ed25519 public key")


def _parse_jwks(data: bytes) -> KeySet:
    doc = json.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("not a JWK set")
    keys = [k for k in doc["keys"] if isinstance(k, dict) and k.get("kty") in ("RSA", "EC", "OKP")]
    return KeySet.import_key_set({"keys": keys})


def _load_jwks(uri: str, base_dir: Path | None) -> KeySet:
    if urlsplit(uri).scheme != "https":
        return _parse_jwks(_read_source(uri, base_dir))
    try:
        direct = _parse_jwks(_http_get(uri))
        if direct.keys:
            return direct
    except (httpx.HTTPError, ValueError, JoseError) as exc:
        log.debug("no JWK set at %s (%s); trying OpenID discovery", uri, exc)
    discovery = uri if uri.endswith("/") else uri + "/"
    oidc = json.loads(_http_get(discovery + ".well-known/openid-configuration"))
    jwks_uri = oidc.get("jwks_uri") if isinstance(oidc, dict) else None
    if not isinstance(jwks_uri, str):
        raise ValueError(f"the OpenID configuration of {uri} has no jwks_uri")
    return _parse_jwks(_http_get(jwks_uri))


def _identity_provider(idp: Mapping[str, str], base_dir: Path | None) -> IdentityProvider:
    pem_keys: tuple[PublicKey, ...] = ()
    jwks: KeySet | None = None
    source = idp.get("public_key_uri") or idp.get("jwk_set_uri") or ""
    try:
        if "jwk_set_uri" in idp:
            jwks = _load_jwks(idp["jwk_set_uri"], base_dir)
        if "public_key_uri" in idp:
            pem_keys = (_load_pem_public_key(_read_source(idp["public_key_uri"], base_dir)),)
    except (OSError, ValueError, JoseError, httpx.HTTPError) as exc:
        raise ConfigError(f"Invalid admin token verifier config: {source}: {exc}") from exc
    if not pem_keys and (jwks is None or not jwks.keys):
        raise ConfigError(
            f"Invalid admin token verifier config: {source}: Cannot verify token since no "
            "trusted verification materials are provided."
        )
    return IdentityProvider(idp.get("issuer"), idp.get("audience"), pem_keys, jwks, source)


def _load_ed25519(path: Path, base_dir: Path | None, what: str) -> ed25519.Ed25519PublicKey:
    full = path if path.is_absolute() or base_dir is None else base_dir / path
    try:
        key = serialization.load_pem_public_key(full.expanduser().read_bytes())
    except OSError as exc:
        raise ConfigError(f"Read admin public key failed: {full}: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"Failed to parse admin public key: {full} ({what})") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(
            f"Failed to parse admin public key: {full} is not an Ed25519 key ({what})"
        )
    return key


def build_admin_auth(
    admin_section: Mapping[str, Any] | None,
    *,
    legacy_public_key: Path | None,
    insecure_api: bool,
    data_dir: Path | None,
    base_dir: Path | None = None,
) -> tuple[AdminAuth, list[str]]:
    """The admin authenticator for a Trustee ``[admin]`` section, and warnings to log.

    ``legacy_public_key``/``insecure_api`` are the v0.9-era top-level keys (or CLI flags);
    ``data_dir`` holds veritee's generated credentials when there is no admin
    configuration at all; relative key paths are taken from ``base_dir`` (the config
    file's directory) when given.  Raises :class:`ConfigError`.
    """
    spec = parse_admin_section(
        admin_section, legacy_public_key=legacy_public_key, insecure_api=insecure_api
    )
    return build_from_spec(spec, data_dir=data_dir, base_dir=base_dir)


def build_from_spec(
    spec: AdminSpec, *, data_dir: Path | None, base_dir: Path | None = None
) -> tuple[AdminAuth, list[str]]:
    """:func:`build_admin_auth` for an already parsed :class:`AdminSpec`."""
    warnings_out: list[str] = []
    if spec.mode == "InsecureAllowAll":
        how = {
            "head": 'authorization_mode = "InsecureAllowAll"',
            "persona": 'type = "InsecureAllowAll"',
            "legacy": "insecure_api = true",
        }[spec.generation]
        warnings_out.append(INSECURE_WARNING.format(how=how))
        return InsecureAllowAll(), warnings_out
    if spec.generation == "head":
        if spec.mode == "DenyAll":
            return TrusteeDenyAll(), warnings_out
        return _build_head(spec, base_dir, warnings_out), warnings_out
    if spec.generation == "persona":
        if spec.mode == "DenyAll":
            return PersonaDenyAll(), warnings_out
        return _build_persona(spec, base_dir, warnings_out), warnings_out
    if spec.generation == "legacy":
        assert spec.public_key is not None
        key = _load_ed25519(spec.public_key, base_dir, "auth_public_key")
        return LegacyEd25519AdminAuth(key), warnings_out
    if data_dir is None:
        raise ConfigError(
            "no [admin] configuration and no data directory for veritee's "
            "generated admin credentials"
        )
    credentials = ensure_admin_credentials(data_dir)
    if credentials.created:
        warnings_out.append(
            f"generated the admin key pair {credentials.key_path} and an admin token in "
            f"{credentials.token_path} (send it as 'Authorization: Bearer <token>')"
        )
    return credentials.auth, warnings_out


def _build_head(spec: AdminSpec, base_dir: Path | None, out: list[str]) -> BearerJwtAdminAuth:
    if not spec.identity_providers:
        raise ConfigError(
            "admin configuration error: AuthenticatedAuthorization requires at least one "
            "`identity_providers` entry in [admin.authentication.bearer_jwt] " + _ADMIN_DOCS
        )
    for index, idp in enumerate(spec.identity_providers):
        if "public_key_uri" not in idp and "jwk_set_uri" not in idp:
            raise ConfigError(
                f"admin configuration error: identity_providers[{index}] must set "
                f"`public_key_uri` and/or `jwk_set_uri` {_ADMIN_DOCS}"
            )
    acls = tuple(AclRule.compile(role, pattern) for role, pattern in spec.acls)
    providers = tuple(_identity_provider(idp, base_dir) for idp in spec.identity_providers)
    for index, idp in enumerate(spec.identity_providers):
        for claim, key in (("iss", "issuer"), ("aud", "audience")):
            if key not in idp:
                out.append(
                    f"[admin] identity_providers[{index}] has no {key}: the {claim} "
                    "claim of admin tokens is not checked"
                )
    if not acls:
        out.append("[admin.authorization.regex_acl] has no acls: every admin request is denied")
    return BearerJwtAdminAuth(providers, acls)


def _build_persona(spec: AdminSpec, base_dir: Path | None, out: list[str]) -> PersonaAdminAuth:
    roles: dict[str, re.Pattern[str]] = {}
    for rid, pattern in spec.roles:
        compiled = _compile_anchored(pattern, bad_regex="Invalid Regular Expression in Role")
        if rid in roles:
            raise ConfigError("Duplicate Admin Role")
        roles[rid] = compiled
    personas = tuple(
        (pid, _load_ed25519(Path(path), base_dir, f"persona {pid}")) for pid, path in spec.personas
    )
    if not personas:
        out.append('[admin] type = "Simple" has no personas: every admin request is denied')
    return PersonaAdminAuth(personas, roles)
