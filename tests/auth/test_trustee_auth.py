"""Trustee's admin authentication in its three configuration generations.

Cases follow Trustee's own tests (``kbs/src/admin/mod.rs``: ``check_requests_acl``,
``make_test_admin_config_toml``, ``reject_unknown_admin_fields``,
``reject_legacy_adjacent_tag_authentication_table``, ``reject_empty_identity_providers``)
with tokens signed here, and use the upstream JWK fixtures in
``kbs/test_data/jwk/`` as JWKS material.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from datadir import TRUSTEE
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from veritee.auth import trustee
from veritee.auth.admin import (
    AdminAuthError,
    Ed25519AdminAuth,
    InsecureAllowAll,
    sign_admin_token,
)
from veritee.auth.trustee import (
    BAD_HEADER,
    LEGACY_DENIED,
    PERSONA_DENIED,
    BearerJwtAdminAuth,
    TrusteeAdminDenied,
    build_admin_auth,
    parse_admin_section,
)
from veritee.errors import ConfigError
from veritee.kbs.errors import AdminAuthAccess

JWK_DIR = TRUSTEE / "kbs" / "test_data" / "jwk"
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


# -- helpers ------------------------------------------------------------------


def pem_public(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_public(tmp_path: Path, key: PrivateKey, name: str = "public.pub") -> Path:
    path = tmp_path / name
    path.write_bytes(pem_public(key))
    return path


def jose_private(key: PrivateKey) -> ECKey | RSAKey | OKPKey:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(pem)
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAKey.import_key(pem)
    return OKPKey.import_key(pem)


def sign(key: PrivateKey, claims: dict[str, Any], alg: str = "EdDSA", **header: Any) -> str:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated")
        return jwt.encode(
            {"alg": alg, "typ": "JWT", **header}, claims, jose_private(key), algorithms=[alg]
        )


def now() -> int:
    return int(time.time())


def admin_claims(**extra: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"iat": now(), "exp": now() + 300}
    claims.update(extra)
    return claims


def bearer(token: str) -> str:
    return f"Bearer {token}"


def head_admin(
    idps: list[dict[str, str]], acls: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "authorization_mode": "AuthenticatedAuthorization",
        "authentication": {"bearer_jwt": {"identity_providers": idps}},
        "authorization": {
            "regex_acl": {"acls": acls or [{"role": "admin", "allowed_endpoints": "^/kbs/.+$"}]}
        },
    }


def build(section: dict[str, Any] | None, **kwargs: Any) -> Any:
    auth, _warnings = build_admin_auth(
        section,
        legacy_public_key=kwargs.pop("legacy_public_key", None),
        insecure_api=kwargs.pop("insecure_api", False),
        data_dir=kwargs.pop("data_dir", None),
        **kwargs,
    )
    return auth


def denied(auth: Any, authorization: str | None, path: str) -> str:
    with pytest.raises(TrusteeAdminDenied) as info:
        auth.authorize(authorization, path=path)
    assert isinstance(info.value, AdminAuthError)
    return str(info.value)


@pytest.fixture
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


# -- HEAD: AuthenticatedAuthorization ------------------------------------------


@pytest.mark.parametrize(
    ("request_uri", "token_issuer", "token_audience", "issuer", "audience", "allowed"),
    [
        (
            "/kbs/v0/admin/allowed/path",
            "oidc-1",
            ["example1.io", "example2.io"],
            "oidc-1",
            "example1.io",
            True,
        ),
        (
            "/kbs/v0/admin/allowed/path",
            "oidc-2",
            ["example1.io", "example2.io"],
            "oidc-1",
            "example1.io",
            False,
        ),
        (
            "/kbs/v0/admin/allowed/path",
            "oidc-1",
            ["wrong.example.io"],
            "oidc-1",
            "example.io",
            False,
        ),
        (
            "/kbs/v0/admin/denied/path",
            "oidc-1",
            ["example1.io", "example2.io"],
            "oidc-1",
            "example1.io",
            False,
        ),
    ],
)
def test_upstream_check_requests_acl(
    tmp_path: Path,
    ed_key: ed25519.Ed25519PrivateKey,
    request_uri: str,
    token_issuer: str,
    token_audience: list[str],
    issuer: str,
    audience: str,
    allowed: bool,
) -> None:
    token = sign(ed_key, admin_claims(iss=token_issuer, role="Alice", aud=token_audience))
    section = head_admin(
        [
            {
                "issuer": issuer,
                "audience": audience,
                "public_key_uri": str(write_public(tmp_path, ed_key)),
            }
        ],
        [{"role": "Alice", "allowed_endpoints": "^/kbs/v0/admin/allowed/.+$"}],
    )
    auth = build(section)
    if allowed:
        auth.authorize(bearer(token), path=request_uri)
    else:
        message = denied(auth, bearer(token), request_uri)
        assert "not allowed" in message or "Cannot verify token with any of the issuers" in message


def test_reason_strings_are_trustees(tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey) -> None:
    pub = str(write_public(tmp_path, ed_key))
    auth = build(head_admin([{"issuer": "issuer", "public_key_uri": pub}]))
    good = sign(ed_key, admin_claims(iss="issuer", role="admin"))
    auth.authorize(bearer(good), path="/kbs/v0/resource/a/b/c")

    other = sign(ed25519.Ed25519PrivateKey.generate(), admin_claims(iss="issuer", role="admin"))
    assert denied(auth, bearer(other), "/kbs/v0/resource/a/b/c") == (
        "Admin access denied: Cannot verify token with any of the issuers"
    )
    no_role = sign(ed_key, admin_claims(iss="issuer"))
    assert denied(auth, bearer(no_role), "/kbs/v0/x") == (
        "Admin access denied: Missing required `role` claim in JWT"
    )
    reader = sign(ed_key, admin_claims(iss="issuer", role="reader"))
    with pytest.raises(TrusteeAdminDenied) as info:
        auth.authorize(bearer(reader), path="/kbs/v0/resource-policy")
    assert str(info.value) == (
        "Admin access denied: Role reader not allowed for path /kbs/v0/resource-policy"
    )
    assert info.value.reason == "Role reader not allowed for path /kbs/v0/resource-policy"
    # What the KBS puts into the AdminAuthAccess body, as Trustee does.
    assert AdminAuthAccess("/kbs/v0/resource-policy", str(info.value)).detail == (
        "admin access denied for endpoint /kbs/v0/resource-policy: Admin access denied: "
        "Role reader not allowed for path /kbs/v0/resource-policy"
    )


@pytest.mark.parametrize("header", [None, "", "Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer  "])
def test_missing_or_malformed_header(
    tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey, header: str | None
) -> None:
    auth = build(head_admin([{"public_key_uri": str(write_public(tmp_path, ed_key))}]))
    assert denied(auth, header, "/kbs/v0/resource-policy") == BAD_HEADER


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "e30.e30.", "...."])
def test_garbage_tokens(tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey, token: str) -> None:
    auth = build(head_admin([{"public_key_uri": str(write_public(tmp_path, ed_key))}]))
    assert denied(auth, bearer(token), "/kbs/v0/x").endswith(
        "Cannot verify token with any of the issuers"
    )


def test_exp_is_required_with_60s_leeway(tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey) -> None:
    auth = build(head_admin([{"public_key_uri": str(write_public(tmp_path, ed_key))}]))
    within = sign(ed_key, {"role": "admin", "exp": now() - 30})
    auth.authorize(bearer(within), path="/kbs/v0/x")
    for claims in (
        {"role": "admin", "exp": now() - 120},
        {"role": "admin"},
        {"role": "admin", "exp": "tomorrow"},
    ):
        assert denied(auth, bearer(sign(ed_key, claims)), "/kbs/v0/x").endswith(
            "Cannot verify token with any of the issuers"
        )
    # nbf is not checked by Trustee's jsonwebtoken Validation; neither by us.
    future_nbf = sign(ed_key, admin_claims(role="admin", nbf=now() + 3600))
    auth.authorize(bearer(future_nbf), path="/kbs/v0/x")


def test_missing_role_is_reported_before_the_issuer_check(
    tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    pub = str(write_public(tmp_path, ed_key))
    auth = build(head_admin([{"issuer": "expected", "public_key_uri": pub}]))
    token = sign(ed_key, admin_claims(iss="someone-else"))
    assert denied(auth, bearer(token), "/kbs/v0/x").endswith("Missing required `role` claim in JWT")


def test_issuer_and_audience_rules(tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey) -> None:
    pub = str(write_public(tmp_path, ed_key))
    auth = build(head_admin([{"issuer": "iss", "audience": "kbs", "public_key_uri": pub}]))
    path = "/kbs/v0/resource/a/b/c"
    auth.authorize(
        bearer(sign(ed_key, admin_claims(iss="iss", aud="kbs", role="admin"))), path=path
    )
    auth.authorize(
        bearer(sign(ed_key, admin_claims(iss="iss", aud=["x", "kbs"], role="admin"))), path=path
    )
    for claims in (
        admin_claims(aud="kbs", role="admin"),  # no iss
        admin_claims(iss="iss", role="admin"),  # no aud
        admin_claims(iss="iss", aud=["KBS"], role="admin"),  # case matters
        admin_claims(iss="iss", aud=[1, 2], role="admin"),
    ):
        assert denied(auth, bearer(sign(ed_key, claims)), path).endswith(
            "Cannot verify token with any of the issuers"
        )


def test_two_identity_providers_and_roles(tmp_path: Path) -> None:
    """Trustee's coco-as-grpc-2.toml admin section with two admins."""
    k1, k2 = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    text = (TRUSTEE / "kbs/test_data/configs/coco-as-grpc-2.toml").read_text()
    section = tomllib.loads(text)["admin"]
    section["authentication"]["bearer_jwt"]["identity_providers"][0]["public_key_uri"] = str(
        write_public(tmp_path, k1, "admin1.pem")
    )
    section["authentication"]["bearer_jwt"]["identity_providers"][1]["public_key_uri"] = str(
        write_public(tmp_path, k2, "admin2.pem")
    )
    auth = build(section)
    t1 = sign(k1, admin_claims(iss="admin1-issuer", role="admin1"))
    t2 = sign(k2, admin_claims(iss="admin2-issuer", role="admin2"))
    auth.authorize(bearer(t1), path="/kbs/v0/resource/default/key/1")
    auth.authorize(bearer(t2), path="/kbs/v0/config/x")
    assert denied(auth, bearer(t2), "/kbs/v0/resource/default/key/1") == (
        "Admin access denied: Role admin2 not allowed for path /kbs/v0/resource/default/key/1"
    )
    # admin2's key with admin1's issuer: verified by IdP 2 only, whose issuer mismatches.
    forged = sign(k2, admin_claims(iss="admin1-issuer", role="admin1"))
    assert denied(auth, bearer(forged), "/kbs/v0/resource/a/b/c").endswith(
        "Cannot verify token with any of the issuers"
    )


def test_docker_compose_admin_token(tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey) -> None:
    """The token Trustee's docker-compose setup.sh makes, under its kbs-config.toml."""
    text = (TRUSTEE / "kbs/config/docker-compose/kbs-config.toml").read_text()
    section = tomllib.loads(text)["admin"]
    section["authentication"]["bearer_jwt"]["identity_providers"][0]["public_key_uri"] = str(
        write_public(tmp_path, ed_key)
    )
    token = sign(
        ed_key,
        {
            "iss": "TrusteeInDocker",
            "sub": "admin",
            "aud": ["KBS"],
            "role": "admin",
            "iat": now(),
            "exp": now() + 315360000,
        },
    )
    auth = build(section)
    for path in (
        "/kbs/v0/resource/default/key/1",
        "/kbs/v0/resource-policy",
        "/kbs/v0/attestation-policy",
        "/kbs/v0/reference-value",
    ):
        auth.authorize(bearer(token), path=path)


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "PS384"),
        (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
    ],
)
def test_pem_key_types(tmp_path: Path, key: PrivateKey, alg: str) -> None:
    auth = build(head_admin([{"public_key_uri": str(write_public(tmp_path, key))}]))
    auth.authorize(bearer(sign(key, admin_claims(role="admin"), alg)), path="/kbs/v0/x")


def test_alg_must_suit_the_key(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    auth = build(head_admin([{"public_key_uri": str(write_public(tmp_path, key))}]))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = sign(rsa_key, admin_claims(role="admin"), "RS256")
    assert denied(auth, bearer(token), "/kbs/v0/x").endswith("any of the issuers")


def test_hmac_with_the_public_key_as_secret_is_refused(tmp_path: Path) -> None:
    """Key confusion: HS256 signed with the PEM text of the trusted public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = write_public(tmp_path, key)
    auth = build(head_admin([{"public_key_uri": str(path)}]))

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + b64(json.dumps(admin_claims(role="admin")).encode())
    )
    mac = hmac.new(path.read_bytes(), signing_input.encode(), hashlib.sha256).digest()
    token = signing_input + "." + b64(mac)
    assert denied(auth, bearer(token), "/kbs/v0/x").endswith("any of the issuers")


def test_header_jwk_is_never_trusted(tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey) -> None:
    auth = build(head_admin([{"public_key_uri": str(write_public(tmp_path, ed_key))}]))
    attacker = ec.generate_private_key(ec.SECP256R1())
    public_jwk = jose_private(attacker).as_dict(private=False)
    token = sign(attacker, admin_claims(role="admin"), "ES256", jwk=public_jwk)
    assert denied(auth, bearer(token), "/kbs/v0/x").endswith("any of the issuers")


def write_jwks(tmp_path: Path, keys: list[dict[str, Any]], name: str = "jwks.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"keys": keys}))
    return path


def test_jwks_by_kid_and_alg(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = jose_private(key).as_dict(private=False)
    jwks = write_jwks(tmp_path, [{**jwk, "kid": "k1", "alg": "ES256"}])
    auth = build(head_admin([{"issuer": "idp", "jwk_set_uri": str(jwks)}]))
    good = sign(key, admin_claims(iss="idp", role="admin"), "ES256", kid="k1")
    auth.authorize(bearer(good), path="/kbs/v0/x")
    # file:// form too
    auth2 = build(head_admin([{"issuer": "idp", "jwk_set_uri": jwks.as_uri()}]))
    auth2.authorize(bearer(good), path="/kbs/v0/x")
    for bad in (
        sign(key, admin_claims(iss="idp", role="admin"), "ES256"),  # no kid, no PEM key
        sign(key, admin_claims(iss="idp", role="admin"), "ES256", kid="k2"),  # unknown kid
    ):
        assert denied(auth, bearer(bad), "/kbs/v0/x").endswith("any of the issuers")


def test_jwk_without_alg_or_with_another_alg(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jose_private(key).as_dict(private=False)
    jwks = write_jwks(tmp_path, [{**jwk, "kid": "noalg"}, {**jwk, "kid": "rs", "alg": "RS256"}])
    auth = build(head_admin([{"jwk_set_uri": str(jwks)}]))
    auth.authorize(bearer(sign(key, admin_claims(role="admin"), "RS256", kid="rs")), path="/kbs/x")
    for token in (
        sign(key, admin_claims(role="admin"), "RS256", kid="noalg"),
        sign(key, admin_claims(role="admin"), "PS256", kid="rs"),
    ):
        assert denied(auth, bearer(token), "/kbs/v0/x").endswith("any of the issuers")


def test_kid_not_in_jwks_falls_back_to_the_pem_key(tmp_path: Path) -> None:
    pem_key = ed25519.Ed25519PrivateKey.generate()
    other = ec.generate_private_key(ec.SECP256R1())
    jwk = jose_private(other).as_dict(private=False)
    idp = {
        "jwk_set_uri": str(write_jwks(tmp_path, [{**jwk, "kid": "k1", "alg": "ES256"}])),
        "public_key_uri": str(write_public(tmp_path, pem_key)),
    }
    auth = build(head_admin([idp]))
    auth.authorize(bearer(sign(pem_key, admin_claims(role="admin"))), path="/kbs/v0/x")
    auth.authorize(
        bearer(sign(other, admin_claims(role="admin"), "ES256", kid="k1")), path="/kbs/y"
    )


def test_upstream_jwk_fixtures_as_a_jwks(tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey) -> None:
    """The scenario JWKs (RSA, alg RS256, with and without x5c) load as a JWK set; a token
    that names one of them but is signed by another key is refused."""
    keys = []
    for n in range(1, 8):
        jwk = json.loads((JWK_DIR / f"scenario0{n}-jwk.json").read_text())
        assert jwk["kty"] == "RSA"
        assert jwk["alg"] == "RS256"
        keys.append({**jwk, "kid": f"scenario0{n}"})
    jwks = write_jwks(tmp_path, keys)
    auth = build(head_admin([{"jwk_set_uri": str(jwks)}]))
    assert isinstance(auth, BearerJwtAdminAuth)
    assert auth.providers[0].jwks is not None
    assert len(auth.providers[0].jwks.keys) == 7
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for n in (1, 3, 5):
        token = sign(attacker, admin_claims(role="admin"), "RS256", kid=f"scenario0{n}")
        assert denied(auth, bearer(token), "/kbs/v0/x").endswith("any of the issuers")
    # An x5c-endorsed JWK in the token header is not trusted by the admin API either.
    header_jwk = json.loads((JWK_DIR / "scenario01-jwk.json").read_text())
    token = sign(attacker, admin_claims(role="admin"), "RS256", jwk=header_jwk)
    assert denied(auth, bearer(token), "/kbs/v0/x").endswith("any of the issuers")


@pytest.mark.parametrize(
    ("idp", "message"),
    [
        ({"jwk_set_uri": str(JWK_DIR / "scenario01-jwk.json")}, "not a JWK set"),
        ({"public_key_uri": str(JWK_DIR / "scenario01-trust.pem")}, "Invalid admin token"),
        ({"public_key_uri": "/nonexistent/kbs.pem"}, "Invalid admin token verifier config"),
        ({"public_key_uri": "http://idp.example/key.pem"}, "unsupported scheme"),
        ({"jwk_set_uri": "http://idp.example/jwks"}, "unsupported scheme"),
        ({"issuer": "x"}, "must set `public_key_uri` and/or `jwk_set_uri`"),
    ],
)
def test_bad_identity_providers(idp: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(head_admin([idp]))


def test_https_jwks_then_openid_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": [{**jose_private(key).as_dict(private=False), "kid": "k", "alg": "ES256"}]}
    pages = {
        "https://idp.example/realms/kbs": b"<html>not a JWK set</html>",
        "https://idp.example/realms/kbs/.well-known/openid-configuration": json.dumps(
            {
                "issuer": "https://idp.example/realms/kbs",
                "jwks_uri": "https://idp.example/realms/kbs/certs",
            }
        ).encode(),
        "https://idp.example/realms/kbs/certs": json.dumps(jwks).encode(),
        "https://direct.example/jwks.json": json.dumps(jwks).encode(),
    }
    fetched: list[str] = []

    def fake_get(url: str) -> bytes:
        fetched.append(url)
        return pages[url]

    monkeypatch.setattr(trustee, "_http_get", fake_get)
    token = sign(key, admin_claims(role="admin"), "ES256", kid="k")
    build(head_admin([{"jwk_set_uri": "https://idp.example/realms/kbs"}])).authorize(
        bearer(token), path="/kbs/v0/x"
    )
    assert fetched == list(pages)[:3]
    fetched.clear()
    build(head_admin([{"jwk_set_uri": "https://direct.example/jwks.json"}])).authorize(
        bearer(token), path="/kbs/v0/x"
    )
    assert fetched == ["https://direct.example/jwks.json"]


def test_acl_matches_the_full_uri_and_dollar_is_end_of_text(
    tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    acls = [{"role": "admin", "allowed_endpoints": "^/kbs/v0/resource/[a-z]+/[a-z]+/[0-9]+$"}]
    auth = build(head_admin([{"public_key_uri": str(write_public(tmp_path, ed_key))}], acls))
    token = bearer(sign(ed_key, admin_claims(role="admin")))
    auth.authorize(token, path="/kbs/v0/resource/default/key/1")
    for path in (
        "/kbs/v0/resource/default/key/1\n",
        "/kbs/v0/resource/default/key/1?x=1",
        "/kbs/v0/resource-policy",
        "/x/kbs/v0/resource/default/key/1",
    ):
        assert denied(auth, token, path) == (
            f"Admin access denied: Role admin not allowed for path {path}"
        )


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(xyz", "Admin Role regex must be anchored."),
        ("^/resource/a/.+/c$", "Admin Role regex must be anchored."),
        ("^/kbs/.+", "Admin Role regex must be anchored."),
        ("/kbs/.+$", "Admin Role regex must be anchored."),
        ("^/kbs/(xyz$", "Failed to parse regex: "),
    ],
)
def test_acl_regex_errors(
    tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey, pattern: str, message: str
) -> None:
    acls = [{"role": "Anonymous", "allowed_endpoints": pattern}]
    with pytest.raises(ConfigError) as info:
        build(head_admin([{"public_key_uri": str(write_public(tmp_path, ed_key))}], acls))
    assert str(info.value).startswith(message)


def test_empty_identity_providers_is_trustees_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        build(head_admin([]))
    assert str(info.value) == (
        "admin configuration error: AuthenticatedAuthorization requires at least one "
        "`identity_providers` entry in [admin.authentication.bearer_jwt] (see "
        "kbs/docs/admin.md and kbs/docs/config.md#admin-api-configuration)"
    )


def test_head_modes(tmp_path: Path) -> None:
    auth, warns = build_admin_auth(
        {"authorization_mode": "InsecureAllowAll"},
        legacy_public_key=None,
        insecure_api=False,
        data_dir=None,
    )
    assert isinstance(auth, InsecureAllowAll)
    auth.authorize(None, path="/kbs/v0/resource-policy")
    assert any(w.startswith("INSECURE") and "InsecureAllowAll" in w for w in warns)

    deny = build({"authorization_mode": "DenyAll"})
    with pytest.raises(TrusteeAdminDenied) as info:
        deny.authorize(bearer("x.y.z"), path="/kbs/v0/resource-policy")
    assert str(info.value) == (
        "Admin access denied: Admin access denied as DenyAll authorization_mode is enabled"
    )
    assert info.value.reason == "Admin access denied as DenyAll authorization_mode is enabled"


@pytest.mark.parametrize(
    "section",
    [
        {"authorization_mode": "AllowAll"},
        {"authorization_mode": "InsecureAllowAll", "type": "Simple"},
        {"authorization_mode": "DenyAll", "insecure_api": True},
        {"authorization_mode": "AuthenticatedAuthorization"},
        {  # Trustee's reject_legacy_adjacent_tag_authentication_table
            "authorization_mode": "AuthenticatedAuthorization",
            "authentication": {"type": "BearerJwt", "identity_providers": []},
            "authorization": {"regex_acl": {"acls": []}},
        },
        {
            "authorization_mode": "AuthenticatedAuthorization",
            "authentication": {"bearer_jwt": {"identity_providers": [{"issuer": "x", "kid": 1}]}},
            "authorization": {"regex_acl": {"acls": []}},
        },
        {
            "authorization_mode": "AuthenticatedAuthorization",
            "authentication": {"bearer_jwt": {"identity_providers": []}},
            "authorization": {"regex_acl": {"acls": [{"audience": "x"}]}},
        },
        {"foo": "bar"},
    ],
)
def test_unknown_admin_fields_are_rejected(section: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_admin_section(section)


# -- v0.17 – v0.20: personas and roles ----------------------------------------


def persona_section(
    tmp_path: Path, keys: dict[str, PrivateKey], roles: list[dict[str, str]]
) -> dict[str, Any]:
    personas = [
        {"id": pid, "public_key_path": str(write_public(tmp_path, key, f"{pid}.pub"))}
        for pid, key in keys.items()
    ]
    return {"type": "Simple", "personas": personas, "roles": roles}


def test_personas_without_roles_may_call_everything(tmp_path: Path) -> None:
    alice = ed25519.Ed25519PrivateKey.generate()
    auth = build(persona_section(tmp_path, {"alice": alice}, []))
    # kbs-client of that era: {"iat", "exp"} and header {"typ": "JWT", "alg": "EdDSA"}
    token = bearer(sign(alice, {"iat": now(), "exp": now() + 7200}))
    auth.authorize(token, path="/kbs/v0/resource/a/b/c")
    auth.authorize(token, path="/kbs/v0/resource-policy")
    stranger = sign(ed25519.Ed25519PrivateKey.generate(), admin_claims())
    assert denied(auth, bearer(stranger), "/kbs/v0/x") == PERSONA_DENIED
    assert denied(auth, None, "/kbs/v0/x") == PERSONA_DENIED
    no_exp = sign(alice, {"iat": now()})
    assert denied(auth, bearer(no_exp), "/kbs/v0/x") == PERSONA_DENIED


def test_persona_roles(tmp_path: Path) -> None:
    admin, reader = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    roles = [{"id": "admin", "allowed_endpoints": "^/kbs/v0/resource/.+$"}]
    auth = build(persona_section(tmp_path, {"admin": admin, "reader": reader}, roles))
    auth.authorize(bearer(sign(admin, admin_claims())), path="/kbs/v0/resource/a/b/c")
    assert denied(auth, bearer(sign(admin, admin_claims())), "/kbs/v0/resource-policy") == (
        PERSONA_DENIED
    )
    assert denied(auth, bearer(sign(reader, admin_claims())), "/kbs/v0/resource/a/b/c") == (
        PERSONA_DENIED
    )


def test_persona_tokens_are_eddsa_only(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    auth = build(persona_section(tmp_path, {"admin": key}, []))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    assert denied(auth, bearer(sign(ec_key, admin_claims(), "ES256")), "/kbs/v0/x") == (
        PERSONA_DENIED
    )


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (
            [
                {"id": "a", "allowed_endpoints": "^/kbs/.+$"},
                {"id": "a", "allowed_endpoints": "^/kbs/v0/.+$"},
            ],
            "Duplicate Admin Role",
        ),
        (
            [{"id": "a", "allowed_endpoints": "^/resource/.+$"}],
            "Admin Role regex must be anchored.",
        ),
        ([{"id": "a", "allowed_endpoints": "^/kbs/(x$"}], "Invalid Regular Expression in Role"),
    ],
)
def test_persona_role_errors(tmp_path: Path, roles: list[dict[str, str]], message: str) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(ConfigError) as info:
        build(persona_section(tmp_path, {"a": key}, roles))
    assert str(info.value) == message


def test_persona_types(tmp_path: Path) -> None:
    assert denied(build({"type": "DenyAll"}), None, "/kbs/v0/x") == PERSONA_DENIED
    auth, warns = build_admin_auth(
        {"type": "InsecureAllowAll"}, legacy_public_key=None, insecure_api=False, data_dir=None
    )
    auth.authorize(None, path="/kbs/v0/x")
    assert any('type = "InsecureAllowAll"' in w for w in warns)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ConfigError, match="Failed to parse admin public key"):
        build(persona_section(tmp_path, {"a": rsa_key}, []))
    with pytest.raises(ConfigError):
        parse_admin_section({"type": "Fancy"})
    _, warns = build_admin_auth(
        {"type": "Simple"}, legacy_public_key=None, insecure_api=False, data_dir=None
    )
    assert any("no personas" in w for w in warns)


# -- ≤ v0.16: auth_public_key + insecure_api ----------------------------------


def test_legacy_auth_public_key_jwt_simple_semantics(
    tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    pub = write_public(tmp_path, ed_key)
    auth = build({"auth_public_key": str(pub), "insecure_api": False})
    path = "/kbs/v0/resource/a/b/c"
    # what kbs-client (jwt-simple Claims::create(2h)) and veritee's admin token send
    auth.authorize(
        bearer(sign(ed_key, {"iat": now(), "nbf": now(), "exp": now() + 7200})), path=path
    )
    auth.authorize(bearer(sign_admin_token(ed_key, lifetime_s=60)), path=path)
    auth.authorize(bearer(sign(ed_key, {})), path=path)  # no exp: jwt-simple accepts it
    auth.authorize(bearer(sign(ed_key, {"exp": now() - 600})), path=path)  # 15 min tolerance
    for claims in (
        {"exp": now() - 1200},
        {"nbf": now() + 1200},
        {"iat": now() + 1200},
        {"exp": "soon"},
    ):
        assert denied(auth, bearer(sign(ed_key, claims)), path) == LEGACY_DENIED
    other = ed25519.Ed25519PrivateKey.generate()
    assert denied(auth, bearer(sign(other, admin_claims())), path) == LEGACY_DENIED
    assert denied(auth, None, path) == BAD_HEADER


def test_legacy_v015_sample_insecure_api(tmp_path: Path) -> None:
    text = (TRUSTEE / "legacy-v0.15.0/kbs/config/kbs-config.toml").read_text()
    auth, warns = build_admin_auth(
        tomllib.loads(text)["admin"], legacy_public_key=None, insecure_api=False, data_dir=None
    )
    assert isinstance(auth, InsecureAllowAll)
    assert any("insecure_api = true" in w and w.startswith("INSECURE") for w in warns)


def test_legacy_errors_and_top_level_keys(
    tmp_path: Path, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    with pytest.raises(ConfigError, match="`auth_public_key` is not set in the config file"):
        build({"insecure_api": False})
    with pytest.raises(ConfigError, match="Read admin public key failed"):
        build({"auth_public_key": str(tmp_path / "missing.pub")})
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ConfigError, match="Failed to parse admin public key"):
        build({"auth_public_key": str(write_public(tmp_path, rsa_key, "rsa.pub"))})
    # v0.9-era: the keys at the top level of the file
    pub = write_public(tmp_path, ed_key)
    auth = build(None, legacy_public_key=pub)
    auth.authorize(bearer(sign(ed_key, admin_claims())), path="/kbs/v0/x")
    assert isinstance(build(None, insecure_api=True), InsecureAllowAll)
    with pytest.raises(ConfigError, match="cannot be combined"):
        build({"authorization_mode": "DenyAll"}, legacy_public_key=pub)
    # relative paths are taken from base_dir when given
    auth = build({"auth_public_key": pub.name}, base_dir=tmp_path)
    auth.authorize(bearer(sign(ed_key, admin_claims())), path="/kbs/v0/x")


# -- no admin configuration: veritee's authenticated default -------------------


@pytest.mark.parametrize("section", [None, {}])
def test_default_is_authenticated(tmp_path: Path, section: dict[str, Any] | None) -> None:
    auth, warns = build_admin_auth(
        section, legacy_public_key=None, insecure_api=False, data_dir=tmp_path
    )
    assert isinstance(auth, Ed25519AdminAuth)
    assert any("admin.token" in w for w in warns)
    token = (tmp_path / "admin.token").read_text().strip()
    auth.authorize(bearer(token), path="/kbs/v0/resource-policy")
    with pytest.raises(AdminAuthError):
        auth.authorize(None, path="/kbs/v0/resource-policy")
    _, warns = build_admin_auth(
        section, legacy_public_key=None, insecure_api=False, data_dir=tmp_path
    )
    assert warns == []
    with pytest.raises(ConfigError, match="no data directory"):
        build(section)
