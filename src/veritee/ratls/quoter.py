"""Where an RA-TLS certificate's quote comes from: the emulator, or the guest's attesters.

A :class:`Quoter` turns up to 64 bytes of report data into the raw quote or report that goes
into the certificate (no JSON wrapper: the extension carries the bytes themselves).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final, Protocol, cast

from veritee.emulator.evidence import EmulatedTee, EvidenceRequest, emulate
from veritee.emulator.root import TestRoot
from veritee.errors import InputError, ParseError
from veritee.guest.attesters.base import REPORT_DATA_MAX, Attester, AttesterError

__all__ = ["QUOTER_TEES", "AttesterQuoter", "EmulatedQuoter", "Quoter"]

#: The TEEs an RA-TLS certificate is made for.
QUOTER_TEES: Final = ("sgx", "tdx", "snp")


class Quoter(Protocol):
    """One TEE's source of raw quotes (SGX/TDX) or reports (SNP)."""

    @property
    def tee(self) -> str:
        """``sgx``, ``tdx`` or ``snp``."""
        ...

    def quote(self, report_data: bytes) -> bytes:
        """The raw quote/report over ``report_data`` (at most 64 bytes, zero-padded)."""
        ...


def _check(tee: str, report_data: bytes) -> None:
    if tee not in QUOTER_TEES:
        raise InputError(f"RA-TLS supports tee sgx, tdx or snp, not {tee!r}")
    if len(report_data) > REPORT_DATA_MAX:
        raise InputError(f"report data is {len(report_data)} bytes; at most {REPORT_DATA_MAX}")


class EmulatedQuoter:
    """Quotes from the emulator under the test root in ``root_dir``; ``settings`` are the
    emulator's ``--set FIELD=HEX`` fields (e.g. ``mr_enclave``), applied to every quote."""

    def __init__(
        self, root_dir: Path, tee: str, settings: Mapping[str, bytes] | None = None
    ) -> None:
        _check(tee, b"")
        self._root = TestRoot.load(root_dir)
        self._tee = tee
        self._settings = dict(settings or {})

    @property
    def tee(self) -> str:
        return self._tee

    def quote(self, report_data: bytes) -> bytes:
        _check(self._tee, report_data)
        request = EvidenceRequest(
            cast(EmulatedTee, self._tee), report_data=report_data, settings=self._settings
        )
        try:
            return emulate(self._root, request).raw
        except ValueError as exc:
            raise InputError(f"emulated {self._tee} quote: {exc}") from exc


class AttesterQuoter:
    """Quotes from one of the guest's attesters (the ones that run on hardware): their
    evidence JSON is unwrapped to the raw quote (``{"quote": …}``) or report (SNP)."""

    def __init__(self, attester: Attester) -> None:
        _check(attester.tee, b"")
        self._attester = attester

    @property
    def tee(self) -> str:
        return self._attester.tee

    def quote(self, report_data: bytes) -> bytes:
        _check(self.tee, report_data)
        evidence = self._attester.evidence(report_data)
        try:
            if self.tee == "snp":
                from veritee.verifier.snp_evidence import parse_evidence

                return parse_evidence(evidence).report.raw
            from veritee.verifier.intel import unwrap_evidence

            return unwrap_evidence(evidence)
        except ParseError as exc:
            raise AttesterError(f"the {self.tee} attester's evidence: {exc}") from exc
