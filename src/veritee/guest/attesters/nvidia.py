"""The NVIDIA GPU attester (``nvidia``): an additional device beside the CPU TEE.

Each confidential-computing GPU answers an SPDM GET_MEASUREMENTS request with a signed
attestation report and gives its device certificate chain.  The evidence is what Trustee's
``nvidia`` verifier takes and guest-components' NVIDIA attester writes:
``{"device_evidence_list": [{"arch", "uuid", "evidence", "certificate"}, ...]}``, with the
report and the PEM chain each in standard base64.  The SPDM nonce is the first 32 bytes of
the report data, zero-padded when shorter (so the AS's SHA-384 report data binds it).

A GPU is reached through :class:`NvidiaGpu`: on hardware that is NVIDIA's NVML
(``nvmlDeviceGetConfComputeGpuAttestationReport`` and ``…GpuCertificate``); the emulator's
H100 (:class:`veritee.emulator.nvidia.EmulatedGpu`) is the other implementation.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Protocol

from veritee.errors import VeriteeError
from veritee.guest.attesters.base import REPORT_DATA_MAX, AttesterError

__all__ = ["NONCE_SIZE", "NvidiaAttester", "NvidiaGpu"]

NONCE_SIZE = 32


class NvidiaGpu(Protocol):
    """One GPU in confidential-computing mode."""

    @property
    def arch(self) -> str:
        """NVML's architecture name, e.g. ``HOPPER``."""
        ...

    @property
    def uuid(self) -> str: ...

    def attestation_report(self, nonce: bytes) -> bytes:
        """The SPDM GET_MEASUREMENTS request + signed response for this 32-byte nonce."""
        ...

    def certificate_chain(self) -> bytes:
        """The device identity chain, leaf first, as PEM text."""
        ...


class NvidiaAttester:
    """Evidence from every GPU given, in order (``device_evidence_list``)."""

    def __init__(self, gpus: Sequence[NvidiaGpu]) -> None:
        if not gpus:
            raise AttesterError("the nvidia attester needs at least one GPU")
        self.gpus = tuple(gpus)

    @property
    def tee(self) -> str:
        return "nvidia"

    def evidence(self, report_data: bytes) -> bytes:
        if len(report_data) > REPORT_DATA_MAX:
            raise AttesterError(
                f"report data is {len(report_data)} bytes; nvidia takes at most "
                f"{REPORT_DATA_MAX} (its first {NONCE_SIZE} are the SPDM nonce)"
            )
        nonce = report_data[:NONCE_SIZE].ljust(NONCE_SIZE, b"\x00")
        devices = []
        for index, gpu in enumerate(self.gpus):
            try:
                report = gpu.attestation_report(nonce)
                chain = gpu.certificate_chain()
            except (OSError, VeriteeError, ValueError) as exc:
                raise AttesterError(f"nvidia GPU {index} ({gpu.uuid}): {exc}") from exc
            devices.append(
                {
                    "arch": gpu.arch,
                    "uuid": gpu.uuid,
                    "evidence": base64.b64encode(report).decode(),
                    "certificate": base64.b64encode(chain).decode(),
                }
            )
        doc = {"device_evidence_list": devices}
        return json.dumps(doc, separators=(",", ":")).encode()

    def supports_runtime_measurement(self) -> bool:
        return False

    def extend_runtime_measurement(self, digest: bytes, pcr: int) -> None:
        raise AttesterError("an NVIDIA GPU has no runtime measurement register")

    def read_runtime_measurement(self, pcr: int) -> bytes:
        raise AttesterError("an NVIDIA GPU has no runtime measurement register")

    def init_data_binding(self) -> None:
        return None
