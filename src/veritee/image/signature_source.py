"""Where signatures come from: the registries.d configuration (CDH's ``sigstore_config``),
simple signatures in a lookaside store, cosign signatures attached in the registry; and
where a requirement's keys come from (``KeySource`` read through a ``KeyLoader``).

``RegistriesD.parse`` reads containers-registries.d(5) YAML: ``default-docker:`` and
``docker: {<scope>: {lookaside|sigstore: URL, use-sigstore-attachments: bool}}``.  The
most specific scope that sets a value wins (the image's own reference, its repository, the
parent namespaces, the registry, ``*.domain`` wildcards), then ``default-docker``, as
containers/image's ``docker/registries_d.go`` does.

``LookasideSignatures`` reads ``<base>/<repository path>@<algorithm>=<hex>/signature-<N>``
for N = 1, 2, … until one is missing (a missing file, HTTP 404), from ``file://`` or
``http(s)://`` bases, each signature at most ``MAX_SIGNATURE_SIZE`` bytes, at most
``MAX_SIGNATURES`` of them.  ``AttachmentSignatures`` reads the ``sha256-<hex>.sig`` tag's
OCI manifest through an ``AttachmentReader`` (implemented by the registry client): every
layer is one signature, its blob the payload.  ``RegistrySignatures`` is both, as a pull uses
them: the lookaside when registries.d names one for the image, the attachments unless
registries.d says ``use-sigstore-attachments: false`` for it (image-rs always reads them).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml

from veritee.image.policy_identity import scope_candidates
from veritee.image.reference import ImageReference
from veritee.image.registry_errors import ManifestInvalid, RegistryError
from veritee.image.registry_types import Descriptor, check_digest, digest_hasher, parse_manifest
from veritee.image.signature_errors import (
    KeyLoadError,
    SignatureConfigError,
    SignatureFetchError,
)

__all__ = [
    "COSIGN_SIGNATURE_MEDIA_TYPE",
    "MAX_SIGNATURES",
    "MAX_SIGNATURE_SIZE",
    "AttachmentReader",
    "AttachmentSignatures",
    "KeyLoader",
    "KeySource",
    "LookasideSignatures",
    "NamespaceConfig",
    "RegistriesD",
    "RegistrySignatures",
    "SignatureSource",
    "SigstoreSignature",
    "attachment_tag",
    "file_key_loader",
]

MAX_SIGNATURE_SIZE = 4 * 1024 * 1024
MAX_SIGNATURES = 128
COSIGN_SIGNATURE_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
KeyLoader = Callable[[str], bytes]
_NAMESPACE_KEYS = {"lookaside", "lookaside-staging", "sigstore", "sigstore-staging",
                   "use-sigstore-attachments"}


@dataclass(frozen=True)
class SigstoreSignature:
    """One cosign signature: the payload bytes and the base64 signature over them."""

    payload: bytes
    signature: str
    media_type: str = COSIGN_SIGNATURE_MEDIA_TYPE


class SignatureSource(Protocol):
    """What the policy asks the pull for, only when a requirement needs signatures."""

    def simple_signatures(self, ref: ImageReference, manifest_digest: str) -> list[bytes]: ...

    def sigstore_signatures(self, ref: ImageReference,
                            manifest_digest: str) -> list[SigstoreSignature]: ...


class AttachmentReader(Protocol):
    """The two registry reads sigstore attachments need (the registry client has them)."""

    def tag_manifest(self, ref: ImageReference, tag: str) -> tuple[bytes, str, str] | None:
        """The manifest ``tag`` in ``ref``'s repository: (raw, media type, digest), or None
        when the tag does not exist."""
        ...

    def blob_bytes(self, ref: ImageReference, descriptor: Descriptor, *, limit: int) -> bytes:
        """The blob ``descriptor`` names in ``ref``'s repository, digest-checked, at most
        ``limit`` bytes."""
        ...


@dataclass(frozen=True)
class NamespaceConfig:
    """One scope's settings: the lookaside base URL and ``use-sigstore-attachments``."""

    lookaside: str | None = None
    use_sigstore_attachments: bool | None = None


@dataclass(frozen=True)
class RegistriesD:
    """A parsed registries.d document (several files' worth may be merged with ``merge``)."""

    default_docker: NamespaceConfig | None = None
    docker: Mapping[str, NamespaceConfig] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes, *, source: str = "sigstore_config") -> RegistriesD:
        try:
            document = yaml.safe_load(data) if data.strip() else {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise SignatureConfigError(source, "$", f"not YAML{where}") from None
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise SignatureConfigError(source, "$", "the document is not a mapping")
        unknown = sorted(str(k) for k in set(document) - {"default-docker", "docker"})
        if unknown:
            raise SignatureConfigError(source, f"$.{unknown[0]}", "unknown key (known: "
                                       "default-docker, docker)")
        default = None
        if document.get("default-docker") is not None:
            default = _namespace(document["default-docker"], source, "$.default-docker")
        scopes = document.get("docker") or {}
        if not isinstance(scopes, dict):
            raise SignatureConfigError(source, "$.docker", "docker is a mapping of scopes")
        docker = {str(scope): _namespace(entry, source, f"$.docker[{str(scope)!r}]")
                  for scope, entry in scopes.items()}
        return cls(default, docker)

    def merge(self, other: RegistriesD, *, source: str) -> RegistriesD:
        """Both documents' scopes; a scope (or default-docker) in both is refused, as
        containers/image refuses it across files."""
        if self.default_docker is not None and other.default_docker is not None:
            raise SignatureConfigError(source, "$.default-docker", "defined twice")
        twice = sorted(set(self.docker) & set(other.docker))
        if twice:
            raise SignatureConfigError(source, f"$.docker[{twice[0]!r}]", "defined twice")
        return RegistriesD(self.default_docker or other.default_docker,
                           {**self.docker, **other.docker})

    def _entries(self, ref: ImageReference) -> list[NamespaceConfig]:
        found = [self.docker[s] for s in scope_candidates(ref) if s in self.docker]
        return found + ([self.default_docker] if self.default_docker is not None else [])

    def lookaside_for(self, ref: ImageReference) -> str | None:
        """The lookaside base URL for ``ref``, or None when none is configured."""
        return next((e.lookaside for e in self._entries(ref) if e.lookaside), None)

    def use_sigstore_attachments(self, ref: ImageReference) -> bool | None:
        """``use-sigstore-attachments`` for ``ref``; None when no scope sets it."""
        return next((e.use_sigstore_attachments for e in self._entries(ref)
                     if e.use_sigstore_attachments is not None), None)


def _namespace(value: Any, source: str, where: str) -> NamespaceConfig:
    if not isinstance(value, dict):
        raise SignatureConfigError(source, where, "a scope's settings are a mapping")
    unknown = sorted(str(k) for k in set(value) - _NAMESPACE_KEYS)
    if unknown:
        raise SignatureConfigError(source, f"{where}.{unknown[0]}", "unknown key (known: "
                                   + ", ".join(sorted(_NAMESPACE_KEYS)) + ")")
    lookaside = value.get("lookaside") or value.get("sigstore")
    if lookaside is not None:
        key = "lookaside" if value.get("lookaside") else "sigstore"
        if not isinstance(lookaside, str):
            raise SignatureConfigError(source, f"{where}.{key}", "must be a URL string")
        parsed = urllib.parse.urlsplit(lookaside)
        if parsed.scheme not in ("file", "http", "https"):
            raise SignatureConfigError(source, f"{where}.{key}", f"{lookaside!r}: only file://, "
                                       "http:// and https:// lookaside stores are supported")
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise SignatureConfigError(source, f"{where}.{key}",
                                       f"{lookaside!r}: a file:// URL has no host")
    attachments = value.get("use-sigstore-attachments")
    if attachments is not None and not isinstance(attachments, bool):
        raise SignatureConfigError(source, f"{where}.use-sigstore-attachments",
                                   "must be true or false")
    return NamespaceConfig(lookaside, attachments)


def lookaside_url(base: str, ref: ImageReference, manifest_digest: str, index: int) -> str:
    """``<base>/<repository>@<algorithm>=<hex>/signature-<index>`` (index from 1)."""
    try:
        digest_hasher(manifest_digest)
    except ManifestInvalid as exc:
        raise SignatureFetchError(str(exc)) from None
    algorithm, _, hexpart = manifest_digest.partition(":")
    parts = urllib.parse.urlsplit(base)
    # A trailing '/' on the base is not doubled (containers/image would write '//').
    path = f"{parts.path.rstrip('/')}/{ref.repository}@{algorithm}={hexpart}/signature-{index}"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class LookasideSignatures:
    """Simple signatures from the lookaside store registries.d names for the image."""

    def __init__(self, config: RegistriesD, *, http: httpx.Client | None = None,
                 max_size: int = MAX_SIGNATURE_SIZE) -> None:
        self.config = config
        self.http = http
        self.max_size = max_size

    def simple_signatures(self, ref: ImageReference, manifest_digest: str) -> list[bytes]:
        base = self.config.lookaside_for(ref)
        if base is None:
            return []
        out: list[bytes] = []
        for index in range(1, MAX_SIGNATURES + 2):
            if index > MAX_SIGNATURES:
                raise SignatureFetchError(f"the lookaside store for {ref.name} holds more than "
                                          f"{MAX_SIGNATURES} signatures for {manifest_digest}")
            blob = self._read(lookaside_url(base, ref, manifest_digest, index))
            if blob is None:
                break
            out.append(blob)
        return out

    def sigstore_signatures(self, ref: ImageReference,
                            manifest_digest: str) -> list[SigstoreSignature]:
        return []

    def _read(self, url: str) -> bytes | None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "file":
            path = Path(urllib.parse.unquote(parts.path))
            try:
                with path.open("rb") as handle:
                    blob = handle.read(self.max_size + 1)
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise SignatureFetchError(f"cannot read signature {path}: {exc.strerror}") from None
        else:
            fetched = self._get(url)
            if fetched is None:
                return None
            blob = fetched
        if len(blob) > self.max_size:
            raise SignatureFetchError(f"signature {_redact(url)} is larger than "
                                      f"{self.max_size} bytes")
        return blob

    def _get(self, url: str) -> bytes | None:
        client = self.http or httpx.Client(timeout=30.0, follow_redirects=True)
        try:
            with client.stream("GET", url) as response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise SignatureFetchError(f"reading signature {_redact(url)}: HTTP "
                                              f"{response.status_code}")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_size:
                        raise SignatureFetchError(f"signature {_redact(url)} is larger than "
                                                  f"{self.max_size} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise SignatureFetchError(f"reading signature {_redact(url)}: "
                                      f"{type(exc).__name__}") from None
        finally:
            if self.http is None:
                client.close()


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def attachment_tag(manifest_digest: str) -> str:
    """cosign's tag for ``manifest_digest``'s attachments: ``sha256-<hex>.sig``."""
    try:
        digest_hasher(manifest_digest)
    except ManifestInvalid as exc:
        raise SignatureFetchError(str(exc)) from None
    return manifest_digest.replace(":", "-", 1) + ".sig"


class AttachmentSignatures:
    """Cosign signatures attached to the image in its registry."""

    def __init__(self, reader: AttachmentReader) -> None:
        self.reader = reader

    def simple_signatures(self, ref: ImageReference, manifest_digest: str) -> list[bytes]:
        return []

    def sigstore_signatures(self, ref: ImageReference,
                            manifest_digest: str) -> list[SigstoreSignature]:
        tag = attachment_tag(manifest_digest)
        where = f"{ref.name}:{tag}"
        try:
            found = self.reader.tag_manifest(ref, tag)
            if found is None:
                return []
            raw, media_type, _ = found
            if media_type != OCI_MANIFEST:
                raise SignatureFetchError(f"the sigstore attachment manifest {where} is "
                                          f"{media_type!r}, not an OCI image manifest")
            layers = parse_manifest(raw, media_type, f"attachment manifest {where}").layers
            if len(layers) > MAX_SIGNATURES:
                raise SignatureFetchError(f"{where} holds more than {MAX_SIGNATURES} "
                                          "signatures")
            out = []
            for layer in layers:
                payload = self.reader.blob_bytes(ref, layer, limit=MAX_SIGNATURE_SIZE)
                if len(payload) > MAX_SIGNATURE_SIZE or not check_digest(payload, layer.digest):
                    raise SignatureFetchError(f"attachment {layer.digest} in {where} does not "
                                              "match its descriptor")
                out.append(SigstoreSignature(
                    payload, layer.annotations.get(COSIGN_SIGNATURE_ANNOTATION, ""),
                    layer.media_type))
            return out
        except RegistryError as exc:
            raise SignatureFetchError(f"reading sigstore attachments {where}: {exc}") from None


class RegistrySignatures:
    """The ``SignatureSource`` a pull hands the policy: lookaside simple signatures and
    cosign signatures attached in ``registry`` (None: none read), as ``config`` (the
    ``sigstore_config`` registries.d; None: no lookaside) says.  ``http`` reads
    ``http(s)://`` lookaside stores (a short-lived client per read when None)."""

    def __init__(self, registry: AttachmentReader | None, config: RegistriesD | None = None,
                 *, http: httpx.Client | None = None) -> None:
        self.config = config or RegistriesD()
        self.lookaside = LookasideSignatures(self.config, http=http)
        self.attachments = AttachmentSignatures(registry) if registry is not None else None

    def simple_signatures(self, ref: ImageReference, manifest_digest: str) -> list[bytes]:
        return self.lookaside.simple_signatures(ref, manifest_digest)

    def sigstore_signatures(self, ref: ImageReference,
                            manifest_digest: str) -> list[SigstoreSignature]:
        if self.attachments is None or self.config.use_sigstore_attachments(ref) is False:
            return []
        return self.attachments.sigstore_signatures(ref, manifest_digest)


def file_key_loader(location: str) -> bytes:
    """Read a key from a local path (or ``file://`` URL); ``kbs://`` needs the CDH's loader."""
    if location.startswith("kbs://"):
        raise KeyLoadError(f"{location} is a KBS resource; this key loader reads local files "
                           "only (pass the CDH's resource loader)")
    path = Path(location.removeprefix("file://"))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"cannot read key file {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class KeySource:
    """Where a requirement's trusted keys are: ``field`` is the policy key that named them."""

    field: str
    paths: tuple[str, ...] = ()
    data: tuple[bytes, ...] = ()

    def __str__(self) -> str:
        if self.field == "keyPath":
            return f"keyPath={self.paths[0]}"
        if self.field == "keyPaths":
            return "keyPaths=[" + ", ".join(self.paths) + "]"
        return f"{self.field} (inline)"

    def load(self, loader: KeyLoader, what: str) -> list[bytes]:
        out = list(self.data)
        for path in self.paths:
            try:
                data = loader(path)
            except KeyLoadError as exc:
                raise KeyLoadError(f"{what}: {exc}") from exc
            except Exception as exc:
                raise KeyLoadError(f"{what}: loading {path} failed: {type(exc).__name__}: "
                                   f"{str(exc)[:200]}") from exc
            if not isinstance(data, bytes) or not data:
                raise KeyLoadError(f"{what}: loading {path} gave no key bytes")
            out.append(data)
        return out
