"""The Attestation Service's error types (see :class:`veritee.errors.ServiceError`)."""

from __future__ import annotations

from veritee.errors import ServiceError


class MalformedRequest(ServiceError):
    name, status = "MalformedRequest", 400


class MalformedEvidence(ServiceError):
    name, status = "MalformedEvidence", 400


class UnknownTee(ServiceError):
    name, status = "UnknownTee", 400


class UnknownPolicy(ServiceError):
    name, status = "UnknownPolicy", 404


class PolicyCompileError(ServiceError):
    name, status = "PolicyCompileError", 400


class PolicyEngineError(ServiceError):
    name, status = "PolicyEngineError", 500


class VerificationFailed(ServiceError):
    name, status = "VerificationFailed", 403

    def __init__(self, step: str, detail: str) -> None:
        self.step = step
        super().__init__(f"verification failed at step {step}: {detail}")


class RuntimeDataMismatch(VerificationFailed):
    name = "RuntimeDataMismatch"


class InitDataMismatch(VerificationFailed):
    name = "InitDataMismatch"


class CollateralUnavailable(ServiceError):
    name, status = "CollateralUnavailable", 503


class PayloadTooLarge(ServiceError):
    name, status = "PayloadTooLarge", 413


class AdminAuthAccess(ServiceError):
    name, status = "AdminAuthAccess", 401


class NotFound(ServiceError):
    name, status = "NotFound", 404
