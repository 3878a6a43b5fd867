"""Registry credentials and challenges: a containers ``auth.json``, and ``WWW-Authenticate``.

``auth.json`` is ``{"auths": {"<key>": {"auth": base64("user:pass")}}}`` (``username`` and
``password`` keys are read too).  A key is a registry ``host[:port]``, or a
``host[:port]/namespace…`` that applies to repositories under it, or a legacy Docker key
(``https://index.docker.io/v1/``).  The most specific key wins, as in containers/image.
``identitytoken`` entries (OAuth2 refresh tokens) are not used.

Credentials never appear in ``repr``, messages or logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veritee.errors import ConfigError
from veritee.image.reference import DOCKER_HUB, ImageReference

__all__ = ["AuthFile", "Challenge", "Credentials", "parse_challenges"]

_DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or registry token) for HTTP Basic and token requests."""

    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    def basic(self) -> str:
        """The ``Authorization`` header value."""
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()


def _normalise_key(key: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``host/ns/`` → ``host/ns``."""
    legacy = "://" in key
    if legacy:
        key = key.split("://", 1)[1]
    key = key.rstrip("/")
    host, sep, path = key.partition("/")
    if legacy:  # legacy Docker keys carry an API path, not a namespace
        sep, path = "", ""
    if host in _DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    return f"{host}{sep}{path}"


def _entry(source: str, key: str, value: Any) -> Credentials | None:
    where = f"{source}: auths[{key!r}]"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} is not an object")
    encoded = value.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f"{where}.auth is not base64 of 'user:password'") from None
        user, sep, password = decoded.partition(":")
        if not sep or not user:
            raise ConfigError(f"{where}.auth does not decode to 'user:password'")
        return Credentials(user, password)
    name, secret = value.get("username"), value.get("password")
    if isinstance(name, str) and name and isinstance(secret, str):
        return Credentials(name, secret)
    return None


@dataclass(frozen=True)
class AuthFile:
    """Credentials by registry key, from a containers ``auth.json`` or a mapping."""

    entries: Mapping[str, Credentials] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> AuthFile:
        """Read ``path``; a missing or malformed file is a ``ConfigError`` naming it."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigError(f"{path}: not JSON") from None
        return cls.parse(document, source=str(path))

    @classmethod
    def parse(cls, document: Any, *, source: str = "auth.json") -> AuthFile:
        if not isinstance(document, Mapping):
            raise ConfigError(f"{source}: not a JSON object")
        auths = document.get("auths", {})
        if not isinstance(auths, Mapping):
            raise ConfigError(f"{source}: auths is not an object")
        entries: dict[str, Credentials] = {}
        for key, value in auths.items():
            credentials = _entry(source, str(key), value)
            if credentials is not None:
                entries[_normalise_key(str(key))] = credentials
        return cls(entries)

    def lookup(self, reference: ImageReference) -> Credentials | None:
        """The most specific entry for ``reference``: ``registry/repo``, its parent
        namespaces, then ``registry``."""
        registry = DOCKER_HUB if reference.registry in _DOCKER_HUB_ALIASES else reference.registry
        parts = reference.repository.split("/")
        for end in range(len(parts), 0, -1):
            found = self.entries.get(f"{registry}/{'/'.join(parts[:end])}")
            if found is not None:
                return found
        return self.entries.get(registry)


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``scheme`` lower-cased, parameters by name."""

    scheme: str
    params: Mapping[str, str]


_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9._~+/-]*)\s*")
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(,)?')


def parse_challenges(header: str) -> list[Challenge]:
    """Parse ``Bearer realm="…",service="…",scope="…"`` (several challenges may follow one
    another); unparseable text ends the list rather than raising."""
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        scheme = _SCHEME.match(header, pos)
        if scheme is None:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        while True:
            param = _PARAM.match(header, pos)
            if param is None:
                break
            quoted, bare = param[2], param[3]
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
            params[param[1].lower()] = value
            pos = param.end()
            if param[4] is None:
                break
        out.append(Challenge(scheme[1].lower(), params))
        if pos < len(header) and header[pos] == ",":
            pos += 1
    return out
