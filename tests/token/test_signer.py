"""The token signer: Trustee's JWKS fixture, header shape, certificates, persistence."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from joserfc import jws

from veritee.token.signer import CHAIN_FILE, KEY_FILE, SIGNER_CN, SignerError, TokenSigner
from veritee.token.verify import BadSignature, TokenRegistry, verify_token

FIXTURE_DIR = ("trustee", "attestation-service", "tests", "fixtures", "jwk")
NOW = 1_760_426_134
CLAIMS = {
    "eat_profile": "tag:github.com,2024:confidential-containers/Trustee",
    "iat": NOW,
    "exp": NOW + 300,
}


@pytest.fixture(scope="module")
def fixtures(vectors: Path) -> Path:
    """Trustee's signer fixture (tests/data/trustee)."""
    return vectors.parent.joinpath(*FIXTURE_DIR)


@pytest.fixture(scope="module")
def trustee(fixtures: Path) -> TokenSigner:
    return TokenSigner.load(
        (fixtures / "signing-key.pem").read_bytes(), (fixtures / "cert-chain.pem").read_bytes()
    )


def _header(token: str) -> dict[str, Any]:
    return dict(jws.extract_compact(token.encode(), registry=TokenRegistry()).headers())


def _rfc7638(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3.2 computed by hand (independent of joserfc)."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --- Trustee's fixture --------------------------------------------------------------------


def test_jwks_without_kid_is_exactly_trustees(trustee: TokenSigner, fixtures: Path) -> None:
    expected = json.loads((fixtures / "expected-jwks.json").read_text())
    assert trustee.jwks(include_kid=False) == expected


def test_jwks_default_is_trustees_plus_a_thumbprint_kid(
    trustee: TokenSigner, fixtures: Path
) -> None:
    # Trustee compares its JWKS with exact equality (jsonwebtoken JwkSet), so a kid is an
    # addition: the default JWKS equals the fixture once "kid" is removed, and kid is the
    # RFC 7638 thumbprint of the public key.
    expected = json.loads((fixtures / "expected-jwks.json").read_text())
    (key,) = trustee.jwks()["keys"]
    kid = key.pop("kid")
    assert {"keys": [key]} == expected
    assert kid == _rfc7638(key) == trustee.kid
    assert kid == "Sxz5mEKAKGy0sXcyU7KyF3WIO2dHHcfUwHThwSBU6lc"


def test_coordinates_are_left_padded(trustee: TokenSigner) -> None:
    jwk = trustee.public_jwk()
    x = base64.urlsafe_b64decode(jwk["x"] + "=")
    assert len(x) == 32
    assert x[0] == 0  # the fixture key's x starts with a zero byte


def test_trustee_header_shape(trustee: TokenSigner, fixtures: Path) -> None:
    token = trustee.sign(CLAIMS)
    header = _header(token)
    assert header == {"typ": "JWT", "alg": "ES256", "kid": trustee.kid, "jwk": trustee.public_jwk()}
    jwk = header["jwk"]
    assert set(jwk) == {"kty", "crv", "alg", "x", "y", "x5c", "kid"}
    chain = (fixtures / "cert-chain.pem").read_bytes()
    leaf = x509.load_pem_x509_certificate(chain)
    assert base64.b64decode(jwk["x5c"][0], validate=True) == leaf.public_bytes(
        serialization.Encoding.DER
    )
    assert verify_token(token, trustee.jwks(), now=NOW) == CLAIMS


def test_cert_chain_pem_round_trips(trustee: TokenSigner, fixtures: Path) -> None:
    original = x509.load_pem_x509_certificates((fixtures / "cert-chain.pem").read_bytes())
    assert x509.load_pem_x509_certificates(trustee.cert_chain_pem()) == original
    assert trustee.certificates == original


# --- generated signers --------------------------------------------------------------------


def test_generate_es256_has_a_self_signed_certificate() -> None:
    signer = TokenSigner.generate()
    assert signer.alg == "ES256"
    (cert,) = signer.certificates
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SIGNER_CN
    cert.verify_directly_issued_by(cert)
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is False
    assert cert.not_valid_after_utc > cert.not_valid_before_utc
    jwk = signer.public_jwk()
    assert jwk["kty"] == "EC"
    assert jwk["crv"] == "P-256"
    assert jwk["alg"] == "ES256"
    assert len(jwk["x5c"]) == 1
    assert signer.kid == _rfc7638(jwk)


def test_generate_rs256() -> None:
    signer = TokenSigner.generate("RS256", rsa_bits=2048)
    assert signer.alg == "RS256"
    jwk = signer.public_jwk()
    assert set(jwk) == {"kty", "alg", "n", "e", "x5c", "kid"}
    assert jwk["alg"] == "RS256"
    assert jwk["kid"] == _rfc7638(jwk)
    token = signer.sign(CLAIMS)
    assert _header(token)["alg"] == "RS256"
    assert verify_token(token, signer.jwks(), now=NOW) == CLAIMS


def test_generate_refuses_weak_or_unknown() -> None:
    with pytest.raises(SignerError, match="2048"):
        TokenSigner.generate("RS256", rsa_bits=1024)
    with pytest.raises(SignerError, match="ES256 or RS256"):
        TokenSigner.generate("HS256")


def test_two_generated_signers_differ() -> None:
    one, two = TokenSigner.generate(), TokenSigner.generate()
    assert one.kid != two.kid
    assert one.jwks() != two.jwks()


# --- loading ------------------------------------------------------------------------------


def test_load_without_chain_makes_a_certificate() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signer = TokenSigner.load(_pem(key))
    (cert,) = signer.certificates
    assert cert.public_key() == key.public_key()
    assert signer.cert_chain_pem().startswith(b"-----BEGIN CERTIFICATE-----")


def test_load_rejects_a_chain_for_another_key(fixtures: Path) -> None:
    chain = (fixtures / "cert-chain.pem").read_bytes()
    with pytest.raises(SignerError, match="not for the signing key"):
        TokenSigner.load(_pem(ec.generate_private_key(ec.SECP256R1())), chain)


@pytest.mark.parametrize(
    ("key_pem", "message"),
    [
        (b"not a key", "cannot load"),
        (b"", "cannot load"),
    ],
)
def test_load_rejects_garbage(key_pem: bytes, message: str) -> None:
    with pytest.raises(SignerError, match=message):
        TokenSigner.load(key_pem)


def test_load_rejects_other_curves_and_small_rsa() -> None:
    with pytest.raises(SignerError, match="P-256"):
        TokenSigner.load(_pem(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(SignerError, match="2048"):
        TokenSigner.load(_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)))


def test_load_rejects_a_bad_chain(fixtures: Path) -> None:
    key = (fixtures / "signing-key.pem").read_bytes()
    with pytest.raises(SignerError, match="not PEM"):
        TokenSigner.load(key, b"junk")
    with pytest.raises(SignerError, match="chain"):
        TokenSigner.load(key, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_signer_error_kind() -> None:
    with pytest.raises(SignerError) as info:
        TokenSigner.load(b"x")
    assert info.value.kind == "signer"


# --- persistence --------------------------------------------------------------------------


def test_save_and_reload(tmp_path: Path) -> None:
    signer = TokenSigner.generate()
    key_path, chain_path = signer.save(tmp_path / "signer")
    assert (key_path.name, chain_path.name) == (KEY_FILE, CHAIN_FILE)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert chain_path.read_bytes() == signer.cert_chain_pem()
    again = TokenSigner.from_directory(tmp_path / "signer")
    assert again.jwks() == signer.jwks()
    assert verify_token(again.sign(CLAIMS), signer.jwks(), now=NOW) == CLAIMS


def test_save_preserves_a_loaded_chain(tmp_path: Path, trustee: TokenSigner) -> None:
    trustee.save(tmp_path)
    assert TokenSigner.from_directory(tmp_path).jwks() == trustee.jwks()


def test_from_directory_missing(tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="cannot read"):
        TokenSigner.from_directory(tmp_path)


def test_sign_refuses_non_json_claims() -> None:
    with pytest.raises(SignerError, match="cannot sign"):
        TokenSigner.generate().sign({"bad": object()})
    for number in (float("nan"), float("inf")):
        with pytest.raises(SignerError, match="cannot sign"):
            TokenSigner.generate().sign({"iat": NOW, "nested": [{"x": number}]})


def test_each_signer_signs_with_its_own_key_and_header() -> None:
    """The header is made once per signer: a replaced signer (a rotated key) puts its own
    key in the header and its tokens fail under the old key, and the reverse."""
    old, new = TokenSigner.generate(), TokenSigner.generate()
    old_token, new_token = old.sign(CLAIMS), new.sign(CLAIMS)
    assert _header(old_token)["kid"] == old.kid
    assert _header(new_token)["kid"] == new.kid != old.kid
    assert _header(new_token)["jwk"] == new.public_jwk()
    assert verify_token(new_token, new.jwks(), now=NOW) == CLAIMS
    with pytest.raises(BadSignature):
        verify_token(new_token, old.jwks(), now=NOW)
    with pytest.raises(BadSignature):
        verify_token(old_token, new.jwks(), now=NOW)


def test_signing_leaves_the_header_and_claims_as_they_were() -> None:
    signer = TokenSigner.generate()
    first = signer.sign(CLAIMS)
    header = _header(first)
    header["jwk"]["x5c"].append("tampered")
    second = signer.sign({**CLAIMS, "iat": NOW + 1})
    assert _header(second)["jwk"] == signer.public_jwk()
    assert verify_token(second, signer.jwks(), now=NOW)["iat"] == NOW + 1
