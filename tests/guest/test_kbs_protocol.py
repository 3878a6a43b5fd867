"""The KBS protocol's pure pieces: RCAR messages, runtime data and report data against
Trustee's vectors, the TEE key's JWK and PEM forms, JWE decryption, token claims, and
errors parsed and printed as kbs_protocol prints them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from datadir import TRUSTEE
from joserfc import jwe
from joserfc.jwk import ECKey, RSAKey
from kbs_live import ERRORS, SECRET, SampleProvider, SampleWithDevice, seed_denial

from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_http import KbsRequestError, KbsResourceNotFound
from veritee.guest.kbs_protocol import (
    KbsClientError,
    build_request,
    compose_attestation,
    decrypt_response,
    digest,
    jcs,
    load_tee_key,
    parse_aa_token,
    resource_path,
    rust_debug_error_information,
    rust_debug_str,
    select_hash_algorithm,
    tee_key_pem,
    tee_pubkey_jwk,
    token_is_valid,
)


@pytest.fixture(scope="module")
def rcar() -> dict[str, Any]:
    path = TRUSTEE / "derived" / "rcar-sample-vectors.json"
    if not path.is_file():
        pytest.fail(f"{path} missing")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _vector_public_key(jwk: Mapping[str, str]) -> ec.EllipticCurvePublicKey:
    numbers = ec.EllipticCurvePublicNumbers(
        _b64url_int(jwk["x"]), _b64url_int(jwk["y"]), ec.SECP256R1()
    )
    return numbers.public_key()

# --- messages vs Trustee's vectors -------------------------------------------------------------


def test_request_matches_guest_components_and_kbs_client_field_names(rcar: dict[str, Any]) -> None:
    request = build_request("sample")
    assert request == rcar["single_device"]["request"]
    kbs_client_auth = json.loads((TRUSTEE / "tools" / "kbs-client" / "auth.json").read_text())
    assert list(request) == list(kbs_client_auth)  # version, tee, extra-params
    assert json.dumps(build_request("tdx"), separators=(",", ":")) == (
        '{"version":"0.4.0","tee":"tdx","extra-params":'
        '{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}'
    )


def test_jcs_upstream_unit_vector(rcar: dict[str, Any]) -> None:
    vector = rcar["upstream_unit_vector"]
    assert jcs(vector["input"]).decode() == vector["jcs"]
    assert digest("sha384", jcs(vector["input"])).hex() == vector["sha384_hex"]


def test_tee_pubkey_jwk_of_the_vector_key(rcar: dict[str, Any]) -> None:
    jwk = rcar["single_device"]["primary_runtime_data"]["tee-pubkey"]
    assert tee_pubkey_jwk(_vector_public_key(jwk)) == jwk
    assert list(tee_pubkey_jwk(_vector_public_key(jwk))) == ["kty", "crv", "alg", "x", "y"]


def test_single_device_runtime_data_report_data_and_attestation(rcar: dict[str, Any]) -> None:
    vector = rcar["single_device"]
    jwk = vector["primary_runtime_data"]["tee-pubkey"]
    provider = SampleProvider()
    prepared = compose_attestation(provider, "sample", vector["challenge"]["nonce"], jwk)
    assert jcs(vector["primary_runtime_data"]).decode() == vector["primary_runtime_data_jcs"]
    assert prepared.report_data.hex() == vector["primary_report_data_sha384_hex"]
    assert provider.calls == [("sample", prepared.report_data)]
    assert prepared.device_report_data is None
    message = prepared.message
    assert list(message) == ["init-data", "runtime-data", "tee-evidence"]
    assert message["init-data"] is None  # kbs-types serialises an absent init-data as null
    assert {k: v for k, v in message.items() if k != "init-data"} == vector["attestation"]
    assert list(message["tee-evidence"]) == ["primary_evidence", "additional_evidence"]


def test_attestation_field_names_vs_kbs_client_attest_json() -> None:
    legacy = json.loads((TRUSTEE / "tools" / "kbs-client" / "attest.json").read_text())
    message = compose_attestation(
        SampleProvider(), "sample", "n", tee_pubkey_jwk(ec.generate_private_key(ec.SECP256R1()))
    ).message
    # attest.json is the pre-0.4.0 form: tee-pubkey moved under runtime-data since.
    assert set(legacy) - {"tee-pubkey"} <= set(message)
    assert "tee-pubkey" in message["runtime-data"]
    assert "tee-pubkey" not in message


def test_composite_evidence_with_sampledevice(rcar: dict[str, Any]) -> None:
    single = rcar["single_device"]
    vector = rcar["with_sampledevice_additional_evidence"]
    jwk = single["primary_runtime_data"]["tee-pubkey"]
    nonce = single["challenge"]["nonce"]
    assert jcs({"nonce": nonce, "tee-pubkey": jwk}).decode() == vector["device_runtime_data_jcs"]
    prepared = compose_attestation(SampleWithDevice(), "sample", nonce, jwk)
    assert prepared.device_report_data is not None
    assert prepared.device_report_data.hex() == vector["device_report_data_sha384_hex"]
    assert prepared.report_data.hex() == vector["primary_report_data_sha384_hex"]
    additional = prepared.message["tee-evidence"]["additional_evidence"]
    primary = {"tee-pubkey": jwk, "nonce": nonce, "additional-evidence": additional}
    assert jcs(primary).decode() == vector["primary_runtime_data_jcs"]
    assert {k: v for k, v in prepared.message.items() if k != "init-data"} == vector["attestation"]


def test_emulated_provider_reproduces_the_vectors(rcar: dict[str, Any], test_root: Any) -> None:
    single = rcar["single_device"]
    vector = rcar["with_sampledevice_additional_evidence"]
    jwk = single["primary_runtime_data"]["tee-pubkey"]
    provider = EmulatedEvidenceProvider(test_root.directory, devices=["sampledevice"])
    prepared = compose_attestation(provider, "sample", single["challenge"]["nonce"], jwk)
    assert {k: v for k, v in prepared.message.items() if k != "init-data"} == vector["attestation"]
    plain = EmulatedEvidenceProvider(test_root.directory)
    prepared = compose_attestation(plain, "sample", single["challenge"]["nonce"], jwk)
    assert prepared.message["tee-evidence"] == single["attestation"]["tee-evidence"]


def test_emulated_tdx_evidence_carries_the_padded_report_data(test_root: Any) -> None:
    jwk = tee_pubkey_jwk(ec.generate_private_key(ec.SECP256R1()))
    provider = EmulatedEvidenceProvider(test_root.directory)
    prepared = compose_attestation(provider, "tdx", "bm9uY2U=", jwk)
    evidence = prepared.message["tee-evidence"]["primary_evidence"]
    assert list(evidence) == ["cc_eventlog", "quote"]
    quote = base64.b64decode(evidence["quote"])
    assert prepared.report_data + bytes(16) in quote


def test_emulated_provider_refusals(tmp_path: Path) -> None:
    with pytest.raises(KbsClientError, match="no emulated device"):
        EmulatedEvidenceProvider(tmp_path, devices=["amd-gpu"])
    with pytest.raises(KbsClientError, match="no 'az-snp-vtpm' TEE"):
        EmulatedEvidenceProvider(tmp_path).evidence("az-snp-vtpm", b"x")


def test_hash_algorithm_selection() -> None:
    assert select_hash_algorithm("", "tdx") == "sha384"
    assert select_hash_algorithm({}, "snp") == "sha384"
    assert select_hash_algorithm({"selected-hash-algorithm": "SHA512"}, "se") == "sha512"
    assert select_hash_algorithm("", "se") == "sha512"
    with pytest.raises(KbsClientError, match="not a string"):
        select_hash_algorithm({"selected-hash-algorithm": 5}, "tdx")
    with pytest.raises(KbsClientError, match="unknown hash"):
        select_hash_algorithm({"selected-hash-algorithm": "md5"}, "tdx")
    prepared = compose_attestation(
        SampleProvider(), "sample", "n", {"kty": "EC"}, hash_algorithm="sha512"
    )
    assert len(prepared.report_data) == 64


def test_rsa_jwk_and_key_files() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = tee_pubkey_jwk(key)
    assert list(jwk) == ["kty", "alg", "n", "e"]
    assert jwk["alg"] == "RSA-OAEP-256"
    assert jwk["e"] == "AQAB"
    assert _b64url_int(jwk["n"]) == key.public_key().public_numbers().n
    assert tee_pubkey_jwk(load_tee_key(tee_key_pem(key))) == jwk
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert tee_pubkey_jwk(load_tee_key(pkcs1)) == jwk
    with pytest.raises(KbsClientError, match="P-256 or P-521"):
        load_tee_key(tee_key_pem(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(KbsClientError, match="not an unencrypted PEM"):
        load_tee_key(b"junk")


@pytest.mark.parametrize(
    ("key", "label"),
    [
        (ec.generate_private_key(ec.SECP256R1()), b"-----BEGIN PRIVATE KEY-----"),
        (ec.generate_private_key(ec.SECP521R1()), b"-----BEGIN PRIVATE KEY-----"),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            b"-----BEGIN RSA PRIVATE KEY-----",
        ),
    ],
    ids=["P-256", "P-521", "RSA"],
)
def test_tee_key_pem_is_what_the_attestation_agent_hands_out(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, label: bytes
) -> None:
    # /aa/token?token_type=kbs: PKCS#8 for EC keys, PKCS#1 for RSA keys.
    pem = tee_key_pem(key)
    assert pem.startswith(label)
    der = serialization.load_pem_private_key(pem, password=None).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    expected = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert der == expected  # the same key, whichever form
    assert tee_pubkey_jwk(load_tee_key(pem)) == tee_pubkey_jwk(key)


def test_load_tee_key_reads_other_key_files_too() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    sec1 = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert sec1.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert tee_pubkey_jwk(load_tee_key(sec1)) == tee_pubkey_jwk(ec_key)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs8 = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert tee_pubkey_jwk(load_tee_key(pkcs8)) == tee_pubkey_jwk(rsa_key)
    encrypted = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(KbsClientError, match="not an unencrypted PEM"):
        load_tee_key(encrypted)


def test_attestation_agent_token_answers() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = json.dumps({"token": "a.b.c", "tee_keypair": tee_key_pem(key).decode()}).encode()
    token, loaded = parse_aa_token(body)
    assert token == "a.b.c"
    assert tee_pubkey_jwk(loaded) == tee_pubkey_jwk(key)
    for bad in (b"nope", b"[]", b'{"token": "a.b.c"}', b'{"token": 1, "tee_keypair": "x"}'):
        with pytest.raises(KbsClientError, match="kbs token answer"):
            parse_aa_token(bad)
    with pytest.raises(KbsClientError, match="not an unencrypted PEM"):
        parse_aa_token(b'{"token": "a.b.c", "tee_keypair": "junk"}')


def test_resource_paths() -> None:
    assert resource_path("/default/key/1") == "default/key/1"
    for bad in ("a/b", "a/b/c/d", "a//c", "a/.b/c", "a/b/c d"):
        with pytest.raises(KbsClientError, match="not <repository>/<type>/<tag>"):
            resource_path(bad)


def _jwt(claims: dict[str, Any]) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256'})}.{part(claims)}.c2ln"


def test_token_validity_reads_exp_and_nbf_only() -> None:
    now = time.time()
    assert token_is_valid(_jwt({"exp": now + 60}))
    assert not token_is_valid(_jwt({"exp": now - 60}))
    assert not token_is_valid(_jwt({"exp": now + 60, "nbf": now + 30}))
    assert not token_is_valid("not-a-jwt")
    assert token_is_valid(_jwt({"sub": "no exp: valid until refused"}))


def test_token_validity_margin() -> None:
    token = _jwt({"exp": 1000})
    assert token_is_valid(token, now=989, margin_s=10)
    assert not token_is_valid(token, now=991, margin_s=10)
    assert token_is_valid(token, now=1000)
    assert not token_is_valid(token, now=1001)


# --- JWE -----------------------------------------------------------------------------------------


def trustee_jwe(jwk: Mapping[str, Any], plaintext: bytes) -> dict[str, str]:
    """A kbs-types Response as Trustee builds it for ``tee-pubkey`` (flattened, no aad)."""
    if jwk["kty"] == "EC":
        key: ECKey | RSAKey = ECKey.import_key({k: v for k, v in jwk.items() if k != "alg"})
    else:
        key = RSAKey.import_key({k: v for k, v in jwk.items() if k != "alg"})
    algorithms = [jwk["alg"], "A256GCM"]
    compact = jwe.encrypt_compact(
        {"alg": jwk["alg"], "enc": "A256GCM"}, plaintext, key, algorithms=algorithms
    )
    names = ("protected", "encrypted_key", "iv", "ciphertext", "tag")
    return dict(zip(names, compact.split("."), strict=True))


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP521R1()], ids=["P-256", "P-521"])
def test_jwe_decrypts_with_ec_keys(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    body = trustee_jwe(tee_pubkey_jwk(key), SECRET)
    header = json.loads(base64.urlsafe_b64decode(body["protected"] + "=="))
    assert header["alg"] == "ECDH-ES+A256KW"
    assert header["epk"]["crv"] == curve.name.replace("secp", "P-").replace("r1", "")
    assert decrypt_response(body, key) == SECRET
    assert decrypt_response({**body, "aad": "ignored"}, key) == SECRET


def test_jwe_decrypts_with_rsa_oaep_256() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = trustee_jwe(tee_pubkey_jwk(key), SECRET)
    assert decrypt_response(body, key) == SECRET


def test_jwe_decrypts_deprecated_rsa1_5_without_warnings() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**tee_pubkey_jwk(key), "alg": "RSA1_5"}
    with pytest.warns(
        Warning, match="RSA1_5"
    ):  # joserfc warns when *encrypting* to RSA1_5 (the server side)
        body = trustee_jwe(jwk, SECRET)
    assert decrypt_response(body, key) == SECRET


def test_jwe_failures_name_no_key_material() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    body = trustee_jwe(tee_pubkey_jwk(key), SECRET)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(KbsClientError, match="does not decrypt") as info:
        decrypt_response(body, other)
    assert body["encrypted_key"] not in str(info.value)
    tampered = {**body, "ciphertext": body["ciphertext"][::-1]}
    with pytest.raises(KbsClientError, match="does not decrypt"):
        decrypt_response(tampered, key)
    with pytest.raises(KbsClientError, match="not a JWE"):
        decrypt_response({"protected": body["protected"]}, key)


# --- errors --------------------------------------------------------------------------------------


def test_kbs_request_error_parses_trustee_bodies_and_hides_tokens() -> None:
    request = httpx.Request(
        "GET",
        "http://kbs/kbs/v0/resource/a/b/c",
        headers={"Authorization": "Bearer SECRET-TOKEN"},
    )
    body = {"type": ERRORS + "PolicyDeny", "detail": "Access denied by policy"}
    error = KbsRequestError.from_response(httpx.Response(401, json=body, request=request))
    assert (error.status, error.type, error.detail, error.name) == (
        401,
        ERRORS + "PolicyDeny",
        "Access denied by policy",
        "PolicyDeny",
    )
    assert "SECRET-TOKEN" not in str(error)
    assert str(error) == "GET /kbs/v0/resource/a/b/c: HTTP 401: PolicyDeny: Access denied by policy"
    bare = KbsRequestError.from_response(httpx.Response(405, content=b"", request=request))
    assert (bare.status, bare.type, bare.name, bare.detail) == (405, "", "", "Method Not Allowed")
    urn = KbsRequestError.from_response(
        httpx.Response(413, json={"type": "urn:veritee:errors:PayloadTooLarge"}, request=request)
    )
    assert (urn.name, urn.detail) == ("PayloadTooLarge", "")
    assert not isinstance(urn, KbsResourceNotFound)


def test_a_missing_resource_is_its_own_error() -> None:
    body = {"type": ERRORS + "ResourceNotFound", "detail": "no such resource"}
    get = httpx.Request("GET", "http://kbs/kbs/v0/resource/a/b/c")
    missing = KbsRequestError.from_response(httpx.Response(404, json=body, request=get))
    assert isinstance(missing, KbsResourceNotFound)
    assert (missing.status, missing.name, missing.detail) == (
        404,
        "ResourceNotFound",
        "no such resource",
    )
    other = httpx.Request("GET", "http://kbs/kbs/v0/reference-value/x")
    assert type(KbsRequestError.from_response(httpx.Response(404, request=other))) is (
        KbsRequestError
    )


def test_error_information_is_printed_like_kbs_protocol() -> None:
    error = KbsRequestError(
        "GET", "/kbs/v0/resource/a/b/c", 401, ERRORS + "PolicyDeny", "Access denied by policy"
    )
    seed = seed_denial()
    assert rust_debug_error_information(error) in seed
    assert rust_debug_error_information(error, pretty=False) == (
        f'ErrorInformation {{ error_type: "{ERRORS}PolicyDeny", '
        'detail: "Access denied by policy" }'
    )
    assert rust_debug_str('a"b\\c\n\x01') == '"a\\"b\\\\c\\n\\u{1}"'


