"""HTTP GET for collateral: every transport failure becomes a CollateralError naming the URL."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from veritee.errors import CollateralError

DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=10.0)
MAX_BODY = 16 * 1024 * 1024


class HttpStatusError(CollateralError):
    """A collateral server answered with a status other than 200."""

    def __init__(self, what: str, url: str, status: int, detail: str = "") -> None:
        self.url = url
        self.status = status
        extra = f" ({detail})" if detail else ""
        super().__init__(what, f"GET {url} returned HTTP {status}{extra}")


@dataclass(frozen=True)
class Reply:
    """A successful (HTTP 200) response, fully read."""

    url: str
    headers: httpx.Headers
    body: bytes


def http_get(client: httpx.Client | None, url: str, *, what: str) -> Reply:
    """GET ``url`` and return the 200 response; any failure is a :class:`CollateralError`.

    Without a ``client`` a short-lived one is used, so nothing is left open.
    Messages carry the URL without credentials, and the HTTP status.
    """
    if client is None:
        with httpx.Client(timeout=DEFAULT_TIMEOUT) as own:
            return _get(own, url, what)
    return _get(client, url, what)


def _get(client: httpx.Client, url: str, what: str) -> Reply:
    shown = safe_url(url)
    try:
        with client.stream("GET", url, follow_redirects=True) as response:
            if response.status_code != httpx.codes.OK:
                raise HttpStatusError(
                    what, shown, response.status_code, _error_detail(response.headers)
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > MAX_BODY:
                    raise CollateralError(what, f"GET {shown}: body exceeds {MAX_BODY} bytes")
    except httpx.TimeoutException as exc:
        raise CollateralError(what, f"GET {shown} timed out") from exc
    except httpx.HTTPError as exc:
        raise CollateralError(what, f"GET {shown} failed: {type(exc).__name__}: {exc}") from exc
    return Reply(shown, response.headers, bytes(body))


def safe_url(url: str) -> str:
    """``url`` without any user:password part, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _error_detail(headers: httpx.Headers) -> str:
    # Intel PCS and PCCS explain refusals in these headers; keep them short.
    message = headers.get("Error-Message") or headers.get("Error-Code") or ""
    return message[:200]
