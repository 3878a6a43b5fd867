"""An emulated confidential machine (TDX, SEV-SNP or SGX) behind the Kernel interface.

:meth:`EmulatedMachine.launch` boots one: the guest's attesters
(:mod:`veritee.guest.attesters`) then run against it exactly as against Linux,
and their evidence verifies under the test root it was launched with.  State
behaves as hardware: launch-time fields (TDX MRCONFIGID, SNP HOST_DATA) hold the
initdata digest resized as kata does; TDX RTMRs start from the emulated boot and
change only by extension.  :class:`~veritee.emulator.kernel.Faults` make it hostile
(a wrong configfs-tsm provider, a racing inblob writer, a firmware error, a host
certificate table bigger than the guest's buffer), and every call is recorded.

An :class:`EmulatedMachine` made directly has no TEE interface at all.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from veritee.emulator.amd_pki import Signer
from veritee.emulator.intel_quote import SgxFields, build_sgx_quote
from veritee.emulator.kernel import EmulatedKernel, Faults, oserror
from veritee.emulator.machine_snp import SnpGuest
from veritee.emulator.machine_tdx import TdxGuest
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.sgx import ATTESTATION_TYPE, QUOTE, USER_REPORT_DATA
from veritee.initdata import TEE_FIELDS, resize_digest

__all__ = ["Boot", "EmulatedMachine", "Faults", "MachineTee", "SgxEnclave"]

MachineTee = Literal["tdx", "snp", "sgx"]
MR_ENCLAVE = hashlib.sha256(b"veritee emulated enclave").digest()
MR_SIGNER = hashlib.sha256(b"veritee emulated enclave signer").digest()


@dataclass(frozen=True)
class Boot:
    """What the emulated firmware measures at boot (TDX: into RTMR1 and RTMR2)."""

    kernel: bytes = b"veritee emulated kernel"
    cmdline: str = "console=hvc0 root=/dev/vda1 rw"
    initrd: bytes = b"veritee emulated initrd"


class SgxEnclave:
    """Gramine's ``/dev/attestation`` in DCAP mode, quoting under the test root."""

    def __init__(self, kernel: EmulatedKernel, root: TestRoot) -> None:
        self.kernel = kernel
        self.root = root
        self.user_report_data = bytes(64)
        kernel.add_file(ATTESTATION_TYPE, read=lambda: b"dcap")
        kernel.add_file(USER_REPORT_DATA, read=lambda: self.user_report_data, write=self._write)
        kernel.add_file(QUOTE, read=self.quote)

    def _write(self, data: bytes) -> None:
        if len(data) != 64:
            raise oserror(errno.EINVAL, USER_REPORT_DATA)
        self.user_report_data = data

    def quote(self) -> bytes:
        if self.kernel.faults.fw_error is not None:
            raise oserror(errno.EIO, QUOTE)
        fields = SgxFields(
            report_data=self.user_report_data, mr_enclave=MR_ENCLAVE, mr_signer=MR_SIGNER
        )
        return build_sgx_quote(self.root.intel, fields)


class EmulatedMachine(EmulatedKernel):
    """A machine: the kernel's file tree plus the TEE behind it (``tdx``, ``snp`` or
    ``sgx``, each None unless launched as that TEE)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        self.tee: MachineTee | None = None
        self.tdx: TdxGuest | None = None
        self.snp: SnpGuest | None = None
        self.sgx: SgxEnclave | None = None

    @classmethod
    def launch(
        cls,
        root: TestRoot,
        tee: MachineTee,
        *,
        init_data_digest: bytes | None = None,
        boot: Boot | None = None,
        faults: Faults | None = None,
        env: Mapping[str, str] | None = None,
        configfs_tsm: bool = True,
        sysfs: bool = True,
        device: bool = True,
        ccel: bool = True,
        signer: Signer = "vcek",
        host_certs: bool = True,
    ) -> EmulatedMachine:
        """Boot a ``tee`` machine under ``root``.

        ``init_data_digest`` goes to MRCONFIGID (TDX) or HOST_DATA (SNP).  Which
        interfaces Linux offers: ``configfs_tsm`` (TDX, SNP), ``device``
        (``/dev/tdx_guest``, ``/dev/sev-guest``), ``sysfs`` (TDX measurement files),
        ``ccel`` (TDX ACPI CCEL table).  SNP: ``signer`` picks the VCEK or VLEK and
        ``host_certs`` whether the host supplies it in the certificate table.
        """
        machine = cls(env)
        machine.tee = tee
        if faults is not None:
            machine.faults = faults
        digest = init_data_digest or b""
        boot = boot or Boot()
        if tee == "tdx":
            machine.tdx = TdxGuest(
                machine,
                root,
                mr_config_id=resize_digest(digest, TEE_FIELDS["tdx"][1]),
                kernel_image=boot.kernel,
                cmdline=boot.cmdline,
                initrd=boot.initrd,
                configfs_tsm=configfs_tsm,
                sysfs=sysfs,
                device=device,
                ccel=ccel,
            )
        elif tee == "snp":
            machine.snp = SnpGuest(
                machine,
                root,
                host_data=resize_digest(digest, TEE_FIELDS["snp"][1]),
                signer=signer,
                host_certs=host_certs,
                configfs_tsm=configfs_tsm,
                device=device,
            )
        elif tee == "sgx":
            machine.sgx = SgxEnclave(machine, root)
        else:
            raise ValueError(f"an emulated machine is tdx, snp or sgx, not {tee!r}")
        return machine
