"""Trustee's sample TEE (``sample``) and sample device (``sampledevice``): no hardware.

Evidence is ``{"svn":"1","report_data":"<base64 of the report data>"}`` (``"2"`` for
the device); the report data is kept as given, unpadded.  It proves nothing, and
Trustee's verifier accepts it only where sample evidence is explicitly allowed.
"""

from __future__ import annotations

import base64
import json

from veritee.guest.attesters.base import REPORT_DATA_MAX, AttesterError

__all__ = ["SampleAttester", "SampleDeviceAttester"]


class SampleAttester:
    """The sample TEE."""

    svn = "1"

    @property
    def tee(self) -> str:
        return "sample"

    def evidence(self, report_data: bytes) -> bytes:
        if len(report_data) > REPORT_DATA_MAX:
            raise AttesterError(
                f"report data is {len(report_data)} bytes; {self.tee} takes at most "
                f"{REPORT_DATA_MAX} (hash longer data first)"
            )
        doc = {"svn": self.svn, "report_data": base64.b64encode(report_data).decode()}
        return json.dumps(doc, separators=(",", ":")).encode()

    def supports_runtime_measurement(self) -> bool:
        return False

    def extend_runtime_measurement(self, digest: bytes, pcr: int) -> None:
        raise AttesterError(f"the {self.tee} TEE has no runtime measurement register")

    def read_runtime_measurement(self, pcr: int) -> bytes:
        raise AttesterError(f"the {self.tee} TEE has no runtime measurement register")

    def init_data_binding(self) -> None:
        return None


class SampleDeviceAttester(SampleAttester):
    """The sample additional device (enabled by ``ENABLE_SAMPLE_DEVICE``)."""

    svn = "2"

    @property
    def tee(self) -> str:
        return "sampledevice"
