"""SEV-SNP report parser and evidence envelopes, against the real vectors (SOURCES.md A1–A6)."""

from __future__ import annotations

import base64
import binascii
import json
import struct
import uuid
from pathlib import Path

import pytest
from snp_serde import serde_form

from veritee.errors import ParseError
from veritee.pem import load_certificates
from veritee.verifier.snp_evidence import parse_evidence, rebuild_report, unwrap_hcl_report
from veritee.verifier.snp_report import (
    REPORT_LEN,
    SIGNED_LEN,
    TcbVersion,
    parse_report,
    product_from_cpuid,
)

# --------------------------------------------------------------------------- helpers


def a1(v: Path) -> bytes:
    return (v / "go-sev-guest/attestation.bin").read_bytes()


def a2(v: Path) -> bytes:
    return binascii.unhexlify((v / "virtee-sev/report_milan.hex").read_bytes().strip())


def a4(v: Path) -> bytes:
    return (v / "trustee/snp/test-vlek-report.bin").read_bytes()


def a6_hcl(v: Path) -> bytes:
    doc = json.loads((v / "trustee/az-snp-vtpm/evidence-genoa.json").read_bytes())
    return bytes(doc["report"])


def synthetic(version: int, cpuid: tuple[int, int, int], tcb: bytes = bytes(range(1, 9))) -> bytes:
    """An unsigned report with distinct bytes in every TCB field."""
    out = bytearray(REPORT_LEN)
    struct.pack_into("<I", out, 0, version)
    for off in (0x38, 0x180, 0x1E0, 0x1F0):
        out[off : off + 8] = tcb
    out[0x188:0x18B] = bytes(cpuid)
    out[0x1A0:0x1A8] = b"\x11" * 8
    struct.pack_into("<QQ", out, 0x1F8, 0x1122, 0x3344)
    return bytes(out)


def trustee_json(raw: bytes, certs: list[tuple[str, bytes]] | None = None, **kw: bool) -> bytes:
    chain = None if certs is None else [{"cert_type": t, "data": list(d)} for t, d in certs]
    doc = {"attestation_report": serde_form(raw, **kw), "cert_chain": chain}
    return json.dumps(doc, separators=(",", ":")).encode()


# ---------------------------------------------------------------- negative / malformed


@pytest.mark.parametrize("size", [0, 1, 4, 0x2A0, REPORT_LEN - 1, REPORT_LEN + 1])
def test_parse_report_wrong_length(vectors: Path, size: int) -> None:
    data = (a1(vectors) * 2)[:size]
    with pytest.raises(ParseError, match="expected 1184 bytes"):
        parse_report(data)


@pytest.mark.parametrize("version", [0, 1, 6, 0xFFFFFFFF])
def test_parse_report_unsupported_version(version: int) -> None:
    raw = bytearray(synthetic(2, (0, 0, 0)))
    struct.pack_into("<I", raw, 0, version)
    with pytest.raises(ParseError, match="unsupported report version") as info:
        parse_report(bytes(raw))
    assert info.value.offset == 0


@pytest.mark.parametrize("cpuid", [(0, 0, 0), (0x19, 0x20, 0), (0x1A, 0x12, 0), (0x17, 0x01, 0)])
def test_parse_report_unknown_processor(cpuid: tuple[int, int, int]) -> None:
    with pytest.raises(ParseError, match="unsupported processor") as info:
        parse_report(synthetic(3, cpuid))
    assert info.value.offset == 0x188


def test_parse_evidence_short_binary() -> None:
    with pytest.raises(ParseError):
        parse_evidence(b"\x02\x00\x00\x00" + bytes(100))


def test_hcl_truncated(vectors: Path) -> None:
    hcl = (vectors / "trustee/az-snp-vtpm/hcl-report.bin").read_bytes()
    with pytest.raises(ParseError, match="truncated"):
        parse_evidence(hcl[: 0x20 + REPORT_LEN - 1])


def test_hcl_of_another_tee_is_rejected(vectors: Path) -> None:
    hcl = bytearray((vectors / "trustee/az-snp-vtpm/hcl-report.bin").read_bytes())
    struct.pack_into("<I", hcl, 0x4C8, 4)  # TDX
    with pytest.raises(ParseError, match="not SNP"):
        unwrap_hcl_report(bytes(hcl))


@pytest.mark.parametrize(
    "doc",
    [
        b"{",
        b"{}",
        b"[]",
        b'{"attestation_report": 5}',
        b'{"attestation_report": {}}',
        b'{"report": "abc"}',
        b'{"report": [1, 2, 300]}',
        b'{"hcl_report": 7}',
        b'{"hcl_report": "!!!"}',
        b"{\xff}",
        b"[" * 100000,
    ],
)
def test_bad_json_raises_parse_error(doc: bytes) -> None:
    with pytest.raises(ParseError):
        parse_evidence(doc)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 7),
        ("version", True),
        ("guest_svn", -1),
        ("policy", 1 << 64),
        ("vmpl", "0"),
        ("measurement", [0] * 47),
        ("measurement", [256] * 48),
        ("chip_id", None),
        ("reported_tcb", {"bootloader": 1}),
        ("current", {"major": 1, "minor": 2}),
        ("signature", {"r": [0] * 72}),
        ("cpuid_fam_id", 1.5),
    ],
)
def test_trustee_json_bad_field(vectors: Path, field: str, value: object) -> None:
    doc = json.loads(trustee_json(a4(vectors)))
    doc["attestation_report"][field] = value
    with pytest.raises(ParseError, match="snp evidence json"):
        parse_evidence(json.dumps(doc).encode())


def test_trustee_json_missing_field(vectors: Path) -> None:
    doc = json.loads(trustee_json(a4(vectors)))
    del doc["attestation_report"]["host_data"]
    with pytest.raises(ParseError, match="host_data is missing"):
        parse_evidence(json.dumps(doc).encode())


def test_trustee_json_bad_cert(vectors: Path) -> None:
    with pytest.raises(ParseError):
        parse_evidence(trustee_json(a4(vectors), [("VLEK", b"\x30\x03\x02\x01\x00")]))
    with pytest.raises(ParseError, match="cert_chain"):
        parse_evidence(
            json.dumps(
                {"attestation_report": serde_form(a4(vectors)), "cert_chain": {"VCEK": []}}
            ).encode()
        )


def test_certificate_with_invalid_version(vectors: Path) -> None:
    """cryptography raises InvalidVersion (not a ValueError) for X.509 version 7."""
    der = bytearray((vectors / "trustee/snp/test-vlek.der").read_bytes())
    at = der.index(bytes.fromhex("a003020102"))
    der[at + 4] = 6
    with pytest.raises(ParseError, match=r"invalid X\.509 version"):
        load_certificates(bytes(der))
    with pytest.raises(ParseError):
        parse_evidence(trustee_json(a4(vectors), [("VLEK", bytes(der))]))


def test_cert_table_without_terminator(vectors: Path) -> None:
    entry = uuid.UUID("00000000-0000-0000-0000-0000000000aa").bytes + struct.pack("<II", 24, 8)
    with pytest.raises(ParseError, match="terminator"):
        parse_evidence(a1(vectors) + entry + b"\x01" * 8)


def test_cert_table_entry_out_of_bounds(vectors: Path) -> None:
    entry = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd").bytes + struct.pack("<II", 48, 4096)
    with pytest.raises(ParseError, match="outside"):
        parse_evidence(a1(vectors) + entry + bytes(24))


# ------------------------------------------------------------------------- real vectors


def test_a1_milan_v2(vectors: Path) -> None:
    r = parse_report(a1(vectors))
    assert (r.version, r.product, r.cpuid, r.vmpl, r.signature_algo) == (2, None, None, 0, 1)
    # go-sev-guest's KDS URL for this report: blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68
    assert r.reported_tcb == TcbVersion(bootloader=2, tee=0, snp=5, microcode=68)
    assert r.reported_tcb.as_dict() == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}
    assert r.chip_id.hex().startswith("3ac3fe21e13fb0990eb28a802e3fb6a2")
    assert r.policy.value == 0xB0000
    assert r.policy.debug_allowed
    assert r.policy.smt_allowed
    assert not r.policy.migrate_ma
    assert not r.policy.single_socket
    assert (r.policy.abi_major, r.policy.abi_minor) == (0, 0)
    assert r.signing_key == 0
    assert not r.mask_chip_key
    assert not r.author_key_en
    assert r.launch_mit_vector is None
    assert r.current_mit_vector is None
    assert r.signed_bytes == a1(vectors)[:SIGNED_LEN]
    assert r.raw == a1(vectors)


def test_a3_current_tcb_differs_from_reported(vectors: Path) -> None:
    r = parse_report((vectors / "trustee/snp/test-report.bin").read_bytes())
    assert r.current_tcb.microcode == 0xCE
    assert r.reported_tcb.microcode == 0x73
    assert r.reported_tcb.snp == 8
    assert r.reported_tcb.bootloader == 3


def test_a4_vlek_v3(vectors: Path) -> None:
    r = parse_report(a4(vectors))
    assert (r.version, r.cpuid, r.product) == (3, (0x19, 0x01, 0x01), "Milan")
    assert r.vmpl == 1
    assert r.signing_key == 1
    assert r.reported_tcb == TcbVersion(bootloader=4, tee=0, snp=0x18, microcode=0xD9)
    assert r.platform_info.smt_enabled
    assert r.platform_info.tsme_enabled


def test_a5_hcl(vectors: Path) -> None:
    hcl = (vectors / "trustee/az-snp-vtpm/hcl-report.bin").read_bytes()
    ev = parse_evidence(hcl)
    assert ev.source == "azure-hcl"
    assert ev.certificates == ()
    assert ev.report.raw == hcl[0x20 : 0x20 + REPORT_LEN]
    assert ev.report.version == 2


def test_a6_azure_json_genoa(vectors: Path) -> None:
    ev = parse_evidence((vectors / "trustee/az-snp-vtpm/evidence-genoa.json").read_bytes())
    assert ev.source == "azure-json"
    assert (ev.report.version, ev.report.product, ev.report.cpuid) == (3, "Genoa", (0x19, 0x11, 1))
    assert [c.subject.rfc4514_string().split(",")[0] for c in ev.certificates] == ["CN=SEV-VCEK"]
    assert ev.report.raw == a6_hcl(vectors)[0x20 : 0x20 + REPORT_LEN]


def test_azure_v2_json_base64url(vectors: Path) -> None:
    """az-snp-vtpm evidence v2: hcl_report and vcek as padded base64url (DER)."""
    hcl = (vectors / "trustee/az-snp-vtpm/hcl-report.bin").read_bytes()
    vcek = load_certificates((vectors / "trustee/az-snp-vtpm/vcek.pem").read_bytes())[0]
    from cryptography.hazmat.primitives.serialization import Encoding

    doc = {
        "version": 2,
        "hcl_report": base64.urlsafe_b64encode(hcl).decode(),
        "vcek": base64.urlsafe_b64encode(vcek.public_bytes(Encoding.DER)).decode(),
    }
    ev = parse_evidence(json.dumps(doc).encode())
    assert ev.report.raw == hcl[0x20 : 0x20 + REPORT_LEN]
    assert ev.certificates == (vcek,)


def test_raw_report_with_zero_padding(vectors: Path) -> None:
    ev = parse_evidence(a1(vectors) + bytes(4000))
    assert ev.source == "report"
    assert ev.report.raw == a1(vectors)


def test_extended_report_cert_table(vectors: Path) -> None:
    vcek = (vectors / "go-sev-guest/vcek.testcer").read_bytes()
    ask_ark = load_certificates((vectors / "go-sev-guest/trust/ask_ark_milan.pem").read_bytes())
    from cryptography.hazmat.primitives.serialization import Encoding

    blobs = [
        ("63da758d-e664-4564-adc5-f4b93be8accd", vcek),
        ("4ab7b379-bbac-4fe4-a02f-05aef327c782", ask_ark[0].public_bytes(Encoding.DER)),
        ("c0b406a4-a803-4952-9743-3fb6014cd0ae", ask_ark[1].public_bytes(Encoding.DER)),
        ("00000000-0000-0000-0000-0000000000aa", b"ignored"),
    ]
    offset = 24 * (len(blobs) + 1)
    table, body = b"", b""
    for guid, blob in blobs:
        table += uuid.UUID(guid).bytes + struct.pack("<II", offset + len(body), len(blob))
        body += blob
    ev = parse_evidence(a1(vectors) + table + bytes(24) + body)
    assert ev.source == "extended-report"
    assert [c.subject.rfc4514_string().split(",")[0] for c in ev.certificates] == [
        "CN=SEV-VCEK",
        "CN=SEV-Milan",
        "CN=ARK-Milan",
    ]


# ---------------------------------------------------------------------- TCB layouts


def test_turin_tcb_layout_from_cpuid() -> None:
    r = parse_report(synthetic(5, (0x1A, 0x02, 0x01)))
    assert r.product == "Turin"
    assert r.reported_tcb == TcbVersion(fmc=1, bootloader=2, tee=3, snp=4, microcode=8)
    assert r.reported_tcb.as_dict() == {
        "bootloader": 2,
        "tee": 3,
        "snp": 4,
        "microcode": 8,
        "fmc": 1,
    }
    assert (r.launch_mit_vector, r.current_mit_vector) == (0x1122, 0x3344)


@pytest.mark.parametrize(
    ("cpuid", "product"),
    [
        ((0x19, 0x01, 0x01), "Milan"),
        ((0x19, 0x11, 0x01), "Genoa"),
        ((0x19, 0xA0, 0x02), "Genoa"),
    ],
)
def test_milan_genoa_tcb_layout(cpuid: tuple[int, int, int], product: str) -> None:
    r = parse_report(synthetic(3, cpuid))
    assert r.product == product
    assert r.reported_tcb == TcbVersion(bootloader=1, tee=2, snp=7, microcode=8)
    assert r.launch_mit_vector is None  # v3 has no MIT vectors


def test_v2_product_hint_picks_layout() -> None:
    raw = synthetic(2, (0, 0, 0))
    assert parse_report(raw).reported_tcb.fmc is None
    turin = parse_report(raw, "Turin")
    assert turin.product == "Turin"
    assert turin.reported_tcb.fmc == 1
    assert parse_report(synthetic(3, (0x19, 0x01, 0x01)), "Turin").product == "Milan"


@pytest.mark.parametrize("raw", [bytes(range(8)), bytes([9, 8, 0, 0, 0, 0, 7, 6])])
def test_tcb_round_trip(raw: bytes) -> None:
    assert TcbVersion.from_bytes(raw, turin=False).to_bytes() == raw[:2] + bytes(4) + raw[6:]
    assert TcbVersion.from_bytes(raw, turin=True).to_bytes() == raw[:4] + bytes(3) + raw[7:]


@pytest.mark.parametrize(
    ("family", "model", "product"),
    [
        (0x19, 0x00, "Milan"),
        (0x19, 0x0F, "Milan"),
        (0x19, 0x10, "Genoa"),
        (0x19, 0x1F, "Genoa"),
        (0x19, 0xA0, "Genoa"),
        (0x19, 0xAF, "Genoa"),
        (0x19, 0x20, None),
        (0x1A, 0x00, "Turin"),
        (0x1A, 0x11, "Turin"),
        (0x1A, 0x12, None),
        (0x17, 0x31, None),
    ],
)
def test_product_from_cpuid(family: int, model: int, product: str | None) -> None:
    assert product_from_cpuid(family, model) == product


# ----------------------------------------------------- Trustee JSON: exact byte rebuild


@pytest.mark.parametrize("name", ["a1", "a2", "a4", "a3", "a5", "a6"])
def test_trustee_json_rebuilds_exact_bytes(vectors: Path, name: str) -> None:
    raw = {
        "a1": lambda: a1(vectors),
        "a2": lambda: a2(vectors),
        "a4": lambda: a4(vectors),
        "a3": lambda: (vectors / "trustee/snp/test-report.bin").read_bytes(),
        "a5": lambda: (vectors / "trustee/az-snp-vtpm/hcl-report.bin").read_bytes()[0x20:0x4C0],
        "a6": lambda: a6_hcl(vectors)[0x20:0x4C0],
    }[name]()
    ev = parse_evidence(trustee_json(raw))
    assert ev.source == "trustee-json"
    assert ev.certificates == ()
    assert ev.report.raw == raw


def test_trustee_json_turin_v5_and_v2() -> None:
    raw5 = synthetic(5, (0x1A, 0x02, 0x01), tcb=bytes([1, 2, 3, 4, 0, 0, 0, 8]))
    assert parse_evidence(trustee_json(raw5, turin=True)).report.raw == raw5
    raw2 = synthetic(2, (0, 0, 0), tcb=bytes([1, 2, 3, 4, 0, 0, 0, 8]))
    raw2, hint = rebuild_report(serde_form(raw2, turin=True))
    assert hint == "Turin"
    assert raw2[0x180:0x188] == bytes([1, 2, 3, 4, 0, 0, 0, 8])
    assert parse_evidence(trustee_json(raw2, turin=True)).report.product == "Turin"


def test_trustee_json_optional_members_may_be_absent(vectors: Path) -> None:
    """serde reads a missing Option as None: v3 evidence often omits the MIT vectors."""
    form = serde_form(a4(vectors))
    del form["launch_mit_vector"], form["current_mit_vector"]
    ev = parse_evidence(json.dumps({"attestation_report": form}).encode())
    assert ev.report.raw == a4(vectors)


def test_trustee_json_cert_chain(vectors: Path) -> None:
    vlek = (vectors / "trustee/snp/test-vlek.der").read_bytes()
    doc = json.loads(trustee_json(a4(vectors), [("VLEK", vlek), ("Empty", b"")]))
    doc["cert_chain"].append(
        {"cert_type": {"OTHER": "00000000-0000-0000-0000-000000000001"}, "data": [1, 2, 3]}
    )
    ev = parse_evidence(json.dumps(doc).encode())
    assert [c.subject.rfc4514_string().split(",")[0] for c in ev.certificates] == ["CN=SEV-VLEK"]
