"""The project's exception hierarchy.

Every failure that can reach a user is one of these types.  Messages never
carry secret material: they name the step and the field, not key bytes.
"""

from __future__ import annotations


class VeriteeError(Exception):
    """Base class of every error veritee raises on purpose."""


class InputError(VeriteeError):
    """Input that cannot be read at all: a missing file, an unknown encoding."""


class ConfigError(VeriteeError):
    """A configuration file that cannot be used; the message names the file, the key and
    what was expected.  The one configuration error of every service and of the agent."""


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


TRUSTEE_ERRORS = "https://github.com/confidential-containers/kbs/errors/"
VERITEE_ERRORS = "urn:veritee:errors:"
_TRUSTEE_NAMES = frozenset({
    "AdminAuthAccess", "AdminAuthInitialization", "AttestationError", "JweError",
    "PluginNotFound", "PluginInternalError", "PolicyDeny", "ParsePolicyError",
    "PolicyEngineError", "RvpsError", "SerdeError", "TokenNotFound", "TokenVerifierError",
    "InvalidRequestPath",
})


class ServiceError(VeriteeError):
    """An error a service returns to its caller, with a stable name and an HTTP status.

    Bodies follow Trustee's form ``{"type": "<base><Name>", "detail": "..."}``: names
    Trustee has keep Trustee's URL base, the others use ``urn:veritee:errors:``.
    Details never carry evidence bytes, keys or tokens.
    """

    name = "InternalError"
    status = 500

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)

    @property
    def type_url(self) -> str:
        base = TRUSTEE_ERRORS if self.name in _TRUSTEE_NAMES else VERITEE_ERRORS
        return base + self.name

    def body(self) -> dict[str, str]:
        return {"type": self.type_url, "detail": self.detail}
