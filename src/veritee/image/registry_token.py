"""Bearer tokens for the distribution token protocol (``WWW-Authenticate: Bearer realm=…``).

The realm is asked ``GET <realm>?service=…&scope=…`` — with HTTP Basic credentials when some
are configured for the image, anonymously otherwise — and answers JSON holding ``token`` (or
``access_token``) and ``expires_in`` (60 s when absent).  Tokens are cached per (registry,
scope) until they expire.  A realm is spoken to over https unless its host is one the client
was told to use plain http for.

Tokens and credentials never appear in reprs, messages or logs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import httpx

from veritee.image.registry_auth import Credentials
from veritee.image.registry_errors import RegistryTransportError, RegistryUnauthorized

__all__ = ["DEFAULT_EXPIRES_S", "BearerTokens", "transport_detail"]

DEFAULT_EXPIRES_S = 60
MAX_TOKEN_RESPONSE = 1 << 20


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float


class BearerTokens:
    """Fetches and caches registry bearer tokens; ``fetches`` counts token requests sent."""

    def __init__(
        self, http: httpx.Client, *, plain_http: Collection[str], timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._plain_http = frozenset(plain_http)
        self._timeout_s = timeout_s
        self._clock = clock
        self._cache: dict[tuple[str, str], _Token] = {}
        self.fetches = 0

    def __repr__(self) -> str:
        return f"BearerTokens(cached={len(self._cache)}, fetches={self.fetches})"

    def cached(self, registry: str, scope: str) -> str | None:
        """A still-valid token for ``scope`` at ``registry``, if one was fetched."""
        token = self._cache.get((registry, scope))
        if token is None:
            return None
        if self._clock() >= token.expires_at:
            del self._cache[(registry, scope)]
            return None
        return token.value

    def fetch(
        self, registry: str, params: Mapping[str, str], scope: str,
        credentials: Credentials | None, what: str,
    ) -> str:
        """Ask the realm in ``params`` (a parsed Bearer challenge) for a token for ``scope``
        and cache it; ``what`` names the image in messages."""
        realm = self._realm(params.get("realm", ""), what)
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Accept": "application/json"}
        if credentials is not None:
            headers["Authorization"] = credentials.basic()
        started = self._clock()
        self.fetches += 1
        host = realm.netloc.decode("ascii", "replace")
        try:
            with self._http.stream("GET", realm, params=query, headers=headers,
                                   timeout=self._timeout_s, follow_redirects=False) as response:
                status = response.status_code
                body = bytearray()
                if status == 200:
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > MAX_TOKEN_RESPONSE:
                            raise RegistryTransportError(
                                f"{what}: the token service at {host} sent more than "
                                f"{MAX_TOKEN_RESPONSE} bytes")
        except httpx.TransportError as exc:
            raise RegistryTransportError(
                f"{what}: cannot reach the token service at {host}: {transport_detail(exc)}"
            ) from None
        if status in (401, 403):
            refused = "refused the credentials" if credentials else "wants credentials"
            raise RegistryUnauthorized(
                f"{what}: the token service at {host} {refused} (HTTP {status})")
        if status != 200:
            raise RegistryTransportError(
                f"{what}: the token service at {host} answered HTTP {status}")
        value, expires_in = _parse_response(bytes(body), f"{what}: the token service at {host}")
        self._cache[(registry, scope)] = _Token(value, started + expires_in)
        return value

    def _realm(self, realm: str, what: str) -> httpx.URL:
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise RegistryTransportError(f"{what}: the registry named no usable token realm")
        if url.scheme == "http" and url.netloc.decode("ascii", "replace") not in self._plain_http:
            raise RegistryTransportError(
                f"{what}: the token realm {url.netloc.decode('ascii', 'replace')} is plain "
                "http and its host is not configured for plain http")
        return url


def transport_detail(exc: httpx.TransportError) -> str:
    """What went wrong, in one line (no traceback, no request headers)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _parse_response(body: bytes, where: str) -> tuple[str, float]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RegistryTransportError(f"{where} answered something that is not JSON") from None
    if not isinstance(document, dict):
        raise RegistryTransportError(f"{where} answered JSON that is not an object")
    token = document.get("token") or document.get("access_token")
    if not isinstance(token, str) or not token:
        raise RegistryTransportError(f"{where} answered no token")
    expires_in = document.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_S
    return token, float(expires_in)
