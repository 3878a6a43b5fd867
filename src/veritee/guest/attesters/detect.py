"""Which TEE this guest runs in, in guest-components' order, and the attester for it.

The first hit wins:

1. ``tdx``: configfs-tsm's provider is ``tdx_guest``, or ``/dev/tdx_guest`` exists;
2. ``sgx``: the environment has ``OCCLUM``, or Gramine's
   ``/dev/attestation/attestation_type`` reads ``dcap``;
3. ``snp``: ``/sys/devices/platform/sev-guest`` exists, or configfs-tsm's provider
   is ``sev_guest``.

Unlike guest-components, nothing falls back to the sample TEE: :func:`detect_tee`
returns None and the caller decides, with :func:`no_tee_error` to say what was
looked for.  ``ENABLE_SAMPLE_DEVICE`` in the environment adds the ``sampledevice``
additional device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from veritee.guest.attesters import sgx, tdx
from veritee.guest.attesters.base import Attester, AttesterError, Kernel
from veritee.guest.attesters.sample import SampleAttester, SampleDeviceAttester
from veritee.guest.attesters.sgx import SgxAttester
from veritee.guest.attesters.snp import SnpAttester
from veritee.guest.attesters.tdx import TdxAttester
from veritee.guest.attesters.tsm import PROVIDER_SEV, PROVIDER_TDX, TSM_REPORT, tsm_provider

__all__ = [
    "SEV_GUEST_PLATFORM",
    "TEES",
    "NoTeeFound",
    "attester_for",
    "detect_attester",
    "detect_devices",
    "detect_tee",
    "no_tee_error",
]

SEV_GUEST_PLATFORM: Final = "/sys/devices/platform/sev-guest"
TEES: Final = ("tdx", "sgx", "snp", "sample", "sampledevice")


class NoTeeFound(AttesterError):
    """No TEE interface was found; the message lists every one looked for."""


def _gramine_dcap(kernel: Kernel) -> bool:
    try:
        return kernel.read(sgx.ATTESTATION_TYPE).strip() == b"dcap"
    except OSError:
        return False


def detect_tee(kernel: Kernel) -> str | None:
    """``tdx``, ``sgx`` or ``snp``; None when none of their interfaces is there."""
    provider = tsm_provider(kernel)
    if provider == PROVIDER_TDX or kernel.exists(tdx.DEVICE):
        return "tdx"
    if "OCCLUM" in kernel.env or _gramine_dcap(kernel):
        return "sgx"
    if kernel.exists(SEV_GUEST_PLATFORM) or provider == PROVIDER_SEV:
        return "snp"
    return None


def attester_for(tee: str, kernel: Kernel, *, aael_path: Path | str | None = None) -> Attester:
    """The attester for ``tee`` over ``kernel``; ``aael_path`` is used by TDX only."""
    if tee == "tdx":
        return TdxAttester(kernel, aael_path)
    if tee == "sgx":
        if "OCCLUM" in kernel.env:
            raise AttesterError(
                "SGX under Occlum (OCCLUM is set) is not supported: its quote comes from an "
                "Occlum-specific ioctl; run the workload under Gramine (/dev/attestation)"
            )
        return SgxAttester(kernel)
    if tee == "snp":
        return SnpAttester(kernel)
    if tee == "sample":
        return SampleAttester()
    if tee == "sampledevice":
        return SampleDeviceAttester()
    raise AttesterError(f"unknown TEE {tee!r}; known: {', '.join(TEES)}")


def detect_attester(kernel: Kernel, *, aael_path: Path | str | None = None) -> Attester | None:
    """The attester of the detected TEE, or None (see :func:`no_tee_error`)."""
    tee = detect_tee(kernel)
    return None if tee is None else attester_for(tee, kernel, aael_path=aael_path)


def detect_devices(kernel: Kernel) -> list[Attester]:
    """The additional devices: ``sampledevice`` when ``ENABLE_SAMPLE_DEVICE`` is set."""
    return [SampleDeviceAttester()] if "ENABLE_SAMPLE_DEVICE" in kernel.env else []


def no_tee_error(kernel: Kernel) -> NoTeeFound:
    """The error for a guest where :func:`detect_tee` found nothing, naming what it saw."""

    def path(p: str) -> str:
        return f"{p} ({'present' if kernel.exists(p) else 'absent'})"

    if kernel.exists(TSM_REPORT):
        provider = tsm_provider(kernel)
        tsm = f"{TSM_REPORT} (provider {provider!r})"
    else:
        tsm = f"{TSM_REPORT} (absent)"
    looked = [
        f"configfs-tsm with provider {PROVIDER_TDX!r} or {PROVIDER_SEV!r} at {tsm}",
        f"TDX {path(tdx.DEVICE)}",
        f"SGX env OCCLUM ({'set' if 'OCCLUM' in kernel.env else 'unset'})",
        f"SGX {sgx.ATTESTATION_TYPE} reading 'dcap' "
        f"({'present' if kernel.exists(sgx.ATTESTATION_TYPE) else 'absent'})",
        f"SNP {path(SEV_GUEST_PLATFORM)}",
    ]
    return NoTeeFound(
        "no TEE found; looked for: "
        + "; ".join(looked)
        + ". The sample TEE is never chosen silently: ask for it explicitly"
    )
