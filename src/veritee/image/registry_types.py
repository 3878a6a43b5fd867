"""What the registry client hands back: descriptors, image manifests and indexes, the image
config, the platform an index is resolved for; and the digest arithmetic they share.

The parsers are pure: bytes in, typed values out, ``ManifestInvalid`` or
``UnsupportedMediaType`` for anything else.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from veritee.image.registry_errors import ManifestInvalid, UnsupportedMediaType

__all__ = [
    "CONFIG_TYPES",
    "INDEX_TYPES",
    "MANIFEST_ACCEPT",
    "MANIFEST_TYPES",
    "Descriptor",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "Platform",
    "check_digest",
    "digest_hasher",
    "parse_config",
    "parse_index",
    "parse_manifest",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
CONFIG_TYPES = frozenset({
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
})
_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


def digest_hasher(digest: str) -> Any:
    """A fresh hashlib object for ``digest``'s algorithm; ``ManifestInvalid`` for a digest
    that is malformed or of an algorithm we do not compute."""
    algorithm, _, hexpart = digest.partition(":")
    length = _ALGORITHMS.get(algorithm)
    if length is None or len(hexpart) != length or not _HEX.fullmatch(hexpart):
        raise ManifestInvalid(f"{digest[:80]!r} is not a sha256/sha384/sha512 digest")
    return hashlib.new(algorithm)


def check_digest(data: bytes, digest: str) -> bool:
    """Whether ``data`` hashes to ``digest``."""
    hasher = digest_hasher(digest)
    hasher.update(data)
    return bool(f"{digest.partition(':')[0]}:{hasher.hexdigest()}" == digest)


@dataclass(frozen=True)
class Platform:
    """The os/architecture[/variant] an image index is resolved for."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def matches(self, other: Platform) -> bool:
        """Whether an index entry for ``other`` serves this requested platform; an arm64
        entry without a variant is v8."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        if self.variant is None:
            return True
        theirs = other.variant or ("v8" if other.architecture == "arm64" else None)
        return theirs == self.variant


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what to fetch, how big it is, what it must hash to."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config a runtime needs, and the whole document."""

    os: str
    architecture: str
    variant: str | None
    diff_ids: tuple[str, ...]
    env: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    working_dir: str
    user: str
    raw: Mapping[str, Any]


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ManifestInvalid(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise ManifestInvalid(f"{what} is not a JSON object")
    return document


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestInvalid(f"{what} is not a list of strings")
    return tuple(value)


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ManifestInvalid(f"{what} is not an object of strings")
    return {str(k): v for k, v in value.items()}


def _descriptor(value: Any, what: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{what} is not a descriptor object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{what} has no mediaType")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{what} has no digest")
    digest_hasher(digest)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{what} has no valid size")
    platform = None
    raw_platform = value.get("platform")
    if raw_platform is not None:
        if not isinstance(raw_platform, dict):
            raise ManifestInvalid(f"{what}.platform is not an object")
        os_name, arch = raw_platform.get("os"), raw_platform.get("architecture")
        variant = raw_platform.get("variant")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            raise ManifestInvalid(f"{what}.platform lacks os/architecture")
        platform = Platform(os_name, arch, variant if isinstance(variant, str) else None)
    return Descriptor(media_type, digest, size, platform,
                      _string_map(value.get("annotations"), f"{what}.annotations"),
                      _strings(value.get("urls"), f"{what}.urls"))


def _media_type(document: dict[str, Any], announced: str, what: str) -> str:
    if document.get("schemaVersion") != 2:
        raise UnsupportedMediaType(f"{what}: schemaVersion {document.get('schemaVersion')!r}"
                                   " (only schema 2 is supported)")
    inner = document.get("mediaType")
    if inner is not None and inner != announced:
        raise ManifestInvalid(f"{what}: served as {announced} but says it is {inner!r}")
    return announced


def parse_index(data: bytes, media_type: str, what: str = "image index") -> ImageIndex:
    document = _json(data, what)
    media_type = _media_type(document, media_type, what)
    entries = document.get("manifests")
    if not isinstance(entries, list):
        raise ManifestInvalid(f"{what} has no manifests list")
    return ImageIndex(media_type, tuple(
        _descriptor(entry, f"{what}.manifests[{n}]") for n, entry in enumerate(entries)
    ))


def parse_manifest(data: bytes, media_type: str, what: str = "manifest") -> ImageManifest:
    document = _json(data, what)
    media_type = _media_type(document, media_type, what)
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise ManifestInvalid(f"{what} has no layers list")
    config = _descriptor(document.get("config"), f"{what}.config")
    return ImageManifest(
        media_type, config,
        tuple(_descriptor(layer, f"{what}.layers[{n}]") for n, layer in enumerate(layers)),
        _string_map(document.get("annotations"), f"{what}.annotations"),
    )


def parse_config(data: bytes, what: str = "image config") -> ImageConfig:
    document = _json(data, what)
    rootfs = document.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ManifestInvalid(f"{what}: rootfs.type is not 'layers'")
    diff_ids = _strings(rootfs.get("diff_ids"), f"{what}.rootfs.diff_ids")
    for diff_id in diff_ids:
        digest_hasher(diff_id)
    run = document.get("config") or {}
    if not isinstance(run, dict):
        raise ManifestInvalid(f"{what}.config is not an object")
    os_name, arch = document.get("os"), document.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str):
        raise ManifestInvalid(f"{what} lacks os/architecture")
    variant = document.get("variant")
    working_dir, user = run.get("WorkingDir") or "", run.get("User") or ""
    if not isinstance(working_dir, str) or not isinstance(user, str):
        raise ManifestInvalid(f"{what}: WorkingDir/User are not strings")
    return ImageConfig(
        os_name, arch, variant if isinstance(variant, str) else None, diff_ids,
        _strings(run.get("Env"), f"{what}.config.Env"),
        _strings(run.get("Entrypoint"), f"{what}.config.Entrypoint"),
        _strings(run.get("Cmd"), f"{what}.config.Cmd"),
        working_dir, user, document,
    )
