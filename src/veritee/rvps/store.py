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
its content, whatever the interleaving of concurrent writers.  Each snapshot
reads and parses every stored value (cheap for the hundreds Trustee
deployments hold); there is no cheaper "has anything changed" probe.
"""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import json
import logging
import secrets
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from veritee.rvps.extractors import extract
from veritee.rvps.model import JSON, InvalidReferenceValue, ReferenceValue
from veritee.store.kv import Entry, KeyValueStore, _check

__all__ = ["DEFAULT_NAMESPACE", "ReferenceValueStore"]

log = logging.getLogger("veritee.rvps")

DEFAULT_NAMESPACE = "reference_value"
_GENERATION_KEY = "generation"


class ReferenceValueStore:
    """Register, query, list and delete reference values kept in ``kv``."""

    def __init__(self, kv: KeyValueStore, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.kv = kv
        self.namespace = namespace
        self.meta_namespace = f"{namespace}.meta"
        # Refuse a bad namespace now (ValueError) rather than at first use; no I/O.
        _check(self.meta_namespace, _GENERATION_KEY)

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
        for value, data in encoded:
            self.kv.put(self.namespace, value.name, data, expires_at=value.expiration)
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
        token_entry = self.kv.get(self.meta_namespace, _GENERATION_KEY)
        token = b"" if token_entry is None else token_entry.value
        served = {v.name: v.value for v in self.list(at=at)}
        canonical = json.dumps(
            served, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        digest = hashlib.blake2b(token + b"\x00" + canonical, digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 1, MappingProxyType(served)

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


def _when(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.UTC)
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
