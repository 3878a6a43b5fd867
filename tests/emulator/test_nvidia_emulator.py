"""The emulated H100: its PKI, SPDM report, RIMs and OCSP responses, checked independently of
veritee's verifier (cryptography, signxml, byte offsets) and against a real H100 report."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import re
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature as BadSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import ocsp
from signxml import XMLVerifier
from signxml.exceptions import InvalidSignature

from veritee.emulator.nvidia import (
    DRIVER_INDEXES,
    VBIOS_INDEXES,
    GpuFields,
    apply_gpu_settings,
    build_gpu_report,
    build_rims,
    default_measurement,
    gpu_evidence_json,
    vbios_version_bytes,
)
from veritee.emulator.nvidia_pki import DEVICE_NAMES, RIM_NAMES, NvidiaTestRoot
from veritee.emulator.root import TestRoot

NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
REQUEST_LEN = 37


@pytest.fixture(scope="module")
def pki(test_root: TestRoot) -> NvidiaTestRoot:
    assert test_root.nvidia is not None
    return test_root.nvidia


@pytest.fixture(scope="module")
def report(pki: NvidiaTestRoot) -> bytes:
    return build_gpu_report(pki, GpuFields(nonce=NONCE))


def _opaque_items(data: bytes) -> list[tuple[int, bytes]]:
    """(type, data) of every opaque item, walking the response by its length fields."""
    record_len = int.from_bytes(data[REQUEST_LEN + 5 : REQUEST_LEN + 8], "little")
    at = REQUEST_LEN + 8 + record_len + 32
    (size,) = struct.unpack_from("<H", data, at)
    opaque, items, i = data[at + 2 : at + 2 + size], [], 0
    while i < len(opaque):
        kind, length = struct.unpack_from("<HH", opaque, i)
        items.append((kind, opaque[i + 4 : i + 4 + length]))
        i += 4 + length
    assert len(data) == at + 2 + size + 96
    return items


def _blocks(data: bytes) -> dict[int, bytes]:
    count = data[REQUEST_LEN + 4]
    at, out = REQUEST_LEN + 8, {}
    for _ in range(count):
        index, spec, size = struct.unpack_from("<BBH", data, at)
        assert (spec, size) == (1, 51)
        dmtf_type, value_size = struct.unpack_from("<BH", data, at + 4)
        assert (dmtf_type, value_size) == (1, 48)
        out[index] = data[at + 7 : at + 7 + 48]
        at += 4 + size
    return out


def test_the_report_bytes_at_known_offsets(report: bytes) -> None:
    assert report[:4] == bytes([0x11, 0xE0, 0x01, 0xFF])  # SPDM 1.1 GET_MEASUREMENTS, all
    assert report[4:36] == NONCE
    assert report[36] == 0  # slot
    assert report[37:41] == bytes([0x11, 0x60, 0x00, 0x00])  # MEASUREMENTS response
    assert report[41] == 64
    assert int.from_bytes(report[42:45], "little") == 64 * 55
    assert report[45:52] == bytes([1, 1, 51, 0, 1, 48, 0])  # block 1: DMTF, 48-byte digest
    blocks = _blocks(report)
    assert sorted(blocks) == list(range(1, 65))
    assert blocks == {i: default_measurement(i) for i in range(1, 65)}


def test_the_opaque_items_mirror_a_real_h100_report(report: bytes, vectors: Path) -> None:
    real = bytes.fromhex((vectors / "nvidia" / "hopperAttestationReport.txt").read_text().strip())
    ours, theirs = _opaque_items(report), _opaque_items(real)
    assert [(k, len(v)) for k, v in ours] == [(k, len(v)) for k, v in theirs]
    assert len(report) == len(real)
    same = {k: v for k, v in ours if k not in (12, 20)}  # measurement counts and FWID differ
    assert same == {k: v for k, v in theirs if k not in (12, 20)}
    items = dict(ours)
    assert items[3] == b"550.90.07\x00"
    assert items[6] == vbios_version_bytes("96.00.9f.00.01") == bytes.fromhex("009f009601000000")
    counts = struct.unpack("<64I", items[12])
    assert [i + 1 for i, n in enumerate(counts) if n] == sorted(
        i + 1 for i in (*DRIVER_INDEXES, *VBIOS_INDEXES)
    )


def test_the_signature_verifies_with_the_leaf_key_and_the_chain_to_the_test_root(
    pki: NvidiaTestRoot, report: bytes
) -> None:
    leaf = pki.device_chain()[0]
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp384r1"
    signed, sig = report[:-96], report[-96:]
    der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
    key.verify(der, signed, ec.ECDSA(hashes.SHA384()))
    tampered = bytearray(signed)
    tampered[100] ^= 1
    with pytest.raises(BadSignature):
        key.verify(der, bytes(tampered), ec.ECDSA(hashes.SHA384()))
    chain = x509.load_pem_x509_certificates(pki.device_chain_pem())
    assert chain == pki.device_chain()
    assert chain[-1] == pki.device_root
    for cert, issuer in itertools.pairwise(chain):
        cert.verify_directly_issued_by(issuer)
    chain[-1].verify_directly_issued_by(chain[-1])
    names = [c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value for c in chain]
    assert names == [
        "GH100 A01 GSP FMC LF",
        "GH100 A01 GSP BROM",
        "NVIDIA GH100 Provisioner ICA 1",
        "NVIDIA GH100 Identity",
        "NVIDIA Device Identity CA",
    ]


def test_the_leaf_fwid_equals_the_opaque_fwid(
    pki: NvidiaTestRoot, report: bytes, vectors: Path
) -> None:
    ext = pki.device_chain()[0].extensions.get_extension_for_oid(
        x509.ObjectIdentifier("2.23.133.5.4.1")
    )
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    der = ext.value.value
    assert dict(_opaque_items(report))[20] == der[-48:] == pki.fwid
    # NVIDIA's layout: SEQUENCE {INTEGER 1, the BROM key's SPKI, SEQUENCE {sha384, fwid}}.
    real_leaf = x509.load_pem_x509_certificates(
        (vectors / "nvidia" / "hopperCertChain.txt").read_bytes()
    )[0]
    real = real_leaf.extensions.get_extension_for_oid(ext.oid).value
    assert isinstance(real, x509.UnrecognizedExtension)
    assert len(der) == len(real.value)
    assert der[:6] == real.value[:6] == bytes.fromhex("3081ba020101")
    assert der[-63:-48] == real.value[-63:-48]  # the FWID's algorithm and header
    brom_spki = (
        pki.device_chain()[1]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert brom_spki in der
    assert bytes.fromhex("0609608648016503040202") in der  # OID sha384


def test_settings_change_the_report(pki: NvidiaTestRoot) -> None:
    fields = GpuFields()
    apply_gpu_settings(fields, {"measurement.3": b"\x42" * 48, "nonce": b"\x01\x02"})
    data = build_gpu_report(pki, fields)
    assert _blocks(data)[3] == b"\x42" * 48
    assert data[4:36] == b"\x01\x02" + bytes(30)
    for bad in ({"measurement.65": bytes(48)}, {"measurement.3": b"\x00"}, {"colour": b""}):
        with pytest.raises(ValueError, match=r"measurement|unknown"):
            apply_gpu_settings(GpuFields(), bad)


def test_evidence_json_is_trustees_wire_form(pki: NvidiaTestRoot, report: bytes) -> None:
    doc = gpu_evidence_json(report, pki.device_chain_pem())
    (device,) = doc["device_evidence_list"]
    assert device["arch"] == "HOPPER"
    assert bytes.fromhex(device["evidence"]) == report
    assert base64.b64decode(device["certificate"]) == pki.device_chain_pem()


@pytest.fixture(scope="module")
def rim_root_file(pki: NvidiaTestRoot, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rim") / "rim_root.pem"
    path.write_bytes(pki.rim_root_pem)
    return str(path)


def _golden(rim: bytes) -> dict[int, tuple[bool, str]]:
    text = rim.decode()
    return {
        int(m["index"]): (m["active"] == "True", m["hash"])
        for m in re.finditer(
            r'index="(?P<index>\d+)" active="(?P<active>\w+)" alternatives="1" '
            r'ns2:Hash0="(?P<hash>[0-9a-f]+)"',
            text,
        )
    }


def test_rims_verify_with_signxml_to_the_test_rim_root(
    pki: NvidiaTestRoot, rim_root_file: str
) -> None:
    fields = GpuFields()
    driver, vbios = build_rims(pki, fields)
    for rim, version, active in (
        (driver, "550.90.07", DRIVER_INDEXES),
        (vbios, "96.00.9F.00.01", VBIOS_INDEXES),
    ):
        result = XMLVerifier().verify(rim, ca_pem_file=rim_root_file)
        assert not isinstance(result, list)
        assert result.signature_key == pki.rim_chain()[0].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert f'colloquialVersion="{version}"' in rim.decode()
        golden = _golden(rim)
        assert sorted(golden) == list(range(64))
        assert {i for i, (on, _) in golden.items() if on} == set(active)
        for i in active:
            assert golden[i][1] == fields.measurements[i + 1].hex()  # RIM index I = block I+1
        certs = re.findall(rb"<ds:X509Certificate>([^<]+)<", rim)
        assert len(certs) == len(RIM_NAMES)
    tampered = driver.replace(b'index="7" active="True"', b'index="7" active="False"')
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(tampered, ca_pem_file=rim_root_file)


def test_a_tampered_rim_index_differs_and_still_verifies(
    pki: NvidiaTestRoot, rim_root_file: str
) -> None:
    fields = GpuFields()
    driver, vbios = build_rims(pki, fields)
    bad_driver, bad_vbios = build_rims(pki, fields, tamper={3: b"\x42" * 48})
    assert _golden(bad_driver) == _golden(driver)
    differ = {i for i in range(64) if _golden(bad_vbios)[i] != _golden(vbios)[i]}
    assert differ == {2}  # report block 3
    assert _golden(bad_vbios)[2] == (True, "42" * 48)
    XMLVerifier().verify(bad_vbios, ca_pem_file=rim_root_file)


def test_ocsp_responses_are_good_and_signed_by_the_issuers(
    pki: NvidiaTestRoot, test_root: TestRoot
) -> None:
    directory = test_root.directory / "nvidia" / "ocsp"
    files = {p.stem: p.read_bytes() for p in directory.glob("*.der")}
    expected = {}
    for chain in (DEVICE_NAMES, RIM_NAMES):
        for name, parent in itertools.pairwise(chain):
            expected[f"{pki.certs[name].serial_number:x}"] = (pki.certs[name], pki.certs[parent])
    assert set(files) == set(expected)
    now = dt.datetime.now(dt.UTC)
    for serial, (cert, issuer) in expected.items():
        response = ocsp.load_der_ocsp_response(files[serial])
        assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == cert.serial_number
        assert response.next_update_utc is not None
        assert response.next_update_utc > now + dt.timedelta(days=365 * 10)
        assert (
            response.issuer_key_hash
            == hashlib.sha1(
                issuer.public_key().public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                )
            ).digest()
        )
        key = issuer.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert response.signature_hash_algorithm is not None
        key.verify(
            response.signature,
            response.tbs_response_bytes,
            ec.ECDSA(response.signature_hash_algorithm),
        )


def test_the_test_root_holds_the_default_gpus_rims(
    pki: NvidiaTestRoot, test_root: TestRoot, rim_root_file: str
) -> None:
    names = sorted(p.name for p in (test_root.directory / "nvidia" / "rims").iterdir())
    assert names == [
        "NV_GPU_DRIVER_GH100_550.90.07.swidtag",
        "NV_GPU_VBIOS_1010_0200_882_96009F0001.swidtag",
    ]
    for name in names:
        rim = (test_root.directory / "nvidia" / "rims" / name).read_bytes()
        XMLVerifier().verify(rim, ca_pem_file=rim_root_file)
    assert (test_root.directory / "nvidia" / "device_root.pem").read_bytes() == pki.device_root_pem
    assert (test_root.directory / "nvidia" / "rim_root.pem").read_bytes() == pki.rim_root_pem
    keys = list((test_root.directory / "nvidia").glob("*.key"))
    assert len(keys) == len(DEVICE_NAMES) + len(RIM_NAMES)
    assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys)


def test_save_and_load_round_trip(pki: NvidiaTestRoot, tmp_path: Path) -> None:
    pki.save(tmp_path / "nvidia")
    again = NvidiaTestRoot.load(tmp_path / "nvidia")
    assert again.certs == pki.certs
    assert again.fwid == pki.fwid
    assert [c for c, _ in again.authorities()] == [c for c, _ in pki.authorities()]
    assert len(pki.authorities()) == 7
    assert all(
        c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        for c, _ in pki.authorities()
    )
    (tmp_path / "nvidia" / "rim_l3.key").write_bytes(
        (tmp_path / "nvidia" / "rim_ca.key").read_bytes()
    )
    with pytest.raises(ValueError, match="rim_l3"):
        NvidiaTestRoot.load(tmp_path / "nvidia")
