"""Parse a confidential-computing event log (CCEL, TCG2 crypto-agile) and replay it.

The log (the ACPI CCEL table, and/or the Attestation Agent's AAEL appended to
it, as guest-components' ``read_eventlog`` sends it) is:

1. the Spec-ID header, a SHA-1-format ``TCG_PCR_EVENT`` (u32 index, u32 type =
   EV_NO_ACTION, 20-byte digest, u32 size, ``TCG_EfiSpecIdEvent``) whose
   algorithm list gives each digest's size;
2. ``TCG_PCR_EVENT2`` entries: u32 MR index, u32 event type, u32 digest count,
   count × (u16 algorithm, digest), u32 event size, event;
3. optionally an end: a u64 of all 0xFF or all zero (the unused CCEL area).

:func:`parse_ccel` returns the entries as Trustee's ``uefi_event_logs`` claim
(``deps/eventlog`` at trustee 78962cd4): ``{details, digest_matches_event,
digests: [{alg, digest}], event, index, type_name}`` with the same ``details``
per event type, reproducing Trustee's output for its test vectors exactly.
Like Trustee, an event whose data its type's parser cannot read makes the whole
log malformed.  :func:`replay` recomputes RTMR0..RTMR3 (CC MR indexes 1..4)
from the SHA-384 digests, skipping EV_NO_ACTION events.

Every malformed input raises :class:`~veritee.errors.ParseError`.  Where
Trustee would panic (an out-of-range slice) this raises ParseError too; SHA-1
digests, which Trustee refuses to compare, are compared; and replay skips
EV_NO_ACTION entries (TCG: they are never extended), which Trustee's replay
does not (its vectors carry them only at MR index 0, so results agree).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes

from veritee.binary import Reader
from veritee.errors import ParseError

__all__ = ["EVENT_TYPES", "JSON", "parse_ccel", "replay", "replay_ccel"]

JSON = dict[str, Any]
WHAT = "cc event log"

EV_NO_ACTION = 0x3
EV_EVENT_TAG = 0x6
AAEL_TAGGED_EVENT_ID = 0x4141454C
GUID_SIZE = 16

# TCG algorithm id -> (Trustee's name, digest size)
_ALGORITHMS: dict[int, tuple[str, int | None]] = {
    0x0001: ("RSA", None),
    0x0003: ("TDES", None),
    0x0004: ("SHA-1", 20),
    0x000B: ("SHA-256", 32),
    0x000C: ("SHA-384", 48),
    0x000D: ("SHA-512", 64),
    0x0012: ("SM3", 32),
}

EVENT_TYPES: dict[int, str] = {
    0x0: "EV_PREBOOT_CERT",
    0x1: "EV_POST_CODE",
    0x2: "EV_UNUSED",
    0x3: "EV_NO_ACTION",
    0x4: "EV_SEPARATOR",
    0x5: "EV_ACTION",
    0x6: "EV_EVENT_TAG",
    0x7: "EV_S_CRTM_CONTENTS",
    0x8: "EV_S_CRTM_VERSION",
    0x9: "EV_CPU_MICROCODE",
    0xA: "EV_PLATFORM_CONFIG_FLAGS",
    0xB: "EV_TABLE_OF_DEVICES",
    0xC: "EV_COMPACT_HASH",
    0xD: "EV_IPL",
    0xE: "EV_IPL_PARTITION_DATA",
    0xF: "EV_NONHOST_CODE",
    0x10: "EV_NONHOST_CONFIG",
    0x11: "EV_NONHOST_INFO",
    0x12: "EV_OMIT_BOOT_DEVICE_EVENTS",
    0x80000000: "EV_EFI_EVENT_BASE",
    0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG",
    0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION",
    0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
    0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER",
    0x80000006: "EV_EFI_GPT_EVENT",
    0x80000007: "EV_EFI_ACTION",
    0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
    0x80000009: "EV_EFI_HANDOFF_TABLES",
    0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
    0x8000000B: "EV_EFI_HANDOFF_TABLES2",
    0x8000000C: "EV_EFI_VARIABLE_BOOT2",
    0x80000010: "EV_EFI_HCRTM_EVENT",
    0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
    0x800000E1: "EV_EFI_SPDM_FIRMWARE_BLOB",
    0x800000E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
}


class _Bad(Exception):
    """An event's data that its type's parser rejects (becomes a ParseError)."""


# --------------------------------------------------------------------------- parsing


def parse_ccel(data: bytes) -> list[JSON]:
    """The log's entries (after the Spec-ID header) in Trustee's ``uefi_event_logs`` shape."""
    r = Reader(bytes(data), WHAT)
    sizes = _spec_id_header(r)
    entries: list[JSON] = []
    while r.pos < len(r.data):
        # The end marker (a u64 of all 0xFF) or the table's unused zero tail;
        # fewer than 8 such bytes at the very end count too.
        rest = r.data[r.pos : r.pos + 8]
        if rest in (b"\xff" * len(rest), bytes(len(rest))):
            break
        entries.append(_entry(r, sizes))
    return entries


def _spec_id_header(r: Reader) -> dict[int, int]:
    r.u32("header index")
    event_type = r.u32("header event type")
    if event_type != EV_NO_ACTION:
        raise ParseError(
            WHAT, f"first event has type {event_type:#x}, not EV_NO_ACTION (Spec ID)", 4
        )
    r.take(20, "header SHA-1 digest")
    size = r.u32("header event size")
    start = r.pos
    event = Reader(r.take(size, "Spec ID event"), WHAT)
    event.take(24, "Spec ID signature and versions")
    count = event.u32("Spec ID algorithm count")
    sizes: dict[int, int] = {}
    for _ in range(count):
        alg = event.u16("Spec ID algorithm id")
        digest_size = event.u16("Spec ID digest size")
        known = _ALGORITHMS.get(alg)
        if known is None:
            raise ParseError(WHAT, f"unknown algorithm {alg:#06x} in the Spec ID header", start)
        if known[1] is not None and known[1] != digest_size:
            raise ParseError(
                WHAT, f"{known[0]} digest size {digest_size} in the Spec ID header", start
            )
        sizes[alg] = digest_size
    vendor = event.take(1, "Spec ID vendor info size")[0]
    event.take(vendor, "Spec ID vendor info")
    if event.pos != size:
        raise ParseError(
            WHAT, f"Spec ID event is {size} bytes but its content is {event.pos}", start
        )
    return sizes


def _entry(r: Reader, sizes: Mapping[int, int]) -> JSON:
    start = r.pos
    index = r.u32("MR index")
    event_type = r.u32("event type")
    type_name = EVENT_TYPES.get(event_type)
    if type_name is None:
        raise ParseError(WHAT, f"unknown event type {event_type:#x}", start + 4)
    count = r.u32("digest count")
    digests: list[tuple[int, bytes]] = []
    for _ in range(count):
        alg = r.u16("digest algorithm")
        if alg not in _ALGORITHMS:
            raise ParseError(WHAT, f"unknown digest algorithm {alg:#06x}", r.pos - 2)
        if alg not in sizes:
            raise ParseError(
                WHAT, f"digest algorithm {alg:#06x} is not in the Spec ID header", r.pos - 2
            )
        digests.append((alg, r.take(sizes[alg], "digest")))
    event = r.take(r.u32("event size"), "event data")
    try:
        matches = all(_hash(alg, event) == digest for alg, digest in digests)
        details = _DETAILS.get(event_type, _blank)(event)
    except _Bad as exc:
        raise ParseError(WHAT, f"{type_name} event: {exc}", start) from exc
    return {
        "details": details,
        "digest_matches_event": matches,
        "digests": [
            {"alg": _ALGORITHMS[alg][0], "digest": digest.hex()} for alg, digest in digests
        ],
        "event": base64.b64encode(event).decode(),
        "index": index,
        "type_name": type_name,
    }


def _hash(alg: int, data: bytes) -> bytes:
    if alg == 0x000B:
        return hashlib.sha256(data).digest()
    if alg == 0x000C:
        return hashlib.sha384(data).digest()
    if alg == 0x000D:
        return hashlib.sha512(data).digest()
    if alg == 0x0004:
        return hashlib.sha1(data, usedforsecurity=False).digest()
    if alg == 0x0012:
        h = hashes.Hash(hashes.SM3())
        h.update(data)
        return h.finalize()
    raise _Bad(f"digest algorithm {_ALGORITHMS[alg][0]} cannot be computed")


# --------------------------------------------------------------------------- replay


def replay(entries: Sequence[Mapping[str, Any]]) -> tuple[bytes, bytes, bytes, bytes]:
    """RTMR0..RTMR3 from the SHA-384 digests of the entries at MR index 1..4.

    Each register starts at 48 zero bytes and becomes SHA-384(register ‖ digest)
    for each entry, in log order; EV_NO_ACTION entries are not measured.
    """
    rtmrs = [bytes(48)] * 4
    for entry in entries:
        if entry.get("type_name") == "EV_NO_ACTION":
            continue
        index = entry.get("index")
        if not isinstance(index, int) or not 1 <= index <= 4:
            continue
        for digest in entry.get("digests", ()):
            if digest.get("alg") == "SHA-384":
                value = bytes.fromhex(str(digest["digest"]))
                rtmrs[index - 1] = hashlib.sha384(rtmrs[index - 1] + value).digest()
    return (rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3])


def replay_ccel(data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """Parse ``data`` and replay it: RTMR0..RTMR3."""
    return replay(parse_ccel(data))


# --------------------------------------------------------------------------- details
#
# One parser per event type, as Trustee's deps/eventlog/src/ccel: the keys and
# their values follow its EventDetails serialisation (absent keys are omitted).


def _blank(_: bytes) -> JSON:
    return {}


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"not UTF-8: {exc}") from exc


def _simple(data: bytes) -> JSON:
    return {"string": _utf8(data)}


def _simple_string(data: bytes) -> JSON:
    # UEFI_PLATFORM_FIRMWARE_BLOB2 / UEFI_HANDOFF_TABLE_POINTERS2: u8 size, description.
    # Trustee keeps description[:-1], dropping the terminating NUL.
    if not data:
        raise _Bad("data is too short: expected at least 1 byte")
    size = data[0]
    if len(data) < size:
        raise _Bad(f"data is too short: expected at least {size} bytes")
    return {"string": _utf8(data[1:size])}


def _platform_config_flags(data: bytes) -> JSON:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    text = text.replace("\x10", " ")
    return {"string": "".join(c for c in text if unicodedata.category(c) != "Cc")}


def _serde_json_value(text: str) -> Any:
    def reject(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_constant=reject)


def _event_tag(data: bytes) -> JSON:
    if len(data) < 8:
        raise _Bad("cannot read the tagged event id and size")
    event_id, size = struct.unpack_from("<II", data)
    if len(data) < 8 + size:
        raise _Bad("tagged event data is shorter than its size")
    body = data[8 : 8 + size]
    details: JSON = {"string": body.decode("utf-8", errors="replace").replace("\x00", "")}
    if event_id == AAEL_TAGGED_EVENT_ID:
        text = _utf8(body)
        domain, sep1, rest = text.partition(" ")
        operation, sep2, content_text = rest.partition(" ")
        if not sep1 or not sep2:
            raise _Bad("AAEL event text is not '<domain> <operation> <content>'")
        content: Any
        try:
            content = _serde_json_value(content_text)
        except ValueError:
            content = content_text
        details["unicode_name"] = "AAEL"
        details["data"] = {"domain": domain, "operation": operation, "content": content}
    return details


def _ipl(data: bytes) -> JSON:
    if len(data) < 2:
        raise _Bad("data is too short: expected at least 2 bytes")
    if data[:2] == b"\x2e\x00":  # Google Cloud: a UTF-16 string after the 2e00 prefix
        end = len(data) - 2
        if end == 0 or end % 2:
            raise _Bad("data is too short or not a UTF-16 string")
        return {"string": data[2:end].decode("utf-16-le", errors="replace")}
    cut = data.find(b"\x00")
    head = data if cut < 0 else data[:cut]
    try:
        return {"string": head.decode("utf-8")}
    except UnicodeDecodeError:
        return {"string": data.hex()}


def _format_guid(guid: bytes) -> str:
    h = guid.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _efi_variable(data: bytes) -> JSON:
    # UEFI_VARIABLE_DATA: GUID, u64 name length (chars), u64 data length, CHAR16 name, data.
    if len(data) < GUID_SIZE + 16:
        raise _Bad("UEFI_VARIABLE_DATA is truncated")
    guid = data[:GUID_SIZE]
    name_len, var_len = struct.unpack_from("<QQ", data, GUID_SIZE)
    pos = GUID_SIZE + 16
    name_bytes = data[pos : pos + 2 * name_len]
    if len(name_bytes) != 2 * name_len:
        raise _Bad("out of bounds while reading the variable name")
    pos += 2 * name_len
    try:
        name = name_bytes.decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise _Bad(f"variable name is not UTF-16: {exc}") from exc
    value = ""
    if var_len > 0:
        raw = data[pos : pos + var_len]
        if len(raw) != var_len:
            raise _Bad("out of bounds while reading the variable data")
        value = base64.b64encode(raw).decode()
    return {
        "unicode_name": name,
        "unicode_name_length": name_len,
        "variable_data": value,
        "variable_data_length": var_len,
        "variable_name": _format_guid(guid),
    }


def _boot_services_application(data: bytes) -> JSON:
    # UEFI_IMAGE_LOAD_EVENT: u64 address, u64 length, u64 link address, u64 path length, path.
    if len(data) < 32:
        raise _Bad("data is too short: expected at least 32 bytes")
    (path_len,) = struct.unpack_from("<Q", data, 24)
    if path_len == 0:
        return {}
    if path_len < 4:
        raise _Bad(f"device path length {path_len} is shorter than its end node")
    end = 32 + path_len - 4  # Trustee drops the 4-byte end-of-path node
    if len(data) < end:
        raise _Bad("data is shorter than its device path length")
    path = data[32:end]
    if len(path) < 4:
        raise _Bad("device path is shorter than 4 bytes")
    nodes: list[str] = []
    while path:
        if len(path) < 4:
            raise _Bad("device path node header is truncated")
        kind, sub_type, length = struct.unpack_from("<BBH", path)
        if length < 4 or len(path) < length:
            raise _Bad(f"device path node length {length} is invalid")
        nodes.append(_device_node(kind, sub_type, path[4:length]))
        path = path[length:]
    return {"device_paths": nodes}


# --------------------------------------------------------------------------- device paths
# UEFI device-path text forms, as far as Trustee renders them; anything else is
# "Path(type,subtype,hex)".


class _NoText(Exception):
    pass


def _device_node(kind: int, sub_type: int, data: bytes) -> str:
    parser = _NODES.get((kind, sub_type))
    try:
        if parser is None:
            raise _NoText
        return parser(data)
    except (_NoText, UnicodeDecodeError, struct.error, IndexError):
        return f"Path({kind},{sub_type},{data.hex()})"


def _uefi_guid(raw: bytes) -> str:
    d1, d2, d3 = struct.unpack_from("<IHH", raw)
    d4 = raw[8:16].hex().upper()
    return f"{d1:08X}-{d2:04X}-{d3:04X}-{d4[:4]}-{d4[4:]}"


def _need(data: bytes, n: int) -> None:
    if len(data) < n:
        raise _NoText


def _pci(data: bytes) -> str:
    _need(data, 2)
    return f"Pci({data[0]},{data[1]})"


def _acpi(data: bytes) -> str:
    _need(data, 8)
    hid, uid = struct.unpack_from("<II", data)
    vendor = hid & 0xFFFF
    letters = "".join(chr(((vendor >> shift) & 0x1F) + 0x40) for shift in (10, 5, 0))
    return f"ACPI({letters}{hid >> 16:04X},{uid})"


def _hard_drive(data: bytes) -> str:
    _need(data, 38)
    number, start, size = struct.unpack_from("<IQQ", data)
    signature = data[20:36]
    if data[36] == 1:
        sig = f"MBR,0x{struct.unpack_from('<I', signature)[0]:08x}"
    elif data[36] == 2:
        sig = f"GPT,{_uefi_guid(signature)}"
    else:
        raise _NoText
    extra = f",{start:#x},{size:#x}" if number != 0 else ""
    return f"HD({number},{sig}{extra})"


def _media_vendor(data: bytes) -> str:
    _need(data, GUID_SIZE)
    return f"VenMedia({_uefi_guid(data[:GUID_SIZE])},{data[GUID_SIZE:].hex()})"


def _file_path(data: bytes) -> str:
    if not data or len(data) % 2:
        raise _NoText
    return f"File({data[:-2].decode('utf-16-le', errors='replace')})"


def _fibre_ex(data: bytes) -> str:
    _need(data, 16)
    return f"FibreEx(0x{data[0:8].hex()},0x{data[8:16].hex()})"


def _usb(data: bytes) -> str:
    _need(data, 2)
    return f"USB({data[0]},{data[1]})"


def _mac(data: bytes) -> str:
    if len(data) != 33:
        raise _NoText
    return f"Mac({data[:31].hex().rstrip('0').upper()},0x{data[32]:02x})"


def _ipv4_text(raw: bytes) -> str:
    # Trustee reads a little-endian u32 and prints it as a big-endian address.
    return ".".join(str(b) for b in reversed(raw))


def _ipv4(data: bytes) -> str:
    _need(data, 23)
    local, remote = _ipv4_text(data[0:4]), _ipv4_text(data[4:8])
    protocol = {6: "TCP", 17: "UDP"}.get(struct.unpack_from("<H", data, 12)[0], "")
    origin = {0: "DHCP", 1: "Static"}.get(data[14], "")
    gateway, mask = struct.unpack_from("<II", data, 15)
    tail = f",{gateway},{mask}" if gateway or mask else ""
    return f"IPv4({remote},{protocol},{origin},{local}{tail})"


_BBS_TYPES = {
    0x01: "FLOPPY",
    0x02: "HARD_DRIVE",
    0x03: "CDROM",
    0x04: "PCMCIA",
    0x05: "USB",
    0x06: "EMBEDDED_NETWORK",
    0x80: "DEV",
    0xFF: "UNKNOWN",
}


def _bbs(data: bytes) -> str:
    _need(data, 4)
    device, status = struct.unpack_from("<HH", data)
    text = data[4:]
    cut = text.find(b"\x00")
    description = (text if cut < 0 else text[:cut]).decode("utf-8")
    return f"BBS({_BBS_TYPES.get(device, str(device))},{description},{status})"


_NODES: dict[tuple[int, int], Callable[[bytes], str]] = {
    (1, 0x01): _pci,
    (2, 0x01): _acpi,
    (3, 0x05): _usb,
    (3, 0x0B): _mac,
    (3, 0x0C): _ipv4,
    (3, 0x15): _fibre_ex,
    (4, 0x01): _hard_drive,
    (4, 0x03): _media_vendor,
    (4, 0x04): _file_path,
    (5, 0x01): _bbs,
}

_DETAILS: dict[int, Callable[[bytes], JSON]] = {
    0x1: _simple,  # EV_POST_CODE
    0x4: _blank,  # EV_SEPARATOR
    0x5: _simple,  # EV_ACTION
    0x6: _event_tag,  # EV_EVENT_TAG
    0xA: _platform_config_flags,
    0xC: _simple,  # EV_COMPACT_HASH
    0xD: _ipl,
    0x12: _simple,  # EV_OMIT_BOOT_DEVICE_EVENTS
    0x80000001: _efi_variable,  # EV_EFI_VARIABLE_DRIVER_CONFIG
    0x80000002: _efi_variable,  # EV_EFI_VARIABLE_BOOT
    0x80000003: _boot_services_application,
    0x80000007: _simple,  # EV_EFI_ACTION
    0x8000000A: _simple_string,  # EV_EFI_PLATFORM_FIRMWARE_BLOB2
    0x8000000B: _simple_string,  # EV_EFI_HANDOFF_TABLES2
    0x8000000C: _efi_variable,  # EV_EFI_VARIABLE_BOOT2
    0x800000E0: _efi_variable,  # EV_EFI_VARIABLE_AUTHORITY
}
