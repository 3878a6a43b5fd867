"""What every attester offers, and how it reaches the kernel.

An :class:`Attester` turns report data into the evidence JSON that Trustee's
verifier for its TEE accepts (guest-components' shapes, byte for byte), and
optionally extends a runtime measurement register.  Attesters never touch the
operating system directly: every file, directory and ioctl goes through a
:class:`Kernel`.  :class:`LinuxKernel` is the real one; the emulator provides
an emulated machine with the same interface (``veritee.emulator.machine``), so
the attesters that run on hardware are the ones the tests run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from veritee.errors import VeriteeError

__all__ = ["REPORT_DATA_MAX", "Attester", "AttesterError", "Kernel"]

REPORT_DATA_MAX = 64


class AttesterError(VeriteeError):
    """The TEE interface failed or refused; the message names the interface and the cause."""


class Kernel(Protocol):
    """The kernel interfaces an attester uses, by absolute path (``/sys/...``, ``/dev/...``).

    ``env`` is the process environment (detection reads ``OCCLUM`` and
    ``ENABLE_SAMPLE_DEVICE``).  Failures raise :class:`OSError` as the kernel would.
    """

    env: Mapping[str, str]

    def exists(self, path: str) -> bool: ...

    def read(self, path: str) -> bytes: ...

    def write(self, path: str, data: bytes) -> None: ...

    def make_dir(self, parent: str) -> str:
        """Create a fresh, uniquely named directory under ``parent`` and return its path
        (a configfs-tsm report entry appears with its attribute files)."""
        ...

    def remove_dir(self, path: str) -> None: ...

    def ioctl(self, device: str, request: int, arg: bytearray) -> None:
        """Open ``device``, issue ``request`` with ``arg`` (read and written in place), close."""
        ...


class Attester(Protocol):
    """One TEE's attester."""

    @property
    def tee(self) -> str:
        """Trustee's name for the TEE: ``tdx``, ``snp``, ``sgx``, ``sample``, ``sampledevice``."""
        ...

    def evidence(self, report_data: bytes) -> bytes:
        """The evidence JSON bytes bound to ``report_data``, which is used as given (never
        hashed): zero-padded to the TEE's field; more than 64 bytes is an AttesterError."""
        ...

    def supports_runtime_measurement(self) -> bool: ...

    def extend_runtime_measurement(self, digest: bytes, pcr: int) -> None:
        """Extend the register that ``pcr`` maps to (TDX: 17 -> RTMR3) with ``digest``."""
        ...

    def read_runtime_measurement(self, pcr: int) -> bytes:
        """The current value of the register that ``pcr`` maps to."""
        ...

    def init_data_binding(self) -> bytes | None:
        """The launch-time field initdata is bound to (TDX MRCONFIGID, SNP HOST_DATA), or None
        where the TEE has none (SGX, sample)."""
        ...
