"""AMD SEV-SNP: reports through configfs-tsm (provider ``sev_guest``) or ``/dev/sev-guest``.

Evidence is guest-components' ``{"attestation_report": {…}, "cert_chain": […]|null}``
(:mod:`~veritee.guest.attesters.snp_serde`).  With configfs-tsm the outblob is the
raw report and the auxblob the host's certificate table.  Otherwise the
``SNP_GET_EXT_REPORT`` ioctl (uapi ``linux/sev-guest.h``) is used, with VMPL 0 and
message version 1.  Its request and response live in user memory the kernel copies
from and to, so they are ctypes buffers and the ioctl struct carries their addresses::

    struct snp_guest_request_ioctl {u8 msg_version; u64 req_data; u64 resp_data;
                                    u64 exitinfo2 /* u32 fw_error, u32 vmm_error */;}
    struct snp_ext_report_req {u8 user_data[64]; u32 vmpl; u8 rsvd[28];
                               u64 certs_address; u32 certs_len;}      /* 112 bytes */
    struct snp_report_resp {u8 data[4000];}  /* u32 status, u32 size, 24 rsvd, report */

``certs_len`` is a multiple of 4096.  When the host's table is bigger, the kernel
fails with EIO, ``vmm_error`` 1 (SNP_GUEST_VMM_ERR_INVALID_LEN) and writes the size
it needs back into the request; the attester retries once with that size.  SNP has
no register a guest can extend.  Initdata is bound to HOST_DATA, read from a report
with zero report data (``SNP_GET_REPORT``).
"""

from __future__ import annotations

import ctypes
import errno
import json
import struct
from typing import Final

from veritee.guest.attesters._common import failed, pad_report_data
from veritee.guest.attesters.base import AttesterError, Kernel
from veritee.guest.attesters.snp_serde import snp_evidence
from veritee.guest.attesters.tsm import PROVIDER_SEV, TSM_REPORT, ProviderMismatch, tsm_report

__all__ = [
    "DEVICE",
    "EXT_REPORT_REQ",
    "GUEST_REQUEST",
    "MSG_VERSION",
    "PAGE_SIZE",
    "REPORT_REQ",
    "REPORT_RESP_LEN",
    "SNP_GET_EXT_REPORT",
    "SNP_GET_REPORT",
    "SNP_GUEST_VMM_ERR_INVALID_LEN",
    "SnpAttester",
]

DEVICE: Final = "/dev/sev-guest"
#: _IOWR('S', 0 | 2, struct snp_guest_request_ioctl)
SNP_GET_REPORT: Final = 0xC0205300
SNP_GET_EXT_REPORT: Final = 0xC0205302
MSG_VERSION: Final = 1
SNP_GUEST_VMM_ERR_INVALID_LEN: Final = 1
PAGE_SIZE: Final = 4096
#: u8 msg_version, u64 req_data, u64 resp_data, u32 fw_error, u32 vmm_error (32 bytes)
GUEST_REQUEST: Final = struct.Struct("<B7xQQII")
#: u8 user_data[64], u32 vmpl, u8 rsvd[28] (96 bytes)
REPORT_REQ: Final = struct.Struct("<64sI28x")
#: snp_report_req, then u64 certs_address, u32 certs_len, 4 bytes of tail padding (112)
EXT_REPORT_REQ: Final = struct.Struct("<64sI28xQI4x")
REPORT_RESP_LEN: Final = 4000
_RESP_HEAD = struct.Struct("<II24x")  # status, report_size
REPORT_LEN: Final = 1184
VMPL: Final = 0


class SnpAttester:
    """An SNP guest's attester."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    @property
    def tee(self) -> str:
        return "snp"

    def evidence(self, report_data: bytes) -> bytes:
        report, table = self._report(pad_report_data(self.tee, report_data))
        return json.dumps(snp_evidence(report, table), separators=(",", ":")).encode()

    def supports_runtime_measurement(self) -> bool:
        return False

    def extend_runtime_measurement(self, digest: bytes, pcr: int) -> None:
        raise AttesterError("SEV-SNP has no runtime measurement register a guest can extend")

    def read_runtime_measurement(self, pcr: int) -> bytes:
        raise AttesterError("SEV-SNP has no runtime measurement register")

    def init_data_binding(self) -> bytes:
        """HOST_DATA (32 bytes) of a report with zero report data."""
        if self.kernel.exists(DEVICE):
            report = self._ioctl_report(bytes(64))
        else:
            report, _ = self._report(bytes(64))
        return report[0xC0:0xE0]

    # -- the two interfaces -------------------------------------------------------------

    def _report(self, user_data: bytes) -> tuple[bytes, bytes | None]:
        """The raw report and the host's certificate table."""
        device = self.kernel.exists(DEVICE)
        if self.kernel.exists(TSM_REPORT):
            try:
                got = tsm_report(self.kernel, PROVIDER_SEV, user_data, auxblob=True)
            except ProviderMismatch:
                if not device:
                    raise
            else:
                return _checked(got.outblob), got.auxblob
        if not device:
            raise AttesterError(f"no SNP report interface: neither {TSM_REPORT} nor {DEVICE}")
        return self._ioctl_ext_report(user_data)

    def _ioctl_report(self, user_data: bytes) -> bytes:
        req = ctypes.create_string_buffer(REPORT_REQ.pack(user_data, VMPL), REPORT_REQ.size)
        resp = ctypes.create_string_buffer(REPORT_RESP_LEN)
        self._request("SNP_GET_REPORT", SNP_GET_REPORT, req, resp)
        return _response(resp.raw)

    def _ioctl_ext_report(self, user_data: bytes) -> tuple[bytes, bytes]:
        try:
            return self._ext_report(user_data, PAGE_SIZE)
        except _TooSmall as small:
            needed = small.needed
        if needed <= PAGE_SIZE or needed % PAGE_SIZE:
            raise AttesterError(
                f"SNP_GET_EXT_REPORT: the certificate buffer of {PAGE_SIZE} bytes is too small, "
                f"but the kernel asked for {needed} bytes"
            )
        try:
            return self._ext_report(user_data, needed)
        except _TooSmall as small:
            raise AttesterError(
                f"SNP_GET_EXT_REPORT: the host's certificate table outgrew the {needed} bytes "
                f"the kernel asked for (now {small.needed})"
            ) from None

    def _ext_report(self, user_data: bytes, certs_len: int) -> tuple[bytes, bytes]:
        certs = ctypes.create_string_buffer(certs_len)
        req = ctypes.create_string_buffer(
            EXT_REPORT_REQ.pack(user_data, VMPL, ctypes.addressof(certs), certs_len),
            EXT_REPORT_REQ.size,
        )
        resp = ctypes.create_string_buffer(REPORT_RESP_LEN)
        try:
            self._request("SNP_GET_EXT_REPORT", SNP_GET_EXT_REPORT, req, resp)
        except _TooSmall as small:
            small.needed = EXT_REPORT_REQ.unpack(req.raw)[3]
            raise
        return _response(resp.raw), certs.raw

    def _request(
        self,
        name: str,
        request: int,
        req: ctypes.Array[ctypes.c_char],
        resp: ctypes.Array[ctypes.c_char],
    ) -> None:
        arg = bytearray(
            GUEST_REQUEST.pack(MSG_VERSION, ctypes.addressof(req), ctypes.addressof(resp), 0, 0)
        )
        try:
            self.kernel.ioctl(DEVICE, request, arg)
        except OSError as exc:
            fw_error, vmm_error = GUEST_REQUEST.unpack(arg)[3:]
            if exc.errno == errno.EIO and vmm_error == SNP_GUEST_VMM_ERR_INVALID_LEN:
                raise _TooSmall from exc
            detail = ""
            if fw_error or vmm_error:
                detail = f"; fw_error {fw_error:#x} (firmware status), vmm_error {vmm_error:#x}"
            raise failed(f"ioctl {name} on {DEVICE}", exc, detail) from exc


class _TooSmall(Exception):
    """The host's certificate table needs a bigger buffer: ``needed`` bytes."""

    needed = 0


def _response(data: bytes) -> bytes:
    status, size = _RESP_HEAD.unpack_from(data)
    if status != 0:
        raise AttesterError(f"SNP firmware answered the report request with status {status:#x}")
    if not REPORT_LEN <= size <= len(data) - _RESP_HEAD.size:
        raise AttesterError(f"SNP report response gives a report size of {size} bytes")
    return _checked(data[_RESP_HEAD.size : _RESP_HEAD.size + size])


def _checked(report: bytes) -> bytes:
    if len(report) < REPORT_LEN:
        raise AttesterError(f"an SNP report is {REPORT_LEN} bytes, the TEE gave {len(report)}")
    return report[:REPORT_LEN]
