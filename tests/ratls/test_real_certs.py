"""The five real RA-TLS certificates (tests/data/ratls, provenance in tests/data/SOURCES.md).

Every expected value is from ``shared/specs/ratls.md`` §5.1 (computed there from the same
files): quote header, MRENCLAVE, MRSIGNER, DEBUG, report data, the bindings, and the DICE
claims buffers.  None of the quotes comes with collateral, so the full verifier stops at its
collateral step; their signatures are checked offline up to Intel's pinned root instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from veritee.emulator.root import TestRoot
from veritee.errors import VerificationError
from veritee.ratls import formats
from veritee.ratls.cert import Evidence, all_evidence, extract_evidence, read_certificate
from veritee.ratls.quoter import EmulatedQuoter
from veritee.ratls.verify import RatlsError, RatlsVerifier, check_binding
from veritee.verifier.intel_quote import parse_quote
from veritee.verifier.intel_root import intel_root_ca
from veritee.verifier.intel_signatures import verify_quote_signatures
from veritee.verifier.registry import VerifierSettings

DATA = Path(__file__).resolve().parent.parent / "data" / "ratls"
RATS_SIGNER = "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"
#: Inside every embedded PCK chain's validity (leaves from 2021-03-27, 2022-11-26 and
#: 2023-12-15, each valid 7 years; the intermediate until 2033, the root until 2049).
SIGNATURES_AT = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Vector:
    """One row of spec §5.1's quote table."""

    file: str
    fmt: str  # the format extract_evidence prefers
    qe_svn: int
    pce_svn: int
    mrenclave: str
    mrsigner: str
    debug: bool
    report_data: str  # [0:32]; the rest is zero
    binding: str  # what report_data[0:32] is the SHA-256 of
    valid_at: dt.datetime  # inside the certificate's own validity


VECTORS = (
    Vector(
        "rats-tls-cert-sample.pem",
        "legacy",
        5,
        10,
        "144e81488fc3d59ddbe69b03bd939a3b938d85b6a7c9897e2b09808ade956574",
        RATS_SIGNER,
        False,
        "8e5b3b07972faea047621a80219b8cd17e0133ea54a1af3a5983429d4eabcae0",
        "pkcs1",
        dt.datetime(2024, 6, 1, tzinfo=dt.UTC),
    ),
    Vector(
        "rats-tls-cert-openssl-sample.pem",
        "legacy",
        6,
        11,
        "d74f2eb87fa3c64c40d16e35a6f8d3259e3dd931a0bcce0637e33ada67df0b52",
        RATS_SIGNER,
        False,
        "f732b931b231d5f39a4cebf5547f8be5839afc7120965e66bdfee992934693df",
        "pkcs1",
        dt.datetime(2024, 6, 1, tzinfo=dt.UTC),
    ),
    Vector(
        "ccc-interop-rats-tls-cert.pem",
        "dice",
        9,
        13,
        "38e1b40b8c68186f359c97ecb6a89965d9d8638f2df06fbe18e84d79a266c041",
        RATS_SIGNER,
        True,
        "3ef61b935603341747b96c602397da1c4761afe4eeed2cdc08cbf5f4ff61c533",
        "claims",
        dt.datetime(2023, 6, 1, tzinfo=dt.UTC),
    ),
    Vector(
        "ccc-interop-gramine-cert.pem",
        "dice",
        9,
        13,
        "0866e7ca11b9f4efe4bf39b2607f4e1299f111920d96d95719080f01b62b7585",
        "adc53501f21ced9b998e37a7a18e061c63e00315045fa57a49c18ef0a30d02ca",
        True,
        "d8673446fe0f6842d4af0d182c8751d7e967039116deff5f85a43b2ca90c2831",
        "claims",
        dt.datetime(2024, 6, 1, tzinfo=dt.UTC),
    ),
    Vector(
        "ccc-interop-intel-sgxsdk-cert.pem",
        "dice",
        10,
        15,
        "09e218a4be9dadbf7cdc82c45497d6d4f676d3b75445fc37a376f0b65b47de6a",
        "e0c86c51e05ad8592673db348155bddf4bcad6131a5205ce4265c0d795803ba2",
        True,
        "e551b081d5079ad7565b5f20a45f276c2f5a6152c1802c0688e15a02e87a74c9",
        "claims",
        dt.datetime(2024, 6, 1, tzinfo=dt.UTC),
    ),
)
IDS = [v.file.removesuffix(".pem") for v in VECTORS]
#: Spec §5.1, "DICE claims buffers" (exactly the bstr element 1 of the evidence array).
CLAIMS_BUFFERS = {
    "ccc-interop-rats-tls-cert.pem": "a36b7075626b65792d6861736858248201582072c0b70c2092741a4cf"
    "da0c2465487faf132998617b0aad53118aa5d6e180006656b65795f304876616c75655f3000656b65795f3148"
    "76616c75655f3100",
    "ccc-interop-gramine-cert.pem": "a16b7075626b65792d686173685824820158205a5a5b2d177433048e9d"
    "62409d1acc4ec526c06e294d09e69a36cff9369e4851",
    "ccc-interop-intel-sgxsdk-cert.pem": "a16b7075626b65792d68617368582482015820f306ed602985371"
    "e3b485102db1fcdd4f4738329ce58b2f8d1c5d2cc79752026",
}
#: Spec §5.1: the Gramine legacy quote (0.6.9.42...) is bound to SHA-256(SPKI DER).
GRAMINE_LEGACY_REPORT_DATA = "5a5a5b2d177433048e9d62409d1acc4ec526c06e294d09e69a36cff9369e4851"


def _pem(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _evidence(vector: Vector) -> Evidence:
    evidence = extract_evidence(_pem(vector.file))
    assert evidence is not None
    return evidence


# ------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_a_flipped_quote_byte_fails_the_signature_check(vector: Vector) -> None:
    quote = bytearray(_evidence(vector).raw)
    quote[48 + 64] ^= 0x01  # MRENCLAVE[0]
    with pytest.raises(VerificationError) as info:
        verify_quote_signatures(bytes(quote), [intel_root_ca()], SIGNATURES_AT)
    assert info.value.step == "quote_signature"


def test_a_flipped_qe_report_byte_fails_at_qe_report_signature() -> None:
    raw = bytearray(_evidence(VECTORS[2]).raw)
    quote = parse_quote(bytes(raw))
    raw[quote.sig_data_offset + 128] ^= 0x01  # the QE report's CPUSVN[0]
    with pytest.raises(VerificationError) as info:
        verify_quote_signatures(bytes(raw), [intel_root_ca()], SIGNATURES_AT)
    assert info.value.step == "qe_report_signature"


def test_a_changed_attestation_key_fails_at_qe_report_data() -> None:
    raw = bytearray(_evidence(VECTORS[2]).raw)
    quote = parse_quote(bytes(raw))
    raw[quote.sig_data_offset + 64] ^= 0x01  # the attestation key's first byte
    with pytest.raises(VerificationError) as info:
        verify_quote_signatures(bytes(raw), [intel_root_ca()], SIGNATURES_AT)
    assert info.value.step == "qe_report_data"


def test_another_root_fails_at_root_ca(test_root: TestRoot) -> None:
    test_root_der = test_root.intel.root_der
    with pytest.raises(VerificationError) as info:
        verify_quote_signatures(_evidence(VECTORS[2]).raw, [test_root_der], SIGNATURES_AT)
    assert info.value.step == "root_ca"


def test_outside_the_pck_validity_fails_at_pck_chain() -> None:
    # the rats-tls sample's PCK leaf is valid 2021-03-27 .. 2028-03-27
    with pytest.raises(VerificationError) as info:
        verify_quote_signatures(
            _evidence(VECTORS[0]).raw, [intel_root_ca()], dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        )
    assert info.value.step == "pck_chain"


def test_no_root_fails_at_root_ca() -> None:
    with pytest.raises(VerificationError) as info:
        verify_quote_signatures(_evidence(VECTORS[2]).raw, [], SIGNATURES_AT)
    assert info.value.step == "root_ca"


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_full_verification_stops_at_collateral(vector: Vector) -> None:
    """No collateral travels with these certificates: a clear error, at ``evidence``."""
    verifier = RatlsVerifier(VerifierSettings(), at=vector.valid_at, allow_debug=True)
    with pytest.raises(RatlsError) as info:
        verifier.verify_certificate(read_certificate(_pem(vector.file)).der)
    assert info.value.step == "evidence"
    assert "collateral" in info.value.detail


def test_the_rats_tls_dice_cert_expired_on_2024_02_22() -> None:
    # spec §5.1: validity 2023-02-22 16:10:22Z .. 2024-02-22 17:10:22Z
    der = read_certificate(_pem("ccc-interop-rats-tls-cert.pem")).der
    verifier = RatlsVerifier(VerifierSettings(), at=dt.datetime(2024, 2, 23, tzinfo=dt.UTC))
    with pytest.raises(RatlsError) as info:
        verifier.verify_certificate(der)
    assert info.value.step == "certificate"
    assert "2024-02-22T17:10:22Z" in info.value.detail


@pytest.mark.parametrize("name", list(CLAIMS_BUFFERS))
def test_a_flipped_claims_byte_fails_at_binding(name: str) -> None:
    peer = read_certificate(_pem(name))
    evidence = extract_evidence(peer)
    assert evidence is not None
    assert evidence.claims_buffer is not None
    buffer = bytearray(evidence.claims_buffer)
    buffer[-1] ^= 0x01  # the last byte of the pubkey-hash digest (or of a custom value)
    key_hash, claims = formats.decode_claims(bytes(buffer))
    forged = Evidence(
        "dice", "sgx", evidence.oid, evidence.raw, evidence.tag, bytes(buffer), key_hash, claims
    )
    with pytest.raises(RatlsError) as info:
        check_binding(forged, peer)
    assert info.value.step == "binding"


@pytest.mark.parametrize(
    ("evidence_from", "key_from"),
    [
        ("ccc-interop-gramine-cert.pem", "ccc-interop-intel-sgxsdk-cert.pem"),
        ("rats-tls-cert-sample.pem", "rats-tls-cert-openssl-sample.pem"),
        ("ccc-interop-rats-tls-cert.pem", "ccc-interop-gramine-cert.pem"),
    ],
)
def test_another_certificates_key_fails_at_binding(evidence_from: str, key_from: str) -> None:
    evidence = extract_evidence(_pem(evidence_from))
    assert evidence is not None
    with pytest.raises(RatlsError) as info:
        check_binding(evidence, read_certificate(_pem(key_from)))
    assert info.value.step == "binding"


# ------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_quote_fields_match_the_spec_table(vector: Vector) -> None:
    evidence = _evidence(vector)
    assert (evidence.fmt, evidence.tee) == (vector.fmt, "sgx")
    quote = parse_quote(evidence.raw)
    header = quote.header
    # all: SGX ECDSA quote v3, att_key_type 2, tee_type 0, certification data type 5
    assert (header.version, header.att_key_type, header.tee_type) == (3, 2, 0)
    assert (header.qe_svn, header.pce_svn) == (vector.qe_svn, vector.pce_svn)
    assert quote.auth.cert_data_type == 5
    body = quote.body
    assert body.mr_enclave.hex() == vector.mrenclave  # type: ignore[union-attr]
    assert body.mr_signer.hex() == vector.mrsigner  # type: ignore[union-attr]
    assert (body.isv_prod_id, body.isv_svn) == (0, 0)  # type: ignore[union-attr]
    assert body.debug is vector.debug
    assert quote.report_data == bytes.fromhex(vector.report_data) + bytes(32)


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_binding_holds_as_the_spec_says(vector: Vector) -> None:
    peer = read_certificate(_pem(vector.file))
    evidence = _evidence(vector)
    key = serialization.load_der_public_key(peer.spki)
    if vector.binding == "pkcs1":  # legacy RSA-3072: PKCS#1 RSAPublicKey DER, 398 bytes
        assert isinstance(key, rsa.RSAPublicKey)
        pkcs1 = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        assert len(pkcs1) == 398
        bound = pkcs1
        assert hashlib.sha256(peer.spki).hexdigest() != vector.report_data
    else:  # DICE: SHA-256(claims buffer), and pubkey-hash = [1, SHA-256(SPKI)]
        assert evidence.claims_buffer is not None
        assert evidence.pubkey_hash is not None
        bound = evidence.claims_buffer
        assert evidence.pubkey_hash.alg_id == 1
        assert evidence.pubkey_hash.digest == hashlib.sha256(peer.spki).digest()
    assert hashlib.sha256(bound).hexdigest() == vector.report_data
    assert check_binding(evidence, peer) == bytes.fromhex(vector.report_data) + bytes(32)


def test_gramine_legacy_quote_is_bound_to_the_spki() -> None:
    peer = read_certificate(_pem("ccc-interop-gramine-cert.pem"))
    found = {e.fmt: e for e in all_evidence(peer)}
    assert set(found) == {"dice", "gramine"}
    legacy = found["gramine"]
    assert legacy.oid == "0.6.9.42.840.113741.1337.6"
    assert hashlib.sha256(peer.spki).hexdigest() == GRAMINE_LEGACY_REPORT_DATA
    assert check_binding(legacy, peer) == bytes.fromhex(GRAMINE_LEGACY_REPORT_DATA) + bytes(32)
    # two different quotes (spec §4.1): same enclave, different report data
    assert legacy.raw != found["dice"].raw


def test_intel_sdk_carries_the_same_quote_twice() -> None:
    found = {e.fmt: e for e in all_evidence(_pem("ccc-interop-intel-sgxsdk-cert.pem"))}
    assert set(found) == {"dice", "sgxsdk"}
    assert found["sgxsdk"].raw == found["dice"].raw  # spec §4.1 / §5.1


@pytest.mark.parametrize("name", list(CLAIMS_BUFFERS))
def test_dice_claims_and_reencoding_are_byte_exact(name: str) -> None:
    peer = read_certificate(_pem(name))
    value = peer.extension(formats.OID_DICE_EVIDENCE)
    assert value is not None
    dice = formats.decode_evidence(value)
    assert dice.tag == formats.TAG_INTEL_QUOTE
    assert dice.claims_buffer.hex() == CLAIMS_BUFFERS[name]
    assert formats.encode_tagged(dice.tag, dice.evidence, dice.claims_buffer) == value
    assert formats.encode_evidence("sgx", dice.evidence, dice.claims_buffer) == value
    key_hash, claims = formats.decode_claims(dice.claims_buffer)
    custom = {k: v for k, v in claims.items() if k != formats.PUBKEY_HASH}
    assert formats.encode_claims(key_hash, custom) == dice.claims_buffer


def test_rats_tls_custom_claims_keep_their_nul() -> None:
    evidence = extract_evidence(_pem("ccc-interop-rats-tls-cert.pem"))
    assert evidence is not None
    assert evidence.claims is not None
    # spec §1.4: the sample server's claims, values including the trailing NUL
    assert list(evidence.claims) == ["pubkey-hash", "key_0", "key_1"]
    assert evidence.claims["key_0"] == b"value_0\x00"
    assert evidence.claims["key_1"] == b"value_1\x00"


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_quote_signatures_verify_to_intels_root(vector: Vector) -> None:
    summary = verify_quote_signatures(_evidence(vector).raw, [intel_root_ca()], SIGNATURES_AT)
    # veritee.verifier.intel_root pins Intel's root by this fingerprint
    assert summary["signatures"]["root_ca_sha256"] == (
        "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
    )
    assert summary["body"]["mr_enclave"] == vector.mrenclave
    assert summary["debug"] is vector.debug


def test_quote_signatures_of_an_emulated_quote_verify_to_the_test_root(
    test_root: TestRoot,
) -> None:
    quote = EmulatedQuoter(test_root.directory, "tdx").quote(b"\x01" * 64)
    root = test_root.intel.root_der
    summary = verify_quote_signatures(quote, [intel_root_ca(), root], dt.datetime.now(dt.UTC))
    assert summary["report_data"] == "01" * 64
    assert summary["signatures"]["root_ca_sha256"] == hashlib.sha256(root).hexdigest()


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_certificate_profiles_match_the_spec(vector: Vector) -> None:
    peer = read_certificate(_pem(vector.file))
    assert peer.self_issued
    assert all(not critical for _oid, critical, _value in peer.extensions)
    assert formats.OID_DICE_ENDORSEMENTS.dotted_string not in {o for o, _c, _v in peer.extensions}
