"""The Attestation Agent's event log (AAEL), in the binary TCG2 form of guest-components v0.15+.

Each runtime event is one crypto-agile ``TCG_PCR_EVENT2`` entry (all integers
little-endian)::

    u32 CC MR index | u32 EV_EVENT_TAG (6) | u32 digest count (1) | u16 0x000C |
    48-byte SHA-384 of the event | u32 event size | event

and the event is a ``TCG_PCClientTaggedEvent``: u32 0x4141454C ("LEAA" on disk),
u32 size, then the text ``"<domain> <operation> <content>"``.  The digest covers
the whole tagged event.  :class:`AaEventLog` appends entries to a file and extends
the attester's runtime register with each digest, through a write-ahead log so that
a crash between the two steps is repaired when the log is next opened.

:func:`cc_eventlog` assembles the ``cc_eventlog`` evidence field: the firmware's
CCEL table cut at its end (:func:`trim_ccel`), the AAEL after it (behind a fixed
Spec-ID header, :data:`EL_HEADER`, when there is no CCEL), then eight 0xFF bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
from pathlib import Path
from typing import Final

from veritee.errors import VeriteeError
from veritee.guest.attesters.base import Attester

__all__ = [
    "AAEL_TAGGED_EVENT_ID",
    "EL_HEADER",
    "END_MARKER",
    "EV_EVENT_TAG",
    "EV_NO_ACTION",
    "TPM_ALG_SHA384",
    "WAL_NAME",
    "AaEventLog",
    "AaelEventError",
    "EventLogError",
    "aael_event",
    "cc_eventlog",
    "pcr_to_ccmr",
    "tagged_event",
    "tcg2_entry",
    "trim_ccel",
]

EV_NO_ACTION: Final = 0x00000003
EV_EVENT_TAG: Final = 0x00000006
AAEL_TAGGED_EVENT_ID: Final = 0x4141454C
TPM_ALG_SHA384: Final = 0x000C
SHA384_SIZE: Final = 48
#: TCG algorithm id -> digest size, for the algorithms a CC event log may carry.
DIGEST_SIZES: Final = {0x000B: 32, 0x000C: 48, 0x000D: 64, 0x0012: 32}
END_MARKER: Final = b"\xff" * 8
WAL_NAME: Final = ".wal_event_entry"
_ENTRY_HEAD = struct.Struct("<IIIH")  # MR index, event type, digest count, algorithm
_WAL_OFFSET = struct.Struct(">Q")


def _el_header() -> bytes:
    # TCG_EfiSpecIdEvent as guest-components writes it: zero signature, class and versions,
    # SHA-384 and SM3 digest sizes, no vendor info.
    spec_id = (
        bytes(16 + 4 + 4)
        + struct.pack("<I", 2)
        + struct.pack("<HHHH", TPM_ALG_SHA384, SHA384_SIZE, 0x0012, 32)
        + b"\x00"
    )
    head = struct.pack("<II", 0, EV_NO_ACTION) + bytes(20)
    return head + struct.pack("<I", len(spec_id)) + spec_id


#: The 69-byte EV_NO_ACTION Spec-ID header put before an AAEL that has no CCEL to follow.
EL_HEADER: Final = _el_header()


class EventLogError(VeriteeError):
    """The event log cannot be read, written or repaired; the message names the file."""


class AaelEventError(EventLogError, ValueError):
    """An AAEL event whose text would not split back into domain, operation and content."""


def pcr_to_ccmr(pcr: int) -> int:
    """The CC measurement register a TPM PCR maps to (TDX: CCMR i is RTMR i-1).

    1 and 7 -> 1, 2..6 -> 2, 8..15 -> 3, anything else (the AA's default 17) -> 4.
    """
    if pcr in (1, 7):
        return 1
    if 2 <= pcr <= 6:
        return 2
    if 8 <= pcr <= 15:
        return 3
    return 4


# --------------------------------------------------------------------------- encoding


def tcg2_entry(
    mr_index: int, event_type: int, digest: bytes, event: bytes, alg: int = TPM_ALG_SHA384
) -> bytes:
    """One ``TCG_PCR_EVENT2`` with a single digest."""
    size = DIGEST_SIZES.get(alg)
    if size is None or len(digest) != size:
        raise ValueError(f"an {alg:#06x} digest must be {size} bytes, not {len(digest)}")
    return (
        _ENTRY_HEAD.pack(mr_index, event_type, 1, alg)
        + digest
        + struct.pack("<I", len(event))
        + event
    )


def tagged_event(event_id: int, data: bytes) -> bytes:
    """A ``TCG_PCClientTaggedEvent``: u32 taggedEventID, u32 size, data."""
    return struct.pack("<II", event_id, len(data)) + data


def aael_event(domain: str, operation: str, content: str) -> bytes:
    """The tagged event for ``"<domain> <operation> <content>"``.

    Domain and operation must be non-empty without whitespace; no field may hold a
    non-printable character (so no newline, carriage return or tab anywhere), so the
    text splits back at its first two spaces.  Raises :class:`AaelEventError`.
    """
    for name, value in (("domain", domain), ("operation", operation)):
        if not value or any(c.isspace() for c in value):
            raise AaelEventError(f"AAEL {name} must be non-empty without whitespace: {value!r}")
    if "\n" in content:
        raise AaelEventError("AAEL content may not contain a newline")
    for name, value in (("domain", domain), ("operation", operation), ("content", content)):
        bad = next((c for c in value if not c.isprintable()), None)
        if bad is not None:
            raise AaelEventError(f"AAEL {name} holds the non-printable character {bad!r}")
    return tagged_event(AAEL_TAGGED_EVENT_ID, f"{domain} {operation} {content}".encode())


# --------------------------------------------------------------------------- evidence


def trim_ccel(table: bytes) -> bytes:
    """The CCEL table up to its end: the first u64 of all 0xFF or all zero where an entry
    would start.  Raises :class:`EventLogError` for a table that runs out first."""
    pos = 0

    def need(n: int, what: str) -> None:
        if pos + n > len(table):
            raise EventLogError(f"CCEL table is cut short at offset {pos}: no {what}")

    need(32, "Spec ID header")
    (event_type,) = struct.unpack_from("<I", table, 4)
    pos = 28
    if event_type == EV_NO_ACTION:
        (size,) = struct.unpack_from("<I", table, pos)
        pos += 4 + size
    while True:
        need(8, "end marker")
        if table[pos : pos + 8] in (END_MARKER, bytes(8)):
            return table[:pos]
        need(12, "digest count")
        (count,) = struct.unpack_from("<I", table, pos + 8)
        pos += 12
        for _ in range(count):
            need(2, "digest algorithm")
            (alg,) = struct.unpack_from("<H", table, pos)
            digest_size = DIGEST_SIZES.get(alg)
            if digest_size is None:
                raise EventLogError(f"CCEL table: unknown digest algorithm {alg:#06x} at {pos}")
            pos += 2 + digest_size
        need(4, "event size")
        (size,) = struct.unpack_from("<I", table, pos)
        pos += 4 + size


def cc_eventlog(ccel_table: bytes | None, aael: bytes | None) -> bytes | None:
    """The ``cc_eventlog`` bytes (before base64): trimmed CCEL, AAEL, end marker; or None
    when there is neither."""
    log = trim_ccel(ccel_table) if ccel_table is not None else b""
    if aael is not None:
        log = (log or EL_HEADER) + aael
    return log + END_MARKER if log else None


# --------------------------------------------------------------------------- the log file


class AaEventLog:
    """The AAEL file at ``path``, extending the register ``init_pcr`` maps to.

    Opening repairs an interrupted extension from the write-ahead log
    ``<dir>/.wal_event_entry`` (u64 BE entry offset, the expected register value,
    the entry): a register that already holds the expected value only needs the
    entry written; one a single extension away is extended first; anything else is
    an :class:`EventLogError`.  Thread-safe.
    """

    def __init__(self, path: Path | str, attester: Attester, init_pcr: int = 17) -> None:
        if not attester.supports_runtime_measurement():
            raise EventLogError(
                f"the {attester.tee} attester cannot extend a runtime measurement register"
            )
        self.path = Path(path)
        self.wal = self.path.parent / WAL_NAME
        self.init_pcr = init_pcr
        self.mr_index = pcr_to_ccmr(init_pcr)
        self._attester = attester
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(exist_ok=True)
        except OSError as exc:
            raise EventLogError(f"cannot create the AAEL {self.path}: {exc}") from exc
        with self._lock:
            self._recover()

    def contents(self) -> bytes:
        """The log's entries as stored."""
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise EventLogError(f"cannot read the AAEL {self.path}: {exc}") from exc

    def extend(self, domain: str, operation: str, content: str) -> bytes:
        """Record one event and extend the register; returns the entry appended."""
        event = aael_event(domain, operation, content)
        digest = hashlib.sha384(event).digest()
        entry = tcg2_entry(self.mr_index, EV_EVENT_TAG, digest, event)
        with self._lock:
            self._recover()
            offset = self._size()
            before = self._register()
            if len(before) != SHA384_SIZE:
                raise EventLogError(
                    f"the register for PCR {self.init_pcr} is {len(before)} bytes, not SHA-384's 48"
                )
            expected = hashlib.sha384(before + digest).digest()
            self._write_wal(offset, expected, entry)
            try:
                self._attester.extend_runtime_measurement(digest, self.init_pcr)
            except VeriteeError:
                if self._register() == before:  # nothing happened: forget the attempt
                    self.wal.unlink()
                raise
            self._write_entry(offset, entry)
            self.wal.unlink()
        return entry

    # -- steps --------------------------------------------------------------------------

    def _register(self) -> bytes:
        return self._attester.read_runtime_measurement(self.init_pcr)

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError as exc:
            raise EventLogError(f"cannot stat the AAEL {self.path}: {exc}") from exc

    def _write_wal(self, offset: int, expected: bytes, entry: bytes) -> None:
        tmp = self.wal.with_name(WAL_NAME + ".tmp")
        try:
            with tmp.open("wb") as f:
                f.write(_WAL_OFFSET.pack(offset) + expected + entry)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.wal)  # the WAL exists whole or not at all
        except OSError as exc:
            raise EventLogError(f"cannot write the AAEL write-ahead log {self.wal}: {exc}") from exc

    def _write_entry(self, offset: int, entry: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.pwrite(fd, entry, offset)
                os.ftruncate(fd, offset + len(entry))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise EventLogError(f"cannot write the AAEL {self.path}: {exc}") from exc

    def _recover(self) -> None:
        try:
            wal = self.wal.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise EventLogError(f"cannot read the AAEL write-ahead log {self.wal}: {exc}") from exc
        offset, expected, digest, entry = self._parse_wal(wal)
        if offset > self._size():
            raise EventLogError(
                f"{self.wal} puts an entry at offset {offset}, past the end of {self.path}: "
                "the event log is probably corrupted"
            )
        current = self._register()
        if hmac.compare_digest(current, expected):
            pass  # extended before the crash; the entry is what is missing
        elif hmac.compare_digest(hashlib.sha384(current + digest).digest(), expected):
            self._attester.extend_runtime_measurement(digest, self.init_pcr)
        else:
            raise EventLogError(
                f"{self.wal}: the register is neither the expected {expected.hex()[:16]}… nor one "
                f"extension short of it ({current.hex()[:16]}…): the event log {self.path} is "
                "probably corrupted"
            )
        self._write_entry(offset, entry)
        self.wal.unlink()

    def _parse_wal(self, wal: bytes) -> tuple[int, bytes, bytes, bytes]:
        head = _WAL_OFFSET.size + SHA384_SIZE
        entry = wal[head:]
        fixed = _ENTRY_HEAD.size + SHA384_SIZE + 4
        if len(entry) >= fixed:
            mr, kind, count, alg = _ENTRY_HEAD.unpack_from(entry)
            (size,) = struct.unpack_from("<I", entry, fixed - 4)
            if (mr, kind, count, alg) == (self.mr_index, EV_EVENT_TAG, 1, TPM_ALG_SHA384) and (
                len(entry) == fixed + size
            ):
                (offset,) = _WAL_OFFSET.unpack_from(wal)
                digest = entry[_ENTRY_HEAD.size : _ENTRY_HEAD.size + SHA384_SIZE]
                return offset, wal[_WAL_OFFSET.size : head], digest, entry
        raise EventLogError(
            f"{self.wal} does not hold an AAEL entry for MR {self.mr_index}: "
            "the event log is probably corrupted"
        )
