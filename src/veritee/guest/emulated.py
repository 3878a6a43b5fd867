"""Evidence from the emulator, for the KBS client when no TEE is at hand.

:class:`EmulatedEvidenceProvider` is an evidence provider
(:class:`~veritee.guest.kbs_protocol.EvidenceProvider`) over a test root made by
``veritee emulator init``: what ``veritee client --emulated``, the demo, the tests and
the benchmarks attest with.  Its evidence verifies only where that test root is trusted.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veritee.guest.attesters.base import AttesterError
from veritee.guest.kbs_protocol import KbsClientError

if TYPE_CHECKING:
    from veritee.emulator.root import TestRoot

__all__ = ["EmulatedEvidenceProvider"]


class EmulatedEvidenceProvider:
    """Evidence from the emulator under the test root in ``root_dir`` (tdx, sgx, snp, sample).

    ``devices`` adds composite evidence: ``sampledevice`` (Trustee's sample GPU:
    ``{"svn":"2","report_data":"<b64>"}``) and ``nvidia``, an emulated H100 read by the
    guest's NVIDIA attester (:mod:`veritee.guest.attesters.nvidia`, as on hardware): Trustee's
    ``{"device_evidence_list": [...]}`` with the first 32 bytes of the report data as its
    SPDM nonce.  ``device_settings`` sets a device's fields (``{"nvidia":
    {"measurement.3": …}}``); GPU fields given in ``settings`` (``measurement.N``, or any
    field as ``nvidia.<field>``) go to the GPU, the rest to the CPU TEE.
    """

    DEVICES: tuple[str, ...] = ("sampledevice", "nvidia")

    def __init__(
        self,
        root_dir: Path,
        *,
        devices: Sequence[str] = (),
        settings: Mapping[str, bytes] | None = None,
        device_settings: Mapping[str, Mapping[str, bytes]] | None = None,
    ) -> None:
        unknown = [d for d in devices if d not in self.DEVICES]
        if unknown:
            raise KbsClientError(
                f"no emulated device {', '.join(unknown)}; expected {', '.join(self.DEVICES)}"
            )
        self.root_dir = root_dir
        self.devices = tuple(devices)
        self.settings: dict[str, bytes] = {}
        self.device_settings = {d: dict(v) for d, v in (device_settings or {}).items()}
        gpu = self.device_settings.setdefault("nvidia", {})
        for name, value in (settings or {}).items():
            if name.startswith("measurement."):
                gpu[name] = value
            elif name.startswith("nvidia."):
                gpu[name.removeprefix("nvidia.")] = value
            else:
                self.settings[name] = value
        self._root: TestRoot | None = None

    def prepare(self) -> None:
        """Load the test root now (it is otherwise loaded by the first evidence)."""
        self._test_root()

    def _test_root(self) -> TestRoot:
        if self._root is None:
            from veritee.emulator.root import TestRoot

            self._root = TestRoot.load(self.root_dir)
        return self._root

    def evidence(self, tee: str, report_data: bytes) -> bytes:
        from veritee.emulator.evidence import EMULATED_TEES, EvidenceRequest, emulate

        kind = next((t for t in EMULATED_TEES if t == tee), None)
        if kind is None:
            raise KbsClientError(
                f"the emulator has no {tee!r} TEE; expected one of {', '.join(EMULATED_TEES)}"
            )
        request = EvidenceRequest(kind, report_data=report_data, settings=self.settings)
        try:
            return emulate(self._test_root(), request).wire_bytes()
        except ValueError as exc:
            raise KbsClientError(f"emulated {tee} evidence: {exc}") from exc

    def additional_evidence(self, report_data: bytes) -> Mapping[str, Any]:
        return {device: self._device_evidence(device, report_data) for device in self.devices}

    def _device_evidence(self, device: str, report_data: bytes) -> Any:
        if device == "sampledevice":
            return {"svn": "2", "report_data": base64.b64encode(report_data).decode()}
        from veritee.emulator.nvidia import EmulatedGpu, GpuFields, apply_gpu_settings
        from veritee.errors import InputError
        from veritee.guest.attesters.nvidia import NvidiaAttester

        try:
            fields = GpuFields()
            apply_gpu_settings(fields, self.device_settings.get(device, {}))
            gpu = EmulatedGpu(self._test_root().gpu(), fields)
            return json.loads(NvidiaAttester([gpu]).evidence(report_data))
        except (InputError, ValueError, AttesterError) as exc:
            raise KbsClientError(f"emulated {device} evidence: {exc}") from exc
