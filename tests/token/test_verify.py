"""Token verification: every way a token can be wrong first, then what must pass."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws, jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey
from local_pcs import LocalServer, Reply, refused_url

from veritee.errors import VeriteeError
from veritee.token.ear import EAR_PROFILE, EarSettings, SubmodAppraisal, ear_claims
from veritee.token.signer import TokenSigner
from veritee.token.verify import (
    KINDS,
    BadSignature,
    Expired,
    InvalidClaims,
    JwksError,
    MalformedToken,
    NotYetValid,
    TokenError,
    TokenRegistry,
    UnsupportedAlgorithm,
    WrongProfile,
    load_jwks,
    verify_token,
)

NOW = 1_760_426_134


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Party:
    """A signer and the same private key as a joserfc key, to forge custom headers."""

    def __init__(self) -> None:
        self.pem = _pem(ec.generate_private_key(ec.SECP256R1()))
        self.signer = TokenSigner.load(self.pem)
        self.jose = ECKey.import_key(self.pem)

    def sign_raw(self, header: dict[str, Any], payload: bytes) -> str:
        alg = header["alg"]
        return jws.serialize_compact(
            header, payload, self.jose, algorithms=[alg], registry=TokenRegistry(algorithms=[alg])
        )


@pytest.fixture(scope="module")
def issuer() -> Party:
    return Party()


@pytest.fixture(scope="module")
def attacker() -> Party:
    return Party()


def claims(now: int = NOW, **changes: Any) -> dict[str, Any]:
    base = ear_claims(
        [SubmodAppraisal("cpu0", {"executables": 3, "hardware": 2}, "default", {"x": 1})],
        EarSettings(),
        now=now,
    )
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _kind(token: str, keys: Any, **kwargs: Any) -> str:
    with pytest.raises(TokenError) as info:
        verify_token(token, keys, **kwargs)
    return info.value.kind


# --- forged signatures -------------------------------------------------------------------


def test_token_signed_by_another_key_is_rejected(issuer: Party, attacker: Party) -> None:
    token = attacker.signer.sign(claims())
    with pytest.raises(BadSignature, match="does not verify with any trusted key"):
        verify_token(token, issuer.signer.jwks(), now=NOW)


def test_edited_payload_is_rejected(issuer: Party) -> None:
    token = issuer.signer.sign(claims())
    header, _, signature = token.split(".")
    forged = claims()
    forged["submods"]["cpu0"]["ear.status"] = "affirming"
    forged["submods"]["cpu0"]["ear.trustworthiness-vector"]["hardware"] = 2
    forged["iss"] = "someone else"
    tampered = f"{header}.{_b64(json.dumps(forged).encode())}.{signature}"
    with pytest.raises(BadSignature):
        verify_token(tampered, issuer.signer.jwks(), now=NOW)


def test_signature_of_another_token_is_rejected(issuer: Party) -> None:
    one = issuer.signer.sign(claims())
    two = issuer.signer.sign(claims(iss="other"))
    spliced = ".".join([*one.split(".")[:2], two.split(".")[2]])
    assert _kind(spliced, issuer.signer.jwks(), now=NOW) == "bad_signature"


def test_attacker_header_jwk_with_valid_signature_is_not_trusted(
    issuer: Party, attacker: Party
) -> None:
    # The attacker's token is internally consistent: its header jwk (with its own x5c)
    # verifies its signature.  The header key is never a trust anchor.
    token = attacker.signer.sign(claims())
    header = jws.extract_compact(token.encode(), registry=TokenRegistry()).headers()
    assert header["jwk"] == attacker.signer.public_jwk()
    reg = TokenRegistry(algorithms=["ES256"])
    jwt.decode(token, ECKey.import_key(header["jwk"]), registry=reg)  # self-consistent
    assert _kind(token, issuer.signer.jwks(), now=NOW) == "bad_signature"
    assert _kind(token, [issuer.signer.certificates[0].public_key()], now=NOW) == "bad_signature"


def test_attacker_kid_pointing_at_trusted_key_is_rejected(issuer: Party, attacker: Party) -> None:
    header = {"typ": "JWT", "alg": "ES256", "kid": issuer.signer.kid}
    token = attacker.sign_raw(header, json.dumps(claims()).encode())
    assert _kind(token, issuer.signer.jwks(), now=NOW) == "bad_signature"


def test_trusted_signature_with_a_foreign_header_jwk_is_rejected(
    issuer: Party, attacker: Party
) -> None:
    header = {"typ": "JWT", "alg": "ES256", "jwk": attacker.signer.public_jwk()}
    token = issuer.sign_raw(header, json.dumps(claims()).encode())
    with pytest.raises(BadSignature, match="header jwk is not the trusted key"):
        verify_token(token, issuer.signer.jwks(), now=NOW)


def test_header_jwk_that_is_not_a_key_is_rejected(issuer: Party) -> None:
    header = {"typ": "JWT", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": "AA"}}
    token = issuer.sign_raw(header, json.dumps(claims()).encode())
    assert _kind(token, issuer.signer.jwks(), now=NOW) == "bad_signature"


# --- algorithms ---------------------------------------------------------------------------


def test_alg_none_is_rejected(issuer: Party) -> None:
    with pytest.warns(SecurityWarning):
        token = jws.serialize_compact(
            {"alg": "none"}, json.dumps(claims()), None, algorithms=["none"]
        )
    assert token.endswith(".")
    with pytest.raises(UnsupportedAlgorithm, match="never none or HMAC"):
        verify_token(token, issuer.signer.jwks(), now=NOW)


def test_alg_none_with_a_copied_signature_is_rejected(issuer: Party) -> None:
    real = issuer.signer.sign(claims())
    header = _b64(json.dumps({"typ": "JWT", "alg": "none"}).encode())
    token = ".".join([header, *real.split(".")[1:]])
    assert _kind(token, issuer.signer.jwks(), now=NOW) == "unsupported_algorithm"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_with_the_public_key_as_secret_is_rejected(issuer: Party, alg: str) -> None:
    public_pem = (
        issuer.signer.certificates[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    # The classic key-confusion forgery, made by hand so no JOSE library refuses to make it.
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = (
        _b64(json.dumps({"typ": "JWT", "alg": alg}).encode())
        + "."
        + _b64(json.dumps(claims()).encode())
    )
    mac = hmac.new(public_pem, signing_input.encode(), digest).digest()
    token = signing_input + "." + _b64(mac)
    with pytest.raises(UnsupportedAlgorithm):
        verify_token(token, issuer.signer.jwks(), now=NOW)
    # also when the caller's key list holds the very public key object
    assert _kind(token, [issuer.signer.certificates[0].public_key()], now=NOW) == (
        "unsupported_algorithm"
    )


@pytest.mark.parametrize("alg", [None, "", "EdDSA", "ES256K", "RS1", 5])
def test_missing_or_unknown_alg_is_rejected(issuer: Party, alg: object) -> None:
    real = issuer.signer.sign(claims())
    head: dict[str, object] = {"typ": "JWT"}
    if alg is not None:
        head["alg"] = alg
    token = ".".join([_b64(json.dumps(head).encode()), *real.split(".")[1:]])
    assert _kind(token, issuer.signer.jwks(), now=NOW) in {"unsupported_algorithm", "malformed"}


def test_rs256_token_against_an_ec_trusted_key_is_rejected(issuer: Party) -> None:
    rsa_signer = TokenSigner.generate("RS256", rsa_bits=2048)
    token = rsa_signer.sign(claims())
    with pytest.raises(BadSignature, match="no trusted key can verify RS256"):
        verify_token(token, issuer.signer.jwks(), now=NOW)


def test_trusted_key_declaring_another_alg_is_not_used(issuer: Party) -> None:
    jwks = issuer.signer.jwks()
    jwks["keys"][0]["alg"] = "ES384"
    assert _kind(issuer.signer.sign(claims()), jwks, now=NOW) == "bad_signature"


# --- times and profile --------------------------------------------------------------------


def test_expired_beyond_leeway(issuer: Party) -> None:
    token = issuer.signer.sign(claims())
    exp = NOW + 300
    with pytest.raises(Expired, match="leeway 60"):
        verify_token(token, issuer.signer.jwks(), now=exp + 61)
    verify_token(token, issuer.signer.jwks(), now=exp + 60)  # inside the leeway
    assert _kind(token, issuer.signer.jwks(), now=exp + 1, leeway=0) == "expired"


def test_iat_in_the_future(issuer: Party) -> None:
    token = issuer.signer.sign(claims(now=NOW + 3600))
    with pytest.raises(NotYetValid, match="iat"):
        verify_token(token, issuer.signer.jwks(), now=NOW)
    verify_token(issuer.signer.sign(claims(now=NOW + 60)), issuer.signer.jwks(), now=NOW)


def test_nbf_in_the_future(issuer: Party) -> None:
    token = issuer.signer.sign(claims(nbf=NOW + 120))
    with pytest.raises(NotYetValid, match="nbf"):
        verify_token(token, issuer.signer.jwks(), now=NOW)


def test_exp_is_required(issuer: Party) -> None:
    token = issuer.signer.sign(claims(exp=None))
    with pytest.raises(InvalidClaims, match="exp"):
        verify_token(token, issuer.signer.jwks(), now=NOW)


@pytest.mark.parametrize("field", ["exp", "iat", "nbf"])
def test_non_numeric_times_are_invalid_claims(issuer: Party, field: str) -> None:
    token = issuer.signer.sign({**claims(), field: "tomorrow"})
    assert _kind(token, issuer.signer.jwks(), now=NOW) == "claims"


def test_wrong_profile(issuer: Party) -> None:
    token = issuer.signer.sign(claims(eat_profile="tag:ietf.org,2023:rats/ear#01"))
    with pytest.raises(WrongProfile, match="rats/ear#01"):
        verify_token(token, issuer.signer.jwks(), now=NOW)
    assert verify_token(token, issuer.signer.jwks(), now=NOW, profile=None)["iat"] == NOW


def test_missing_profile(issuer: Party) -> None:
    token = issuer.signer.sign(claims(eat_profile=None))
    assert _kind(token, issuer.signer.jwks(), now=NOW) == "wrong_profile"


def test_signature_is_checked_before_times(issuer: Party, attacker: Party) -> None:
    token = attacker.signer.sign(claims())
    assert _kind(token, issuer.signer.jwks(), now=NOW + 10_000) == "bad_signature"


# --- malformed input ----------------------------------------------------------------------


def test_truncated_token(issuer: Party) -> None:
    token = issuer.signer.sign(claims())
    header, payload, signature = token.split(".")
    assert _kind(token[: len(header) + 10], issuer.signer.jwks()) == "malformed"
    assert _kind(f"{header}.{payload}", issuer.signer.jwks()) == "malformed"
    assert _kind(f"{header}.{payload[:-7]}.{signature}", issuer.signer.jwks()) in {
        "malformed",
        "bad_signature",
    }
    for cut in (1, 5, 20, len(signature)):
        assert _kind(token[:-cut], issuer.signer.jwks(), now=NOW) == "bad_signature"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "   ",
        "hello",
        "a.b.c",
        "!!.??.##",
        "....",
        "a.b.c.d.e",
        "eyJhbGciOiJFUzI1NiJ9",
        _b64(b"[1]") + ".e30.AA",
        _b64(b'{"alg":"ES256"') + ".e30.AA",
        _b64(b"\xff\xfe") + ".e30.AA",
        _b64(json.dumps({"alg": "ES256", "crit": ["exp"]}).encode()) + ".e30.AA",
    ],
)
def test_garbage_is_malformed(issuer: Party, garbage: str) -> None:
    with pytest.raises(MalformedToken):
        verify_token(garbage, issuer.signer.jwks(), now=NOW)


def test_signed_payload_that_is_not_json(issuer: Party) -> None:
    token = issuer.sign_raw({"alg": "ES256"}, b"not json")
    with pytest.raises(MalformedToken, match="not JSON"):
        verify_token(token, issuer.signer.jwks(), now=NOW)


def test_signed_payload_that_is_not_an_object(issuer: Party) -> None:
    token = issuer.sign_raw({"alg": "ES256"}, b"[1, 2]")
    assert _kind(token, issuer.signer.jwks(), now=NOW) == "malformed"


def test_unknown_critical_header_is_refused(issuer: Party) -> None:
    from joserfc.registry import HeaderParameter

    reg = TokenRegistry(algorithms=["ES256"], header_registry={"zz": HeaderParameter("x", "int")})
    token = jws.serialize_compact(
        {"alg": "ES256", "crit": ["zz"], "zz": 1},
        json.dumps(claims()),
        issuer.jose,
        algorithms=["ES256"],
        registry=reg,
    )
    with pytest.raises(MalformedToken, match="header"):
        verify_token(token, issuer.signer.jwks(), now=NOW)


# --- trusted keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [
        [],
        {"keys": []},
        {"nokeys": 1},
        {"keys": {"kty": "EC"}},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
        {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]},
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]},
        ["not a key"],
    ],
)
def test_unusable_trusted_keys(issuer: Party, keys: Any) -> None:
    token = issuer.signer.sign(claims())
    with pytest.raises(JwksError):
        verify_token(token, keys, now=NOW)


def test_errors_have_stable_kinds() -> None:
    assert KINDS == (
        "malformed",
        "unsupported_algorithm",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_profile",
        "claims",
        "jwks",
    )
    for cls in (MalformedToken, BadSignature, Expired, JwksError):
        assert issubclass(cls, TokenError)
        assert issubclass(cls, VeriteeError)
    error = Expired("at 5")
    assert str(error) == "expired: at 5"
    assert error.detail == "at 5"


# --- what passes --------------------------------------------------------------------------


def test_valid_token_returns_the_claims(issuer: Party) -> None:
    expected = claims()
    assert verify_token(issuer.signer.sign(expected), issuer.signer.jwks(), now=NOW) == expected


def test_valid_token_as_bytes_with_whitespace(issuer: Party) -> None:
    token = issuer.signer.sign(claims())
    assert verify_token(f"\n {token}\n".encode(), issuer.signer.jwks(), now=NOW)["iat"] == NOW


def test_key_forms(issuer: Party) -> None:
    token = issuer.signer.sign(claims())
    public = issuer.signer.certificates[0].public_key()
    jwk = issuer.signer.public_jwk()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for keys in ([public], [jwk], [ECKey.import_key(jwk)], {"keys": [jwk]}):
        assert verify_token(token, keys, now=NOW)["iss"] == "CoCo-Attestation-Service"


def test_jwks_with_several_keys_and_a_stale_kid(issuer: Party, attacker: Party) -> None:
    token = issuer.signer.sign(claims())
    other = attacker.signer.public_jwk()
    mine = issuer.signer.public_jwk()
    mine["kid"] = "rotated-name"  # kid is a hint only
    jwks = {"keys": [other, {"kty": "oct", "k": "c2VjcmV0"}, mine]}
    assert verify_token(token, jwks, now=NOW)["exp"] == NOW + 300


def test_token_without_header_jwk_verifies_by_jwks(issuer: Party) -> None:
    token = issuer.sign_raw({"typ": "JWT", "alg": "ES256"}, json.dumps(claims()).encode())
    assert verify_token(token, issuer.signer.jwks(), now=NOW)["iat"] == NOW


def test_rs256_round_trip() -> None:
    signer = TokenSigner.generate("RS256", rsa_bits=2048)
    token = signer.sign(claims())
    assert verify_token(token, signer.jwks(), now=NOW) == claims()
    assert _kind(token, TokenSigner.generate().jwks(), now=NOW) == "bad_signature"


def test_large_verbose_token_verifies(issuer: Party) -> None:
    evidence = {"additional-evidence": "A" * 500_000}
    big = ear_claims(
        [SubmodAppraisal("cpu0", {"hardware": 2}, "default", {"runtime_data_claims": evidence})],
        EarSettings(),
        now=NOW,
    )
    assert verify_token(issuer.signer.sign(big), issuer.signer.jwks(), now=NOW) == big


def test_default_profile_is_trustee() -> None:
    assert EAR_PROFILE == "tag:github.com,2024:confidential-containers/Trustee"


# --- load_jwks ----------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer().start()
    yield srv
    srv.stop()


def test_load_jwks_from_file(issuer: Party, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.signer.jwks()))
    assert load_jwks(str(path)) == issuer.signer.jwks()


def test_load_jwks_from_url(issuer: Party, server: LocalServer) -> None:
    body = json.dumps(issuer.signer.jwks()).encode()
    server.routes["/.well-known/jwks.json"] = Reply(200, body, {"Content-Type": "application/json"})
    jwks = load_jwks(f"{server.url}/.well-known/jwks.json")
    assert verify_token(issuer.signer.sign(claims()), jwks, now=NOW)["iat"] == NOW
    assert server.hits["/.well-known/jwks.json"] == 1


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(404, b"nope"), "HTTP 404"),
        (Reply(500, b""), "HTTP 500"),
        (Reply(200, b"<html>"), "not JSON"),
        (Reply(200, b"[]"), "not a JWKS"),
        (Reply(200, b'{"keys": []}'), "no usable"),
        (Reply(302, b"", {"Location": "/elsewhere"}), "HTTP 302"),
    ],
)
def test_load_jwks_url_failures(server: LocalServer, reply: Reply, message: str) -> None:
    server.routes["/jwks"] = reply
    with pytest.raises(JwksError, match=message) as info:
        load_jwks(f"{server.url}/jwks")
    assert info.value.kind == "jwks"


def test_load_jwks_refused() -> None:
    with pytest.raises(JwksError, match="ConnectError"):
        load_jwks(f"{refused_url()}/jwks")


def test_load_jwks_file_failures(tmp_path: Path) -> None:
    with pytest.raises(JwksError, match="cannot read"):
        load_jwks(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(JwksError, match="not JSON"):
        load_jwks(str(bad))
