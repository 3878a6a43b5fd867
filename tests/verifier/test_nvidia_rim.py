"""NVIDIA RIMs: parsing, XML-DSig and signer chain to NVIDIA's RIM root, measurement comparison.

Vectors (tests/data/SOURCES.md): nvtrust's test_no_gpu driver RIM (545.00) and VBIOS RIM
(96.00.5E.00.01), NVIDIA's production VBIOS RIMs, NVIDIA's RIM root, and Trustee's claims of
the real Hopper report (driver 550.90.07, VBIOS 96.00.9f.00.01).  Expected values are computed
from the artefacts themselves (certificate dates, the RIMs' attributes read with a regex, the
claims' measurements), independently of the code under test, and also written out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from datadir import VECTORS
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

from veritee.errors import ParseError, VerificationError
from veritee.pem import load_certificates
from veritee.verifier.nvidia_certs import pinned_device_root, pinned_rim_root
from veritee.verifier.nvidia_rim import (
    MAX_RIM_SIZE,
    GoldenMeasurement,
    Rim,
    compare_measurements,
    parse_rim,
    rim_id,
)
from veritee.verifier.nvidia_rim_signature import verify_rim

# lxml ships no type information; signxml signs lxml trees.
etree: Any = importlib.import_module("lxml.etree")
NV = VECTORS / "nvidia"
DRIVER = (NV / "Driver_RIM_test_no_gpu.swidtag").read_bytes()
VBIOS = (NV / "1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes()
ROOT = load_certificates((NV / "verifier_RIM_root.pem").read_bytes())[0]
CLAIMS = json.loads((NV / "hopperAttestationReport-claims.txt").read_text())
REPORT = {int(k): bytes.fromhex(v) for k, v in CLAIMS["measurements"].items()}
NOW = dt.datetime.now(dt.UTC)
CERT_RE = re.compile(rb"<ds:X509Certificate>(.*?)</ds:X509Certificate>", re.S)
RESOURCE_RE = re.compile(rb"<ns0:Resource [^>]*>")


def keyinfo_certs(data: bytes) -> list[x509.Certificate]:
    """The KeyInfo certificates, read with a regex (independent of the parser)."""
    return [
        x509.load_pem_x509_certificate(
            b"-----BEGIN CERTIFICATE-----\n" + b.strip() + b"\n-----END CERTIFICATE-----\n"
        )
        for b in CERT_RE.findall(data)
    ]


def inside(data: bytes) -> dt.datetime:
    """A time inside every KeyInfo certificate's validity (the middle of their overlap)."""
    certs = keyinfo_certs(data)
    start = max(c.not_valid_before_utc for c in certs)
    end = min(c.not_valid_after_utc for c in certs)
    assert start < end
    return start + (end - start) / 2


def active(data: bytes) -> dict[int, tuple[bytes, ...]]:
    """Active measurements' alternatives by RIM index, read with regexes."""
    out = {}
    for tag in RESOURCE_RE.findall(data):
        if b'active="True"' in tag:
            index = re.search(rb' index="(\d+)"', tag)
            assert index is not None
            values = re.findall(rb'ns2:Hash\d+="([0-9a-fA-F]+)"', tag)
            out[int(index.group(1))] = tuple(bytes.fromhex(v.decode()) for v in values)
    return out


def flip_hex(data: bytes, marker: bytes) -> bytes:
    """Change the first hex digit after ``marker`` (one byte of the document)."""
    at = data.index(marker) + len(marker)
    return data[:at] + (b"1" if data[at : at + 1] != b"1" else b"2") + data[at + 1 :]


# ----------------------------------------------------------------------------- parse errors


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not xml", "not well-formed"),
        (b"", "not well-formed"),
        (b"<a xmlns='urn:x'/>", "not a 2015 SoftwareIdentity"),
        (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "x">]>'
            b'<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd"/>',
            "DOCTYPE",
        ),
        (b"<a>" + b" " * MAX_RIM_SIZE + b"</a>", "limit"),
    ],
)
def test_what_is_not_a_rim_is_a_parse_error(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_rim(data)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b'colloquialVersion="545.00"', b'colloquialVersion=""', "no colloquialVersion"),
        (b'colloquialVersion="545.00"', b'colloquialVersion="five"', "neither a driver"),
        (b'tagId="f0d3', b'tagXd="f0d3', "tagId"),
        (b'role="softwareCreator tagCreator"', b'role="softwareCreator"', "tagCreator"),
        (b'index="8" active', b'index="7" active', "two measurements have index 7"),
        (b'index="8" active', b'index="x" active', "not a small integer"),
        (b'active="True"', b'active="yes"', "not True or False"),
        (b'alternatives="1" ns2:Hash0="0e0e', b'alternatives="2" ns2:Hash0="0e0e', "Hash1"),
        (b'alternatives="1" ns2:Hash0="0e0e', b'alternatives="0" ns2:Hash0="0e0e', "alternatives"),
        (b'ns2:Hash0="0e0e', b'ns2:Hash0="zz0e', "not hex"),
        (b'ns2:Hash0="0e0e', b'ns2:Hash0="0e', "not 48 bytes"),
        (b"<ns0:Meta ", b"<ns0:Meta/><ns0:Meta ", "one Meta"),
        (
            b"</ds:Signature>",
            b'</ds:Signature><Signature xmlns="http://www.w3.org/2000/09/xmldsig#"/>',
            "found 2",
        ),
        (b"<ds:X509Certificate>MIIC", b"<ds:X509Certificate>!!IIC", "does not decode"),
    ],
)
def test_a_damaged_rim_is_a_parse_error_naming_what(old: bytes, new: bytes, message: str) -> None:
    assert old in DRIVER
    with pytest.raises(ParseError, match=message):
        parse_rim(DRIVER.replace(old, new, 1))


def test_a_payload_without_measurements_is_a_parse_error() -> None:
    start, end = DRIVER.index(b"<ns0:Resource "), DRIVER.index(b"</ns0:Payload>")
    with pytest.raises(ParseError, match="no measurements"):
        parse_rim(DRIVER[:start] + DRIVER[end:])


def test_a_signature_without_certificates_is_a_parse_error() -> None:
    start, end = DRIVER.index(b"<ds:X509Data>"), DRIVER.index(b"</ds:X509Data>") + 14
    with pytest.raises(ParseError, match="no certificate"):
        parse_rim(DRIVER[:start] + DRIVER[end:])


# ----------------------------------------------------------------------------- verify errors


@pytest.mark.parametrize(
    "marker",
    [
        b'index="7" active="True" alternatives="1" ns2:Hash0="',  # an active golden value
        b'index="3" active="False" alternatives="1" ns2:Hash0="',  # an inactive one
        b'colloquialVersion="5',  # the version
        b"<ds:SignatureValue>",  # the signature itself
        b"<ds:DigestValue>",  # the reference digest
    ],
)
def test_a_changed_byte_in_a_signed_element_fails_at_rim_signature(marker: bytes) -> None:
    tampered = flip_hex(DRIVER, marker) if b"Hash" in marker or b"Version" in marker else None
    if tampered is None:  # base64 text: change one character
        at = DRIVER.index(marker) + len(marker)
        tampered = DRIVER[:at] + (b"A" if DRIVER[at : at + 1] != b"A" else b"B") + DRIVER[at + 1 :]
    assert len(tampered) == len(DRIVER)
    with pytest.raises(VerificationError) as info:
        verify_rim(tampered, roots=[ROOT], at=inside(DRIVER))
    assert info.value.step == "rim_signature"


def test_a_chain_that_ends_at_another_root_fails_at_rim_chain() -> None:
    with pytest.raises(VerificationError) as info:
        verify_rim(DRIVER, roots=[pinned_device_root()], at=inside(DRIVER))
    assert info.value.step == "rim_chain"
    assert "NVIDIA CoRIM signing Root CA" in info.value.detail


def test_a_chain_missing_its_middle_certificate_fails_at_rim_chain() -> None:
    blocks = CERT_RE.findall(DRIVER)
    cut = b"<ds:X509Certificate>" + blocks[1] + b"</ds:X509Certificate>"
    with pytest.raises(VerificationError) as info:
        verify_rim(DRIVER.replace(cut, b"", 1), roots=[ROOT], at=inside(DRIVER))
    assert info.value.step == "rim_chain"
    assert "HCC RIM L4 Signer" in info.value.detail


def test_today_the_signer_has_expired_and_the_error_says_when() -> None:
    leaf = keyinfo_certs(DRIVER)[0]
    assert leaf.not_valid_after_utc < NOW  # 2025-06-26, from the certificate itself
    with pytest.raises(VerificationError) as info:
        verify_rim(DRIVER, roots=[ROOT], at=NOW)
    assert info.value.step == "rim_expired"
    assert "expired at 2025-06-26T06:10:12Z" in info.value.detail
    assert "HCC RIM L4 Signer" in info.value.detail


def test_before_the_signer_was_issued_fails_at_rim_expired() -> None:
    before = keyinfo_certs(DRIVER)[0].not_valid_before_utc - dt.timedelta(days=1)
    with pytest.raises(VerificationError, match="not valid before") as info:
        verify_rim(DRIVER, roots=[ROOT], at=before)
    assert info.value.step == "rim_expired"


def _own_pki() -> tuple[x509.Certificate, x509.Certificate, ec.EllipticCurvePrivateKey]:
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(
        subject: str,
        issuer: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA384())
        )

    root_key, leaf_key = (
        ec.generate_private_key(ec.SECP384R1()),
        ec.generate_private_key(ec.SECP384R1()),
    )
    root = cert("Other RIM Root", "Other RIM Root", root_key, root_key, True)
    leaf = cert("Other RIM Signer", "Other RIM Root", leaf_key, root_key, False)
    return root, leaf, leaf_key


def _resign(data: bytes, chain: list[x509.Certificate], key: ec.EllipticCurvePrivateKey) -> bytes:
    start, end = data.index(b"<ds:Signature "), data.index(b"</ds:Signature>") + 15
    unsigned = data[:start] + data[end:]
    signer = XMLSigner(
        signature_algorithm=SignatureMethod.ECDSA_SHA384,
        digest_algorithm=DigestAlgorithm.SHA384,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1,
    )
    signed = signer.sign(etree.fromstring(unsigned), key=key, cert=chain)
    return bytes(etree.tostring(signed))


def test_a_rim_resigned_under_another_root_fails_at_rim_chain_and_passes_under_that_root() -> None:
    root, leaf, key = _own_pki()
    forged = _resign(DRIVER, [leaf, root], key)
    with pytest.raises(VerificationError) as info:
        verify_rim(forged, roots=[ROOT], at=NOW)
    assert info.value.step == "rim_chain"
    assert "Other RIM Root" in info.value.detail
    rim = verify_rim(forged, roots=[ROOT, root], at=NOW)
    assert rim.version == "545.00"
    assert rim.signer_chain[0] == leaf
    # The leaf alone in KeyInfo also chains: the root is found among the trusted ones.
    assert verify_rim(_resign(DRIVER, [leaf], key), roots=[root], at=NOW).kind == "driver"


# ----------------------------------------------------------------------------- acceptance


@pytest.mark.parametrize("path", sorted(NV.glob("*.swidtag")), ids=lambda p: p.name)
def test_every_shipped_rim_verifies_to_nvidias_rim_root_inside_its_validity(path: Path) -> None:
    data = path.read_bytes()
    rim = verify_rim(data, roots=[pinned_rim_root()], at=inside(data))
    assert rim.signer_chain == tuple(keyinfo_certs(data))
    assert rim.signer_chain[-1] == ROOT
    assert {i for i, m in rim.measurements.items() if m.active} == set(active(data))
    version = re.search(rb'colloquialVersion="([^"]+)"', data)
    assert version is not None
    assert rim.version == version.group(1).decode()
    assert rim.kind == ("driver" if path.name.startswith("Driver") else "vbios")


def test_the_test_no_gpu_driver_rim() -> None:
    rim = verify_rim(DRIVER, roots=[ROOT], at=inside(DRIVER))
    assert (rim.kind, rim.version, rim.product) == ("driver", "545.00", "GH100")
    assert rim.tag_id.startswith("f0d3a263")
    on = sorted(i for i, m in rim.measurements.items() if m.active)
    assert on == sorted(active(DRIVER)) == [7, *range(21, 41)]
    assert len(rim.measurements) == 64
    m7 = rim.measurements[7]
    assert (m7.name, m7.size, m7.alternatives) == ("Measurement_7", 48, active(DRIVER)[7])
    assert len(rim.measurements[23].alternatives) == 2


def test_the_test_no_gpu_vbios_rim() -> None:
    rim = verify_rim(VBIOS, roots=[ROOT], at=inside(VBIOS))
    assert (rim.kind, rim.version) == ("vbios", "96.00.5E.00.01")
    on = sorted(i for i, m in rim.measurements.items() if m.active)
    assert on == sorted(active(VBIOS)) == [*range(7), *range(8, 13)]
    assert rim.measurements[1].name == "HashedMeasurement_1_FSP"


def test_kind_can_be_given() -> None:
    assert parse_rim(VBIOS, kind="driver").kind == "driver"


# ----------------------------------------------------------------------------- comparison


def _expected_mismatches() -> list[tuple[int, str]]:
    """Computed from the artefacts with regexes: an active golden value (RIM index I) that
    differs from Trustee's claimed measurement at block I + 1."""
    out = [
        (i + 1, kind)
        for kind, data in (("driver", DRIVER), ("vbios", VBIOS))
        for i, value in active(data).items()
        if REPORT[i + 1] not in value
    ]
    return sorted(out)


def test_the_real_report_against_the_test_no_gpu_rims_mismatches_at_named_indexes() -> None:
    driver, vbios = parse_rim(DRIVER), parse_rim(VBIOS)
    found = compare_measurements(REPORT, driver, vbios)
    assert [(m.report_index, m.rim) for m in found] == _expected_mismatches()
    assert [m.report_index for m in found] == [
        2, 3, 4, 8, 10, 12, 22, 23, 26, 27, 28, 30, 31, 32, 33, 35, 37, 38, 40, 41,
    ]  # fmt: skip
    first = found[0]
    assert first.actual == CLAIMS["measurements"]["2"]
    assert first.expected == tuple(v.hex() for v in active(VBIOS)[1])
    # RIM index 35 (block 36) matches in this report; NVDEC0 is disabled ("U") there anyway.
    assert CLAIMS["config"]["nvdec0_status"] == "U"
    assert compare_measurements(REPORT, driver, vbios, nvdec0_disabled=True) == found


def test_matching_measurements_give_no_mismatch() -> None:
    driver, vbios = parse_rim(DRIVER), parse_rim(VBIOS)
    report = dict(REPORT)
    for data in (DRIVER, VBIOS):
        report.update({i + 1: v[-1] for i, v in active(data).items()})
    assert compare_measurements(report, driver, vbios) == []


def test_index_35_is_skipped_only_when_nvdec0_is_disabled() -> None:
    driver, vbios = parse_rim(DRIVER), parse_rim(VBIOS)
    report = {i + 1: v[0] for data in (DRIVER, VBIOS) for i, v in active(data).items()}
    report[36] = bytes(48)
    assert [m.report_index for m in compare_measurements(report, driver, vbios)] == [36]
    assert compare_measurements(report, driver, vbios, nvdec0_disabled=True) == []


def test_size_alternatives_and_missing_blocks() -> None:
    a, b = bytes([1]) * 48, bytes([2]) * 48
    two = GoldenMeasurement(0, "m0", 48, (a, b), True)
    short = GoldenMeasurement(1, "m1", 32, (a[:32],), True)
    driver = Rim("driver", "1.0", "t", "GH100", {0: two, 1: short}, ())
    vbios = Rim(
        "vbios", "96.00.00.00.00", "t", "GH100", {2: GoldenMeasurement(2, "m2", 48, (a,), True)}, ()
    )
    assert compare_measurements({1: b, 2: a[:32], 3: a}, driver, vbios) == []
    found = compare_measurements({1: b + b"\x00", 2: a[:32]}, driver, vbios)
    assert [(m.report_index, m.actual) for m in found] == [(1, (b + b"\x00").hex()), (3, None)]


def test_both_rims_active_at_one_index_is_a_rim_conflict() -> None:
    driver, vbios = parse_rim(DRIVER), parse_rim(VBIOS)
    measurements = dict(vbios.measurements)
    measurements[7] = dataclasses.replace(measurements[7], active=True)
    with pytest.raises(VerificationError) as info:
        compare_measurements(REPORT, driver, dataclasses.replace(vbios, measurements=measurements))
    assert info.value.step == "rim_conflict"
    assert "index 7 (report block 8)" in info.value.detail


# ----------------------------------------------------------------------------- ids


def test_rim_ids_as_nvidias_rim_service_names_them() -> None:
    config = CLAIMS["config"]
    assert (
        rim_id("driver", driver_version=config["driver_version"]) == "NV_GPU_DRIVER_GH100_550.90.07"
    )
    assert (
        rim_id(
            "vbios",
            project=config["project"],
            project_sku=config["project_sku"],
            chip_sku=config["chip_sku"],
            vbios_version=config["vbios_version"],
        )
        == "NV_GPU_VBIOS_1010_0200_882_96009F0001"
    )
    assert (
        rim_id(
            "vbios",
            project="g520 ",
            project_sku="0202\x00",
            chip_sku="885",
            vbios_version="96.00.6d.00.08",
        )
        == "NV_GPU_VBIOS_G520_0202_885_96006D0008"
    )


def test_a_rim_id_without_its_parts_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="driver_version"):
        rim_id("driver")
    with pytest.raises(ParseError, match="project_sku, chip_sku"):
        rim_id("vbios", project="1010", project_sku="", vbios_version="96.00.9f.00.01")
