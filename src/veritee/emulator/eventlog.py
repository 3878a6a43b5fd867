"""An emulated confidential-computing event log (CCEL): TCG2 crypto-agile, SHA-384 only.

The log starts with the Spec-ID header (an EV_NO_ACTION ``TCG_PCR_EVENT``
carrying ``TCG_EfiSpecIdEvent`` "Spec ID Event03" with one algorithm, SHA-384),
then one ``TCG_PCR_EVENT2`` per measurement:

    u32 mr_index | u32 event_type | u32 digest count (1) | u16 0x000C | 48-byte digest |
    u32 event size | event

``mr_index`` is the CC measurement register index: 1..4 = RTMR0..RTMR3 on TDX.
Each event extends its RTMR as ``RTMR = SHA-384(RTMR ‖ digest)``.
:meth:`CcEventLog.to_bytes` appends the eight 0xFF bytes that guest-components'
``read_eventlog`` emits after the log.  The entry and tagged-event encoders are
the guest's (:mod:`veritee.guest.eventlog`), re-exported here.

:func:`boot_log` records events shaped like TDVF/OVMF direct-boot firmware
(see Trustee's ``CCEL_data_ovmf`` vector): firmware volume and handoff
tables, Secure Boot variables, separators and ACPI data in RTMR0; the kernel
image load in RTMR1; the kernel command line and initrd in RTMR2.  The digests
of firmware, kernel and initrd are plain SHA-384 of the given bytes (real
firmware hashes the kernel's PE/COFF Authenticode image), so replay works but
the values are not those of real firmware.
"""

from __future__ import annotations

import hashlib
import struct
import uuid

from veritee.guest.eventlog import (
    AAEL_TAGGED_EVENT_ID,
    END_MARKER,
    EV_EVENT_TAG,
    EV_NO_ACTION,
    TPM_ALG_SHA384,
    aael_event,
    tagged_event,
    tcg2_entry,
)

__all__ = [
    "AAEL_TAGGED_EVENT_ID",
    "EV_EFI_ACTION",
    "EV_EFI_BOOT_SERVICES_APPLICATION",
    "EV_EFI_HANDOFF_TABLES2",
    "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
    "EV_EFI_VARIABLE_BOOT",
    "EV_EFI_VARIABLE_DRIVER_CONFIG",
    "EV_EVENT_TAG",
    "EV_NO_ACTION",
    "EV_PLATFORM_CONFIG_FLAGS",
    "EV_SEPARATOR",
    "SPEC_ID_HEADER",
    "TPM_ALG_SHA384",
    "CcEventLog",
    "aael_event",
    "boot_log",
    "tagged_event",
]

# TCG PC Client Platform Firmware Profile event types.
EV_SEPARATOR = 0x00000004
EV_PLATFORM_CONFIG_FLAGS = 0x0000000A
EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
EV_EFI_VARIABLE_BOOT = 0x80000002
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
EV_EFI_ACTION = 0x80000007
EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
EV_EFI_HANDOFF_TABLES2 = 0x8000000B

SHA384_SIZE = 48

# OVMF's tagged event IDs for QEMU direct boot.
LOADED_IMAGE_LOAD_OPTIONS_EVENT_ID = 0x8F3B22ED
LINUX_INITRD_EVENT_ID = 0x8F3B22EC


def _spec_id_header() -> bytes:
    spec_id = (
        b"Spec ID Event03\x00"
        + struct.pack("<I", 0)  # platformClass
        + bytes([0, 2, 0, 2])  # specVersionMinor, specVersionMajor, specErrata, uintnSize (u64)
        + struct.pack("<I", 1)  # numberOfAlgorithms
        + struct.pack("<HH", TPM_ALG_SHA384, SHA384_SIZE)
        + b"\x00"  # vendorInfoSize
    )
    # TCG_PCR_EVENT: u32 pcrIndex, u32 eventType, 20-byte SHA-1 digest (zero), u32 size, event
    return (
        struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(spec_id)) + spec_id
    )


SPEC_ID_HEADER = _spec_id_header()


class CcEventLog:
    """A TDX CC event log and the RTMR values its events produce."""

    def __init__(self) -> None:
        self._entries: list[bytes] = []
        self._rtmrs = [bytes(SHA384_SIZE)] * 4

    def extend(
        self, mr_index: int, event_type: int, event_data: bytes, digest: bytes | None = None
    ) -> bytes:
        """Record one event and extend RTMR[mr_index - 1] with its digest.

        ``digest`` defaults to SHA-384(event_data).  EV_NO_ACTION events are
        recorded but extend nothing (and may use MR index 0).  Returns the
        encoded ``TCG_PCR_EVENT2`` entry (what the Attestation Agent appends to
        its AAEL file).
        """
        low = 0 if event_type == EV_NO_ACTION else 1
        if not low <= mr_index <= 4:
            raise ValueError(f"mr_index must be {low}..4 (1..4 = RTMR0..RTMR3), got {mr_index}")
        if not 0 <= event_type <= 0xFFFFFFFF:
            raise ValueError(f"event_type must be a u32, got {event_type}")
        if digest is None:
            digest = hashlib.sha384(event_data).digest()
        if len(digest) != SHA384_SIZE:
            raise ValueError(f"digest must be {SHA384_SIZE} bytes (SHA-384), got {len(digest)}")
        entry = tcg2_entry(mr_index, event_type, digest, event_data)
        self._entries.append(entry)
        if event_type != EV_NO_ACTION:
            i = mr_index - 1
            self._rtmrs[i] = hashlib.sha384(self._rtmrs[i] + digest).digest()
        return entry

    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        """RTMR0..RTMR3 as replaying this log from zero gives them."""
        return (self._rtmrs[0], self._rtmrs[1], self._rtmrs[2], self._rtmrs[3])

    def entries(self) -> tuple[bytes, ...]:
        """The encoded entries after the Spec-ID header."""
        return tuple(self._entries)

    def to_bytes(self) -> bytes:
        """Spec-ID header, the entries, then the 0xFF end marker."""
        return SPEC_ID_HEADER + b"".join(self._entries) + END_MARKER


# --------------------------------------------------------------------------- event data


def _guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


_EFI_GLOBAL_VARIABLE = _guid("8BE4DF61-93CA-11D2-AA0D-00E098032B8C")
_EFI_IMAGE_SECURITY_DATABASE = _guid("D719B2CB-3D3A-4596-A3BC-DAD00E67656F")
_QEMU_KERNEL_LOADER_FS_MEDIA = _guid("1428F772-B64A-441E-B8C3-9EBDD7F893C7")
_TD_HOB_TABLE_GUID = _guid("93BB96AF-B9F2-4EB8-9462-E0BA74564236")


def _efi_variable(guid: bytes, name: str, data: bytes) -> bytes:
    """UEFI_VARIABLE_DATA: GUID, u64 name length (chars), u64 data length, UTF-16LE name, data."""
    return guid + struct.pack("<QQ", len(name), len(data)) + name.encode("utf-16-le") + data


def _blob2(description: bytes, base: int, length: int) -> bytes:
    """UEFI_PLATFORM_FIRMWARE_BLOB2: u8 size, description, u64 base, u64 length."""
    return bytes([len(description)]) + description + struct.pack("<QQ", base, length)


def _handoff_tables2(description: bytes, guid: bytes, address: int) -> bytes:
    """UEFI_HANDOFF_TABLE_POINTERS2 with one table."""
    return (
        bytes([len(description)])
        + description
        + struct.pack("<Q", 1)
        + guid
        + struct.pack("<Q", address)
    )


def _device_node(kind: int, sub_type: int, data: bytes) -> bytes:
    return struct.pack("<BBH", kind, sub_type, 4 + len(data)) + data


def _image_load(address: int, length: int, path: str) -> bytes:
    """UEFI_IMAGE_LOAD_EVENT for ``VenMedia(QEMU kernel loader)/File(path)``."""
    device_path = (
        _device_node(4, 3, _QEMU_KERNEL_LOADER_FS_MEDIA)
        + _device_node(4, 4, (path + "\x00").encode("utf-16-le"))
        + _device_node(0x7F, 0xFF, b"")
    )
    return struct.pack("<QQQQ", address, length, 0, len(device_path)) + device_path


def boot_log(kernel: bytes, cmdline: str, initrd: bytes) -> CcEventLog:
    """A TDVF-style direct-boot log measuring ``kernel``, ``cmdline`` and ``initrd``."""
    log = CcEventLog()
    sha = hashlib.sha384
    # RTMR0: firmware configuration.
    log.extend(
        1,
        EV_EFI_HANDOFF_TABLES2,
        _handoff_tables2(b"TdxTable\x00", _TD_HOB_TABLE_GUID, 0x809000),
        sha(b"veritee emulated TD HOB").digest(),
    )
    log.extend(
        1,
        EV_EFI_PLATFORM_FIRMWARE_BLOB2,
        _blob2(b"Fv(XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)\x00", 0xFFC00000, 0x840000),
        sha(b"veritee emulated TDVF firmware volume").digest(),
    )
    for guid, name in (
        (_EFI_GLOBAL_VARIABLE, "SecureBoot"),
        (_EFI_GLOBAL_VARIABLE, "PK"),
        (_EFI_GLOBAL_VARIABLE, "KEK"),
        (_EFI_IMAGE_SECURITY_DATABASE, "db"),
        (_EFI_IMAGE_SECURITY_DATABASE, "dbx"),
    ):
        log.extend(1, EV_EFI_VARIABLE_DRIVER_CONFIG, _efi_variable(guid, name, b""))
    log.extend(1, EV_SEPARATOR, bytes(4))
    log.extend(1, EV_PLATFORM_CONFIG_FLAGS, b"ACPI DATA", sha(b"veritee emulated ACPI").digest())
    # RTMR1: the boot path and the kernel image.
    log.extend(
        1,
        EV_EFI_VARIABLE_BOOT,
        _efi_variable(_EFI_GLOBAL_VARIABLE, "BootOrder", b"\x00\x00"),
        sha(b"\x00\x00").digest(),
    )
    log.extend(2, EV_EFI_ACTION, b"Calling EFI Application from Boot Option")
    log.extend(2, EV_SEPARATOR, bytes(4))
    log.extend(
        2,
        EV_EFI_BOOT_SERVICES_APPLICATION,
        _image_load(0x7CB30000, len(kernel), "kernel"),
        sha(kernel).digest(),
    )
    # RTMR2: what the kernel is given.
    log.extend(
        3,
        EV_EVENT_TAG,
        tagged_event(LOADED_IMAGE_LOAD_OPTIONS_EVENT_ID, b"LOADED_IMAGE::LoadOptions\x00"),
        sha((cmdline + "\x00").encode("utf-16-le")).digest(),
    )
    log.extend(
        3,
        EV_EVENT_TAG,
        tagged_event(LINUX_INITRD_EVENT_ID, b"Linux initrd\x00"),
        sha(initrd).digest(),
    )
    log.extend(2, EV_EFI_ACTION, b"Exit Boot Services Invocation")
    log.extend(2, EV_EFI_ACTION, b"Exit Boot Services Returned with Success")
    return log
