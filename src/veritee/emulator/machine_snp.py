"""An emulated SEV-SNP guest: ``/dev/sev-guest``, configfs-tsm ``sev_guest``, the host's certs.

Reports are real-format v5 reports signed under the test root
(:func:`veritee.emulator.snp.build_snp_report`) with this guest's MEASUREMENT and
HOST_DATA (the initdata digest as kata sets it: truncated or zero-padded to 32
bytes).  The host's certificate table holds the VCEK or VLEK DER under its GUID
(or nothing), in the SNP_GET_EXT_REPORT layout.

The ioctls enforce the uapi ABI of ``linux/sev-guest.h``: the request number, the
32-byte ``snp_guest_request_ioctl``, message version 1, a VMPL of 0..3 and zero
reserved bytes in the request, a page-aligned ``certs_len`` of at most 16 KiB.  The
request is read from, and the response and certificates written to, the user
addresses the struct carries (ctypes), as the kernel copies from and to user
memory.  A table bigger than the buffer fails with EIO, ``vmm_error`` 1 in
``exitinfo2`` and the needed ``certs_len`` written back into the request.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import struct
from typing import NoReturn

from cryptography.hazmat.primitives.serialization import Encoding

from veritee.emulator.amd_pki import Signer
from veritee.emulator.kernel import EmulatedKernel, IoctlCall, Tsm, ioc_size, oserror
from veritee.emulator.root import TestRoot
from veritee.emulator.snp import SnpFields, build_snp_report
from veritee.guest.attesters.snp import (
    DEVICE,
    EXT_REPORT_REQ,
    GUEST_REQUEST,
    MSG_VERSION,
    PAGE_SIZE,
    REPORT_REQ,
    REPORT_RESP_LEN,
    SNP_GET_EXT_REPORT,
    SNP_GET_REPORT,
    SNP_GUEST_VMM_ERR_INVALID_LEN,
)
from veritee.guest.attesters.tsm import PROVIDER_SEV
from veritee.verifier.snp_evidence import CERT_TABLE_GUIDS

__all__ = ["MEASUREMENT", "SEV_FW_BLOB_MAX_SIZE", "SnpGuest"]

MEASUREMENT = hashlib.sha384(b"veritee emulated SEV-SNP launch").digest()
SEV_FW_BLOB_MAX_SIZE = 4 * PAGE_SIZE
_GUID = {name: guid for guid, name in CERT_TABLE_GUIDS.items()}


class SnpGuest:
    """One SNP guest's state, and the SEV interfaces it installs on ``kernel``."""

    def __init__(
        self,
        kernel: EmulatedKernel,
        root: TestRoot,
        *,
        host_data: bytes,
        signer: Signer = "vcek",
        host_certs: bool = True,
        configfs_tsm: bool = True,
        device: bool = True,
    ) -> None:
        self.kernel = kernel
        self.root = root
        self.host_data = host_data
        self.signer = signer
        self.host_certs = host_certs
        kernel.add_dir("/sys/devices/platform/sev-guest")
        if device:
            kernel.add_device(DEVICE, self._ioctl)
        if configfs_tsm:
            kernel.add_tsm(Tsm(PROVIDER_SEV, self._tsm_report, self.cert_table, ("privlevel",)))

    def report(self, user_data: bytes, vmpl: int = 0) -> bytes:
        fields = SnpFields(
            report_data=user_data,
            measurement=MEASUREMENT,
            host_data=self.host_data,
            vmpl=vmpl,
            signer=self.signer,
        )
        return build_snp_report(self.root.amd, fields)

    def cert_table(self) -> bytes:
        """The host's table: (GUID, offset, length) entries, a zero entry, then the DER."""
        if not self.host_certs:
            table = bytes(24)
        else:
            der = self.root.amd.vek(self.signer).public_bytes(Encoding.DER)
            head = 2 * 24
            guid = _GUID[self.signer.upper()].bytes
            table = struct.pack("<16sII", guid, head, len(der)) + bytes(24) + der
        size = self.kernel.faults.cert_table_size
        return table.ljust(size, b"\x00") if size is not None else table

    def _tsm_report(self, inblob: bytes) -> bytes:
        if len(inblob) != 64:
            raise oserror(errno.EINVAL, "inblob")
        return self.report(inblob)

    def _ioctl(self, request: int, arg: bytearray) -> None:
        call = IoctlCall(DEVICE, request, bytes(arg))
        if request not in (SNP_GET_REPORT, SNP_GET_EXT_REPORT):
            self.kernel.ioctls.append(call)
            raise oserror(errno.ENOTTY, DEVICE)
        if len(arg) != ioc_size(request) or len(arg) != GUEST_REQUEST.size:
            self.kernel.ioctls.append(call)
            raise oserror(errno.EINVAL, DEVICE)
        version, req_ptr, resp_ptr, _, _ = GUEST_REQUEST.unpack(arg)
        layout = EXT_REPORT_REQ if request == SNP_GET_EXT_REPORT else REPORT_REQ
        req = ctypes.string_at(req_ptr, layout.size) if req_ptr else None
        self.kernel.ioctls.append(IoctlCall(DEVICE, request, bytes(arg), req))
        if version != MSG_VERSION:
            raise oserror(errno.EINVAL, DEVICE)
        if req is None or not resp_ptr:
            raise oserror(errno.EFAULT, DEVICE)
        user_data, vmpl = REPORT_REQ.unpack_from(req)
        if vmpl > 3 or any(req[68:96]):
            raise oserror(errno.EINVAL, DEVICE)
        if self.kernel.faults.fw_error is not None:
            _fail(arg, self.kernel.faults.fw_error, 0)
        if request == SNP_GET_EXT_REPORT:
            self._certs(req_ptr, req, arg)
        report = self.report(user_data, vmpl)
        resp = (struct.pack("<II24x", 0, len(report)) + report).ljust(REPORT_RESP_LEN, b"\x00")
        ctypes.memmove(resp_ptr, resp, REPORT_RESP_LEN)
        struct.pack_into("<II", arg, 24, 0, 0)

    def _certs(self, req_ptr: int, req: bytes, arg: bytearray) -> None:
        user_data, vmpl, certs_address, certs_len = EXT_REPORT_REQ.unpack(req)
        if certs_len % PAGE_SIZE or certs_len > SEV_FW_BLOB_MAX_SIZE:
            raise oserror(errno.EINVAL, DEVICE)
        if not certs_address or not certs_len:
            return  # no buffer: a plain report
        table = self.cert_table()
        needed = -(-len(table) // PAGE_SIZE) * PAGE_SIZE
        if needed > certs_len:
            written = EXT_REPORT_REQ.pack(user_data, vmpl, certs_address, needed)
            ctypes.memmove(req_ptr, written, EXT_REPORT_REQ.size)
            _fail(arg, 0, SNP_GUEST_VMM_ERR_INVALID_LEN)
        ctypes.memmove(certs_address, table.ljust(certs_len, b"\x00"), certs_len)


def _fail(arg: bytearray, fw_error: int, vmm_error: int) -> NoReturn:
    """Fail as the kernel does: exitinfo2 written back, EIO."""
    struct.pack_into("<II", arg, 24, fw_error, vmm_error)
    raise oserror(errno.EIO, DEVICE)
