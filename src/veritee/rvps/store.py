"""The reference value store: Trustee's RVPS storage over any :class:`KeyValueStore`.

Layout, as Trustee's: each value is the JSON of its :class:`ReferenceValue`
(``{"version","name","expiration","value"}``) under key ``<name>`` in namespace
``reference_value`` (overwritten on re-registration).  The kv entry's
``expires_at`` is set to the value's expiration, so a backend with TTLs may
drop it once expired.

**Expired values are never served**: :meth:`ReferenceValueStore.get` answers
``None`` and :meth:`ReferenceValueStore.snapshot` leaves them out once the
current time is after their expiration.  Trustee at HEAD does not enforce
expiration on query; veritee does, deliberately.  :meth:`list` shows them only
with ``include_expired=True`` (best effort: a TTL backend may have dropped them).
A stored entry that does not parse is logged and treated as absent.

**Generation.**  :meth:`ReferenceValueStore.snapshot` returns ``(generation,
values)``.  The generation is an opaque 63-bit integer that changes

* on every :meth:`register` / :meth:`delete` that changed something, in this
  or any other process sharing the kv store: each such mutation writes a fresh
  random token under key ``generation`` in namespace ``<namespace>.meta``
  *after* writing the values, and the generation is derived from it; and
* whenever the served content changes, in particular when a value expires:
  the generation is a hash of the token *and* of the canonical JSON of the
  served ``name → value`` map.

It is for equality only (cache key of compiled policy bundles), not ordered.
Because the content is hashed in, a snapshot's generation always identifies
its content, whatever the interleaving of concurrent writers.

**Snapshot cache.**  Reading and parsing every value costs O(n) (about 0.4 s
for 10^5 values), so the last snapshot is kept with the token read *before*
its values were read and the earliest expiration among the values it serves.
A call answers from it only while the stored token is unchanged (one ``get``
per call; any mutation in any process writes a new token after its values)
and the time is within [taken at, earliest expiration]: once any served value
expires the snapshot is rebuilt.  A mutation that failed before writing its
token (the caller got an error) is not served until the next mutation.

**Pages.**  :meth:`ReferenceValueStore.page` lists by name with keyset
pagination (``name > last name of the previous page``) over
:meth:`KeyValueStore.items_page`: a page costs its own size whatever the
number of values.  Page tokens are the URL-safe base64 of the last name.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import datetime as dt
import hashlib
import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from veritee.rvps.extractors import extract
from veritee.rvps.model import JSON, InvalidPageToken, InvalidReferenceValue, ReferenceValue
from veritee.store.kv import MAX_PAGE, Entry, KeyValueStore, _check

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Page",
    "ReferenceValueStore",
]

log = logging.getLogger("veritee.rvps")

DEFAULT_NAMESPACE = "reference_value"
_GENERATION_KEY = "generation"
#: Values per page when the caller names no limit, and the most one page holds.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_PAGE_TOKEN_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True)
class Page:
    """One page of values by name; ``next_token`` is ``None`` on the last page."""

    values: builtins.list[ReferenceValue]
    next_token: str | None


@dataclass(frozen=True)
class _Served:
    token: bytes
    taken_at: dt.datetime
    valid_until: dt.datetime | None
    generation: int
    values: Mapping[str, JSON]


class ReferenceValueStore:
    """Register, query, list and delete reference values kept in ``kv``."""

    def __init__(self, kv: KeyValueStore, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.kv = kv
        self.namespace = namespace
        self.meta_namespace = f"{namespace}.meta"
        # Refuse a bad namespace now (ValueError) rather than at first use; no I/O.
        _check(self.meta_namespace, _GENERATION_KEY)
        self._served: _Served | None = None

    def register(self, values: Iterable[ReferenceValue]) -> builtins.list[ReferenceValue]:
        """Store ``values`` (overwriting same-named ones); return them.

        All are checked before any is written.  Raises :class:`InvalidReferenceValue`.
        """
        batch = builtins.list(values)
        encoded: builtins.list[tuple[ReferenceValue, bytes]] = []
        for value in batch:
            if not isinstance(value, ReferenceValue):
                raise InvalidReferenceValue(
                    f"expected a ReferenceValue, not {type(value).__name__}"
                )
            encoded.append((value, value.dumps().encode("utf-8")))
        if len(encoded) == 1:
            value, data = encoded[0]
            self.kv.put(self.namespace, value.name, data, expires_at=value.expiration)
        elif encoded:
            # One transaction for the batch (10^5 values in seconds, not minutes).
            self.kv.put_many(
                self.namespace, [(v.name, data, v.expiration) for v, data in encoded]
            )
        if batch:
            self._bump()
        return batch

    def register_message(
        self, message: bytes | str | Mapping[str, object], *, now: dt.datetime | None = None
    ) -> builtins.list[ReferenceValue]:
        """Register the values a Trustee RVPS message carries; return them.

        Raises :class:`~veritee.rvps.extractors.ExtractorError` for any malformed message.
        """
        return self.register(extract(message, now=now))

    def get(self, name: str, *, at: dt.datetime | None = None) -> JSON | None:
        """The ``value`` stored for ``name``; ``None`` if unknown or expired at ``at``."""
        found = self.get_reference_value(name, at=at)
        return None if found is None else found.value

    def get_reference_value(
        self, name: str, *, at: dt.datetime | None = None
    ) -> ReferenceValue | None:
        """The whole :class:`ReferenceValue` for ``name``; ``None`` if unknown or expired."""
        if not isinstance(name, str) or not name:
            return None
        try:
            entry = self.kv.get(self.namespace, name)
        except ValueError:  # a key the backend cannot hold was never stored
            return None
        value = None if entry is None else self._parse(entry)
        if value is None or value.expired(_when(at)):
            return None
        return value

    def list(
        self, *, at: dt.datetime | None = None, include_expired: bool = False
    ) -> builtins.list[ReferenceValue]:
        """Every stored value ordered by name; expired ones only with ``include_expired``."""
        when = _when(at)
        values = [v for v in map(self._parse, self.kv.items(self.namespace)) if v is not None]
        if not include_expired:
            values = [v for v in values if not v.expired(when)]
        return sorted(values, key=lambda v: v.name)

    def page(
        self,
        *,
        limit: int = DEFAULT_PAGE_SIZE,
        token: str | None = None,
        at: dt.datetime | None = None,
        include_expired: bool = False,
    ) -> Page:
        """At most ``limit`` values by name, after the page ``token`` names (from the
        first without); expired ones only with ``include_expired``.

        Raises :class:`InvalidPageToken` for a token not handed out here or a
        ``limit`` outside 1..:data:`MAX_PAGE_SIZE`.
        """
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidPageToken("page limit must be an integer")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidPageToken(f"page limit must be from 1 to {MAX_PAGE_SIZE}, not {limit}")
        when = _when(at)
        after = None if token is None else _decode_token(token)
        found: builtins.list[ReferenceValue] = []
        while len(found) <= limit:
            want = min(limit + 1 - len(found), MAX_PAGE)
            chunk = self.kv.items_page(self.namespace, after=after, limit=want)
            for value in map(self._parse, chunk):
                if value is not None and (include_expired or not value.expired(when)):
                    found.append(value)
            if len(chunk) < want:
                break
            after = chunk[-1].key
        if len(found) <= limit:
            return Page(found, None)
        return Page(found[:limit], _encode_token(found[limit - 1].name))

    def delete(self, name: str) -> bool:
        """Remove ``name``; return whether it was stored (expired or not)."""
        if not isinstance(name, str) or not name:
            return False
        try:
            removed = self.kv.delete(self.namespace, name)
        except ValueError:  # a key the backend cannot hold was never stored
            return False
        if removed:
            self._bump()
        return removed

    def purge_expired(self, *, at: dt.datetime | None = None) -> builtins.list[str]:
        """Delete the values expired at ``at``; return their names."""
        when = _when(at)
        names = [v.name for v in self.list(at=when, include_expired=True) if v.expired(when)]
        removed = [name for name in names if self.kv.delete(self.namespace, name)]
        if removed:
            self._bump()
        return removed

    def snapshot(self, *, at: dt.datetime | None = None) -> tuple[int, Mapping[str, JSON]]:
        """``(generation, {name: value})`` of every value not expired at ``at``.

        The mapping is read-only and what a policy sees through
        ``query_reference_value(name)``.  See the module docstring for when the
        generation changes.
        """
        when = _when(at)
        token_entry = self.kv.get(self.meta_namespace, _GENERATION_KEY)
        token = b"" if token_entry is None else token_entry.value
        cached = self._served
        if (
            cached is not None
            and cached.token == token
            and cached.taken_at <= when
            and (cached.valid_until is None or when <= cached.valid_until)
        ):
            return cached.generation, cached.values
        listed = self.list(at=when)
        served = {v.name: v.value for v in listed}
        canonical = json.dumps(
            served, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        digest = hashlib.blake2b(token + b"\x00" + canonical, digest_size=8).digest()
        generation = int.from_bytes(digest, "big") >> 1
        values = MappingProxyType(served)
        valid_until = min((v.expiration for v in listed), default=None)
        self._served = _Served(token, when, valid_until, generation, values)
        return generation, values

    def lookup(
        self, names: Iterable[str], *, at: dt.datetime | None = None
    ) -> tuple[int, Mapping[str, JSON]]:
        """``(generation, {name: value})`` of just ``names`` (those stored and not
        expired at ``at``): one ``get`` per name plus one for the token, whatever the
        number of stored values.  For a policy whose looked-up names are known.

        The generation hashes the token, the names asked and the values found, so
        it changes with any mutation and whenever one of these values expires.
        """
        when = _when(at)
        asked = sorted({n for n in names if isinstance(n, str) and n})
        token_entry = self.kv.get(self.meta_namespace, _GENERATION_KEY)
        token = b"" if token_entry is None else token_entry.value
        found: dict[str, JSON] = {}
        for name in asked:
            value = self.get_reference_value(name, at=when)
            if value is not None:
                found[name] = value.value
        canonical = json.dumps(
            [asked, found], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        digest = hashlib.blake2b(token + b"\x01" + canonical, digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 1, MappingProxyType(found)

    def _bump(self) -> None:
        # Written after the values: a reader that sees the new token sees them too.
        self.kv.put(self.meta_namespace, _GENERATION_KEY, secrets.token_hex(16).encode())

    def _parse(self, entry: Entry) -> ReferenceValue | None:
        try:
            value = ReferenceValue.loads(entry.value)
        except InvalidReferenceValue as exc:
            log.warning("ignoring unreadable reference value %r: %s", entry.key, exc)
            return None
        if value.name != entry.key:
            log.warning("ignoring reference value %r stored under key %r", value.name, entry.key)
            return None
        return value


def _encode_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8")).rstrip(b"=").decode("ascii")


def _decode_token(token: str) -> str:
    bad = InvalidPageToken("invalid page token: pass back the next_page_token of a listing")
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise bad
    raw = token.encode("ascii", "replace")
    if not set(raw) <= _PAGE_TOKEN_CHARS or len(raw) % 4 == 1:
        raise bad
    try:
        name = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not name or _encode_token(name) != token:
        raise bad
    return name


def _when(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.UTC)
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
