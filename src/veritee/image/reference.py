"""Docker image references, normalised the way containers/image (and image-rs) do.

``busybox`` is ``docker.io/library/busybox:latest``; ``localhost:5000/a/b:t`` keeps its
registry; a first component is a registry only when it holds a ``.`` or a ``:`` or is
``localhost``.  A reference with neither tag nor digest gets the tag ``latest``; one with a
digest and no tag has no tag.  Malformed references raise ``ReferenceParseError`` naming what
is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from veritee.errors import ParseError

__all__ = [
    "DEFAULT_TAG",
    "DOCKER_HUB",
    "DOCKER_HUB_API",
    "ImageReference",
    "ReferenceParseError",
    "parse_reference",
]

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")
_ANCHORED_ID = re.compile(r"[0-9a-f]{64}")


class ReferenceParseError(ParseError):
    """An image reference that does not parse; the message says which part is wrong."""

    def __init__(self, reference: str, message: str) -> None:
        shown = reference if len(reference) <= 300 else reference[:300] + "…"
        super().__init__("image reference", f"{message} (in {shown!r})")


@dataclass(frozen=True)
class ImageReference:
    """A normalised reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host (and port) the distribution API is served on (Docker Hub's differs)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def hostname(self) -> str:
        """The registry's host without its port (IPv6 without brackets)."""
        host = self.registry
        if host.startswith("["):
            return host[1 : host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def manifest_ref(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def whole(self) -> str:
        """``registry/repository[:tag][@digest]``, as image-rs's ``Reference::whole``."""
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> ImageReference:
        """The same image pinned to ``digest`` (the tag kept for display)."""
        _check_digest(self.whole(), digest)
        return ImageReference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        return self.whole()


def _check_digest(reference: str, digest: str) -> None:
    algorithm, sep, hexpart = digest.partition(":")
    if not sep:
        raise ReferenceParseError(reference, "a digest is <algorithm>:<hex>")
    if algorithm not in _DIGEST_LENGTHS:
        raise ReferenceParseError(reference, f"unsupported digest algorithm {algorithm!r}")
    if len(hexpart) != _DIGEST_LENGTHS[algorithm] or not _HEX.fullmatch(hexpart):
        raise ReferenceParseError(
            reference,
            f"a {algorithm} digest is {_DIGEST_LENGTHS[algorithm]} lowercase hex characters",
        )


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        domain, remainder = DOCKER_HUB, name
    else:
        domain, remainder = first, rest
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = f"library/{remainder}"
    return domain, remainder


def parse_reference(text: str) -> ImageReference:
    """Parse and normalise ``text``; raises ``ReferenceParseError``."""
    if not text:
        raise ReferenceParseError(text, "the reference is empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise ReferenceParseError(text, "a reference holds no whitespace")
    if "://" in text:
        raise ReferenceParseError(text, "a reference has no scheme (drop the '…://')")
    if _ANCHORED_ID.fullmatch(text):
        raise ReferenceParseError(text, "a 64-character hex string is an image ID, not a name")
    rest, at, digest = text.partition("@")
    if at:
        _check_digest(text, digest)
    tag: str | None = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ReferenceParseError(
                text, "a tag is 1-128 of [A-Za-z0-9_.-] and does not start with '.' or '-'"
            )
    if not rest:
        raise ReferenceParseError(text, "the repository name is empty")
    domain, path = _split_domain(rest)
    if not _DOMAIN.fullmatch(domain):
        raise ReferenceParseError(text, f"{domain!r} is not a registry host[:port]")
    if path.lower() != path:
        raise ReferenceParseError(text, "the repository name must be lowercase")
    if not _PATH.fullmatch(path):
        raise ReferenceParseError(
            text, "a repository is '/'-separated components of [a-z0-9] joined by '.', '_' or '-'"
        )
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise ReferenceParseError(text, f"the name is longer than {NAME_MAX} characters")
    if tag is None and not at:
        tag = DEFAULT_TAG
    return ImageReference(domain, path, tag, digest if at else None)
