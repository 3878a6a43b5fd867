"""The one small interface every TEE verifier implements, and its result type."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from veritee.errors import VerificationError

JSON = dict[str, Any]

# A status used when verification stopped before a TCB status could be known.
TCB_UNKNOWN = "Unknown"
# The vendor publishes no TCB status for this TEE (AMD SEV-SNP); policy judges the raw TCB.
TCB_NOT_APPLICABLE = "NotApplicable"
# No TCB level in the signed TCB info matches the platform (Intel QVL's TCB_NOT_SUPPORTED).
TCB_NOT_SUPPORTED = "TcbNotSupported"


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one piece of evidence.

    ``claims`` is the flat JSON document that Trustee's verifier for this TEE
    emits, so that Trustee's Rego policies read it unchanged.  ``step`` names the
    failing check when ``verified`` is false.
    """

    tee: str
    verified: bool
    tcb_status: str
    advisory_ids: tuple[str, ...] = ()
    claims: JSON = field(default_factory=dict)
    step: str | None = None
    error: str | None = None

    def to_json(self) -> JSON:
        return {
            "verified": self.verified,
            "tee": self.tee,
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "error": None if self.error is None else f"{self.step}: {self.error}",
            "claims": self.claims,
        }


@dataclass(frozen=True)
class VerifyOptions:
    """What the caller asks of a verification.

    ``at`` is the "as of" time (default: now).  ``report_data``, when given,
    must equal the evidence's report data (zero-padded to the field's size).
    ``allow_debug`` accepts debug TDs/enclaves/guests; they are rejected by
    default but always reported in the claims.
    """

    at: dt.datetime | None = None
    report_data: bytes | None = None
    init_data: bytes | None = None
    allow_debug: bool = False

    def when(self) -> dt.datetime:
        return self.at if self.at is not None else dt.datetime.now(dt.UTC)

    def unix_time(self) -> int:
        return int(self.when().timestamp())


class Verifier(Protocol):
    """One TEE's verifier: raw evidence in, a :class:`Verdict` out.

    Implementations raise :class:`~veritee.errors.ParseError` for evidence that
    is not this TEE's format and :class:`~veritee.errors.CollateralError` when
    collateral cannot be had; every check that fails becomes a rejected
    :class:`Verdict` naming its step.
    """

    @property
    def tee(self) -> str: ...

    def verify(self, evidence: bytes, options: VerifyOptions) -> Verdict: ...


@runtime_checkable
class DeviceVerifier(Verifier, Protocol):
    """A verifier whose evidence may describe several devices (an NVIDIA device list):
    one :class:`Verdict` per device, in the evidence's order; each becomes its own submod
    (``gpu0``, ``gpu1``, …) in the Attestation Service's token."""

    def verify_devices(self, evidence: bytes, options: VerifyOptions) -> list[Verdict]: ...


def rejected(
    tee: str,
    error: VerificationError,
    *,
    tcb_status: str = TCB_UNKNOWN,
    advisory_ids: tuple[str, ...] = (),
    claims: JSON | None = None,
) -> Verdict:
    """Build the verdict for a failed check."""
    return Verdict(
        tee=tee,
        verified=False,
        tcb_status=tcb_status,
        advisory_ids=advisory_ids,
        claims=claims or {},
        step=error.step,
        error=error.detail,
    )


def pad(data: bytes, size: int) -> bytes:
    """Zero-pad or truncate to ``size``, as Trustee regularises expected data."""
    return data[:size].ljust(size, b"\x00")
