"""The image security policy: containers-policy.json, as image-rs in CoCo's CDH applies it.

``ImagePolicy.parse`` reads ``{"default": [reqs], "transports": {"docker": {"<scope>":
[reqs]}}}`` as strictly as containers/image: unknown or duplicate keys, unknown requirement
or ``signedIdentity`` types, an empty requirement list and a missing ``default`` are
refused with ``PolicyDocumentError`` naming the document and the JSON path.

Requirements: ``insecureAcceptAnything``, ``reject``, ``signedBy`` (``keyType: GPGKeys``;
exactly one of ``keyPath``, ``keyPaths``, ``keyData`` (base64)), ``sigstoreSigned`` (exactly
one of ``keyPath``, ``keyPaths``, ``keyData``, ``keyDatas``: PEM public keys, base64 in
``keyData*``; Fulcio, Rekor and PKI are refused as unsupported).  ``signedIdentity``
defaults to ``matchRepoDigestOrExact``, containers/image's default for both (image-rs's
simple signing too); cosign signs the repository only, so ``sigstoreSigned`` policies for
cosign-made signatures say ``matchRepository``.  CoCo's extension: a ``keyPath`` may be a
``kbs:///…`` resource URI; every key path, local or not, is read through the caller's
``KeyLoader`` (``file_key_loader`` reads local files).

``evaluate`` picks the scope (``policy_identity.scope_candidates``, then the transport's
``""``, then ``default``), requires every requirement in it to pass, and fetches signatures
from the ``SignatureSource`` only for a requirement that needs them.  Signed digests are
checked against the manifest bytes (and the manifest list's, when the pull came through
one), never against a digest the caller merely states.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from veritee.image.policy_identity import (
    IdentityMatch,
    MatchRepoDigestOrExact,
    parse_signed_identity,
    scope_candidates,
)
from veritee.image.reference import ImageReference
from veritee.image.registry_errors import DigestMismatch
from veritee.image.registry_types import check_digest
from veritee.image.signature_errors import (
    PolicyDocumentError,
    PolicyRejected,
    SignatureInvalid,
    SignatureRejected,
)
from veritee.image.signature_gpg import GpgKeyring, verify_simple_signature
from veritee.image.signature_sigstore import load_sigstore_keys, verify_sigstore_signature
from veritee.image.signature_source import (
    AttachmentReader,
    KeyLoader,
    KeySource,
    LookasideSignatures,
    RegistriesD,
    RegistrySignatures,
    SignatureSource,
    SigstoreSignature,
    file_key_loader,
)

__all__ = [
    "DEFAULT_SIGNED_IDENTITY",
    "AttachmentReader",
    "ImagePolicy",
    "InsecureAcceptAnything",
    "KeyLoader",
    "KeySource",
    "LookasideSignatures",
    "PolicyDecision",
    "RegistriesD",
    "RegistrySignatures",
    "Reject",
    "Requirement",
    "SignatureSource",
    "SignedBy",
    "SigstoreSignature",
    "SigstoreSigned",
    "evaluate",
    "file_key_loader",
]

DEFAULT_SIGNED_IDENTITY: IdentityMatch = MatchRepoDigestOrExact()
_TYPES = "insecureAcceptAnything, reject, signedBy, sigstoreSigned"
_SIGSTORE_UNSUPPORTED = ("fulcio", "rekorPublicKeyPath", "rekorPublicKeyPaths",
                         "rekorPublicKeyData", "rekorPublicKeyDatas", "pki")


@dataclass(frozen=True)
class InsecureAcceptAnything:
    def __str__(self) -> str:
        return "insecureAcceptAnything"


@dataclass(frozen=True)
class Reject:
    def __str__(self) -> str:
        return "reject"


@dataclass(frozen=True)
class SignedBy:
    keys: KeySource
    signed_identity: IdentityMatch = DEFAULT_SIGNED_IDENTITY
    key_type: str = "GPGKeys"

    def __str__(self) -> str:
        return f"signedBy({self.key_type}, {self.keys}, signedIdentity={self.signed_identity})"


@dataclass(frozen=True)
class SigstoreSigned:
    keys: KeySource
    signed_identity: IdentityMatch = DEFAULT_SIGNED_IDENTITY

    def __str__(self) -> str:
        return f"sigstoreSigned({self.keys}, signedIdentity={self.signed_identity})"


Requirement = InsecureAcceptAnything | Reject | SignedBy | SigstoreSigned


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> PolicyDocumentError:
        return PolicyDocumentError(self.source, path, message)

    def obj(self, value: Any, path: str, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"{what} must be a JSON object")
        return value

    def only(self, value: dict[str, Any], path: str, allowed: set[str], what: str) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail(f"{path}.{key}", f"unknown key for {what} (allowed: "
                                + ", ".join(sorted(allowed)) + ")")

    def requirements(self, value: Any, path: str) -> tuple[Requirement, ...]:
        if not isinstance(value, list):
            raise self.fail(path, "a requirement list must be a JSON array")
        if not value:
            raise self.fail(path, "a requirement list must not be empty")
        return tuple(self.requirement(item, f"{path}[{n}]") for n, item in enumerate(value))

    def requirement(self, value: Any, path: str) -> Requirement:
        req = self.obj(value, path, "a requirement")
        kind = req.get("type")
        if kind in ("insecureAcceptAnything", "reject"):
            self.only(req, path, {"type"}, str(kind))
            return InsecureAcceptAnything() if kind == "insecureAcceptAnything" else Reject()
        if kind == "signedBy":
            self.only(req, path, {"type", "keyType", "keyPath", "keyPaths", "keyData",
                                  "signedIdentity"}, "signedBy")
            key_type = req.get("keyType")
            if key_type is None:
                raise self.fail(f"{path}.keyType", "keyType is required (\"GPGKeys\")")
            if key_type != "GPGKeys":
                known = ("signedByGPGKeys", "X509Certificates", "signedByX509CAs")
                why = "is not supported" if key_type in known else "is not a known keyType"
                raise self.fail(f"{path}.keyType", f"{key_type!r} {why} (only \"GPGKeys\")")
            return SignedBy(self.keys(req, path, ("keyPath", "keyPaths", "keyData")),
                            self.identity(req, path))
        if kind == "sigstoreSigned":
            for key in _SIGSTORE_UNSUPPORTED:
                if key in req:
                    raise self.fail(f"{path}.{key}", f"{key} is not supported: sigstoreSigned "
                                    "works with public keys only (keyPath, keyPaths, keyData, "
                                    "keyDatas)")
            self.only(req, path, {"type", "keyPath", "keyPaths", "keyData", "keyDatas",
                                  "signedIdentity"}, "sigstoreSigned")
            return SigstoreSigned(self.keys(req, path, ("keyPath", "keyPaths", "keyData",
                                                        "keyDatas")),
                                  self.identity(req, path))
        if kind == "signedBaseLayer":
            raise self.fail(f"{path}.type", "signedBaseLayer is not supported")
        if not isinstance(kind, str):
            raise self.fail(f"{path}.type", f"type is required (one of {_TYPES})")
        raise self.fail(f"{path}.type", f"unknown requirement type {kind!r} (known: {_TYPES})")

    def identity(self, req: dict[str, Any], path: str) -> IdentityMatch:
        if "signedIdentity" not in req:
            return DEFAULT_SIGNED_IDENTITY
        return parse_signed_identity(req["signedIdentity"], f"{path}.signedIdentity",
                                     self.fail)

    def keys(self, req: dict[str, Any], path: str, fields: Sequence[str]) -> KeySource:
        present = [f for f in fields if f in req]
        if len(present) != 1:
            how = "none" if not present else "more than one"
            raise self.fail(path, f"exactly one of {', '.join(fields)} must be given "
                            f"({how} present)")
        field = present[0]
        value, where = req[field], f"{path}.{field}"
        if field == "keyPath":
            if not isinstance(value, str) or not value:
                raise self.fail(where, "keyPath must be a non-empty string")
            return KeySource(field, paths=(value,))
        if not field.endswith("s"):
            return KeySource(field, data=(self.base64(value, where),))
        if not isinstance(value, list) or not value:
            raise self.fail(where, f"{field} must be a non-empty array")
        if field == "keyPaths":
            if not all(isinstance(v, str) and v for v in value):
                raise self.fail(where, "keyPaths must hold non-empty strings")
            return KeySource(field, paths=tuple(value))
        return KeySource(field, data=tuple(self.base64(v, f"{where}[{n}]")
                                           for n, v in enumerate(value)))

    def base64(self, value: Any, where: str) -> bytes:
        if not isinstance(value, str) or not value:
            raise self.fail(where, "must be a non-empty base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(where, "is not valid base64") from None


def _json_object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _scope_label(transport: str, scope: str | None) -> str:
    return "default" if scope is None else f"transports.{transport}[{json.dumps(scope)}]"


@dataclass(frozen=True)
class ImagePolicy:
    """A parsed containers-policy.json document."""

    default: tuple[Requirement, ...]
    transports: Mapping[str, Mapping[str, tuple[Requirement, ...]]]
    source: str = "policy.json"

    @classmethod
    def parse(cls, data: bytes, *, source: str) -> ImagePolicy:
        parser = _Parser(source)
        try:
            document = json.loads(data, object_pairs_hook=_json_object_pairs)
        except UnicodeDecodeError:
            raise parser.fail("$", "the document is not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise parser.fail("$", f"not JSON ({exc.msg} at line {exc.lineno} column "
                              f"{exc.colno})") from None
        except ValueError as exc:
            raise parser.fail("$", str(exc)) from None
        top = parser.obj(document, "$", "the policy")
        parser.only(top, "$", {"default", "transports"}, "the policy")
        if "default" not in top:
            raise parser.fail("$.default", "the default requirement list is missing")
        default = parser.requirements(top["default"], "$.default")
        transports: dict[str, dict[str, tuple[Requirement, ...]]] = {}
        raw = parser.obj(top.get("transports", {}), "$.transports", "transports")
        for name, scopes in raw.items():
            where = f"$.transports.{name}"
            transports[name] = {
                scope: parser.requirements(reqs, f"{where}[{json.dumps(scope)}]")
                for scope, reqs in parser.obj(scopes, where, "a transport's scopes").items()
            }
        return cls(default, transports, source)

    def requirements_for(self, ref: ImageReference, transport: str = "docker",
                         ) -> tuple[str, tuple[Requirement, ...]]:
        """The scope that covers ``ref`` (as a label for logs) and its requirements."""
        scopes = self.transports.get(transport, {})
        for scope in [*scope_candidates(ref), ""]:
            if scope in scopes:
                return _scope_label(transport, scope), scopes[scope]
        return _scope_label(transport, None), self.default


@dataclass(frozen=True)
class PolicyDecision:
    """Why the image may be pulled: the scope, its requirements, what satisfied each."""

    image: str
    scope: str
    requirements: tuple[str, ...]
    satisfied: tuple[str, ...]

    def __str__(self) -> str:
        return f"scope {self.scope}: " + "; ".join(self.satisfied)

    def log_line(self) -> str:
        return (f"image {self.image} allowed by the image security policy (scope {self.scope}: "
                + "; ".join(self.satisfied) + ")")


@dataclass
class _Check:
    """One evaluation's image, manifests and (lazily fetched, once each) signatures."""

    ref: ImageReference
    scope: str
    source: SignatureSource
    documents: list[bytes]
    digests: list[str]
    simple: dict[str, list[bytes]] = field(default_factory=dict)
    sigstore: dict[str, list[SigstoreSignature]] = field(default_factory=dict)

    def simple_for(self, digest: str) -> list[bytes]:
        if digest not in self.simple:
            self.simple[digest] = self.source.simple_signatures(self.ref, digest)
        return self.simple[digest]

    def sigstore_for(self, digest: str) -> list[SigstoreSignature]:
        if digest not in self.sigstore:
            self.sigstore[digest] = self.source.sigstore_signatures(self.ref, digest)
        return self.sigstore[digest]

    def signed_by(self, requirement: SignedBy, keys: list[bytes], what: str) -> str:
        reasons: list[str] = []
        with GpgKeyring(keys, what=what) as keyring:
            for digest in self.digests:
                blobs = self.simple_for(digest)
                if not blobs:
                    reasons.append(f"none found: no simple signature for {digest}")
                for n, blob in enumerate(blobs, 1):
                    try:
                        signer = verify_simple_signature(
                            keyring, blob, image=self.ref, match=requirement.signed_identity,
                            documents=self.documents)
                    except SignatureInvalid as exc:
                        reasons.append(f"signature {n} for {digest}: {exc}")
                        continue
                    return f"signedBy: signature {n} for {digest} by key {signer}"
        raise SignatureRejected(str(self.ref), self.scope, str(requirement), reasons)

    def sigstore_signed(self, requirement: SigstoreSigned, keys: list[bytes], what: str) -> str:
        public_keys = load_sigstore_keys(keys, what=what)
        reasons: list[str] = []
        for digest in self.digests:
            found = self.sigstore_for(digest)
            if not found:
                reasons.append(f"none found: no sigstore signature for {digest}")
            for n, signature in enumerate(found, 1):
                try:
                    index = verify_sigstore_signature(
                        public_keys, signature, image=self.ref,
                        match=requirement.signed_identity, documents=self.documents)
                except SignatureInvalid as exc:
                    reasons.append(f"signature {n} for {digest}: {exc}")
                    continue
                return (f"sigstoreSigned: signature {n} for {digest} by public key "
                        f"{index + 1} of {len(public_keys)}")
        raise SignatureRejected(str(self.ref), self.scope, str(requirement), reasons)


def evaluate(
    policy: ImagePolicy, ref: ImageReference, *, manifest_bytes: bytes, manifest_digest: str,
    signatures: SignatureSource, key_loader: KeyLoader,
    manifest_list_bytes: bytes | None = None, manifest_list_digest: str | None = None,
) -> PolicyDecision:
    """Apply ``policy`` to the image ``ref`` resolved to ``manifest_bytes`` (and, when it
    came through an image index, ``manifest_list_bytes``).  Raises ``PolicyRejected``,
    ``SignatureRejected``, ``KeyLoadError``, ``SignatureFetchError``, ``GpgUnavailable``, or
    ``DigestMismatch`` when the bytes are not the digests given."""
    documents = [(manifest_bytes, manifest_digest)]
    if manifest_list_bytes is not None and manifest_list_digest is not None:
        documents.append((manifest_list_bytes, manifest_list_digest))
    for data, digest in documents:
        if not check_digest(data, digest):
            raise DigestMismatch(f"{ref}: the manifest given does not hash to {digest}")
    contents = [data for data, _ in documents]
    if ref.digest is not None and not any(check_digest(d, ref.digest) for d in contents):
        raise DigestMismatch(f"{ref}: the manifest given is not the one the digest names")
    scope, requirements = policy.requirements_for(ref)
    check = _Check(ref, scope, signatures, contents, [digest for _, digest in documents])
    satisfied: list[str] = []
    for requirement in requirements:
        if isinstance(requirement, Reject):
            raise PolicyRejected(str(ref), scope)
        if isinstance(requirement, InsecureAcceptAnything):
            satisfied.append(str(requirement))
            continue
        what = f"policy {policy.source} scope {scope}: {requirement}"
        keys = requirement.keys.load(key_loader, what)
        if isinstance(requirement, SignedBy):
            satisfied.append(check.signed_by(requirement, keys, what))
        else:
            satisfied.append(check.sigstore_signed(requirement, keys, what))
    return PolicyDecision(str(ref), scope, tuple(str(r) for r in requirements),
                          tuple(satisfied))
