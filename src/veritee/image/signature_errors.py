"""The image security policy's failures, one type per kind.

Messages name the image, the policy scope and requirement, the key source (a path or a
``kbs:///`` URI, never key bytes) and, for each signature, why it was not accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

from veritee.errors import ConfigError, VeriteeError

__all__ = [
    "GpgUnavailable",
    "KeyLoadError",
    "PolicyDocumentError",
    "PolicyRejected",
    "SignatureConfigError",
    "SignatureFetchError",
    "SignatureInvalid",
    "SignatureRejected",
]


class PolicyDocumentError(ConfigError):
    """A containers-policy.json document that cannot be used: ``source`` names where it came
    from, ``path`` the JSON path of the bad part (``$.transports.docker["x"][0].keyType``)."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.detail = message
        super().__init__(f"image security policy {source}: {path}: {message}")


class SignatureConfigError(ConfigError):
    """A registries.d (``sigstore_config``) document that cannot be used."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        super().__init__(f"signature storage configuration {source}: {path}: {message}")


class KeyLoadError(VeriteeError):
    """A requirement's trusted keys could not be loaded or hold no usable key."""


class PolicyRejected(VeriteeError):
    """The policy scope that covers the image says ``reject``."""

    def __init__(self, image: str, scope: str) -> None:
        self.image = image
        self.scope = scope
        super().__init__(f"image {image} is rejected by the image security policy "
                         f"(scope {scope}: requirement 'reject')")


class SignatureRejected(VeriteeError):
    """A ``signedBy``/``sigstoreSigned`` requirement found no signature it accepts.
    ``reasons`` says, per signature, why it was refused (or that none was found)."""

    def __init__(self, image: str, scope: str, requirement: str, reasons: Sequence[str]) -> None:
        self.image = image
        self.scope = scope
        self.requirement = requirement
        self.reasons = tuple(reasons)
        super().__init__(
            f"image {image} is rejected by the image security policy (scope {scope}: "
            f"{requirement}): " + "; ".join(self.reasons)
        )


class SignatureFetchError(VeriteeError):
    """Signatures could not be read (lookaside store unreachable, an HTTP status other than
    200/404, a signature over the size limit, a malformed attachment manifest)."""


class GpgUnavailable(VeriteeError):
    """gpg is not installed, did not run, or timed out."""


class SignatureInvalid(VeriteeError):
    """One signature that is not accepted; ``kind`` is one of ``bad signature``,
    ``unknown key``, ``malformed``, ``digest mismatch``, ``identity mismatch``."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")
