"""An attester (and its composite devices) as the KBS client's evidence provider."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from veritee.guest.attesters.base import Attester
from veritee.guest.kbs_protocol import KbsClientError

__all__ = ["AttesterEvidenceProvider"]


class AttesterEvidenceProvider:
    """``evidence(tee, report_data)`` from ``attester``; ``additional_evidence`` from
    ``devices`` (``{tee: evidence}``, empty when there are none)."""

    def __init__(self, attester: Attester, devices: Sequence[Attester] = ()) -> None:
        self.attester = attester
        self.devices = tuple(devices)

    @property
    def tee(self) -> str:
        return self.attester.tee

    def evidence(self, tee: str, report_data: bytes) -> bytes:
        if tee != self.attester.tee:
            raise KbsClientError(f"this host's TEE is {self.attester.tee}, not {tee}")
        return self.attester.evidence(report_data)

    def additional_evidence(self, report_data: bytes) -> Mapping[str, Any]:
        return {d.tee: json.loads(d.evidence(report_data)) for d in self.devices}
