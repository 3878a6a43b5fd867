"""The KBS's HTTP side as the guest's client meets it: transport, refusals, session cookie.

:func:`open_http` makes the ``httpx.Client`` a :class:`~veritee.guest.kbs_client.KbsClient`
uses (kbs_protocol's 60 s timeout, an optional single TLS root, TCP_NODELAY);
:func:`send` turns every non-2xx answer into a :class:`KbsRequestError` carrying
Trustee's ErrorInformation (``type`` URL and ``detail``), and every transport
failure into a :class:`~veritee.guest.kbs_protocol.KbsClientError`.
"""

from __future__ import annotations

import functools
import json
import socket
import ssl
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

import httpx

from veritee.errors import VeriteeError
from veritee.guest.kbs_protocol import KBS_PREFIX, SESSION_COOKIE, KbsClientError

__all__ = [
    "TIMEOUT_S",
    "USER_AGENT",
    "KbsRequestError",
    "KbsResourceNotFound",
    "json_body",
    "open_http",
    "read_json",
    "send",
    "session_cookie",
]

USER_AGENT = "veritee-kbs-client/0.1.0"
TIMEOUT_S = 60.0  # kbs_protocol's per-request timeout


class KbsRequestError(VeriteeError):
    """A non-2xx answer from the KBS, with Trustee's error ``type`` and ``detail``.

    ``type`` is the full URL (``https://github.com/confidential-containers/kbs/errors/PolicyDeny``)
    or ``""`` when the body was not a Trustee error; ``name`` is its last segment.
    """

    def __init__(self, method: str, path: str, status: int, type_: str, detail: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.type = type_
        self.detail = detail
        what = f"{self.name}: {detail}" if self.name else detail
        super().__init__(f"{method} {path}: HTTP {status}: {what}")

    @property
    def name(self) -> str:
        return self.type.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] if self.type else ""

    @classmethod
    def from_response(cls, response: httpx.Response) -> KbsRequestError:
        """The error for ``response``; a 404 to a resource GET is a :class:`KbsResourceNotFound`."""
        request = response.request
        type_, detail = "", ""
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("type"), str):
            type_ = body["type"]
            found = body.get("detail")
            detail = found if isinstance(found, str) else ""
        else:
            text = response.content[:200].decode("utf-8", "replace").strip()
            detail = text or response.reason_phrase
        path = request.url.path
        kind = cls
        if response.status_code == 404 and request.method == "GET" and "/resource/" in path:
            kind = KbsResourceNotFound
        return kind(request.method, path, response.status_code, type_, detail)


class KbsResourceNotFound(KbsRequestError):
    """The KBS has no such resource (HTTP 404; kbs_protocol's ``ResourceNotFound``)."""


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The system trust store, loaded once (it costs ~20 ms) and shared by every client."""
    return ssl.create_default_context()


def open_http(cert_pem: bytes | None = None) -> httpx.Client:
    """An HTTP client for one KBS; ``cert_pem`` is then the one root its certificate
    must chain to (else the system's roots)."""
    verify = _default_tls()
    if cert_pem is not None:
        try:
            verify = ssl.create_default_context(cadata=cert_pem.decode("ascii"))
        except (UnicodeDecodeError, ssl.SSLError) as exc:
            raise KbsClientError(f"cannot use that PEM as the KBS root: {exc}") from exc
    # TCP_NODELAY: a request's headers and body go out in separate writes, and without
    # it Nagle's algorithm holds the body for the server's delayed ACK (about 40 ms on
    # Linux) on every request.
    transport = httpx.HTTPTransport(
        verify=verify, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    )
    return httpx.Client(transport=transport, timeout=TIMEOUT_S, headers={"User-Agent": USER_AGENT})


def send(
    http: httpx.Client,
    base_url: str,
    method: str,
    path: str,
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """``method {base_url}/kbs/v0/{path}``; only a 2xx answer comes back."""
    url = f"{base_url}{KBS_PREFIX}/{path}"
    try:
        response = http.request(method, url, content=content, headers=dict(headers or {}))
    except httpx.HTTPError as exc:
        raise KbsClientError(f"{method} {KBS_PREFIX}/{path}: {type(exc).__name__}: {exc}") from exc
    if not response.is_success:
        raise KbsRequestError.from_response(response)
    return response


def session_cookie(response: httpx.Response) -> str | None:
    """The ``kbs-session-id`` the answer sets, if any."""
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        morsel = jar.get(SESSION_COOKIE)
        if morsel is not None and morsel.value:
            return morsel.value
    return None


def read_json(response: httpx.Response, what: str) -> Any:
    try:
        return json.loads(response.content)
    except ValueError as exc:
        raise KbsClientError(f"the KBS {what} answer is not JSON") from exc


def json_body(value: Any) -> bytes:
    """Compact JSON, as serde_json writes a request body."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
