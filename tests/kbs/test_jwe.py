"""The resource response JWE: Trustee's flattened layout, round trips, refused keys."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
from joserfc.jwk import ECKey, RSAKey

from veritee.kbs.errors import JweError
from veritee.kbs.jwe import decrypt, encrypt_for

SECRET = b"a resource: \x00\x01\xff and some text"


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ec_pubkey(key: ECKey) -> dict[str, Any]:
    public = key.as_dict(private=False)
    # Exactly what the guest sends (kbs-types TeePubKey).
    return {
        "kty": "EC",
        "crv": public["crv"],
        "alg": "ECDH-ES+A256KW",
        "x": public["x"],
        "y": public["y"],
    }


def rsa_pubkey(key: RSAKey) -> dict[str, Any]:
    public = key.as_dict(private=False)
    return {"kty": "RSA", "alg": "RSA-OAEP-256", "n": public["n"], "e": public["e"]}


def header(response: dict[str, str]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(b64d(response["protected"]))
    return value


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    "pubkey",
    [
        {"kty": "OKP", "crv": "X25519", "alg": "ECDH-ES+A256KW", "x": "AAAA"},
        {"kty": "EC", "crv": "secp256k1", "alg": "ECDH-ES+A256KW", "x": "AA", "y": "AA"},
        {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES", "x": "AA", "y": "AA"},
        {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "AAAA", "y": "BBBB"},  # short
        {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW"},
        {"kty": "RSA", "alg": "RSA1_5", "n": "AQAB", "e": "AQAB"},  # deprecated: refused here
        {"kty": "RSA", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
        {"kty": "AKP", "alg": "ML-KEM-768+A192KW", "pub": "AAAA"},
        {},
    ],
)
def test_unsupported_keys_are_jwe_errors(pubkey: dict[str, Any]) -> None:
    with pytest.raises(JweError) as exc:
        encrypt_for(pubkey, SECRET)
    assert exc.value.status == 401
    assert exc.value.body() == {
        "type": "https://github.com/confidential-containers/kbs/errors/JweError",
        "detail": "JWE failed",
    }


def test_small_rsa_keys_are_refused() -> None:
    numbers = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers()
    )

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    with pytest.raises(JweError):
        encrypt_for(
            {"kty": "RSA", "alg": "RSA-OAEP-256", "n": b64(numbers.n), "e": b64(numbers.e)}, SECRET
        )


def test_a_point_off_the_curve_is_refused() -> None:
    good = ec_pubkey(ECKey.generate_key("P-256"))
    y = bytearray(b64d(good["y"]))
    y[-1] ^= 1
    bad = dict(good, y=base64.urlsafe_b64encode(bytes(y)).decode().rstrip("="))
    with pytest.raises(JweError):
        encrypt_for(bad, SECRET)


def test_decrypt_refuses_tampering_and_the_wrong_key() -> None:
    key = ECKey.generate_key("P-256")
    response = encrypt_for(ec_pubkey(key), SECRET)
    with pytest.raises(JweError):
        decrypt(response, ECKey.generate_key("P-256"))
    tag = bytearray(b64d(response["tag"]))
    tag[0] ^= 1
    with pytest.raises(JweError):
        decrypt(dict(response, tag=base64.urlsafe_b64encode(bytes(tag)).decode().rstrip("=")), key)
    with pytest.raises(JweError):
        decrypt({k: v for k, v in response.items() if k != "iv"}, key)


# --------------------------------------------------------------------------- layout


def test_field_names_and_encodings_are_trustees() -> None:
    key = ECKey.generate_key("P-256")
    response = encrypt_for(ec_pubkey(key), SECRET)
    assert list(response) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    assert "aad" not in response
    for value in response.values():
        assert "=" not in value
        assert "+" not in value
        assert "/" not in value
    assert len(b64d(response["encrypted_key"])) == 40  # AES-256-KW of a 32-byte CEK
    assert len(b64d(response["iv"])) == 12
    assert len(b64d(response["tag"])) == 16
    assert len(b64d(response["ciphertext"])) == len(SECRET)


@pytest.mark.parametrize("crv", ["P-256", "P-384", "P-521"])
def test_ec_protected_header_is_alg_enc_epk_in_serde_order(crv: str) -> None:
    response = encrypt_for(ec_pubkey(ECKey.generate_key(crv)), SECRET)
    raw = b64d(response["protected"]).decode()
    doc = json.loads(raw)
    assert list(doc) == ["alg", "enc", "epk"]
    assert doc["alg"] == "ECDH-ES+A256KW"
    assert doc["enc"] == "A256GCM"
    assert list(doc["epk"]) == ["crv", "kty", "x", "y"]
    assert doc["epk"]["crv"] == crv
    # The guest re-serialises the parsed header to get the AAD: it must come back identical.
    assert raw == json.dumps(doc, separators=(",", ":"))


def test_rsa_protected_header() -> None:
    response = encrypt_for(rsa_pubkey(RSAKey.generate_key(2048)), SECRET)
    assert b64d(response["protected"]) == b'{"alg":"RSA-OAEP-256","enc":"A256GCM"}'
    assert len(b64d(response["encrypted_key"])) == 256


def test_kbs_types_aad_vector() -> None:
    # kbs-types: {"alg":"fakealg","enc":"fakeenc"} -> this protected/AAD string.
    header_json = json.dumps({"alg": "fakealg", "enc": "fakeenc"}, separators=(",", ":"))
    assert (
        base64.urlsafe_b64encode(header_json.encode()).decode().rstrip("=")
        == "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9"
    )


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("crv", ["P-256", "P-384", "P-521"])
def test_ec_round_trip(crv: str) -> None:
    key = ECKey.generate_key(crv)
    response = encrypt_for(ec_pubkey(key), SECRET)
    assert decrypt(response, key) == SECRET
    assert decrypt(response, key.as_dict(private=True)) == SECRET


@pytest.mark.parametrize("bits", [2048, 3072])
def test_rsa_round_trip(bits: int) -> None:
    key = RSAKey.generate_key(bits)
    response = encrypt_for(rsa_pubkey(key), SECRET)
    assert decrypt(response, key) == SECRET


def test_cryptography_private_keys_decrypt_too() -> None:
    ec_private = ec.generate_private_key(ec.SECP256R1())
    ec_jwk = ECKey.import_key(ec_private.public_key())
    assert decrypt(encrypt_for(ec_pubkey(ec_jwk), SECRET), ec_private) == SECRET
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_jwk = RSAKey.import_key(rsa_private.public_key())
    assert decrypt(encrypt_for(rsa_pubkey(rsa_jwk), SECRET), rsa_private) == SECRET


def test_empty_plaintext_round_trips() -> None:
    key = ECKey.generate_key("P-256")
    assert decrypt(encrypt_for(ec_pubkey(key), b""), key) == b""


def test_aad_member_is_ignored_like_the_guest_does() -> None:
    key = ECKey.generate_key("P-256")
    response = dict(encrypt_for(ec_pubkey(key), SECRET), aad="ignored")
    assert decrypt(response, key) == SECRET


# --------------------------------------------------------------------------- the guest's steps


def test_guest_components_unwrap_steps_decrypt_our_ec_jwe() -> None:
    """An independent check against the guest's algorithm (guest-components §6.8), with
    cryptography primitives only: ECDH, Concat KDF, AES-KW, AES-GCM, AAD re-serialised."""
    private = ec.generate_private_key(ec.SECP256R1())
    response = encrypt_for(ec_pubkey(ECKey.import_key(private.public_key())), SECRET)
    parsed = json.loads(b64d(response["protected"]))
    epk = parsed["epk"]
    ephemeral = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64d(epk["x"]), "big"), int.from_bytes(b64d(epk["y"]), "big"), ec.SECP256R1()
    ).public_key()
    z = private.exchange(ec.ECDH(), ephemeral)
    alg = b"ECDH-ES+A256KW"
    otherinfo = len(alg).to_bytes(4, "big") + alg + b"\0" * 8 + (256).to_bytes(4, "big")
    kek = ConcatKDFHash(algorithm=hashes.SHA256(), length=32, otherinfo=otherinfo).derive(z)
    cek = aes_key_unwrap(kek, b64d(response["encrypted_key"]))
    aad = base64.urlsafe_b64encode(json.dumps(parsed, separators=(",", ":")).encode()).rstrip(b"=")
    plaintext = AESGCM(cek).decrypt(
        b64d(response["iv"]), b64d(response["ciphertext"]) + b64d(response["tag"]), aad
    )
    assert plaintext == SECRET


def test_guest_components_oaep_steps_decrypt_our_rsa_jwe() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = encrypt_for(rsa_pubkey(RSAKey.import_key(private.public_key())), SECRET)
    cek = private.decrypt(
        b64d(response["encrypted_key"]),
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    plaintext = AESGCM(cek).decrypt(
        b64d(response["iv"]),
        b64d(response["ciphertext"]) + b64d(response["tag"]),
        response["protected"].encode(),
    )
    assert plaintext == SECRET
