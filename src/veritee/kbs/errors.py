"""Trustee's KBS error types, with Trustee's names, URLs and status codes.

Body: ``{"type": "https://github.com/confidential-containers/kbs/errors/<Name>",
"detail": "..."}``.  ``InvalidRequestPath`` and ``PluginNotFound`` are 404, every
other variant 401, as in Trustee.  ``PayloadTooLarge`` (413) is ours.
"""

from __future__ import annotations

from veritee.errors import ServiceError


class KbsError(ServiceError):
    status = 401


class AdminAuthAccess(KbsError):
    name = "AdminAuthAccess"

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"admin access denied for endpoint {endpoint}: {reason}")


class AttestationError(KbsError):
    name = "AttestationError"

    def __init__(self, inner: str) -> None:
        super().__init__(f"Attestation error: {inner}")


class InvalidRequestPath(KbsError):
    name, status = "InvalidRequestPath", 404

    def __init__(self, path: str) -> None:
        super().__init__(f"Request path {path} is invalid")


class JweError(KbsError):
    name = "JweError"

    def __init__(self) -> None:
        super().__init__("JWE failed")


class PluginNotFound(KbsError):
    name, status = "PluginNotFound", 404

    def __init__(self, plugin: str) -> None:
        super().__init__(f"Plugin {plugin} not found")


class PluginInternalError(KbsError):
    name = "PluginInternalError"

    def __init__(self) -> None:
        super().__init__("Plugin internal error")


class PolicyDeny(KbsError):
    name = "PolicyDeny"

    def __init__(self) -> None:
        super().__init__("Access denied by policy")


class ParsePolicyError(KbsError):
    name = "ParsePolicyError"

    def __init__(self, source: str) -> None:
        super().__init__(f"Failed to parse policy: {source}")


class PolicyEngineError(KbsError):
    name = "PolicyEngineError"

    def __init__(self, inner: str) -> None:
        super().__init__(f"Policy engine error: {inner}")


class RvpsError(KbsError):
    name = "RvpsError"

    def __init__(self, message: str) -> None:
        super().__init__(f"RVPS configuration failed: {message}")


class SerdeError(KbsError):
    name = "SerdeError"

    def __init__(self) -> None:
        super().__init__("Serialize/Deserialize failed")


class TokenNotFound(KbsError):
    name = "TokenNotFound"

    def __init__(self) -> None:
        super().__init__("Attestation Token not found")


class TokenVerifierError(KbsError):
    name = "TokenVerifierError"

    def __init__(self) -> None:
        super().__init__("Token Verifier error")


class PayloadTooLarge(KbsError):
    name, status = "PayloadTooLarge", 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
