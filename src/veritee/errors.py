"""The project's exception hierarchy.

Every failure that can reach a user is one of these types.  Messages never
carry secret material: they name the step and the field, not key bytes.
"""

from __future__ import annotations


class VeriteeError(Exception):
    """Base class of every error veritee raises on purpose."""


class InputError(VeriteeError):
    """Input that cannot be read at all: a missing file, an unknown encoding."""


class ParseError(VeriteeError):
    """Evidence or collateral whose structure is malformed or truncated.

    ``what`` names the structure ("tdx quote", "snp report", ...) and
    ``offset`` the byte offset where parsing stopped, when there is one.
    """

    def __init__(self, what: str, message: str, offset: int | None = None) -> None:
        self.what = what
        self.offset = offset
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{what}: {message}{where}")


class VerificationError(VeriteeError):
    """Evidence that parsed but was rejected; ``step`` names the failing check."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        self.detail = message
        super().__init__(f"{step}: {message}")


class CollateralError(VeriteeError):
    """Collateral that could not be obtained (network, HTTP status, offline cache miss)."""

    def __init__(self, what: str, message: str) -> None:
        self.what = what
        self.detail = message
        super().__init__(f"{what}: {message}")


class CollateralMissing(CollateralError):
    """Offline mode and the cache lacks an item; ``what`` names the item."""
