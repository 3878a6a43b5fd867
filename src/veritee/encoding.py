"""Read evidence files that may be raw binary, hex text (optional ``0x``) or base64."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

from veritee.errors import InputError

_HEX = re.compile(rb"\A(?:0x)?([0-9a-fA-F\s]+)\Z")
_B64 = re.compile(rb"\A[A-Za-z0-9+/_\-\s]+={0,2}\s*\Z")


def decode_evidence(data: bytes) -> bytes:
    """Return the raw bytes behind ``data``.

    Text is tried as hex first (every hex string is also valid base64, and a
    hex quote is far more common than a base64 one whose alphabet happens to be
    hex only), then as base64 (standard or URL-safe, padded or not).  Anything
    else is taken as binary.
    """
    stripped = data.strip()
    if not stripped:
        raise InputError("evidence is empty")
    if not _looks_textual(stripped):
        return data
    match = _HEX.match(stripped)
    if match:
        digits = re.sub(rb"\s+", b"", match.group(1))
        if len(digits) % 2 == 0:
            return binascii.unhexlify(digits)
    if _B64.match(stripped):
        compact = re.sub(rb"\s+", b"", stripped).rstrip(b"=")
        compact += b"=" * (-len(compact) % 4)
        try:
            return base64.urlsafe_b64decode(compact.replace(b"+", b"-").replace(b"/", b"_"))
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"evidence looks like base64 but does not decode: {exc}") from exc
    return data


def _looks_textual(data: bytes) -> bool:
    return all(32 <= b < 127 or b in (9, 10, 13) for b in data)


def read_evidence_file(path: Path) -> bytes:
    """Read and decode an evidence file; unreadable files raise :class:`InputError`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return decode_evidence(data)
