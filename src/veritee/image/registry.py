"""A synchronous OCI distribution client: manifests, image indexes, configs and blobs.

``resolve`` fetches a reference's manifest (``GET /v2/<repo>/manifests/<tag|digest>``),
verifies its digest (the one pinned in the reference, else the ``Docker-Content-Digest`` the
registry announced, when it announced one), picks the requested platform's manifest out of an
image index, and fetches and checks the image config.  ``fetch_blob`` streams a blob to a
temporary file beside its destination, hashing as it goes and stopping as soon as more bytes
arrive than the descriptor allows; the file is renamed into place only when size and digest
match, and nothing is left behind otherwise.

Registries are spoken to over https, except the ``host[:port]`` names in ``plain_http`` (the
``insecure = true`` registries of registries.conf).  A ``401`` is answered once: ``Basic``
with the credentials ``auth`` holds for the image, ``Bearer`` with a token from the realm
the registry names (see :mod:`veritee.image.registry_http`).  Blob downloads follow
redirects (registries send clients to their storage) but the registry's ``Authorization``
header goes only to the registry's own origin.  Descriptor ``urls`` (foreign layers) are
never used.  Credentials, tokens and ``Authorization`` headers never reach messages or logs.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO

import httpx

from veritee.image.reference import ImageReference
from veritee.image.registry_auth import AuthFile
from veritee.image.registry_errors import (
    DigestMismatch,
    ManifestInvalid,
    PlatformNotFound,
    RegistryNotFound,
    UnsupportedMediaType,
)
from veritee.image.registry_http import RegistrySession
from veritee.image.registry_token import BearerTokens
from veritee.image.registry_types import (
    CONFIG_TYPES,
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    Platform,
    check_digest,
    digest_hasher,
    parse_config,
    parse_index,
    parse_manifest,
)

__all__ = ["RegistryClient", "ResolvedImage", "manifest_media_type"]

_log = logging.getLogger("veritee.image")

_CHUNK = 1 << 16
_SCHEMA1 = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})
_GENERIC = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
_TAG = re.compile(r"[\w][\w.-]{0,127}")


@dataclass(frozen=True)
class ResolvedImage:
    """A reference resolved to one platform's image manifest and its config, all verified."""

    reference: ImageReference  # as asked for
    manifest_digest: str  # the platform image manifest's
    index_digest: str | None  # the index's (or Docker list's), when the reference named one
    manifest: ImageManifest
    manifest_bytes: bytes
    config: ImageConfig
    config_bytes: bytes
    index_bytes: bytes | None = None  # the index itself, when there was one

    @property
    def digest(self) -> str:
        """The digest the reference resolved to (the index's when there was one): what
        signatures over the reference are made for."""
        return self.index_digest or self.manifest_digest


def manifest_media_type(content_type: str, raw: bytes, what: str = "manifest") -> str:
    """The media type of a manifest served with ``content_type``: the header's, or when that
    says nothing specific the document's ``mediaType``, or its shape (OCI made ``mediaType``
    optional).  Docker schema 1 and unknown types raise ``UnsupportedMediaType``."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _GENERIC:
        try:
            document: Any = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ManifestInvalid(f"{what} is not JSON") from None
        if not isinstance(document, dict):
            raise ManifestInvalid(f"{what} is not a JSON object")
        inner = document.get("mediaType")
        if isinstance(inner, str) and inner:
            media_type = inner
        elif document.get("schemaVersion") == 1:
            raise UnsupportedMediaType(f"{what} is a Docker schema 1 manifest (not supported)")
        elif "manifests" in document:
            media_type = OCI_INDEX
        elif "config" in document:
            media_type = OCI_MANIFEST
    if media_type in _SCHEMA1:
        raise UnsupportedMediaType(f"{what} is a Docker schema 1 manifest (not supported)")
    if media_type not in INDEX_TYPES | MANIFEST_TYPES:
        raise UnsupportedMediaType(f"{what} has media type {media_type[:100]!r} "
                                   "(not an image manifest or index)")
    return media_type


def _label(ref: ImageReference, reference: str) -> str:
    return f"{ref.name}{'@' if ':' in reference else ':'}{reference}"


class RegistryClient:
    """Pulls manifests, configs and blobs from OCI registries over ``httpx``.

    ``plain_http`` holds registry ``host[:port]`` names as they appear in references
    (``ImageReference.registry``, e.g. ``127.0.0.1:5000``); a token realm is used over plain
    http only when its ``host:port`` is in it too.  ``http`` is used as given (and not closed).
    """

    def __init__(
        self, *, auth: AuthFile | None = None, plain_http: Collection[str] = (),
        http: httpx.Client | None = None, platform: Platform | None = None,
        max_manifest_bytes: int = 4 << 20, timeout_s: float = 30.0,
    ) -> None:
        self._plain_http = frozenset(plain_http)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout_s)
        self.platform = platform if platform is not None else Platform()
        self.max_manifest_bytes = max_manifest_bytes
        self._session = RegistrySession(self._http, auth=auth, plain_http=self._plain_http,
                                        timeout_s=timeout_s)

    @property
    def tokens(self) -> BearerTokens:
        """The bearer tokens fetched so far (``tokens.fetches`` counts realm requests)."""
        return self._session.tokens

    def __repr__(self) -> str:
        return (f"RegistryClient(platform={str(self.platform)!r}, "
                f"plain_http={sorted(self._plain_http)!r})")

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # -- manifests -----------------------------------------------------------------------

    def resolve(self, ref: ImageReference) -> ResolvedImage:
        """Fetch and verify ``ref``'s manifest (through its index, for this client's
        platform) and its image config."""
        raw, media_type, digest = self._manifest(ref, ref.manifest_ref, ref.digest)
        index_digest = index_bytes = None
        if media_type in INDEX_TYPES:
            index_digest, index_bytes = digest, raw
            index = parse_index(raw, media_type, f"{ref.name}@{digest} (index)")
            entry = self._select(ref, index, digest)
            raw, media_type, digest = self._manifest(ref, entry.digest, entry.digest)
            if media_type in INDEX_TYPES:
                raise UnsupportedMediaType(
                    f"{ref.name}@{index_digest}: the {self.platform} entry {digest} is itself "
                    "an index (nested indexes are not supported)")
            if len(raw) != entry.size:
                raise DigestMismatch(f"{ref.name}@{digest}: {len(raw)} bytes where the index "
                                     f"{index_digest} says {entry.size}")
        manifest = parse_manifest(raw, media_type, f"{ref.name}@{digest}")
        described = manifest.config
        if described.media_type not in CONFIG_TYPES:
            raise UnsupportedMediaType(
                f"{ref.name}@{digest}: config media type {described.media_type[:100]!r} "
                "(not a container image)")
        config_bytes = self.blob_bytes(ref, described, limit=self.max_manifest_bytes)
        config = parse_config(config_bytes, f"{ref.name} config {described.digest}")
        built_for = Platform(config.os, config.architecture, config.variant)
        if not self.platform.matches(built_for):
            raise PlatformNotFound(
                f"{ref.name}@{digest} is an image for {built_for}, not {self.platform}")
        return ResolvedImage(ref, digest, index_digest, manifest, raw, config, config_bytes,
                             index_bytes)

    def tag_manifest(self, ref: ImageReference, tag: str) -> tuple[bytes, str, str] | None:
        """The manifest tagged ``tag`` in ``ref``'s repository as ``(bytes, media type,
        digest)``, digest-checked against what the registry announced; ``None`` when the
        registry has no such tag (as for an image without cosign signatures)."""
        if not _TAG.fullmatch(tag):
            raise ValueError(f"{tag[:140]!r} is not a tag")
        try:
            return self._manifest(ImageReference(ref.registry, ref.repository, tag), tag, None)
        except RegistryNotFound:
            return None

    def _select(self, ref: ImageReference, index: ImageIndex, digest: str) -> Descriptor:
        for entry in index.manifests:
            if entry.platform is not None and self.platform.matches(entry.platform):
                if entry.media_type in INDEX_TYPES:
                    raise UnsupportedMediaType(
                        f"{ref.name}@{digest}: the {self.platform} entry {entry.digest} is "
                        "itself an index (nested indexes are not supported)")
                if entry.size > self.max_manifest_bytes:
                    raise ManifestInvalid(
                        f"{ref.name}@{entry.digest}: {entry.size} bytes is over the "
                        f"{self.max_manifest_bytes}-byte manifest limit")
                return entry
        offered = sorted({str(e.platform) for e in index.manifests if e.platform is not None})
        raise PlatformNotFound(
            f"{ref.name}@{digest}: the index has no manifest for {self.platform} "
            f"(on offer: {', '.join(offered) or 'none'})")

    def _manifest(
        self, ref: ImageReference, reference: str, expected: str | None,
    ) -> tuple[bytes, str, str]:
        label = _label(ref, reference)
        limit = self.max_manifest_bytes
        with self._session.get(ref, f"manifests/{reference}", f"manifest {reference}",
                       accept=MANIFEST_ACCEPT) as response:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                raise ManifestInvalid(f"{label}: the manifest is {length} bytes, over the "
                                      f"{limit}-byte limit")
            body = bytearray()
            for chunk in response.iter_raw(_CHUNK):
                body += chunk
                if len(body) > limit:
                    raise ManifestInvalid(f"{label}: the manifest is over the {limit}-byte "
                                          "limit")
            content_type = response.headers.get("Content-Type", "")
            announced = response.headers.get("Docker-Content-Digest")
        raw = bytes(body)
        media_type = manifest_media_type(content_type, raw, f"{label} (manifest)")
        if expected is not None:
            if not check_digest(raw, expected):
                raise DigestMismatch(f"{label}: the manifest served does not hash to {expected}")
            digest = expected
        else:
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if announced:
            try:
                agrees = check_digest(raw, announced.strip())
            except ManifestInvalid:
                agrees = False
            if not agrees:
                raise DigestMismatch(f"{label}: the registry announced Docker-Content-Digest "
                                     f"{announced.strip()[:80]!r} for a manifest hashing to "
                                     f"{digest}")
        _log.info("fetched manifest %s (%d bytes, %s) from %s", digest, len(raw), media_type,
                  ref.name)
        return raw, media_type, digest

    # -- blobs ---------------------------------------------------------------------------

    def fetch_blob(self, ref: ImageReference, descriptor: Descriptor, dest: Path) -> None:
        """Download ``descriptor``'s blob to ``dest`` (through a private temporary file beside
        it, renamed only once size and digest match; nothing is left on failure)."""
        handle, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.",
                                             suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                self._stream_blob(ref, descriptor, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, dest)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @contextmanager
    def open_blob(
        self, ref: ImageReference, descriptor: Descriptor, *, directory: Path | None = None,
    ) -> Iterator[BinaryIO]:
        """The verified blob as an anonymous temporary file (in ``directory``, else the
        system's), positioned at its start; gone when the ``with`` block ends."""
        with tempfile.TemporaryFile(dir=directory) as out:
            self._stream_blob(ref, descriptor, out)
            out.seek(0)
            yield out

    def blob_bytes(self, ref: ImageReference, descriptor: Descriptor, *, limit: int) -> bytes:
        """A small verified blob (a config, a signature payload) in memory; a descriptor over
        ``limit`` bytes is refused before anything is fetched (``ManifestInvalid``)."""
        if descriptor.size > limit:
            raise ManifestInvalid(f"{ref.name}@{descriptor.digest}: {descriptor.size} bytes "
                                  f"is over the {limit}-byte limit")
        buffer = io.BytesIO()
        self._stream_blob(ref, descriptor, buffer)
        return buffer.getvalue()

    def _stream_blob(self, ref: ImageReference, descriptor: Descriptor, out: IO[bytes]) -> None:
        hasher = digest_hasher(descriptor.digest)
        label, size = f"{ref.name}@{descriptor.digest}", descriptor.size
        total = 0
        with self._session.get(ref, f"blobs/{descriptor.digest}", f"blob {descriptor.digest}",
                       accept=None) as response:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) != size:
                raise DigestMismatch(f"{label}: the registry sends {length} bytes where the "
                                     f"descriptor says {size}")
            for chunk in response.iter_raw(_CHUNK):
                total += len(chunk)
                if total > size:
                    raise DigestMismatch(f"{label}: the registry sent more than the "
                                         f"{size} bytes the descriptor says")
                hasher.update(chunk)
                out.write(chunk)
        if total != size:
            raise DigestMismatch(f"{label}: the registry sent {total} of {size} bytes")
        actual = f"{descriptor.digest.partition(':')[0]}:{hasher.hexdigest()}"
        if actual != descriptor.digest:
            raise DigestMismatch(f"{label}: the blob served hashes to {actual}")
        _log.info("fetched blob %s (%d bytes) from %s", descriptor.digest, size, ref.name)
