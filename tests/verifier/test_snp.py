"""SnpVerifier against the real AMD vectors (SOURCES.md A1–A6), negative cases first.

Every verification runs "as of" 2025-06-01, inside the validity of every
certificate involved (the A4 VLEK is the narrowest: 2024-12-10..2025-12-10).
Test-only chains (forged roots, a synthetic Turin report) are generated here
with ``cryptography``; they carry the same extensions as AMD's certificates.
"""

from __future__ import annotations

import binascii
import datetime as dt
import functools
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from snp_serde import serde_form

from veritee.errors import CollateralError, ParseError, VerificationError
from veritee.pem import load_certificates
from veritee.verifier.base import Verdict, Verifier, VerifyOptions
from veritee.verifier.snp import SnpVerifier, verify_vek_chain
from veritee.verifier.snp_roots import PINNED_FINGERPRINTS, fingerprint, pinned_roots

AT = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
OPTS = VerifyOptions(at=AT)

TRUSTEE_KEYS = [
    "policy_abi_major",
    "policy_abi_minor",
    "policy_smt_allowed",
    "policy_migrate_ma",
    "policy_debug_allowed",
    "policy_single_socket",
    "reported_tcb_bootloader",
    "reported_tcb_tee",
    "reported_tcb_snp",
    "reported_tcb_microcode",
    "platform_tsme_enabled",
    "platform_smt_enabled",
    "measurement",
    "report_data",
    "init_data",
    "chip_id",
]
EXTRA_KEYS = ["vmpl", "report_version", "signing_key", "product", "guest_svn", "host_data"]


# ------------------------------------------------------------------------ vectors


@dataclass(frozen=True)
class Vector:
    evidence: bytes
    cert_chain: bytes | None


def vector(v: Path, name: str) -> Vector:
    if name == "A1":
        return Vector(
            (v / "go-sev-guest/attestation.bin").read_bytes(),
            (v / "go-sev-guest/vcek.testcer").read_bytes(),
        )
    if name == "A2":
        return Vector(
            binascii.unhexlify((v / "virtee-sev/report_milan.hex").read_bytes().strip()),
            (v / "virtee-sev/vcek_milan.der").read_bytes(),
        )
    if name == "A3":
        return Vector(
            (v / "trustee/snp/test-report.bin").read_bytes(),
            (v / "trustee/snp/test-vcek.der").read_bytes(),
        )
    if name == "A4":
        return Vector(
            (v / "trustee/snp/test-vlek-report.bin").read_bytes(),
            (v / "trustee/snp/test-vlek.der").read_bytes(),
        )
    if name == "A5":
        return Vector(
            (v / "trustee/az-snp-vtpm/hcl-report.bin").read_bytes(),
            (v / "trustee/az-snp-vtpm/vcek.pem").read_bytes(),
        )
    assert name == "A6"
    return Vector((v / "trustee/az-snp-vtpm/evidence-genoa.json").read_bytes(), None)


def verify(vec: Vector, options: VerifyOptions = OPTS, **kw: Any) -> Verdict:
    return SnpVerifier(cert_chain=vec.cert_chain, **kw).verify(vec.evidence, options)


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


# ------------------------------------------------------------- test chains (generated)

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
AMD = "1.3.6.1.4.1.3704.1."


def amd_name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(x509.NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(x509.NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(x509.NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, cn),
        ]
    )


@functools.cache
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_cert(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    signer: rsa.RSAPrivateKey,
    extensions: Mapping[str, bytes] = {},
    not_after: dt.datetime = dt.datetime(2045, 1, 1, tzinfo=dt.UTC),
    pss: padding.PSS = PSS,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(1)
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(not_after)
    )
    for oid, value in extensions.items():
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(AMD + oid), value), critical=False
        )
    return builder.sign(signer, hashes.SHA384(), rsa_padding=pss)


def make_root(
    label: str, gen: str, *, ark_name: x509.Name | None = None, ask_name: x509.Name | None = None
) -> tuple[x509.Certificate, x509.Certificate]:
    """A test ARK (self-signed) and ASK (signed by it), RSA-PSS SHA-384 salt 48."""
    ark_key, ask_key = rsa_key(label + "-ark"), rsa_key(label + "-ask")
    ark_name = ark_name or amd_name(f"ARK-{gen}")
    ask_name = ask_name or amd_name(f"SEV-{gen}")
    ark = make_cert(ark_name, ark_name, ark_key.public_key(), ark_key)
    ask = make_cert(ask_name, ark_name, ask_key.public_key(), ark_key)
    return ark, ask


def vcek_extensions(product: str, tcb: Mapping[str, int], hw_id: bytes) -> dict[str, bytes]:
    ext = {"1": core.Integer(1).dump(), "2": core.IA5String(product).dump(), "4": hw_id}
    for oid, field in (
        ("3.1", "bootloader"),
        ("3.2", "tee"),
        ("3.3", "snp"),
        ("3.8", "microcode"),
        ("3.9", "fmc"),
    ):
        if field in tcb:
            ext[oid] = core.Integer(tcb[field]).dump()
    return ext


def sign_report(raw: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    r, s = decode_dss_signature(key.sign(raw[:0x2A0], ec.ECDSA(hashes.SHA384())))
    return raw[:0x2A0] + r.to_bytes(72, "little") + s.to_bytes(72, "little") + raw[0x330:]


@dataclass(frozen=True)
class TurinSetup:
    ark: x509.Certificate
    ask: x509.Certificate
    vcek: x509.Certificate
    report: bytes


TURIN_CHIP = bytes(range(0xA0, 0xA8)) + bytes(56)
TURIN_TCB = {"fmc": 3, "bootloader": 4, "tee": 5, "snp": 6, "microcode": 0x48}


@functools.cache
def turin_setup(wrapped_hwid: bool = False) -> TurinSetup:
    """A v5 Turin report (CPUID 1A/02/01) signed by a test VCEK under a test ARK."""
    ark, ask = make_root("turin", "Turin")
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    hw_id = core.OctetString(TURIN_CHIP[:8]).dump() if wrapped_hwid else TURIN_CHIP[:8]
    vcek = make_cert(
        amd_name("SEV-VCEK"),
        ask.subject,
        vcek_key.public_key(),
        rsa_key("turin-ask"),
        vcek_extensions("Turin", TURIN_TCB, hw_id),
    )
    raw = bytearray(0x4A0)
    struct.pack_into("<IIQ", raw, 0, 5, 7, 0x30000)
    struct.pack_into("<II", raw, 0x30, 0, 1)
    tcb = bytes([3, 4, 5, 6, 0, 0, 0, 0x48])
    for off in (0x38, 0x180, 0x1E0, 0x1F0):
        raw[off : off + 8] = tcb
    raw[0x90:0xC0] = b"\x5a" * 48
    raw[0x188:0x18B] = b"\x1a\x02\x01"
    raw[0x1A0:0x1E0] = TURIN_CHIP
    return TurinSetup(ark, ask, vcek, sign_report(bytes(raw), vcek_key))


class FixedVekSource:
    """A VekSource that serves one certificate and records what it was asked for."""

    def __init__(self, data: bytes, chain: bytes = b"") -> None:
        self.data = data
        self.chain = chain
        self.calls: list[tuple[str, bytes, dict[str, int]]] = []

    def vek_for(self, product: str, chip_id: bytes, reported_tcb: Mapping[str, int]) -> bytes:
        self.calls.append((product, chip_id, dict(reported_tcb)))
        return self.data

    def cert_chain(self, product: str, signer: str) -> bytes:
        return self.chain


class FailingVekSource:
    def vek_for(self, product: str, chip_id: bytes, reported_tcb: Mapping[str, int]) -> bytes:
        raise CollateralError("vcek", f"KDS has no VCEK for {product}")

    def cert_chain(self, product: str, signer: str) -> bytes:
        raise CollateralError("cert_chain", f"KDS has no chain for {product}")


# ====================================================================== negative tests

# Offsets spread over the signed area.  Each is a plain data field, so the chain and the
# bindings still pass and only the signature can catch the change.
SIGNATURE_ONLY_OFFSETS = [
    0x04,
    0x10,
    0x20,
    0x50,
    0x8F,
    0xC0,
    0xE0,
    0x110,
    0x140,
    0x160,
    0x1E8,
    0x29F,
]


@pytest.mark.parametrize(
    ("name", "offset", "step"),
    [
        ("A2", 0x90, "report_signature"),  # MEASUREMENT
        ("A2", 0xBF, "report_signature"),  # MEASUREMENT, last byte
        ("A2", 0x180, "vek_tcb"),  # REPORTED_TCB bootloader
        ("A2", 0x187, "vek_tcb"),  # REPORTED_TCB microcode
        ("A2", 0x1A0, "chip_id"),  # CHIP_ID
        ("A2", 0x1DF, "chip_id"),  # CHIP_ID, last byte
        ("A2", 0x2A0, "report_signature"),  # signature R
        ("A2", 0x2E8, "report_signature"),  # signature S
        ("A2", 0x34, "signing_key"),  # SIGNATURE_ALGO
        ("A2", 0x48, "signing_key"),  # key info: flip into "VLEK"
        ("A4", 0x90, "report_signature"),
        ("A4", 0x182, "report_signature"),  # Milan reserved TCB bytes: unbound, signed
        ("A4", 0x185, "report_signature"),
        ("A4", 0x186, "vek_tcb"),  # REPORTED_TCB snp
        ("A4", 0x180, "vek_tcb"),
        ("A6", 0x20 + 0x90, "report_signature"),  # inside the Azure HCL wrapper
        ("A5", 0x20 + 0x1A0, "chip_id"),
    ]
    + [("A3", off, "report_signature") for off in SIGNATURE_ONLY_OFFSETS],
)
def test_tamper_matrix(vectors: Path, name: str, offset: int, step: str) -> None:
    vec = vector(vectors, name)
    if name == "A6":
        doc = json.loads(vec.evidence)
        doc["report"][offset] ^= 0x01
        tampered = Vector(json.dumps(doc).encode(), None)
    else:
        mask = 0x04 if offset == 0x48 else 0x01
        tampered = Vector(flip(vec.evidence, offset, mask), vec.cert_chain)
    verdict = verify(tampered)
    assert (verdict.verified, verdict.step) == (False, step), verdict.error


@pytest.mark.parametrize("offset", [*list(range(0, 672, 29)), 392, 393, 394])
@pytest.mark.parametrize("name", ["A1", "A4"])
def test_no_flip_below_0x2a0_verifies(vectors: Path, name: str, offset: int) -> None:
    vec = vector(vectors, name)
    try:
        verdict = verify(
            Vector(flip(vec.evidence, offset, 0x80), vec.cert_chain),
            VerifyOptions(at=AT, allow_debug=True),
        )
    except ParseError:
        return  # e.g. VERSION or CPUID no longer describes a known layout
    assert not verdict.verified
    assert verdict.step in {"signing_key", "chip_id", "vek_tcb", "report_signature", "vek"}


def test_a1_report_with_a2_vcek_fails_chip_id(vectors: Path) -> None:
    a1, a2 = vector(vectors, "A1"), vector(vectors, "A2")
    verdict = verify(Vector(a1.evidence, a2.cert_chain), VerifyOptions(at=AT, allow_debug=True))
    assert (verdict.verified, verdict.step) == (False, "chip_id")
    assert verdict.claims["chip_id"].startswith("3ac3fe21")  # claims still carried


@pytest.mark.parametrize(
    ("at", "verified"),
    [
        (dt.datetime(2025, 12, 10, 22, 14, 21, tzinfo=dt.UTC), True),  # notAfter itself
        (dt.datetime(2025, 12, 10, 22, 14, 22, tzinfo=dt.UTC), False),
        (dt.datetime(2026, 6, 1, tzinfo=dt.UTC), False),
    ],
)
def test_vlek_expiry(vectors: Path, at: dt.datetime, verified: bool) -> None:
    verdict = verify(vector(vectors, "A4"), VerifyOptions(at=at))
    assert verdict.verified is verified
    if not verified:
        assert verdict.step == "vek"
        assert "valid 2024-12-10 to 2025-12-10" in (verdict.error or "")


def test_vcek_not_yet_valid(vectors: Path) -> None:
    verdict = verify(
        vector(vectors, "A6"), VerifyOptions(at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    )
    assert (verdict.verified, verdict.step) == (False, "vek")


def test_forged_ark_with_amd_subject(vectors: Path) -> None:
    """A home-made ARK/ASK with AMD's exact names, and a VCEK under them that signs a modified
    report: every other check passes, so only the ARK pin stops it."""
    real = pinned_roots()["Milan"]
    ark, ask = make_root("forged", "Milan", ark_name=real.ark.subject, ask_name=real.ask.subject)
    a2 = vector(vectors, "A2")
    genuine = load_certificates(a2.cert_chain or b"")[0]
    key = ec.generate_private_key(ec.SECP384R1())
    exts = {
        e.oid.dotted_string[len(AMD) :]: e.value.value
        for e in genuine.extensions
        if isinstance(e.value, x509.UnrecognizedExtension)
    }
    vcek = make_cert(genuine.subject, ask.subject, key.public_key(), rsa_key("forged-ask"), exts)
    evidence = sign_report(flip(a2.evidence, 0x90), key)
    forged = Vector(evidence, pem(vcek) + pem(ask) + pem(ark))
    verdict = verify(forged)
    assert (verdict.verified, verdict.step) == (False, "ark")
    assert "not a trusted AMD root" in (verdict.error or "")
    # Without the forged ARK, the pinned ARK does not sign the forged ASK.
    verdict = verify(Vector(evidence, pem(vcek) + pem(ask)))
    assert (verdict.verified, verdict.step) == (False, "ask")
    # Without the forged ASK either, the pinned ASK did not sign the forged VCEK.
    verdict = verify(Vector(evidence, pem(vcek)))
    assert (verdict.verified, verdict.step) == (False, "vek")
    # Trusting the forged ARK explicitly makes it verify: the pin is what matters.
    assert verify(forged, trusted_arks=[ark]).verified


def test_trusted_arks_replace_the_pinned_ones(vectors: Path) -> None:
    verdict = verify(vector(vectors, "A2"), trusted_arks=[pinned_roots()["Genoa"].ark])
    assert (verdict.verified, verdict.step) == (False, "ark")
    assert verify(vector(vectors, "A2"), trusted_arks=[pinned_roots()["Milan"].ark]).verified


def test_ask_signed_with_wrong_pss_salt(vectors: Path) -> None:
    ark, _ = make_root("salt", "Milan")
    bad_ask = make_cert(
        amd_name("SEV-Milan"),
        ark.subject,
        rsa_key("salt-ask").public_key(),
        rsa_key("salt-ark"),
        pss=padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=32),
    )
    vcek = load_certificates(vector(vectors, "A2").cert_chain or b"")[0]
    with pytest.raises(VerificationError) as info:
        verify_vek_chain(vcek, [bad_ask, ark], when=AT, trusted_arks=[ark])
    assert info.value.step == "ask"


def test_report_from_genoa_with_milan_vcek(vectors: Path) -> None:
    a2 = vector(vectors, "A2")
    verdict = verify(Vector(vector(vectors, "A6").evidence, a2.cert_chain))
    assert (verdict.verified, verdict.step) == (False, "vek")


def test_vcek_cert_for_vlek_signed_report(vectors: Path) -> None:
    verdict = verify(Vector(vector(vectors, "A4").evidence, vector(vectors, "A3").cert_chain))
    assert (verdict.verified, verdict.step) == (False, "signing_key")
    verdict = verify(Vector(vector(vectors, "A3").evidence, vector(vectors, "A4").cert_chain))
    assert (verdict.verified, verdict.step) == (False, "signing_key")


def test_report_data_mismatch(vectors: Path) -> None:
    verdict = verify(vector(vectors, "A3"), VerifyOptions(at=AT, report_data=b"nonce"))
    assert (verdict.verified, verdict.step) == (False, "report_data")
    assert verdict.to_json()["error"].startswith("report_data: ")


def test_init_data_mismatch(vectors: Path) -> None:
    verdict = verify(vector(vectors, "A3"), VerifyOptions(at=AT, init_data=b"\x01" * 32))
    assert (verdict.verified, verdict.step) == (False, "init_data")


def test_debug_rejected_by_default(vectors: Path) -> None:
    verdict = verify(vector(vectors, "A1"))
    assert (verdict.verified, verdict.step) == (False, "debug")
    assert verdict.claims["policy_debug_allowed"] is True


def test_no_vek_is_a_collateral_failure(vectors: Path) -> None:
    verdict = SnpVerifier().verify(vector(vectors, "A3").evidence, OPTS)
    assert (verdict.verified, verdict.step) == (False, "collateral")
    assert verdict.claims["measurement"]  # parsed claims are still there
    # A VLEK cannot be fetched by chip ID.
    source = FixedVekSource(vector(vectors, "A3").cert_chain or b"")
    verdict = SnpVerifier(vek_source=source).verify(vector(vectors, "A4").evidence, OPTS)
    assert (verdict.step, source.calls) == ("collateral", [])


def test_vek_source_junk_is_a_collateral_failure(vectors: Path) -> None:
    verdict = SnpVerifier(vek_source=FixedVekSource(b"<html>")).verify(
        vector(vectors, "A3").evidence, OPTS
    )
    assert (verdict.verified, verdict.step) == (False, "collateral")


def test_vek_source_errors_propagate(vectors: Path) -> None:
    with pytest.raises(CollateralError, match="KDS has no VCEK"):
        SnpVerifier(vek_source=FailingVekSource()).verify(vector(vectors, "A3").evidence, OPTS)


def test_malformed_evidence_raises_parse_error(vectors: Path) -> None:
    verifier = SnpVerifier(cert_chain=vector(vectors, "A2").cert_chain)
    for junk in (b"", b"\x00" * 10, b"{}", b'{"attestation_report": []}', b"HCLA" + bytes(64)):
        with pytest.raises(ParseError):
            verifier.verify(junk, OPTS)


def test_bad_cert_chain_file() -> None:
    with pytest.raises(ParseError):
        SnpVerifier(cert_chain=b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_turin_tampered_fmc_and_chip(vectors: Path) -> None:
    t = turin_setup()
    verifier = SnpVerifier(cert_chain=pem(t.vcek) + pem(t.ask), trusted_arks=[t.ark])
    verdict = verifier.verify(flip(t.report, 0x180), OPTS)  # Turin byte 0 is FMC
    assert (verdict.step, verdict.claims["product"]) == ("vek_tcb", "Turin")
    assert "fmc" in (verdict.error or "")
    assert verifier.verify(flip(t.report, 0x1A7), OPTS).step == "chip_id"
    # Bytes 8.. of CHIP_ID are not bound by the 8-byte Turin hwID, but they are signed.
    assert verifier.verify(flip(t.report, 0x1A8), OPTS).step == "report_signature"


# ====================================================================== positive tests


@pytest.mark.parametrize(
    ("name", "product", "key", "vmpl"),
    [
        ("A2", "Milan", "vcek", 0),
        ("A3", "Milan", "vcek", 0),
        ("A4", "Milan", "vlek", 1),
        ("A5", "Milan", "vcek", 0),
        ("A6", "Genoa", "vcek", 0),
    ],
)
def test_vectors_verify(vectors: Path, name: str, product: str, key: str, vmpl: int) -> None:
    verdict = verify(vector(vectors, name))
    assert verdict.verified, f"{verdict.step}: {verdict.error}"
    assert (verdict.tee, verdict.tcb_status, verdict.step, verdict.error) == (
        "snp",
        "NotApplicable",
        None,
        None,
    )
    c = verdict.claims
    assert (c["product"], c["signing_key"], c["vmpl"]) == (product, key, vmpl)


def test_a1_verifies_when_debug_allowed(vectors: Path) -> None:
    verdict = verify(vector(vectors, "A1"), VerifyOptions(at=AT, allow_debug=True))
    assert verdict.verified
    c = verdict.claims
    assert c["policy_debug_allowed"] is True
    assert c["policy_smt_allowed"] is True
    assert (
        c["reported_tcb_bootloader"],
        c["reported_tcb_tee"],
        c["reported_tcb_snp"],
        c["reported_tcb_microcode"],
    ) == (2, 0, 5, 68)
    assert c["report_version"] == 2
    assert c["product"] == "Milan"


def test_claim_keys_and_types(vectors: Path) -> None:
    verdict = verify(vector(vectors, "A4"))
    c = verdict.claims
    assert list(c) == TRUSTEE_KEYS + EXTRA_KEYS
    for key in (
        "policy_smt_allowed",
        "policy_migrate_ma",
        "policy_debug_allowed",
        "policy_single_socket",
        "platform_tsme_enabled",
        "platform_smt_enabled",
    ):
        assert isinstance(c[key], bool), key
    for key in (
        "policy_abi_major",
        "policy_abi_minor",
        "reported_tcb_bootloader",
        "reported_tcb_tee",
        "reported_tcb_snp",
        "reported_tcb_microcode",
        "vmpl",
        "report_version",
        "guest_svn",
    ):
        assert type(c[key]) is int, key
    for key, size in (
        ("measurement", 48),
        ("report_data", 64),
        ("init_data", 32),
        ("chip_id", 64),
        ("host_data", 32),
    ):
        assert len(c[key]) == 2 * size
        assert c[key] == c[key].lower()
        bytes.fromhex(c[key])
    assert c["init_data"] == c["host_data"]
    assert (c["reported_tcb_snp"], c["reported_tcb_microcode"]) == (0x18, 0xD9)
    assert (c["platform_smt_enabled"], c["platform_tsme_enabled"]) == (True, True)
    json.dumps(verdict.to_json())


def test_report_data_and_init_data_match_with_padding(vectors: Path) -> None:
    report = vector(vectors, "A3").evidence
    report_data, host_data = report[0x50:0x90], report[0xC0:0xE0]
    opts = VerifyOptions(
        at=AT, report_data=report_data.rstrip(b"\x00"), init_data=host_data.rstrip(b"\x00")
    )
    assert verify(vector(vectors, "A3"), opts).verified
    assert verify(
        vector(vectors, "A3"), VerifyOptions(at=AT, report_data=report_data, init_data=host_data)
    ).verified


def test_naive_datetime_is_utc(vectors: Path) -> None:
    assert verify(vector(vectors, "A4"), VerifyOptions(at=dt.datetime(2025, 6, 1))).verified


def test_cert_chain_with_comments_and_intermediates(vectors: Path) -> None:
    vlek = load_certificates((vectors / "trustee/snp/test-vlek.der").read_bytes())[0]
    chain = (
        b"# VLEK from AWS\n"
        + pem(vlek)
        + b"\n# ASK, ARK, ASVK from trustee\n"
        + (vectors / "trustee/snp/milan_ask_ark_asvk.pem").read_bytes()
    )
    a4 = vector(vectors, "A4")
    assert verify(Vector(a4.evidence, chain)).verified


def test_cert_chain_bundle_of_every_generation(vectors: Path) -> None:
    """A chain file holding every AMD root is fine: only the path's ARK must fit the report."""
    trust = vectors / "go-sev-guest/trust"
    bundle = b"".join(f.read_bytes() for f in sorted(trust.glob("*.pem")))
    a4 = vector(vectors, "A4")
    vlek = load_certificates(a4.cert_chain or b"")[0]
    assert verify(Vector(a4.evidence, pem(vlek) + bundle)).verified


def test_azure_json_with_explicit_chain(vectors: Path) -> None:
    chain = (vectors / "trustee/az-snp-vtpm/vcek-genoa.pem").read_bytes() + (
        vectors / "go-sev-guest/trust/ask_ark_genoa.pem"
    ).read_bytes()
    assert verify(Vector(vector(vectors, "A6").evidence, chain)).verified


def test_trustee_json_with_embedded_vcek(vectors: Path) -> None:
    a3 = vector(vectors, "A3")
    doc = {
        "attestation_report": serde_form(a3.evidence),
        "cert_chain": [{"cert_type": "VCEK", "data": list(a3.cert_chain or b"")}],
    }
    verdict = SnpVerifier().verify(json.dumps(doc).encode(), OPTS)
    assert verdict.verified, verdict.error


def test_vek_source_is_asked_when_nothing_is_supplied(vectors: Path) -> None:
    a3 = vector(vectors, "A3")
    doc = {"attestation_report": serde_form(a3.evidence), "cert_chain": None}
    source = FixedVekSource(a3.cert_chain or b"")
    verdict = SnpVerifier(vek_source=source).verify(json.dumps(doc).encode(), OPTS)
    assert verdict.verified, verdict.error
    assert source.calls == [
        (
            "Milan",
            a3.evidence[0x1A0:0x1E0],
            {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 0x73},
        )
    ]
    # An embedded or configured VEK wins: the source is not asked again.
    SnpVerifier(cert_chain=a3.cert_chain, vek_source=source).verify(a3.evidence, OPTS)
    assert len(source.calls) == 1


def test_turin_vcek_chain_to_pinned_ark(vectors: Path) -> None:
    vcek = load_certificates((vectors / "virtee-sev/vcek_turin.der").read_bytes())[0]
    chain = load_certificates((vectors / "virtee-sev/cert_chain_turin").read_bytes())
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert verify_vek_chain(vcek, chain, when=when) == "Turin"
    assert verify_vek_chain(vcek, when=when) == "Turin"  # pinned ASK/ARK fill in
    with pytest.raises(VerificationError) as info:
        verify_vek_chain(vcek, chain, when=when, product="Milan")
    assert info.value.step == "ark"  # the Turin ARK it carries is not Milan's
    with pytest.raises(VerificationError) as info:
        verify_vek_chain(vcek, when=when, product="Milan")
    assert info.value.step == "vek"


def test_synthetic_turin_report_verifies(vectors: Path) -> None:
    for wrapped in (False, True):
        t = turin_setup(wrapped)
        verifier = SnpVerifier(
            cert_chain=pem(t.vcek) + pem(t.ask) + pem(t.ark), trusted_arks=[t.ark]
        )
        verdict = verifier.verify(t.report, OPTS)
        assert verdict.verified, verdict.error
        c = verdict.claims
        assert (
            c["product"],
            c["report_version"],
            c["reported_tcb_bootloader"],
            c["reported_tcb_tee"],
            c["reported_tcb_snp"],
            c["reported_tcb_microcode"],
        ) == ("Turin", 5, 4, 5, 6, 0x48)
        assert "reported_tcb_fmc" not in c  # Trustee has no such claim


def test_synthetic_turin_vek_source_gets_fmc() -> None:
    t = turin_setup()
    source = FixedVekSource(der(t.vcek), chain=pem(t.ask) + pem(t.ark))
    verifier = SnpVerifier(vek_source=source, trusted_arks=[t.ark])
    assert verifier.verify(t.report, OPTS).verified
    assert source.calls == [("Turin", TURIN_CHIP, TURIN_TCB)]


def test_pinned_roots() -> None:
    roots = pinned_roots()
    assert sorted(roots) == ["Genoa", "Milan", "Turin"]
    seen = set()
    for product, r in roots.items():
        for role, cert in (("ARK", r.ark), ("ASK", r.ask), ("ASVK", r.asvk)):
            assert PINNED_FINGERPRINTS[fingerprint(cert)] == (product, role)
            seen.add(fingerprint(cert))
        assert r.ark.subject.rfc4514_string().startswith(f"CN=ARK-{product},")
    assert seen == set(PINNED_FINGERPRINTS)


def test_snp_verifier_is_a_verifier() -> None:
    verifier: Verifier = SnpVerifier()
    assert verifier.tee == "snp"
