"""An emulated TD: its measurement registers, CCEL table, TDREPORT and quotes.

State as on hardware: RTMR0..RTMR2 hold what the emulated firmware's boot log
(:func:`veritee.emulator.eventlog.boot_log`) extended, RTMR3 starts at zero, and
RTMRs change only by extension (TDG.MR.RTMR.EXTEND: RTMR2 and RTMR3 only, 48 bytes,
``RTMR = SHA-384(RTMR ‖ data)``).  MRCONFIGID holds the initdata digest as kata
sets it (zero-padded or truncated to 48 bytes).  The interfaces installed on the
kernel are Linux's:

- configfs-tsm, provider ``tdx_guest``: the outblob is a TDX v4 quote signed under
  the test root, with the current registers and the inblob as REPORTDATA;
- ``/dev/tdx_guest``: ``TDX_CMD_GET_REPORT0`` fills a TDREPORT_STRUCT (its MAC is
  an HMAC under a key of this machine, as the real one is under a CPU key);
- ``/sys/devices/virtual/misc/tdx_guest/measurements/``: ``mrtd:sha384``,
  ``mrconfigid``, ``mrowner``, ``mrownerconfig`` and ``rtmr{0..3}:sha384``, the
  RTMRs writable (a 48-byte write extends);
- ``/sys/firmware/acpi/tables/data/CCEL``: the boot log, padded with 0xFF to the
  table's size.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import hmac
import os

from veritee.emulator.eventlog import boot_log
from veritee.emulator.intel_quote import DEFAULT_MR_SEAM, TdxFields, build_tdx_quote
from veritee.emulator.kernel import EmulatedKernel, IoctlCall, Tsm, ioc_size, oserror
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.tdx import (
    CCEL_TABLE,
    DEVICE,
    MEASUREMENTS,
    REPORTMAC_REPORTDATA,
    TDINFO,
    TDREPORT_LEN,
    TDX_CMD_GET_REPORT0,
)
from veritee.guest.attesters.tsm import PROVIDER_TDX

__all__ = ["CCEL_TABLE_SIZE", "MR_TD", "TdxGuest"]

MR_TD = hashlib.sha384(b"veritee emulated TDVF firmware").digest()
CCEL_TABLE_SIZE = 0x10000
REPORT_TYPE_TDX = bytes([0x81, 0, 0, 0])  # type TDX, subtype 0, version 0
EXTENDABLE = (2, 3)


class TdxGuest:
    """One TD's state, and the TDX interfaces it installs on ``kernel``."""

    def __init__(
        self,
        kernel: EmulatedKernel,
        root: TestRoot,
        *,
        mr_config_id: bytes,
        kernel_image: bytes,
        cmdline: str,
        initrd: bytes,
        configfs_tsm: bool = True,
        sysfs: bool = True,
        device: bool = True,
        ccel: bool = True,
    ) -> None:
        self.kernel = kernel
        self.root = root
        self.boot = boot_log(kernel_image, cmdline, initrd)
        self.rtmrs = list(self.boot.rtmrs())
        self.mr_config_id = mr_config_id
        self.ccel_table = self.boot.to_bytes().ljust(CCEL_TABLE_SIZE, b"\xff")
        self._mac_key = os.urandom(32)
        if configfs_tsm:
            kernel.add_tsm(Tsm(PROVIDER_TDX, self.quote))
        if device:
            kernel.add_device(DEVICE, self._ioctl)
        if sysfs:
            self._sysfs()
        if ccel:
            kernel.add_file(CCEL_TABLE, read=lambda: self.ccel_table)

    def fields(self, report_data: bytes) -> TdxFields:
        """The TD report body of a quote or TDREPORT made now."""
        r0, r1, r2, r3 = self.rtmrs
        return TdxFields(
            report_data=report_data,
            mr_td=MR_TD,
            rtmr0=r0,
            rtmr1=r1,
            rtmr2=r2,
            rtmr3=r3,
            mr_config_id=self.mr_config_id,
        )

    def quote(self, inblob: bytes) -> bytes:
        if len(inblob) != 64:
            raise oserror(errno.EINVAL, "inblob")
        return build_tdx_quote(self.root.intel, self.fields(inblob))

    def extend(self, index: int, data: bytes) -> None:
        if len(data) != 48 or index not in EXTENDABLE:
            raise oserror(errno.EINVAL, f"rtmr{index}")
        self.rtmrs[index] = hashlib.sha384(self.rtmrs[index] + data).digest()

    def tdreport(self, report_data: bytes) -> bytes:
        """A TDREPORT_STRUCT: REPORTMACSTRUCT, TEE_TCB_INFO, reserved, TDINFO."""
        f = self.fields(report_data)
        svn = self.root.intel.platform.tee_tcb_svn
        tcb_info = (
            b"\xff" * 8 + svn + DEFAULT_MR_SEAM + f.mrsigner_seam + f.seam_attributes
        ).ljust(239, b"\x00")
        td_info = (
            f.td_attributes
            + f.xfam
            + f.mr_td
            + f.mr_config_id
            + f.mr_owner
            + f.mr_owner_config
            + b"".join(f.rtmrs)
        ).ljust(TDREPORT_LEN - TDINFO, b"\x00")
        mac = bytearray(256)
        mac[0:4] = REPORT_TYPE_TDX
        mac[16:32] = self.root.intel.platform.cpu_svn
        mac[32:80] = hashlib.sha384(tcb_info).digest()
        mac[80:128] = hashlib.sha384(td_info).digest()
        mac[REPORTMAC_REPORTDATA : REPORTMAC_REPORTDATA + 64] = report_data
        mac[224:256] = hmac.new(self._mac_key, bytes(mac[:224]), hashlib.sha256).digest()
        report = bytes(mac) + tcb_info + bytes(17) + td_info
        assert len(report) == TDREPORT_LEN
        return report

    def _ioctl(self, request: int, arg: bytearray) -> None:
        self.kernel.ioctls.append(IoctlCall(DEVICE, request, bytes(arg)))
        if request != TDX_CMD_GET_REPORT0:
            raise oserror(errno.ENOTTY, DEVICE)
        if len(arg) != ioc_size(request):
            raise oserror(errno.EINVAL, DEVICE)
        if self.kernel.faults.fw_error is not None:
            raise oserror(errno.EIO, DEVICE)
        arg[64:] = self.tdreport(bytes(arg[:64]))

    def _sysfs(self) -> None:
        fixed = {
            "mrtd:sha384": MR_TD,
            "mrconfigid": self.mr_config_id,
            "mrowner": bytes(48),
            "mrownerconfig": bytes(48),
        }
        for name, value in fixed.items():
            self.kernel.add_file(f"{MEASUREMENTS}/{name}", read=functools.partial(bytes, value))
        for i in range(4):
            self.kernel.add_file(
                f"{MEASUREMENTS}/rtmr{i}:sha384",
                read=functools.partial(self._rtmr, i),
                write=functools.partial(self.extend, i),
            )

    def _rtmr(self, index: int) -> bytes:
        return self.rtmrs[index]
