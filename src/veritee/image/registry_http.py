"""The registry client's HTTP layer: one authorised, redirected ``GET`` at a time.

A ``401`` is answered once: ``Bearer`` with a token from the realm the registry names
(:mod:`veritee.image.registry_token`), ``Basic`` with the credentials ``auth`` holds for the
image (remembered per registry, so later requests send them straight away).  Redirects are
followed (registries send blob downloads to their storage), never from https to http, and
the registry's ``Authorization`` header goes only to the registry's own origin.  Any status
but ``200`` becomes the ``RegistryError`` it stands for, naming the registry, the repository
and what was asked for; a transport failure names the host.  Credentials, tokens and
``Authorization`` headers never reach messages or logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager

import httpx

from veritee.image.reference import ImageReference
from veritee.image.registry_auth import AuthFile, Credentials, parse_challenges
from veritee.image.registry_errors import (
    RegistryNotFound,
    RegistryTransportError,
    RegistryUnauthorized,
)
from veritee.image.registry_token import BearerTokens, transport_detail

__all__ = ["MAX_REDIRECTS", "RegistrySession"]

MAX_REDIRECTS = 5
_ERROR_CODE = re.compile(r"[A-Z][A-Z_]{0,40}")


class RegistrySession:
    """Authorised ``GET``s against the distribution API of any registry."""

    def __init__(self, http: httpx.Client, *, auth: AuthFile | None,
                 plain_http: Collection[str], timeout_s: float) -> None:
        self._http = http
        self._auth = auth
        self._plain_http = frozenset(plain_http)
        self._timeout_s = timeout_s
        self._basic_hosts: set[str] = set()
        self.tokens = BearerTokens(http, plain_http=self._plain_http, timeout_s=timeout_s)

    def __repr__(self) -> str:
        return f"RegistrySession(plain_http={sorted(self._plain_http)!r}, tokens={self.tokens!r})"

    def base_url(self, ref: ImageReference) -> str:
        """``http://host`` for the registries in ``plain_http`` (by reference registry or API
        host), ``https://host`` for the rest."""
        plain = ref.registry in self._plain_http or ref.api_host in self._plain_http
        return f"{'http' if plain else 'https'}://{ref.api_host}"

    @contextmanager
    def get(
        self, ref: ImageReference, path: str, what: str, *, accept: str | None = None,
    ) -> Iterator[httpx.Response]:
        """A streamed ``200`` response for ``/v2/<repo>/<path>``; read it with ``iter_raw``
        (``Accept-Encoding: identity`` is sent: digests cover the bytes as stored).  A
        transport failure inside the ``with`` block becomes ``RegistryTransportError`` too."""
        url = httpx.URL(f"{self.base_url(ref)}/v2/{ref.repository}/{path}")
        headers = {"Accept-Encoding": "identity"}
        if accept:
            headers["Accept"] = accept
        response: httpx.Response | None = None
        try:
            response, authorization = self._authorized(ref, url, headers)
            response = self._follow(ref, response, headers, authorization)
            _check_status(ref, response, what)
            yield response
        except httpx.TransportError as exc:
            raise RegistryTransportError(
                f"{ref.name}: {what}: cannot reach the registry {ref.api_host}: "
                f"{transport_detail(exc)}") from None
        finally:
            if response is not None:
                response.close()

    def _send(self, url: httpx.URL, headers: dict[str, str],
              authorization: str | None) -> httpx.Response:
        if authorization is not None:
            headers = {**headers, "Authorization": authorization}
        request = self._http.build_request("GET", url, headers=headers, timeout=self._timeout_s)
        return self._http.send(request, stream=True, follow_redirects=False)

    def _authorized(
        self, ref: ImageReference, url: httpx.URL, headers: dict[str, str],
    ) -> tuple[httpx.Response, str | None]:
        scope = f"repository:{ref.repository}:pull"
        authorization = self._known_authorization(ref, scope)
        response = self._send(url, headers, authorization)
        if response.status_code != 401:
            return response, authorization
        challenge = response.headers.get("WWW-Authenticate", "")
        response.close()
        authorization = self._answer(ref, challenge, scope)
        response = self._send(url, headers, authorization)
        if response.status_code in (401, 403):
            response.close()
            raise RegistryUnauthorized(f"{ref.name}: the registry {ref.api_host} refused the "
                                       f"credentials (HTTP {response.status_code})")
        return response, authorization

    def _credentials(self, ref: ImageReference) -> Credentials | None:
        return self._auth.lookup(ref) if self._auth is not None else None

    def _known_authorization(self, ref: ImageReference, scope: str) -> str | None:
        token = self.tokens.cached(ref.api_host, scope)
        if token is not None:
            return f"Bearer {token}"
        if ref.api_host in self._basic_hosts:
            credentials = self._credentials(ref)
            if credentials is not None:
                return credentials.basic()
        return None

    def _answer(self, ref: ImageReference, header: str, scope: str) -> str:
        challenges = parse_challenges(header)
        credentials = self._credentials(ref)
        for challenge in challenges:
            if challenge.scheme == "bearer":
                token = self.tokens.fetch(ref.api_host, challenge.params, scope, credentials,
                                          ref.name)
                return f"Bearer {token}"
        for challenge in challenges:
            if challenge.scheme == "basic":
                if credentials is None:
                    raise RegistryUnauthorized(f"{ref.name}: the registry {ref.api_host} wants "
                                               "credentials and none are configured for it")
                self._basic_hosts.add(ref.api_host)
                return credentials.basic()
        raise RegistryUnauthorized(f"{ref.name}: the registry {ref.api_host} answered HTTP 401 "
                                   "without a Basic or Bearer challenge")

    def _follow(self, ref: ImageReference, response: httpx.Response, headers: dict[str, str],
                authorization: str | None) -> httpx.Response:
        origin = response.request.url
        for _ in range(MAX_REDIRECTS):
            if not response.is_redirect:
                return response
            target = response.request.url.join(response.headers["Location"])
            response.close()
            downgrade = origin.scheme == "https" and target.scheme == "http"
            if target.scheme not in ("http", "https") or not target.host or downgrade:
                raise RegistryTransportError(f"{ref.name}: the registry redirected to an "
                                             f"unusable location ({target.scheme}:…)")
            same_origin = (target.scheme, target.host, target.port) == (
                origin.scheme, origin.host, origin.port)
            response = self._send(target, headers, authorization if same_origin else None)
        response.close()
        raise RegistryTransportError(f"{ref.name}: more than {MAX_REDIRECTS} redirects")


def _check_status(ref: ImageReference, response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status == 200:
        return
    codes = _error_codes(response)
    if status == 404:
        raise RegistryNotFound(f"{ref.name}: {what} not found (HTTP 404{codes})")
    if status in (401, 403):
        raise RegistryUnauthorized(f"{ref.name}: {what}: access denied (HTTP {status}{codes})")
    raise RegistryTransportError(f"{ref.name}: {what}: the registry answered HTTP {status}"
                                 f"{codes}")


def _error_codes(response: httpx.Response) -> str:
    """`` CODE,CODE`` from a distribution error body (``{"errors": [{"code": …}]}``)."""
    body = bytearray()
    try:
        for chunk in response.iter_raw(4096):
            body += chunk
            if len(body) >= 16384:
                return ""
        document = json.loads(body)
    except (httpx.HTTPError, UnicodeDecodeError, json.JSONDecodeError):
        return ""
    errors = document.get("errors") if isinstance(document, dict) else None
    codes = [e.get("code") for e in errors if isinstance(e, dict)] if isinstance(
        errors, list) else []
    shown = [c for c in codes if isinstance(c, str) and _ERROR_CODE.fullmatch(c)]
    return f" {','.join(shown[:4])}" if shown else ""
