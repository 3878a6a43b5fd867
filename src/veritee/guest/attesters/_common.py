"""What several attesters share: the report-data rule and naming a kernel failure."""

from __future__ import annotations

import errno
import os

from veritee.guest.attesters.base import REPORT_DATA_MAX, AttesterError


def pad_report_data(tee: str, report_data: bytes) -> bytes:
    """``report_data`` zero-padded to 64 bytes; more than 64 is an :class:`AttesterError`
    (it is never hashed: a caller with more to bind hashes it first)."""
    if len(report_data) > REPORT_DATA_MAX:
        raise AttesterError(
            f"report data is {len(report_data)} bytes; {tee} takes at most {REPORT_DATA_MAX} "
            "(hash longer data first)"
        )
    return bytes(report_data).ljust(REPORT_DATA_MAX, b"\x00")


def failed(what: str, exc: OSError, hint: str = "") -> AttesterError:
    """An :class:`AttesterError` for a kernel call that failed: ``what`` names the call, the
    errno is given by name."""
    code = exc.errno
    name = errno.errorcode.get(code, str(code)) if code is not None else "error"
    reason = os.strerror(code) if code is not None else str(exc)
    return AttesterError(f"{what} failed: {name} ({reason}){hint}")
