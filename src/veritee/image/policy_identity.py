"""Image identities in the image security policy: which scopes cover a reference, what a
signature's ``signedIdentity`` accepts, and the claims a signature payload makes.

Matching follows containers/image's ``signature/policy_reference_match.go``: references are
normalised (``busybox`` is ``docker.io/library/busybox``) and compared as
``registry/repository[:tag][@digest]``; a signed reference with neither tag nor digest
("name only", what cosign signs) satisfies only the repository matchers.

Signature payloads (simple signing's ``atomic container signature`` and cosign's ``cosign
container image signature``) are parsed as strictly as containers/image does: exactly the
keys ``critical``/``optional``, ``critical`` exactly ``type``/``image``/``identity``, no
duplicate keys, an integer ``optional.timestamp``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from veritee.image.reference import (
    _DOMAIN,
    _PATH,
    ImageReference,
    ReferenceParseError,
    parse_reference,
)
from veritee.image.registry_errors import ManifestInvalid
from veritee.image.registry_types import check_digest, digest_hasher
from veritee.image.signature_errors import SignatureInvalid

__all__ = [
    "ExactReference",
    "ExactRepository",
    "IdentityMatch",
    "MatchExact",
    "MatchRepoDigestOrExact",
    "MatchRepository",
    "RemapIdentity",
    "SignedClaims",
    "check_claims",
    "parse_claims",
    "parse_signed_identity",
    "scope_candidates",
]

Fail = Callable[[str, str], Exception]  # (json path, message) -> the error to raise


def scope_candidates(ref: ImageReference) -> list[str]:
    """The docker transport's scopes for ``ref``, most specific first: the reference itself
    (``name:tag``, ``name@digest``; with both, the whole form, then each), the repository,
    its parent namespaces up to the registry, then the wildcard domains (``*.example.com``,
    ``*.com``; the port dropped).  The transport's ``""`` and ``default`` come after."""
    out: list[str] = []
    if ref.tag is not None and ref.digest is not None:
        out += [ref.whole(), f"{ref.name}@{ref.digest}", f"{ref.name}:{ref.tag}"]
    elif ref.tag is not None or ref.digest is not None:
        out.append(ref.whole())
    name = ref.name
    while True:
        out.append(name)
        if "/" not in name:
            break
        name = name.rsplit("/", 1)[0]
    host = name.split(":", 1)[0] if not name.startswith("[") else ""
    while "." in host:
        host = host.split(".", 1)[1]
        out.append(f"*.{host}")
    return list(dict.fromkeys(out))


def _named(text: str) -> tuple[ImageReference, bool] | None:
    """``text`` normalised, and whether it is name-only; None when it does not parse."""
    try:
        ref = parse_reference(text)
    except ReferenceParseError:
        return None
    last = text.split("@", 1)[0].rsplit("/", 1)[-1]
    name_only = "@" not in text and ":" not in last
    return ref, name_only


def _is_name_only(ref: ImageReference) -> bool:
    return ref.tag is None and ref.digest is None


def _repo_digest_or_exact(intended: ImageReference, signed: str) -> bool:
    parsed = _named(signed)
    if parsed is None or parsed[1]:
        return False
    signature = parsed[0]
    if intended.tag is not None:  # tagged, or tagged and digested: the exact string
        return signature.whole() == intended.whole()
    if intended.digest is not None:  # the signed digest is checked against the manifest
        return signature.name == intended.name
    return False


@dataclass(frozen=True)
class MatchExact:
    def matches(self, image: ImageReference, signed: str) -> bool:
        parsed = _named(signed)
        if parsed is None or parsed[1] or _is_name_only(image):
            return False
        return parsed[0].whole() == image.whole()

    def __str__(self) -> str:
        return "matchExact"


@dataclass(frozen=True)
class MatchRepoDigestOrExact:
    def matches(self, image: ImageReference, signed: str) -> bool:
        return _repo_digest_or_exact(image, signed)

    def __str__(self) -> str:
        return "matchRepoDigestOrExact"


@dataclass(frozen=True)
class MatchRepository:
    def matches(self, image: ImageReference, signed: str) -> bool:
        parsed = _named(signed)
        return parsed is not None and parsed[0].name == image.name

    def __str__(self) -> str:
        return "matchRepository"


@dataclass(frozen=True)
class ExactReference:
    docker_reference: str

    def matches(self, image: ImageReference, signed: str) -> bool:
        wanted, parsed = _named(self.docker_reference), _named(signed)
        if wanted is None or parsed is None or wanted[1] or parsed[1]:
            return False
        return parsed[0].whole() == wanted[0].whole()

    def __str__(self) -> str:
        return f"exactReference({self.docker_reference})"


@dataclass(frozen=True)
class ExactRepository:
    docker_repository: str

    def matches(self, image: ImageReference, signed: str) -> bool:
        wanted, parsed = _named(self.docker_repository), _named(signed)
        return wanted is not None and parsed is not None and parsed[0].name == wanted[0].name

    def __str__(self) -> str:
        return f"exactRepository({self.docker_repository})"


@dataclass(frozen=True)
class RemapIdentity:
    prefix: str
    signed_prefix: str

    def remap(self, image: ImageReference) -> ImageReference | None:
        """``image`` with ``prefix`` replaced by ``signedPrefix`` (unchanged when the prefix
        does not cover it); None when the result is not a canonical reference."""
        name = image.name
        if not (name == self.prefix or name.startswith(self.prefix + "/")):
            return image
        rewritten = image.whole().replace(self.prefix, self.signed_prefix, 1)
        parsed = _named(rewritten)
        if parsed is None or parsed[0].whole() != rewritten:
            return None
        return parsed[0]

    def matches(self, image: ImageReference, signed: str) -> bool:
        remapped = self.remap(image)
        return remapped is not None and _repo_digest_or_exact(remapped, signed)

    def __str__(self) -> str:
        return f"remapIdentity({self.prefix} -> {self.signed_prefix})"


IdentityMatch = (MatchExact | MatchRepoDigestOrExact | MatchRepository | ExactReference
                 | ExactRepository | RemapIdentity)


def _valid_prefix(value: str) -> bool:
    if _DOMAIN.fullmatch(value):
        return True
    domain, sep, path = value.partition("/")
    return bool(sep) and bool(_DOMAIN.fullmatch(domain)) and bool(_PATH.fullmatch(path))


def _fields(value: Any, where: str, fail: Fail, required: Sequence[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        raise fail(where, "signedIdentity must be an object")
    unknown = sorted(set(value) - {"type", *required})
    if unknown:
        raise fail(f"{where}.{unknown[0]}",
                   f"unknown key for signedIdentity type {value.get('type')!r}")
    out: dict[str, str] = {}
    for key in required:
        item = value.get(key)
        if not isinstance(item, str) or not item:
            raise fail(f"{where}.{key}", f"{key} is required (a non-empty string)")
        out[key] = item
    return out


def parse_signed_identity(value: Any, where: str, fail: Fail) -> IdentityMatch:
    """A ``signedIdentity`` object; ``fail(path, message)`` builds the error to raise."""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("matchExact", "matchRepoDigestOrExact", "matchRepository"):
        _fields(value, where, fail, ())
        simple: dict[str, IdentityMatch] = {
            "matchExact": MatchExact(), "matchRepoDigestOrExact": MatchRepoDigestOrExact(),
            "matchRepository": MatchRepository()}
        return simple[kind]
    if kind == "exactReference":
        ref = _fields(value, where, fail, ("dockerReference",))["dockerReference"]
        parsed = _named(ref)
        if parsed is None or parsed[1]:
            raise fail(f"{where}.dockerReference",
                       f"{ref!r} is not a docker reference with a tag or digest")
        return ExactReference(ref)
    if kind == "exactRepository":
        repo = _fields(value, where, fail, ("dockerRepository",))["dockerRepository"]
        if _named(repo) is None:
            raise fail(f"{where}.dockerRepository", f"{repo!r} is not a docker repository")
        return ExactRepository(repo)
    if kind == "remapIdentity":
        found = _fields(value, where, fail, ("prefix", "signedPrefix"))
        for key in ("prefix", "signedPrefix"):
            if not _valid_prefix(found[key]):
                raise fail(f"{where}.{key}", f"{found[key]!r} is not a host[:port] or "
                           "host[:port]/namespace prefix")
        return RemapIdentity(found["prefix"], found["signedPrefix"])
    if not isinstance(value, dict):
        raise fail(where, "signedIdentity must be an object")
    raise fail(f"{where}.type", f"unknown signedIdentity type {kind!r} (known: matchExact, "
               "matchRepoDigestOrExact, matchRepository, exactReference, exactRepository, "
               "remapIdentity)")


@dataclass(frozen=True)
class SignedClaims:
    """What a verified signature payload claims (trusted only after the signature checked)."""

    manifest_digest: str
    docker_reference: str


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SignatureInvalid("malformed", f"the payload repeats the key {key!r}")
        out[key] = value
    return out


def _exact(value: Any, keys: set[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SignatureInvalid("malformed", f"{where} is not a JSON object")
    if set(value) != keys:
        extra, missing = sorted(set(value) - keys), sorted(keys - set(value))
        detail = f"unknown key {extra[0]!r}" if extra else f"missing key {missing[0]!r}"
        raise SignatureInvalid("malformed", f"{where}: {detail}")
    return value


def parse_claims(payload: bytes, signature_type: str, *, optional_may_be_null: bool = False,
                 ) -> SignedClaims:
    """The claims of a signature payload of ``signature_type``; ``SignatureInvalid``
    (``malformed``) for anything containers/image would refuse."""
    try:
        document = json.loads(payload, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SignatureInvalid("malformed", "the signed payload is not JSON") from None
    top = _exact(document, {"critical", "optional"}, "the payload")
    optional = top["optional"]
    if not (optional is None and optional_may_be_null):
        if not isinstance(optional, dict):
            raise SignatureInvalid("malformed", "optional is not a JSON object")
        timestamp = optional.get("timestamp")
        if timestamp is not None and (isinstance(timestamp, bool) or not (
                isinstance(timestamp, int) or (isinstance(timestamp, float)
                                                and timestamp.is_integer()))):
            raise SignatureInvalid("malformed", "optional.timestamp is not an integer")
        if "creator" in optional and not isinstance(optional["creator"], str):
            raise SignatureInvalid("malformed", "optional.creator is not a string")
    critical = _exact(top["critical"], {"type", "image", "identity"}, "critical")
    if critical["type"] != signature_type:
        raise SignatureInvalid("malformed", f"critical.type is {str(critical['type'])[:80]!r}, "
                               f"not {signature_type!r}")
    image = _exact(critical["image"], {"docker-manifest-digest"}, "critical.image")
    identity = _exact(critical["identity"], {"docker-reference"}, "critical.identity")
    digest, reference = image["docker-manifest-digest"], identity["docker-reference"]
    if not isinstance(digest, str) or not isinstance(reference, str):
        raise SignatureInvalid("malformed", "the signed digest and reference must be strings")
    try:
        digest_hasher(digest)
    except ManifestInvalid:
        raise SignatureInvalid("malformed", f"the signed digest {digest[:80]!r} is not a "
                               "sha256/sha384/sha512 digest") from None
    return SignedClaims(digest, reference)


def check_claims(claims: SignedClaims, *, image: ImageReference, match: IdentityMatch,
                 documents: Sequence[bytes]) -> None:
    """The signed digest must be the digest of one of ``documents`` (the manifest, or the
    manifest list it was chosen from), computed here; the signed reference must satisfy
    ``match`` for ``image``.  ``SignatureInvalid`` otherwise."""
    if not any(check_digest(document, claims.manifest_digest) for document in documents):
        raise SignatureInvalid("digest mismatch", f"the signature is for "
                               f"{claims.manifest_digest}, not for this image's manifest")
    if not match.matches(image, claims.docker_reference):
        raise SignatureInvalid("identity mismatch", f"the signature claims "
                               f"{claims.docker_reference[:300]!r}, which {match} does not "
                               f"accept for {image}")
