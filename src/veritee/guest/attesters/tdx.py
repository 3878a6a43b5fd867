"""Intel TDX: quotes through configfs-tsm, registers through sysfs or the TDREPORT ioctl.

Evidence is guest-components' ``{"cc_eventlog": <base64>|null, "quote": <base64>}``.
The quote comes only from configfs-tsm (provider ``tdx_guest``; Linux ≥ 6.7):
guest-components v0.21 dropped the ``/dev/tdx_guest`` quote ioctl, and so do we.
``cc_eventlog`` is the firmware's CCEL table (``/sys/firmware/acpi/tables/data/CCEL``)
cut at its end, then the Attestation Agent's event log file, then eight 0xFF bytes
(:func:`veritee.guest.eventlog.cc_eventlog`), read so that it matches the quote
even while the agent extends the log in another thread.

Registers: with the sysfs measurement files (Linux ≥ 6.16) RTMRs and MRCONFIGID are
read there and an RTMR is extended by writing 48 bytes to it (the TDX module lets a
TD extend RTMR2 and RTMR3 only).  Without them, values come from a TDREPORT
(``TDX_CMD_GET_REPORT0``) and nothing can be extended.  A TPM PCR maps to a CC
measurement register by :func:`~veritee.guest.eventlog.pcr_to_ccmr`; RTMR = CCMR - 1.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from veritee.guest.attesters._common import failed, pad_report_data
from veritee.guest.attesters.base import AttesterError, Kernel
from veritee.guest.attesters.tsm import PROVIDER_TDX, TSM_REPORT, tsm_report
from veritee.guest.eventlog import WAL_NAME, EventLogError, cc_eventlog, pcr_to_ccmr

__all__ = [
    "CCEL_TABLE",
    "DEVICE",
    "MEASUREMENTS",
    "TDREPORT_LEN",
    "TDX_CMD_GET_REPORT0",
    "TdReportFields",
    "TdxAttester",
    "parse_tdreport",
    "rtmr_index",
]

DEVICE: Final = "/dev/tdx_guest"
MEASUREMENTS: Final = "/sys/devices/virtual/misc/tdx_guest/measurements"
CCEL_TABLE: Final = "/sys/firmware/acpi/tables/data/CCEL"
#: _IOWR('T', 1, struct tdx_report_req { u8 reportdata[64]; u8 tdreport[1024]; })
TDX_CMD_GET_REPORT0: Final = 0xC4405401
TDREPORT_LEN: Final = 1024
REPORTDATA_LEN: Final = 64
MR_LEN: Final = 48

# TDREPORT_STRUCT (Intel TDX module ABI): REPORTMACSTRUCT 256 bytes (REPORTDATA at 128),
# TEE_TCB_INFO 239, reserved 17, then TDINFO 512 bytes at 512.  In TDINFO: ATTRIBUTES 0,
# XFAM 8, MRTD 16, MRCONFIGID 64, MROWNER 112, MROWNERCONFIG 160, RTMR0..3 from 208.
REPORTMAC_REPORTDATA: Final = 128
TDINFO: Final = 512
TDINFO_MRTD: Final = TDINFO + 16
TDINFO_MRCONFIGID: Final = TDINFO + 64
TDINFO_MROWNER: Final = TDINFO + 112
TDINFO_MROWNERCONFIG: Final = TDINFO + 160
TDINFO_RTMR0: Final = TDINFO + 208


@dataclass(frozen=True)
class TdReportFields:
    """The fields of a TDREPORT the attester reads."""

    report_data: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]


def parse_tdreport(raw: bytes) -> TdReportFields:
    """Read a 1024-byte TDREPORT_STRUCT."""
    if len(raw) != TDREPORT_LEN:
        raise AttesterError(f"a TDREPORT is {TDREPORT_LEN} bytes, got {len(raw)}")

    def mr(off: int) -> bytes:
        return bytes(raw[off : off + MR_LEN])

    rtmr = [mr(TDINFO_RTMR0 + MR_LEN * i) for i in range(4)]
    return TdReportFields(
        report_data=bytes(raw[REPORTMAC_REPORTDATA : REPORTMAC_REPORTDATA + REPORTDATA_LEN]),
        mr_td=mr(TDINFO_MRTD),
        mr_config_id=mr(TDINFO_MRCONFIGID),
        mr_owner=mr(TDINFO_MROWNER),
        mr_owner_config=mr(TDINFO_MROWNERCONFIG),
        rtmrs=(rtmr[0], rtmr[1], rtmr[2], rtmr[3]),
    )


def rtmr_index(pcr: int) -> int:
    """The RTMR a TPM PCR index maps to (17, the AA's default, is RTMR3)."""
    return pcr_to_ccmr(pcr) - 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class TdxAttester:
    """A TD's attester.  ``aael_path`` is the Attestation Agent's event log file (the
    agent's own file, read from the filesystem), or None for none."""

    def __init__(
        self, kernel: Kernel, aael_path: Path | str | None = None, *, settle_s: float = 2.0
    ) -> None:
        self.kernel = kernel
        self.aael_path = Path(aael_path) if aael_path is not None else None
        self.settle_s = settle_s  # how long evidence waits for an AAEL extension to finish

    @property
    def tee(self) -> str:
        return "tdx"

    def evidence(self, report_data: bytes) -> bytes:
        """The quote and the event log, taken so that they agree: an AAEL extension that
        overlaps (its write-ahead log present, or the log changed) makes it try again."""
        inblob = pad_report_data(self.tee, report_data)
        deadline = time.monotonic() + self.settle_s
        while time.monotonic() < deadline:
            if self._extension_pending():
                time.sleep(0.002)
                continue
            aael = self._aael()
            quote = self._quote(inblob)
            if not self._extension_pending() and self._aael() == aael:
                log = self._eventlog(aael)
                doc = {"cc_eventlog": None if log is None else _b64(log), "quote": _b64(quote)}
                return json.dumps(doc, separators=(",", ":")).encode()
        raise AttesterError(
            f"the AAEL {self.aael_path} kept changing while the quote was taken (for "
            f"{self.settle_s} s); a left-over {WAL_NAME} is repaired when the agent reopens the log"
        )

    def _quote(self, inblob: bytes) -> bytes:
        if self.kernel.exists(TSM_REPORT):
            return tsm_report(self.kernel, PROVIDER_TDX, inblob).outblob
        if self.kernel.exists(DEVICE):
            raise AttesterError(
                f"TDX quotes need configfs-tsm ({TSM_REPORT}, Linux 6.7 or later); this guest "
                f"has only {DEVICE}, whose ioctl gives a TDREPORT but no quote"
            )
        raise AttesterError(f"no TDX quote interface: neither {TSM_REPORT} nor {DEVICE} exists")

    def eventlog(self) -> bytes | None:
        """The ``cc_eventlog`` bytes (before base64), or None without CCEL and AAEL."""
        return self._eventlog(self._aael())

    def _eventlog(self, aael: bytes | None) -> bytes | None:
        ccel: bytes | None = None
        if self.kernel.exists(CCEL_TABLE):
            try:
                ccel = self.kernel.read(CCEL_TABLE)
            except OSError as exc:
                raise failed(f"reading {CCEL_TABLE}", exc) from exc
        try:
            return cc_eventlog(ccel, aael)
        except EventLogError as exc:
            raise AttesterError(f"{CCEL_TABLE}: {exc}") from exc

    def _aael(self) -> bytes | None:
        if self.aael_path is None:
            return None
        try:
            return self.aael_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise failed(f"reading the AAEL {self.aael_path}", exc) from exc

    def _extension_pending(self) -> bool:
        return self.aael_path is not None and (self.aael_path.parent / WAL_NAME).exists()

    # -- registers ----------------------------------------------------------------------

    def supports_runtime_measurement(self) -> bool:
        return self.kernel.exists(MEASUREMENTS)

    def extend_runtime_measurement(self, digest: bytes, pcr: int) -> None:
        index = rtmr_index(pcr)
        if not self.supports_runtime_measurement():
            raise AttesterError(
                f"cannot extend RTMR{index}: {MEASUREMENTS} is absent (Linux 6.16 or later)"
            )
        path = f"{MEASUREMENTS}/rtmr{index}:sha384"
        try:
            self.kernel.write(path, digest[:MR_LEN].ljust(MR_LEN, b"\x00"))
        except OSError as exc:
            hint = " (a TD may extend only RTMR2 and RTMR3)" if index < 2 else ""
            raise failed(f"extending RTMR{index} through {path}", exc, hint) from exc

    def read_runtime_measurement(self, pcr: int) -> bytes:
        index = rtmr_index(pcr)
        if self.supports_runtime_measurement():
            return self._sysfs(f"rtmr{index}:sha384")
        return self.tdreport().rtmrs[index]

    def init_data_binding(self) -> bytes:
        """MRCONFIGID (48 bytes)."""
        if self.supports_runtime_measurement():
            return self._sysfs("mrconfigid")
        return self.tdreport().mr_config_id

    def _sysfs(self, name: str) -> bytes:
        path = f"{MEASUREMENTS}/{name}"
        try:
            value = self.kernel.read(path)
        except OSError as exc:
            raise failed(f"reading {path}", exc) from exc
        if len(value) != MR_LEN:
            raise AttesterError(f"{path} holds {len(value)} bytes, not {MR_LEN}")
        return value

    def tdreport(self, report_data: bytes = b"") -> TdReportFields:
        """A TDREPORT through ``TDX_CMD_GET_REPORT0`` on ``/dev/tdx_guest``."""
        arg = bytearray(pad_report_data(self.tee, report_data) + bytes(TDREPORT_LEN))
        try:
            self.kernel.ioctl(DEVICE, TDX_CMD_GET_REPORT0, arg)
        except OSError as exc:
            raise failed(f"ioctl TDX_CMD_GET_REPORT0 on {DEVICE}", exc) from exc
        return parse_tdreport(bytes(arg[REPORTDATA_LEN:]))
