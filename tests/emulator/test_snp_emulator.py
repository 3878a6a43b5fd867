"""Emulated SEV-SNP reports: real format and signatures, verified under the test ARK."""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snp_serde import serde_form

from veritee.emulator.amd_pki import PRODUCTS, AmdProduct, AmdTestRoot, Signer
from veritee.emulator.snp import (
    CPUID,
    DEFAULT_POLICY,
    SETTINGS,
    SnpFields,
    apply_settings,
    build_snp_report,
    trustee_evidence,
)
from veritee.verifier.base import Verdict, VerifyOptions
from veritee.verifier.snp import SnpVerifier
from veritee.verifier.snp_evidence import parse_evidence
from veritee.verifier.snp_report import REPORT_LEN, TcbVersion, parse_report
from veritee.verifier.snp_roots import fingerprint

OPTS = VerifyOptions()
SIGNERS: tuple[Signer, ...] = ("vcek", "vlek")

# The JSON key order of virtee/sev's AttestationReport (guest-components.md §2.3).
SERDE_KEYS = [
    "version",
    "guest_svn",
    "policy",
    "family_id",
    "image_id",
    "vmpl",
    "sig_algo",
    "current_tcb",
    "plat_info",
    "key_info",
    "report_data",
    "measurement",
    "host_data",
    "id_key_digest",
    "author_key_digest",
    "report_id",
    "report_id_ma",
    "reported_tcb",
    "cpuid_fam_id",
    "cpuid_mod_id",
    "cpuid_step",
    "chip_id",
    "committed_tcb",
    "current",
    "committed",
    "launch_tcb",
    "launch_mit_vector",
    "current_mit_vector",
    "signature",
]


@pytest.fixture(scope="session")
def roots() -> dict[AmdProduct, AmdTestRoot]:
    """One root per generation for the whole module (RSA-4096 key generation is slow)."""
    return {p: AmdTestRoot.create(product=p) for p in PRODUCTS}


def verify(
    root: AmdTestRoot,
    evidence: bytes,
    signer: Signer = "vcek",
    options: VerifyOptions = OPTS,
) -> Verdict:
    verifier = SnpVerifier(cert_chain=root.cert_chain_pem(signer), trusted_arks=[root.ark])
    return verifier.verify(evidence, options)


def flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


# ------------------------------------------------------------------ verification


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("version", [3, 5])
@pytest.mark.parametrize("product", PRODUCTS)
def test_emulated_report_verifies(
    roots: dict[AmdProduct, AmdTestRoot], product: AmdProduct, version: int, signer: Signer
) -> None:
    root = roots[product]
    fields = SnpFields(version=3 if version == 3 else 5, signer=signer, measurement=b"\x5a" * 48)
    if version == 5:
        fields.launch_mit_vector, fields.current_mit_vector = 1, 3
    report = build_snp_report(root, fields)
    assert len(report) == REPORT_LEN

    verdict = verify(root, report, signer)
    assert verdict.verified, verdict.error
    assert verdict.tcb_status == "NotApplicable"
    claims = verdict.claims
    assert claims["product"] == product
    assert claims["report_version"] == version
    assert claims["signing_key"] == signer
    assert claims["measurement"] == "5a" * 48
    tcb = root.reported_tcb
    assert [claims[f"reported_tcb_{k}"] for k in ("bootloader", "tee", "snp", "microcode")] == [
        tcb["bootloader"],
        tcb["tee"],
        tcb["snp"],
        tcb["microcode"],
    ]

    parsed = parse_report(report)
    assert parsed.cpuid == CPUID[product]
    assert parsed.signing_key == (0 if signer == "vcek" else 1)
    assert parsed.key_info == (0 if signer == "vcek" else 4)
    assert parsed.chip_id == (root.chip_id if signer == "vcek" else bytes(64))
    assert parsed.reported_tcb.as_dict() == tcb
    assert parsed.current_tcb == parsed.committed_tcb == parsed.launch_tcb == parsed.reported_tcb
    assert parsed.signature_algo == 1
    assert parsed.report_id_ma == b"\xff" * 32
    expected_mit = (1, 3) if version == 5 else (None, None)
    assert (parsed.launch_mit_vector, parsed.current_mit_vector) == expected_mit
    assert report[0x330:] == bytes(REPORT_LEN - 0x330)  # the rest of the signature area
    assert report[0x208:0x2A0] == bytes(0x98)  # reserved, before the signature


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("version", [3, 5])
@pytest.mark.parametrize("product", PRODUCTS)
def test_trustee_json_round_trips_and_verifies(
    roots: dict[AmdProduct, AmdTestRoot], product: AmdProduct, version: int, signer: Signer
) -> None:
    root = roots[product]
    report = build_snp_report(
        root, SnpFields(version=3 if version == 3 else 5, signer=signer, guest_svn=7, vmpl=1)
    )
    evidence = trustee_evidence(report, root)
    body = evidence["attestation_report"]
    assert list(evidence) == ["attestation_report", "cert_chain"]
    assert list(body) == SERDE_KEYS
    assert list(body["reported_tcb"]) == ["fmc", "bootloader", "tee", "snp", "microcode"]
    assert list(body["current"]) == ["major", "minor", "build"]
    # An independent encoder (tests/support/snp_serde.py) gives the same document.
    assert body == serde_form(report, turin=product == "Turin")
    vek_der = root.vek(signer).public_bytes(Encoding.DER)
    assert evidence["cert_chain"] == [{"cert_type": signer.upper(), "data": list(vek_der)}]

    compact = json.dumps(evidence, separators=(",", ":")).encode()
    assert parse_evidence(compact).report.raw == report  # byte-exact rebuild
    # The VEK comes from the JSON; the ASK/ASVK and ARK as KDS serves them.
    verifier = SnpVerifier(cert_chain=root.kds_cert_chain_pem(signer), trusted_arks=[root.ark])
    verdict = verifier.verify(compact, OPTS)
    assert verdict.verified, verdict.error
    assert (verdict.claims["vmpl"], verdict.claims["guest_svn"]) == (1, 7)


def test_trustee_json_without_root_has_null_chain(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Milan"]
    report = build_snp_report(root, SnpFields())
    evidence = trustee_evidence(report, None)
    assert evidence["cert_chain"] is None
    verdict = verify(root, json.dumps(evidence).encode())  # chain supplied by the caller
    assert verdict.verified, verdict.error
    # An explicit signer overrides the report's SIGNING_KEY (for negative tests).
    wrong = trustee_evidence(report, root, signer="vlek")
    assert wrong["cert_chain"][0]["cert_type"] == "VLEK"


@pytest.mark.parametrize("product", PRODUCTS)
def test_pinned_amd_roots_reject_the_test_ark(
    roots: dict[AmdProduct, AmdTestRoot], product: AmdProduct
) -> None:
    root = roots[product]
    for signer in SIGNERS:
        report = build_snp_report(root, SnpFields(signer=signer))
        verdict = SnpVerifier(cert_chain=root.cert_chain_pem(signer)).verify(report, OPTS)
        assert not verdict.verified
        assert verdict.step == "ark"
        assert verdict.error is not None
        assert f"ARK-{product}" in verdict.error
        assert fingerprint(root.ark) in verdict.error


def test_report_data_and_host_data_bindings(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Genoa"]
    report_data, host_data = bytes(range(64)), bytes(range(100, 132))
    report = build_snp_report(root, SnpFields(report_data=report_data, host_data=host_data))
    ok = verify(root, report, options=VerifyOptions(report_data=report_data, init_data=host_data))
    assert ok.verified, ok.error
    assert ok.claims["report_data"] == report_data.hex()
    assert ok.claims["init_data"] == ok.claims["host_data"] == host_data.hex()

    bad = verify(root, report, options=VerifyOptions(report_data=bytes(64)))
    assert (bad.verified, bad.step) == (False, "report_data")
    bad = verify(root, report, options=VerifyOptions(init_data=b"\x01" * 32))
    assert (bad.verified, bad.step) == (False, "init_data")

    short = build_snp_report(root, SnpFields(report_data=b"nonce" + bytes(59)))
    assert verify(root, short, options=VerifyOptions(report_data=b"nonce")).verified


def test_debug_policy(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Milan"]
    report = build_snp_report(root, SnpFields(policy=DEFAULT_POLICY | 1 << 19))
    verdict = verify(root, report)
    assert (verdict.verified, verdict.step) == (False, "debug")
    assert verdict.claims["policy_debug_allowed"] is True
    allowed = verify(root, report, options=VerifyOptions(allow_debug=True))
    assert allowed.verified, allowed.error

    default = verify(root, build_snp_report(root, SnpFields()))
    assert default.claims["policy_debug_allowed"] is False
    assert default.claims["policy_smt_allowed"] is True


@pytest.mark.parametrize("vmpl", [0, 1, 2, 3])
def test_vmpl_is_reported_not_rejected(roots: dict[AmdProduct, AmdTestRoot], vmpl: int) -> None:
    root = roots["Turin"]
    verdict = verify(root, build_snp_report(root, SnpFields(vmpl=vmpl)))
    assert verdict.verified, verdict.error
    assert verdict.claims["vmpl"] == vmpl


def test_masked_chip_id(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Milan"]
    report = build_snp_report(root, SnpFields(mask_chip_id=True))
    parsed = parse_report(report)
    assert (parsed.chip_id, parsed.mask_chip_key) == (bytes(64), True)
    assert verify(root, report).step == "chip_id"  # a VCEK cannot be bound to a masked chip


def test_reported_tcb_other_than_the_certified_one(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Milan"]
    newer = dict(root.reported_tcb, snp=root.reported_tcb["snp"] + 1)
    report = build_snp_report(root, SnpFields(reported_tcb=newer))
    assert verify(root, report).step == "vek_tcb"
    reissued = root.reissue(reported_tcb=newer)
    assert verify(reissued, report).verified


# --------------------------------------------------------------------- tampering


def tamper_cases(product: AmdProduct) -> list[tuple[str, int, str]]:
    tcb_bytes = (0, 1, 2, 3, 7) if product == "Turin" else (0, 1, 6, 7)
    reserved_tcb = 4 if product == "Turin" else 2
    cases = [
        ("guest_svn", 0x04, "report_signature"),
        ("policy", 0x08, "report_signature"),
        ("family_id", 0x10, "report_signature"),
        ("vmpl", 0x30, "report_signature"),
        ("current_tcb", 0x38, "report_signature"),
        ("plat_info", 0x40, "report_signature"),
        ("report_data", 0x50, "report_signature"),
        ("measurement", 0x90, "report_signature"),
        ("host_data", 0xDF, "report_signature"),
        ("id_key_digest", 0xE0, "report_signature"),
        ("report_id", 0x140, "report_signature"),
        ("reported_tcb_reserved", 0x180 + reserved_tcb, "report_signature"),
        ("committed_tcb", 0x1E0, "report_signature"),
        ("current_version", 0x1E8, "report_signature"),
        ("launch_mit_vector", 0x1F8, "report_signature"),
        ("reserved", 0x208, "report_signature"),
        ("last_signed_byte", 0x29F, "report_signature"),
        ("signature_r", 0x2A0, "report_signature"),
        ("signature_s", 0x2E8, "report_signature"),
        ("signing_key", 0x48, "signing_key"),  # bit 2: VCEK -> VLEK
        ("chip_id_first", 0x1A0, "chip_id"),
        ("chip_id_8th", 0x1A7, "chip_id"),
    ]
    cases += [(f"reported_tcb_{b}", 0x180 + b, "vek_tcb") for b in tcb_bytes]
    if product == "Turin":  # bytes 8.. of CHIP_ID are signed but not bound to the hwID
        cases.append(("chip_id_tail", 0x1DF, "report_signature"))
    else:
        cases.append(("chip_id_last", 0x1DF, "chip_id"))
    return cases


@pytest.mark.parametrize("product", PRODUCTS)
def test_tamper_matrix(roots: dict[AmdProduct, AmdTestRoot], product: AmdProduct) -> None:
    root = roots[product]
    report = build_snp_report(root, SnpFields(report_data=b"\x11" * 64, version=5))
    assert verify(root, report).verified
    for name, offset, step in tamper_cases(product):
        mutated = bytearray(report)
        mutated[offset] ^= 0x04 if name == "signing_key" else 0x01
        verdict = verify(root, bytes(mutated))
        assert (name, verdict.verified, verdict.step) == (name, False, step), verdict.error


def test_vlek_report_tampering(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Genoa"]
    report = build_snp_report(root, SnpFields(signer="vlek"))
    assert verify(root, report, "vlek").verified
    assert verify(root, flip(report, 0x1A0), "vlek").step == "report_signature"  # no hwID
    assert verify(root, flip(report, 0x186), "vlek").step == "vek_tcb"
    assert verify(root, flip(report, 0x90), "vlek").step == "report_signature"
    assert verify(root, report, "vcek").step == "signing_key"  # a VCEK for a VLEK report


# ------------------------------------------------------------------ property test

FIELD_VALUES = st.fixed_dictionaries(
    {
        "report_data": st.binary(min_size=64, max_size=64),
        "measurement": st.binary(min_size=48, max_size=48),
        "host_data": st.binary(min_size=32, max_size=32),
        "vmpl": st.integers(0, 2**32 - 1),
        "policy": st.integers(0, 2**64 - 1).map(lambda p: (p | 1 << 17) & ~(1 << 19)),
        "guest_svn": st.integers(0, 2**32 - 1),
        "version": st.sampled_from([3, 5]),
        "signer": st.sampled_from(SIGNERS),
    }
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=FIELD_VALUES, product=st.sampled_from(PRODUCTS))
def test_random_fields_round_trip_and_verify(
    roots: dict[AmdProduct, AmdTestRoot], values: dict[str, Any], product: AmdProduct
) -> None:
    root = roots[product]
    fields = SnpFields(**values)
    report = build_snp_report(root, fields)
    parsed = parse_report(report)
    assert parsed.report_data == fields.report_data
    assert parsed.measurement == fields.measurement
    assert parsed.host_data == fields.host_data
    assert parsed.vmpl == fields.vmpl
    assert parsed.policy.value == fields.policy
    assert parsed.guest_svn == fields.guest_svn
    assert parsed.version == fields.version
    assert parsed.product == product
    options = VerifyOptions(report_data=fields.report_data, init_data=fields.host_data)
    verdict = verify(root, report, fields.signer, options)
    assert verdict.verified, verdict.error
    assert verdict.claims["vmpl"] == fields.vmpl
    assert verdict.claims["guest_svn"] == fields.guest_svn
    evidence = json.dumps(trustee_evidence(report, root)).encode()
    assert parse_evidence(evidence).report.raw == report


# ------------------------------------------------------------------ apply_settings


def test_apply_settings(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Turin"]
    fields = SnpFields()
    tcb_raw = TcbVersion(fmc=0, bootloader=0, tee=0, snp=0, microcode=9).to_bytes()
    assert TcbVersion.from_bytes(tcb_raw, turin=True).as_dict() == root.reported_tcb
    apply_settings(
        fields,
        {
            "report_data": b"\x01" * 64,
            "measurement": b"\x02" * 48,
            "host_data": b"\x03" * 32,
            "family_id": b"\x04" * 16,
            "image_id": b"\x05" * 16,
            "policy": struct.pack("<Q", 0x31000),
            "vmpl": struct.pack("<I", 2),
            "guest_svn": struct.pack("<I", 0x01020304),
            "reported_tcb": tcb_raw,
        },
    )
    assert (fields.policy, fields.vmpl, fields.guest_svn) == (0x31000, 2, 0x01020304)
    assert fields.reported_tcb == tcb_raw
    report = build_snp_report(root, fields)
    parsed = parse_report(report)
    assert (parsed.family_id, parsed.image_id) == (b"\x04" * 16, b"\x05" * 16)
    assert parsed.policy.abi_major == 0x10
    assert parsed.reported_tcb.as_dict() == root.reported_tcb
    assert verify(root, report).verified

    apply_settings(fields, {"reported_tcb": bytes([0, 0, 0, 0, 0, 0, 0, 10])})
    assert verify(root, build_snp_report(root, fields)).step == "vek_tcb"


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"chip_id": bytes(64)}, "unknown report field 'chip_id'; known fields: family_id"),
        ({"report_data": bytes(32)}, "report_data needs exactly 64 bytes, got 32"),
        ({"measurement": bytes(49)}, "measurement needs exactly 48 bytes, got 49"),
        ({"host_data": b""}, "host_data needs exactly 32 bytes, got 0"),
        ({"policy": bytes(4)}, "policy needs exactly 8 bytes, got 4"),
        ({"vmpl": bytes(8)}, "vmpl needs exactly 4 bytes, got 8"),
        ({"reported_tcb": bytes(7)}, "reported_tcb needs exactly 8 bytes, got 7"),
        ({"family_id": bytes(15)}, "family_id needs exactly 16 bytes, got 15"),
        ({"image_id": bytes(17)}, "image_id needs exactly 16 bytes, got 17"),
        ({"guest_svn": bytes(1)}, "guest_svn needs exactly 4 bytes, got 1"),
    ],
)
def test_apply_settings_errors(settings_: dict[str, bytes], message: str) -> None:
    fields = SnpFields()
    before = dataclasses.replace(fields)
    with pytest.raises(ValueError, match=message):
        apply_settings(fields, {"vmpl": struct.pack("<I", 3), **settings_})
    assert fields == before  # nothing applied when any setting is bad


def test_settings_names() -> None:
    assert dict(SETTINGS) == {
        "report_data": 64,
        "measurement": 48,
        "host_data": 32,
        "family_id": 16,
        "image_id": 16,
        "policy": 8,
        "reported_tcb": 8,
        "vmpl": 4,
        "guest_svn": 4,
    }


def test_build_rejects_bad_fields(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    milan, turin = roots["Milan"], roots["Turin"]
    with pytest.raises(ValueError, match="report_data needs exactly 64 bytes, got 32"):
        build_snp_report(milan, SnpFields(report_data=bytes(32)))
    with pytest.raises(ValueError, match="vmpl must be a 32-bit unsigned integer"):
        build_snp_report(milan, SnpFields(vmpl=2**32))
    with pytest.raises(ValueError, match="exist only in v5 reports"):
        build_snp_report(milan, SnpFields(version=3, current_mit_vector=1))
    with pytest.raises(ValueError, match="reserved bytes of a Milan TCB_VERSION must be 0"):
        build_snp_report(milan, SnpFields(reported_tcb=bytes([1, 0, 1, 0, 0, 0, 0, 0])))
    with pytest.raises(ValueError, match="reported_tcb for Turin needs exactly the keys"):
        build_snp_report(turin, SnpFields(reported_tcb=milan.reported_tcb))
    with pytest.raises(ValueError, match="version must be 3 or 5"):
        build_snp_report(milan, SnpFields(version=2))  # type: ignore[arg-type]


def test_turin_tcb_layout(roots: dict[AmdProduct, AmdTestRoot]) -> None:
    root = roots["Turin"]
    tcb = {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 5}
    report = build_snp_report(root.reissue(reported_tcb=tcb), SnpFields(reported_tcb=tcb))
    assert report[0x180:0x188] == bytes([1, 2, 3, 4, 0, 0, 0, 5])
    assert report[0x188:0x18B] == b"\x1a\x02\x01"
