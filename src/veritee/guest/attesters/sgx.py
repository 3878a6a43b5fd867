"""Intel SGX under Gramine: a DCAP quote through the ``/dev/attestation`` pseudo-files.

``attestation_type`` must read ``dcap``; the 64-byte report data is written to
``user_report_data`` and the quote over it read from ``quote``.  Those two steps
share one pseudo-file pair per process, so they run under a lock.  Evidence is
guest-components' ``{"quote": "<base64>"}``.  SGX has no runtime register and no
launch field that initdata is bound to.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Final

from veritee.guest.attesters._common import failed, pad_report_data
from veritee.guest.attesters.base import AttesterError, Kernel

__all__ = ["ATTESTATION", "ATTESTATION_TYPE", "QUOTE", "USER_REPORT_DATA", "SgxAttester"]

ATTESTATION: Final = "/dev/attestation"
ATTESTATION_TYPE: Final = f"{ATTESTATION}/attestation_type"
USER_REPORT_DATA: Final = f"{ATTESTATION}/user_report_data"
QUOTE: Final = f"{ATTESTATION}/quote"


class SgxAttester:
    """An enclave's attester (Gramine DCAP)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._lock = threading.Lock()

    @property
    def tee(self) -> str:
        return "sgx"

    def evidence(self, report_data: bytes) -> bytes:
        data = pad_report_data(self.tee, report_data)
        with self._lock:
            try:
                kind = self.kernel.read(ATTESTATION_TYPE).decode(errors="replace").strip()
            except OSError as exc:
                raise failed(f"reading {ATTESTATION_TYPE}", exc) from exc
            if kind != "dcap":
                raise AttesterError(f"{ATTESTATION_TYPE} is {kind!r}, not 'dcap'")
            try:
                self.kernel.write(USER_REPORT_DATA, data)
            except OSError as exc:
                raise failed(f"writing {USER_REPORT_DATA}", exc) from exc
            try:
                quote = self.kernel.read(QUOTE)
            except OSError as exc:
                raise failed(f"reading {QUOTE}", exc) from exc
        if not quote:
            raise AttesterError(f"{QUOTE} is empty")
        doc = {"quote": base64.b64encode(quote).decode()}
        return json.dumps(doc, separators=(",", ":")).encode()

    def supports_runtime_measurement(self) -> bool:
        return False

    def extend_runtime_measurement(self, digest: bytes, pcr: int) -> None:
        raise AttesterError("SGX has no runtime measurement register")

    def read_runtime_measurement(self, pcr: int) -> bytes:
        raise AttesterError("SGX has no runtime measurement register")

    def init_data_binding(self) -> None:
        return None
