"""Parser for an NVIDIA GPU attestation report: SPDM 1.1 GET_MEASUREMENTS request + response.

Layout (DMTF DSP0274 1.1, little-endian):

- request, 37 bytes: SPDMVersion (0x11), RequestResponseCode, Param1, Param2, Nonce[32],
  SlotIDParam;
- response: SPDMVersion (0x11), RequestResponseCode, Param1, Param2, NumberOfBlocks (u8),
  MeasurementRecordLength (u24), MeasurementRecord, Nonce[32], OpaqueLength (u16), OpaqueData,
  Signature (96 bytes, raw r||s of ECDSA P-384).

The measurement record holds ``NumberOfBlocks`` blocks (index u8, specification u8 = 1 for the
DMTF layout, size u16, then DMTF type u8, value size u16, value).  NVIDIA's opaque data is a
list of items (type u16, size u16, data); known types are decoded the way Trustee's verifier
decodes them, so the ``config`` claim equals Trustee's.  Unknown types, duplicates, or a missing
driver or VBIOS version are malformed.

Evidence arrives in Trustee's envelope (:func:`parse_gpu_evidence`): ``{"device_evidence_list":
[{"arch", "uuid" (optional), "evidence" (hex or base64 of the report), "certificate" (base64 of
the PEM chain)}]}``, or as one bare report.

Parsing checks structure only; every malformed input raises
:class:`~veritee.errors.ParseError`.  Signatures and bindings are the verifier's job.
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from veritee.binary import Reader
from veritee.encoding import decode_evidence
from veritee.errors import InputError, ParseError

SPDM_VERSION: Final = 0x11
REQUEST_LEN: Final = 37
NONCE_LEN: Final = 32
SIGNATURE_LEN: Final = 96
DMTF_SPEC: Final = 1

_WHAT = "nvidia report"

# Opaque data item types (NVIDIA's OPAQUE_FIELD_ID_*), with the claim names Trustee uses.
OPAQUE_NAMES: Final[Mapping[int, str]] = {
    1: "cert_issuer_name",
    2: "cert_authority_key_identifier",
    3: "driver_version",
    4: "gpu_info",
    5: "id_sku",
    6: "vbios_version",
    7: "manufacturer_id",
    8: "tamper_detection",
    9: "smc",
    10: "vpr",
    11: "nvdec0_status",
    12: "measurement_count",
    13: "cpr_info",
    14: "board_id",
    15: "chip_sku",
    16: "chip_sku_mod",
    17: "project",
    18: "project_sku",
    19: "project_sku_mod",
    20: "fwid",
    21: "protected_pcie_status",
    22: "switch_pdi",
    23: "floorswept_ports",
    24: "position_id",
    25: "lock_switch_status",
    32: "gpu_link_conn",
    33: "sys_enable_status",
    34: "opaque_data_version",
    35: "chip_info",
    36: "feature_flag",
}
# Items that are NUL-terminated text.
_TEXT_ITEMS: Final = frozenset(
    {
        "driver_version",
        "chip_sku",
        "chip_sku_mod",
        "nvdec0_status",
        "project",
        "project_sku",
        "protected_pcie_status",
        "chip_info",
    }
)
_FEATURES: Final = {0: "SPT", 1: "MPT", 2: "PPCIE"}
#: Device architectures of Trustee's evidence, by lower-case name, in Trustee's spelling.
ARCHITECTURES: Final = {"hopper": "Hopper", "blackwell": "Blackwell", "ls10": "LS10"}


@dataclass(frozen=True)
class MeasurementBlock:
    """One SPDM measurement block in the DMTF layout."""

    index: int
    dmtf_type: int
    value: bytes


@dataclass(frozen=True)
class SpdmReport:
    """A parsed GET_MEASUREMENTS exchange.

    ``signed`` is the request and response up to (not including) the signature: the bytes
    whose SHA-384 the GPU signs (``trailing`` is outside it).  ``opaque`` maps Trustee's item
    names to decoded JSON values.
    """

    raw: bytes
    request_code: int
    request_param1: int
    request_param2: int
    nonce: bytes
    slot_id: int
    response_code: int
    response_param1: int
    response_param2: int
    blocks: tuple[MeasurementBlock, ...]
    response_nonce: bytes
    opaque: Mapping[str, Any]
    signed: bytes
    signature: bytes
    trailing: bytes = b""

    @property
    def measurements(self) -> dict[int, bytes]:
        """Block index (1-based) -> measurement value."""
        return {block.index: block.value for block in self.blocks}

    @property
    def driver_version(self) -> str:
        return str(self.opaque["driver_version"])

    @property
    def vbios_version(self) -> str:
        return str(self.opaque["vbios_version"])

    @property
    def fwid(self) -> str | None:
        value = self.opaque.get("fwid")
        return value if isinstance(value, str) else None


def parse_report(data: bytes) -> SpdmReport:
    """Parse SPDM request + response bytes.

    Bytes after the signature are kept in ``trailing`` and covered by nothing: real GPUs
    hand out reports with padding there (Trustee's CoCo CI report has one zero byte), and
    Trustee ignores them too.
    """
    r = Reader(data, _WHAT)
    version = r.take(1, "request SPDMVersion")[0]
    if version != SPDM_VERSION:
        raise ParseError(_WHAT, f"request SPDM version 0x{version:02x} is not 1.1 (0x11)", 0)
    code, p1, p2 = r.take(3, "request code and params")
    nonce = r.take(NONCE_LEN, "request nonce")
    slot = r.take(1, "request SlotIDParam")[0]
    start = r.pos
    version = r.take(1, "response SPDMVersion")[0]
    if version != SPDM_VERSION:
        raise ParseError(_WHAT, f"response SPDM version 0x{version:02x} is not 1.1 (0x11)", start)
    rcode, rp1, rp2 = r.take(3, "response code and params")
    count = r.take(1, "NumberOfBlocks")[0]
    record_len = int.from_bytes(r.take(3, "MeasurementRecordLength"), "little")
    record_at = r.pos
    blocks = _blocks(r.take(record_len, "MeasurementRecord"), count, record_at)
    response_nonce = r.take(NONCE_LEN, "response nonce")
    opaque_len = r.u16("OpaqueLength")
    opaque_at = r.pos
    opaque = parse_opaque(r.take(opaque_len, "OpaqueData"), opaque_at)
    signed_len = r.pos
    signature = r.take(SIGNATURE_LEN, "signature")
    return SpdmReport(
        raw=data,
        request_code=code,
        request_param1=p1,
        request_param2=p2,
        nonce=nonce,
        slot_id=slot,
        response_code=rcode,
        response_param1=rp1,
        response_param2=rp2,
        blocks=blocks,
        response_nonce=response_nonce,
        opaque=opaque,
        signed=data[:signed_len],
        signature=signature,
        trailing=data[r.pos :],
    )


def _blocks(record: bytes, count: int, base: int) -> tuple[MeasurementBlock, ...]:
    r = Reader(record, _WHAT)
    blocks: list[MeasurementBlock] = []
    seen: set[int] = set()
    for _ in range(count):
        at = base + r.pos
        index = r.take(1, "measurement block index")[0]
        spec = r.take(1, "measurement specification")[0]
        if spec != DMTF_SPEC:
            raise ParseError(
                _WHAT, f"measurement block {index}: specification {spec} is not DMTF (1)", at
            )
        size = r.u16("measurement block size")
        inner = Reader(r.take(size, f"measurement block {index}"), _WHAT)
        dmtf_type = inner.take(1, "DMTF measurement type")[0]
        value_size = inner.u16("DMTF measurement value size")
        value = inner.take(value_size, f"measurement {index} value")
        if inner.remaining():
            raise ParseError(
                _WHAT, f"measurement block {index}: {inner.remaining()} bytes after its value", at
            )
        if index in seen:
            raise ParseError(_WHAT, f"measurement block index {index} appears twice", at)
        seen.add(index)
        blocks.append(MeasurementBlock(index, dmtf_type, value))
    if r.remaining():
        raise ParseError(
            _WHAT,
            f"MeasurementRecord has {r.remaining()} bytes beyond its {count} blocks",
            base + r.pos,
        )
    return tuple(blocks)


def parse_opaque(data: bytes, base: int = 0) -> dict[str, Any]:
    """Decode NVIDIA's opaque data items into Trustee's ``config`` map."""
    r = Reader(data, _WHAT)
    items: dict[str, Any] = {}
    while r.remaining():
        at = base + r.pos
        kind = r.u16("opaque item type")
        size = r.u16("opaque item size")
        value = r.take(size, "opaque item data")
        name = OPAQUE_NAMES.get(kind)
        if name is None:
            raise ParseError(_WHAT, f"unknown opaque data type {kind}", at)
        if name in items:
            raise ParseError(_WHAT, f"opaque data item {name} appears twice", at)
        items[name] = _decode_item(name, value, at)
    for required in ("driver_version", "vbios_version"):
        if required not in items:
            raise ParseError(_WHAT, f"opaque data lacks {required}", base)
    return items


def _decode_item(name: str, value: bytes, at: int) -> Any:
    if name in _TEXT_ITEMS:
        return value.decode("utf-8", errors="replace").rstrip("\x00")
    if name == "vbios_version":
        return format_vbios_version(value, at)
    if name == "measurement_count":
        return {str(i + 1): n for i, (n,) in enumerate(_chunks(value, "<I", name, at))}
    if name == "switch_pdi":
        if len(value) % 8:
            raise ParseError(_WHAT, "switch_pdi is not a list of 8-byte values", at)
        return [value[i : i + 8].hex() for i in range(0, len(value), 8)]
    if name in ("opaque_data_version", "feature_flag"):
        if len(value) > 8:
            raise ParseError(_WHAT, f"{name} is longer than 8 bytes", at)
        number = int.from_bytes(value, "little")
        return number if name == "opaque_data_version" else _FEATURES.get(number, "unknown")
    return value.hex()


def _chunks(value: bytes, fmt: str, name: str, at: int) -> list[tuple[int, ...]]:
    size = struct.calcsize(fmt)
    if len(value) % size:
        raise ParseError(_WHAT, f"{name} is not a list of {size}-byte values", at)
    return list(struct.iter_unpack(fmt, value))


def format_vbios_version(value: bytes, at: int = 0) -> str:
    """NVIDIA's VBIOS version text: the first half of the bytes reversed, then the next byte,
    each as two lower-case hex digits joined by dots (``96.00.9f.00.01``)."""
    half = len(value) // 2
    if half == 0:
        raise ParseError(_WHAT, "vbios_version is too short", at)
    return ".".join([*(f"{b:02x}" for b in reversed(value[:half])), f"{value[half]:02x}"])


# ------------------------------------------------------------------ evidence envelope


@dataclass(frozen=True)
class GpuDevice:
    """One device of the evidence: its architecture (Trustee's spelling), uuid, the SPDM
    report bytes and the PEM chain (None for a bare report given without one)."""

    arch: str
    uuid: str
    report: bytes
    chain: bytes | None


def parse_gpu_evidence(evidence: bytes, cert_chain: bytes | None = None) -> list[GpuDevice]:
    """Trustee's ``{"device_evidence_list": [...]}`` JSON, or one bare report (binary, hex or
    base64) whose chain is ``cert_chain``.  Malformed evidence raises ParseError."""
    text = evidence.lstrip()
    if not text.startswith(b"{"):
        try:
            report = decode_evidence(evidence)
        except InputError as exc:
            raise ParseError("nvidia evidence", str(exc)) from exc
        return [GpuDevice("Hopper", "unknown", report, cert_chain)]
    try:
        doc = json.loads(evidence)
    except ValueError as exc:
        raise ParseError("nvidia evidence", f"not JSON: {exc}") from exc
    items = doc.get("device_evidence_list") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise ParseError("nvidia evidence", "device_evidence_list is missing or empty")
    return [_device(item, n) for n, item in enumerate(items)]


def _device(item: Any, n: int) -> GpuDevice:
    what = f"nvidia evidence device {n}"
    if not isinstance(item, dict):
        raise ParseError(what, "is not an object")
    fields = {}
    for key in ("arch", "evidence", "certificate"):
        value = item.get(key)
        if not isinstance(value, str):
            raise ParseError(what, f"{key} is missing or not a string")
        fields[key] = value
    arch = ARCHITECTURES.get(fields["arch"].lower())
    if arch is None:
        raise ParseError(what, f"unknown arch {fields['arch'][:20]!r}")
    uuid = item.get("uuid", "unknown")
    if not isinstance(uuid, str):
        raise ParseError(what, "uuid is not a string")
    return GpuDevice(arch, uuid, _hex_or_base64(fields["evidence"], what), _b64(fields, what))


def _hex_or_base64(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        pass
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ParseError(what, "evidence is neither hex nor base64") from exc


def _b64(fields: dict[str, str], what: str) -> bytes:
    try:
        return binascii.a2b_base64(fields["certificate"].encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ParseError(what, "certificate is not base64 (of the PEM chain)") from exc
