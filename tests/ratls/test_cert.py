"""Making RA-TLS identities (profile of spec §1.5), reading certificates, and the quoters.

Profile values are ``shared/specs/ratls.md`` §1.5 (rats-tls's gen_cert.c): subject
``O=Inclavare Containers, CN=RATS-TLS``, serial 1, now − 1 h … now + 365 d, basicConstraints
CA:FALSE, SKI, AKI keyid, then the evidence extension(s), all non-critical, P-256 and
ecdsa-with-SHA256.  Bindings are §1.3 (legacy) and §1.4 (DICE).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

import veritee.ratls
from veritee.emulator.machine import EmulatedMachine
from veritee.emulator.root import TestRoot
from veritee.errors import InputError, ParseError
from veritee.guest.attesters.sgx import SgxAttester
from veritee.guest.attesters.snp import SnpAttester
from veritee.guest.attesters.tdx import TdxAttester
from veritee.ratls import formats
from veritee.ratls.cert import (
    extract_evidence,
    make_identity,
    plain_identity,
    read_certificate,
    spki_der,
)
from veritee.ratls.quoter import AttesterQuoter, EmulatedQuoter
from veritee.ratls.verify import RatlsVerifier
from veritee.verifier.intel_quote import parse_quote
from veritee.verifier.registry import VerifierSettings
from veritee.verifier.snp_report import parse_report

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
#: version 3, att_key_type 2, tee_type 0: what rats-tls calls an SGX ECDSA quote (spec §1.4)
SGX_V3_HEADER = struct.pack("<HHI", 3, 2, 0)


class _FixedQuoter:
    """Returns a canned quote and remembers the report data it was asked for."""

    def __init__(self, tee: str = "sgx") -> None:
        self.tee = tee
        self.asked: list[bytes] = []

    def quote(self, report_data: bytes) -> bytes:
        self.asked.append(report_data)
        return SGX_V3_HEADER + report_data


# ------------------------------------------------------------------------- refusals


def test_unknown_format_is_an_input_error() -> None:
    with pytest.raises(InputError, match="format"):
        make_identity(_FixedQuoter(), fmt="x509")  # type: ignore[arg-type]


def test_legacy_has_no_claims_or_endorsements() -> None:
    with pytest.raises(InputError, match="legacy"):
        make_identity(_FixedQuoter(), fmt="legacy", claims={"k": b"v"})
    with pytest.raises(InputError, match="legacy"):
        make_identity(_FixedQuoter(), fmt="legacy", endorsements=b"\x00")


def test_unsupported_tee_is_an_input_error() -> None:
    with pytest.raises(InputError, match="sample"):
        make_identity(_FixedQuoter("sample"))


def test_pubkey_hash_cannot_be_a_custom_claim() -> None:
    with pytest.raises(InputError, match="pubkey-hash"):
        make_identity(_FixedQuoter(), claims={"pubkey-hash": b"x"})


@pytest.mark.parametrize("data", [b"", b"not a certificate", b"\x30\x03\x02\x01\x00"])
def test_read_certificate_refuses_garbage(data: bytes) -> None:
    with pytest.raises(ParseError):
        read_certificate(data)


def test_emulated_quoter_refusals(test_root: TestRoot, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="sample"):
        EmulatedQuoter(test_root.directory, "sample")
    with pytest.raises(InputError):
        EmulatedQuoter(tmp_path, "sgx")  # not a test root
    with pytest.raises(InputError, match="at most 64"):
        EmulatedQuoter(test_root.directory, "sgx").quote(bytes(65))
    with pytest.raises(InputError, match="no_such_field"):
        EmulatedQuoter(test_root.directory, "sgx", {"no_such_field": b"x"}).quote(b"")


def test_attester_quoter_refuses_other_tees() -> None:
    class Sample:
        tee = "sample"

    with pytest.raises(InputError, match="sample"):
        AttesterQuoter(Sample())  # type: ignore[arg-type]


def test_plain_identity_has_no_evidence() -> None:
    assert extract_evidence(plain_identity().certificate) is None


# ------------------------------------------------------------------------- accepted


def test_public_surface_is_pinned() -> None:
    assert sorted(veritee.ratls.__all__) == [
        "AttesterQuoter",
        "EmulatedQuoter",
        "Quoter",
        "RatlsError",
        "RatlsIdentity",
        "RatlsPeer",
        "RatlsPolicy",
        "RatlsVerifier",
        "extract_evidence",
        "load_policy",
        "make_identity",
        "plain_identity",
    ]


def test_dice_identity_follows_the_rats_tls_profile() -> None:
    quoter = _FixedQuoter()
    identity = make_identity(quoter, claims={"key_0": b"value_0\x00"}, now=NOW)
    cert = identity.certificate
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Inclavare Containers"),
            x509.NameAttribute(NameOID.COMMON_NAME, "RATS-TLS"),
        ]
    )
    assert cert.subject == cert.issuer == name
    assert cert.version == x509.Version.v3
    assert cert.serial_number == 1
    assert cert.not_valid_before_utc == NOW - dt.timedelta(hours=1)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    cert.verify_directly_issued_by(cert)
    oids = [ext.oid for ext in cert.extensions]
    assert oids == [
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        formats.OID_DICE_EVIDENCE,
    ]
    assert not any(ext.critical for ext in cert.extensions)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    # the evidence: SHA-256(claims buffer) zero-padded to 64 was quoted
    evidence = extract_evidence(cert)
    assert evidence is not None
    assert evidence.claims_buffer is not None
    assert (evidence.fmt, evidence.tag) == ("dice", 60000)
    assert quoter.asked == [hashlib.sha256(evidence.claims_buffer).digest() + bytes(32)]
    assert evidence.raw == SGX_V3_HEADER + quoter.asked[0]
    assert evidence.pubkey_hash == formats.pubkey_hash(spki_der(key))
    assert evidence.claims == {
        "pubkey-hash": evidence.claims["pubkey-hash"],  # type: ignore[index]
        "key_0": b"value_0\x00",
    }


def test_key_pem_is_unencrypted_pkcs8_of_the_certificate_key() -> None:
    identity = make_identity(_FixedQuoter())
    assert identity.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(identity.key_pem, password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert spki_der(loaded.public_key()) == spki_der(identity.certificate.public_key())  # type: ignore[arg-type]
    assert x509.load_pem_x509_certificate(identity.cert_pem) == identity.certificate
    assert identity.cert_der == identity.certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("tee", "oid"),
    [
        ("sgx", "1.2.840.113741.1337.6"),
        ("tdx", "1.2.840.113741.1337.8"),
        ("snp", "1.2.840.113741.1337.20"),
    ],
)
def test_legacy_identity_binds_the_spki(tee: str, oid: str) -> None:
    quoter = _FixedQuoter(tee)
    identity = make_identity(quoter, fmt="legacy")
    spki = spki_der(identity.key.public_key())
    assert quoter.asked == [hashlib.sha256(spki).digest() + bytes(32)]
    ext = identity.certificate.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
    assert not ext.critical
    evidence = extract_evidence(identity.certificate)
    assert evidence is not None
    assert (evidence.fmt, evidence.tee, evidence.oid) == ("legacy", tee, oid)


def test_endorsements_go_in_their_own_extension() -> None:
    endorsements = formats.Endorsements(3, b"a", b"b", b"c", b"d", b"e", b"f", b"g")
    identity = make_identity(_FixedQuoter(), endorsements=formats.encode_endorsements(endorsements))
    oids = [ext.oid for ext in identity.certificate.extensions]
    assert oids[-2:] == [formats.OID_DICE_EVIDENCE, formats.OID_DICE_ENDORSEMENTS]
    evidence = extract_evidence(identity.cert_der)
    assert evidence is not None
    assert evidence.endorsements == endorsements


def test_snp_dice_evidence_uses_the_rats_tls_tag(test_root: TestRoot) -> None:
    identity = make_identity(EmulatedQuoter(test_root.directory, "snp"))
    evidence = extract_evidence(identity.cert_pem)
    assert evidence is not None
    assert (evidence.tee, evidence.tag) == ("snp", 0x1A7504)
    assert evidence.claims_buffer is not None
    report = parse_report(evidence.raw)
    assert report.report_data == hashlib.sha256(evidence.claims_buffer).digest() + bytes(32)


def test_read_certificate_takes_der_pem_and_objects() -> None:
    identity = plain_identity(now=NOW)
    from_der = read_certificate(identity.cert_der)
    assert read_certificate(identity.cert_pem) == from_der
    assert read_certificate(identity.certificate) == from_der
    assert from_der.self_issued
    assert from_der.spki == spki_der(identity.key.public_key())
    assert (from_der.not_before, from_der.not_after) == (
        NOW - dt.timedelta(hours=1),
        NOW + dt.timedelta(days=365),
    )
    assert (from_der.signature_algo, from_der.hash_algo) == ("ecdsa", "sha256")


def test_emulated_quoter_applies_its_settings(test_root: TestRoot) -> None:
    mrenclave = bytes(range(32))
    quote = EmulatedQuoter(test_root.directory, "sgx", {"mr_enclave": mrenclave}).quote(b"\x01")
    parsed = parse_quote(quote)
    assert parsed.body.mr_enclave == mrenclave  # type: ignore[union-attr]
    assert parsed.report_data == b"\x01" + bytes(63)


@pytest.mark.parametrize("tee", ["sgx", "tdx", "snp"])
def test_attester_quoter_identities_verify(test_root: TestRoot, tee: str) -> None:
    """The guest's own attesters (over an emulated machine) make certificates that verify."""
    machine = EmulatedMachine.launch(test_root, tee)  # type: ignore[arg-type]
    attester = {"sgx": SgxAttester, "tdx": TdxAttester, "snp": SnpAttester}[tee](machine)
    quoter = AttesterQuoter(attester)
    assert quoter.tee == tee
    identity = make_identity(quoter)
    chain = test_root.amd.cert_chain_pem("vcek") if tee == "snp" else None
    settings = VerifierSettings(trust_root=test_root.directory, cert_chain=chain)
    peer = RatlsVerifier(settings).verify_certificate(identity.cert_der)
    assert (peer.tee, peer.fmt, peer.emulated) == (tee, "dice", True)
