"""Resource URIs: ``kbs[+<plugin>]://[<host>[:<port>]]/<segment>[/<segment>...][?<query>]``.

A resource URI names one thing a KBS plugin serves.  ``kbs://`` means the plugin
``resource`` (``kbs:///default/key/1`` is the usual form); ``kbs+pkcs11:///a/b/c``
names another plugin.  The host and port are ignored, as guest-components ignores
them: the KBS is the one the configuration names.  The URI maps to the KBS path
``/kbs/v0/<plugin>/<segment>/...[?<query>]``.

:func:`parse_resource_uri` refuses, with a :class:`~veritee.errors.ParseError`,
anything that could reach another path than the one written: empty, ``.`` or ``..``
segments (also percent-encoded), encoded slashes or backslashes, control characters,
fragments, and characters RFC 3986 does not allow in a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from veritee.errors import ParseError

__all__ = ["DEFAULT_PLUGIN", "MAX_URI_LENGTH", "ResourceUri", "parse_resource_uri"]

DEFAULT_PLUGIN = "resource"
MAX_URI_LENGTH = 4096
_WHAT = "resource uri"

_SCHEME = re.compile(r"kbs(?:\+(?P<plugin>[a-z0-9][a-z0-9_-]*))?", re.IGNORECASE)
# RFC 3986 pchar: unreserved / pct-encoded / sub-delims / ":" / "@"
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
_SEGMENT = re.compile(rf"{_PCHAR}+")
_QUERY = re.compile(rf"(?:{_PCHAR}|[/?])*")
# host (a name, IPv4 or [IPv6]) and an optional port; ignored once it is well formed
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9\-._~]+|\[[0-9A-Fa-f:.]+\])?(?::[0-9]{1,5})?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ResourceUri:
    """One parsed resource URI; ``segments`` and ``query`` are kept as written."""

    plugin: str
    segments: tuple[str, ...]
    query: str | None = None

    @property
    def resource_path(self) -> str:
        """The segments joined by ``/`` (``repo/type/tag`` for the resource plugin)."""
        return "/".join(self.segments)

    @property
    def kbs_path(self) -> str:
        """The KBS request path: ``/kbs/v0/<plugin>/<segments>[?<query>]``."""
        query = f"?{self.query}" if self.query is not None else ""
        return f"/kbs/v0/{self.plugin}/{self.resource_path}{query}"

    @property
    def uri(self) -> str:
        """The canonical form: no host, ``kbs://`` for the resource plugin."""
        scheme = "kbs" if self.plugin == DEFAULT_PLUGIN else f"kbs+{self.plugin}"
        query = f"?{self.query}" if self.query is not None else ""
        return f"{scheme}:///{self.resource_path}{query}"

    def __str__(self) -> str:
        return self.uri


def _fail(uri: str, message: str) -> ParseError:
    shown = uri if len(uri) <= 200 else uri[:200] + "..."
    return ParseError(_WHAT, f"{shown!r}: {message}")


def parse_resource_uri(uri: str) -> ResourceUri:
    """Parse ``uri``; a :class:`~veritee.errors.ParseError` says what is wrong with it."""
    if len(uri) > MAX_URI_LENGTH:
        raise _fail(uri, f"longer than {MAX_URI_LENGTH} characters")
    if _CONTROL.search(uri):
        raise _fail(uri, "contains a control character")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise _fail(uri, "expected kbs:///<repository>/<type>/<tag> (no '://')")
    match = _SCHEME.fullmatch(scheme)
    if match is None:
        raise _fail(uri, f"the scheme must be 'kbs' or 'kbs+<plugin>', not {scheme!r}")
    plugin = (match.group("plugin") or DEFAULT_PLUGIN).lower()
    if "#" in rest:
        raise _fail(uri, "a resource URI has no fragment ('#')")
    rest, has_query, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    if _AUTHORITY.fullmatch(authority) is None:
        raise _fail(uri, f"malformed host {authority!r}")
    if not slash or not path:
        raise _fail(uri, "no path: expected at least one segment after the host")
    segments = tuple(path.split("/"))
    if len(segments) > 1 and not segments[-1]:
        raise _fail(uri, "the path ends with '/'")
    for index, segment in enumerate(segments, start=1):
        _check_segment(uri, index, segment)
    if has_query and _QUERY.fullmatch(query) is None:
        raise _fail(uri, "the query has characters a URI does not allow")
    return ResourceUri(plugin, segments, query if query else None)


def _check_segment(uri: str, index: int, segment: str) -> None:
    if not segment:
        raise _fail(uri, f"segment {index} is empty")
    if _SEGMENT.fullmatch(segment) is None:
        raise _fail(uri, f"segment {index} has characters a URI path does not allow")
    try:
        decoded = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise _fail(uri, f"segment {index} percent-encodes bytes that are not UTF-8") from None
    if decoded in (".", ".."):
        raise _fail(uri, f"segment {index} is {decoded!r}")
    if "/" in decoded or "\\" in decoded:
        raise _fail(uri, f"segment {index} encodes a slash or a backslash")
    if _CONTROL.search(decoded):
        raise _fail(uri, f"segment {index} encodes a control character")
