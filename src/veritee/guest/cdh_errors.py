"""The Confidential Data Hub's failures, one type per kind; messages name the step and the
key id, never key material or secret bytes."""

from __future__ import annotations

from veritee.errors import VeriteeError

__all__ = [
    "CdhError",
    "CredentialError",
    "ResourceNotFound",
    "SealedSecretError",
    "SealedSecretFormatError",
    "SealedSecretKeyError",
    "SealedSecretSignatureError",
    "SealedSecretVersionError",
    "UnsupportedSecretError",
    "UnsupportedSecretProvider",
    "UnsupportedSecretType",
    "shorten",
]


class CdhError(VeriteeError):
    """A Confidential Data Hub failure."""


class ResourceNotFound(CdhError):
    """``offline_fs_kbc`` has no such resource."""


class CredentialError(CdhError):
    """A ``[[credentials]]`` entry could not be fetched or written; the message names it."""


class SealedSecretError(CdhError):
    """A sealed secret that cannot be unsealed."""


class SealedSecretFormatError(SealedSecretError):
    """Not ``sealed.`` + compact JWS, or a payload that is not the expected JSON."""


class SealedSecretVersionError(SealedSecretFormatError):
    """A payload whose ``version`` is not ``0.1.0``."""


class SealedSecretSignatureError(SealedSecretError):
    """Not signed with ES256, or the signature does not verify with the named key."""


class SealedSecretKeyError(SealedSecretError):
    """The ``kid`` is missing, unsafe or unknown, or its key is not a P-256 JWK."""


class UnsupportedSecretError(SealedSecretError):
    """A well-formed secret this hub cannot reveal."""


class UnsupportedSecretType(UnsupportedSecretError):
    """A ``type`` other than ``vault`` and ``envelope``."""


class UnsupportedSecretProvider(UnsupportedSecretError):
    """A provider (KMS) that is not available here."""


def shorten(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about untrusted input."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "..."
