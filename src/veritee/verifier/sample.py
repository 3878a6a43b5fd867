"""Trustee's ``sample`` TEE: ``{"svn": "1", "report_data": "<base64>"}`` with no signature.

Anyone can write this evidence, so it proves nothing.  It exists for
compatibility with Trustee's tests and demos, is refused unless a caller enables
it explicitly, and its claims are always marked ``"emulated": true``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from veritee.errors import ParseError, VerificationError
from veritee.verifier.base import TCB_NOT_APPLICABLE, Verdict, VerifyOptions, rejected

TEE = "sample"


def parse_sample(evidence: bytes) -> dict[str, Any]:
    """Parse sample evidence; ``svn`` must be a string, ``report_data`` base64 (may be absent)."""
    try:
        doc = json.loads(evidence)
    except (ValueError, RecursionError) as exc:
        raise ParseError("sample evidence", f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("svn"), str):
        raise ParseError("sample evidence", "expected an object with a string 'svn'")
    report_data = doc.get("report_data", "")
    if not isinstance(report_data, str):
        raise ParseError("sample evidence", "'report_data' is not a string")
    return {"svn": doc["svn"], "report_data": report_data}


def sample_claims(evidence: dict[str, Any]) -> dict[str, Any]:
    """Trustee's sample claims, plus our mark that nothing here is hardware-backed."""
    return {
        "svn": evidence["svn"],
        "report_data": evidence["report_data"],
        "launch_digest": "abcde",
        "platform_version": {"major": 1, "minor": 4},
        "debug": False,
        "emulated": True,
    }


class SampleVerifier:
    """Verifies only the report-data binding of sample evidence, when explicitly enabled."""

    tee = TEE

    def __init__(self, *, enabled: bool = False) -> None:
        self._enabled = enabled

    def verify(self, evidence: bytes, options: VerifyOptions) -> Verdict:
        parsed = parse_sample(evidence)
        claims = sample_claims(parsed)
        if not self._enabled:
            return rejected(
                TEE,
                VerificationError(
                    "sample_disabled",
                    "sample evidence carries no hardware signature; enable it explicitly "
                    "(--allow-sample) for tests only",
                ),
                claims=claims,
            )
        if options.report_data is not None:
            try:
                sent = base64.b64decode(parsed["report_data"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ParseError("sample evidence", f"'report_data' is not base64: {exc}") from exc
            if not hmac.compare_digest(sent, options.report_data):
                return rejected(
                    TEE,
                    VerificationError(
                        "report_data", "report_data differs from the expected report data"
                    ),
                    tcb_status=TCB_NOT_APPLICABLE,
                    claims=claims,
                )
        return Verdict(tee=TEE, verified=True, tcb_status=TCB_NOT_APPLICABLE, claims=claims)
