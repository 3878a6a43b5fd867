"""The OCI registry client's failures, one type per kind.

Messages name the registry, the repository and the manifest or blob digest; they never
carry credentials, tokens or ``Authorization`` headers.
"""

from __future__ import annotations

from veritee.errors import VeriteeError

__all__ = [
    "DigestMismatch",
    "ManifestInvalid",
    "PlatformNotFound",
    "RegistryError",
    "RegistryNotFound",
    "RegistryTransportError",
    "RegistryUnauthorized",
    "UnsupportedMediaType",
]


class RegistryError(VeriteeError):
    """A pull from an OCI registry failed."""


class RegistryUnauthorized(RegistryError):
    """The registry (or its token service) refused the credentials, or wanted some and none
    were configured (HTTP 401/403)."""


class RegistryNotFound(RegistryError):
    """No such repository, tag, manifest or blob (HTTP 404)."""


class PlatformNotFound(RegistryNotFound):
    """An image index with no manifest for the requested os/architecture/variant."""


class DigestMismatch(RegistryError):
    """Content whose digest or size is not the one asked for, or not the one the registry
    announced; nothing of it is kept."""


class UnsupportedMediaType(RegistryError):
    """A manifest, config or layer of a media type this client does not handle (Docker
    schema 1, a nested index, an unknown layer compression, …)."""


class ManifestInvalid(RegistryError):
    """A manifest or config that is not the JSON its media type promises, or is larger than
    the limit."""


class RegistryTransportError(RegistryError):
    """The registry could not be reached or answered with an unusable status (5xx, 429, a
    malformed token response, …)."""
