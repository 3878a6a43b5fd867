"""The SPDM GET_MEASUREMENTS parser and Trustee's evidence envelope, malformed inputs first.

Vectors (tests/data/SOURCES.md, NVIDIA section): ``hopperAttestationReport.txt`` (nvtrust's
real H100 report: nonce 931d8dd0…, driver 550.90.07, VBIOS 96.00.9f.00.01, 64 blocks) and
``hopper_coco_report1.txt`` (Trustee's CoCo CI report: driver 580.95.05, one zero byte after
the signature).  Every malformed input is a ParseError naming the field, never another type.
"""

from __future__ import annotations

import base64
import json
import struct

import pytest
from datadir import VECTORS

from veritee.errors import ParseError
from veritee.verifier.nvidia_spdm import (
    REQUEST_LEN,
    SIGNATURE_LEN,
    format_vbios_version,
    parse_gpu_evidence,
    parse_opaque,
    parse_report,
)

NV = VECTORS / "nvidia"
REPORT = bytes.fromhex((NV / "hopperAttestationReport.txt").read_text().strip())
CHAIN = (NV / "hopperCertChain.txt").read_bytes()
NONCE = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
RECORD_AT = REQUEST_LEN + 8  # response header: version, code, p1, p2, blocks, u24 length


def _record_len() -> int:
    return int.from_bytes(REPORT[REQUEST_LEN + 5 : REQUEST_LEN + 8], "little")


def _opaque_at() -> int:
    return RECORD_AT + _record_len() + 32


def _item(kind: int, data: bytes) -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


VERSIONS = _item(3, b"550.90.07\x00") + _item(6, bytes.fromhex("009f009601000000"))


# ---------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    "cut", [0, 1, 36, 37, 40, RECORD_AT + 3, len(REPORT) - 97, len(REPORT) - 1]
)
def test_every_truncation_is_a_parse_error(cut: int) -> None:
    with pytest.raises(ParseError, match="nvidia report"):
        parse_report(REPORT[:cut])


def test_request_version_other_than_1_1_is_refused() -> None:
    with pytest.raises(ParseError, match="request SPDM version 0x12"):
        parse_report(b"\x12" + REPORT[1:])


def test_response_version_other_than_1_1_is_refused() -> None:
    bad = bytearray(REPORT)
    bad[REQUEST_LEN] = 0x10
    with pytest.raises(ParseError, match="response SPDM version 0x10"):
        parse_report(bytes(bad))


def test_measurement_not_in_dmtf_layout_is_refused() -> None:
    bad = bytearray(REPORT)
    bad[RECORD_AT + 1] = 2  # first block's MeasurementSpecification
    with pytest.raises(ParseError, match="specification 2 is not DMTF"):
        parse_report(bytes(bad))


def test_more_blocks_than_the_record_holds_is_refused() -> None:
    bad = bytearray(REPORT)
    bad[REQUEST_LEN + 4] = 65  # NumberOfBlocks, the record holds 64
    with pytest.raises(ParseError, match="truncated: measurement block index"):
        parse_report(bytes(bad))


def test_fewer_blocks_than_the_record_holds_is_refused() -> None:
    bad = bytearray(REPORT)
    bad[REQUEST_LEN + 4] = 63
    with pytest.raises(ParseError, match="beyond its 63 blocks"):
        parse_report(bytes(bad))


def test_record_length_beyond_the_report_is_refused() -> None:
    bad = bytearray(REPORT)
    bad[REQUEST_LEN + 5 : REQUEST_LEN + 8] = (0xFFFFFF).to_bytes(3, "little")
    with pytest.raises(ParseError, match="MeasurementRecord needs"):
        parse_report(bytes(bad))


def test_opaque_length_beyond_the_report_is_refused() -> None:
    bad = bytearray(REPORT)
    bad[_opaque_at() : _opaque_at() + 2] = b"\xff\xff"
    with pytest.raises(ParseError, match="OpaqueData needs"):
        parse_report(bytes(bad))


def test_unknown_opaque_type_is_refused() -> None:
    with pytest.raises(ParseError, match="unknown opaque data type 99"):
        parse_opaque(VERSIONS + _item(99, b"x"))


def test_duplicate_opaque_item_is_refused() -> None:
    with pytest.raises(ParseError, match="driver_version appears twice"):
        parse_opaque(VERSIONS + _item(3, b"1.0\x00"))


@pytest.mark.parametrize(("kind", "name"), [(3, "vbios_version"), (6, "driver_version")])
def test_driver_and_vbios_versions_are_required(kind: int, name: str) -> None:
    only = _item(kind, b"550.90.07\x00" if kind == 3 else bytes(8))
    with pytest.raises(ParseError, match=f"lacks {name}"):
        parse_opaque(only)


def test_truncated_opaque_item_is_refused() -> None:
    with pytest.raises(ParseError, match="opaque item data"):
        parse_opaque(VERSIONS + struct.pack("<HH", 4, 9) + b"abc")


def test_measurement_count_not_a_multiple_of_four_is_refused() -> None:
    with pytest.raises(ParseError, match="measurement_count is not a list of 4-byte"):
        parse_opaque(VERSIONS + _item(12, b"\x01\x00\x00"))


def test_oversized_integer_items_are_refused() -> None:
    with pytest.raises(ParseError, match="feature_flag is longer than 8 bytes"):
        parse_opaque(VERSIONS + _item(36, bytes(9)))


def test_empty_vbios_version_is_refused() -> None:
    with pytest.raises(ParseError, match="vbios_version is too short"):
        format_vbios_version(b"\x01")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"{not json", "not JSON"),
        (b"{}", "device_evidence_list is missing"),
        (b'{"device_evidence_list": []}', "missing or empty"),
        (b'{"device_evidence_list": [1]}', "is not an object"),
        (b'{"device_evidence_list": [{"arch": "HOPPER"}]}', "evidence is missing"),
        (
            b'{"device_evidence_list": [{"arch": "AMPERE", "evidence": "00", "certificate": ""}]}',
            "unknown arch 'AMPERE'",
        ),
        (
            b'{"device_evidence_list": [{"arch": "HOPPER", "evidence": "!!", "certificate": ""}]}',
            "neither hex nor base64",
        ),
        (
            b'{"device_evidence_list": [{"arch": "HOPPER", "evidence": "00", "certificate": "%"}]}',
            "certificate is not base64",
        ),
        (
            b'{"device_evidence_list": [{"arch": "hopper", "uuid": 7, "evidence": "00",'
            b' "certificate": ""}]}',
            "uuid is not a string",
        ),
    ],
)
def test_malformed_envelopes_are_parse_errors(doc: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_gpu_evidence(doc)


# ---------------------------------------------------------------------------- real reports


def test_real_hopper_report_fields() -> None:
    report = parse_report(REPORT)
    assert report.nonce.hex() == NONCE
    assert report.driver_version == "550.90.07"
    assert report.vbios_version == "96.00.9f.00.01"
    assert [b.index for b in report.blocks] == list(range(1, 65))
    assert all(len(b.value) == 48 for b in report.blocks)
    assert report.fwid == (
        "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f7275494ba94bb5cdfdb3055ee051762b1f75d"
    )
    assert report.signed == REPORT[:-SIGNATURE_LEN]
    assert report.signature == REPORT[-SIGNATURE_LEN:]
    assert report.trailing == b""


def test_real_hopper_config_is_trustees() -> None:
    """Trustee's hopperAttestationReport-claims.txt gives the decoded opaque data as `config`."""
    expected = json.loads((NV / "hopperAttestationReport-claims.txt").read_text())
    report = parse_report(REPORT)
    assert dict(report.opaque) == expected["config"]
    assert {str(b.index): b.value.hex() for b in report.blocks} == expected["measurements"]


def test_coco_report_keeps_its_trailing_byte_outside_the_signed_bytes() -> None:
    raw = bytes.fromhex((NV / "hopper_coco_report1.txt").read_text().strip())
    report = parse_report(raw)
    assert report.trailing == b"\x00"
    assert report.signed == raw[: -SIGNATURE_LEN - 1]
    assert report.driver_version == "580.95.05"
    assert report.vbios_version == "96.00.74.00.1a"


def test_envelope_accepts_hex_or_base64_and_defaults_the_uuid() -> None:
    cert = base64.b64encode(CHAIN).decode()
    for encoded in (REPORT.hex(), base64.b64encode(REPORT).decode()):
        doc = {
            "device_evidence_list": [{"arch": "HOPPER", "evidence": encoded, "certificate": cert}]
        }
        (device,) = parse_gpu_evidence(json.dumps(doc).encode())
        assert (device.arch, device.uuid, device.report, device.chain) == (
            "Hopper",
            "unknown",
            REPORT,
            CHAIN,
        )


def test_bare_report_as_hex_text_or_binary() -> None:
    for data in (REPORT, REPORT.hex().encode(), b"0x" + REPORT.hex().encode() + b"\n"):
        (device,) = parse_gpu_evidence(data, CHAIN)
        assert device.report == REPORT
        assert device.chain == CHAIN


def test_vbios_version_format() -> None:
    assert format_vbios_version(bytes.fromhex("009f009601000000")) == "96.00.9f.00.01"
