"""The collateral cache, and the cache-or-fetch plumbing shared by the Intel and AMD sources.

Every item (a CRL, a TCB info, a VCEK, ...) is stored on its own, with the window
in which it is valid: from the latest of its issue time and its signers'
notBefore, to the earliest of its nextUpdate and its signers' notAfter.  The
cache hands an item out only while the caller's "as of" time is inside that
window.

Items are kept apart by the root of trust they chain to (their
:class:`~veritee.verifier.collateral.anchor.Anchor`): a lookup names the roots
the caller trusts and sees nothing filed under any other, and a fetched item
that chains to a root the caller did not ask for is refused, naming that root.
Items under a test root enter a cache only when it was opened with
``test_roots=True``; the user's default cache is opened without it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509

from veritee.errors import CollateralError, CollateralMissing
from veritee.store.kv import KeyValueStore
from veritee.verifier.collateral.anchor import Anchor

__all__ = [
    "NAMESPACE",
    "CachedItem",
    "CollateralCache",
    "Fetched",
    "Obtained",
    "Step",
    "obtain",
    "window_of",
]

NAMESPACE = "collateral"
State = Literal["valid", "expired", "not-yet-valid"]


@dataclass(frozen=True)
class Fetched:
    """An item fresh from the network: its validity window, the root it chains to, and
    where it came from (a URL, for messages)."""

    value: bytes
    expires_at: dt.datetime | None
    valid_from: dt.datetime | None
    anchor: Anchor
    origin: str


@dataclass(frozen=True)
class Obtained:
    """An item handed to a caller, where it came from, and whether the cache holds it now
    (a cache refuses test-root items unless opened for them)."""

    value: bytes
    source: Literal["cache", "network"]
    in_cache: bool = False


@dataclass(frozen=True)
class Step:
    """One item a source needs, for progress display: ``what`` names it."""

    what: str
    run: Callable[[dt.datetime], Obtained]


@dataclass(frozen=True)
class CachedItem:
    """What :meth:`CollateralCache.entries` shows about one stored item."""

    kind: str
    key: str
    what: str
    fetched_at: dt.datetime
    valid_from: dt.datetime | None
    expires_at: dt.datetime | None
    size: int
    root: str  # SHA-256 of the root certificate the item chains to
    root_name: str

    def state(self, at: dt.datetime) -> State:
        if self.valid_from is not None and at < self.valid_from:
            return "not-yet-valid"
        if self.expires_at is not None and at >= self.expires_at:
            return "expired"
        return "valid"

    def to_json(self, at: dt.datetime) -> dict[str, object]:
        return {
            "kind": self.kind,
            "key": self.key,
            "what": self.what,
            "fetched": _iso(self.fetched_at),
            "valid_from": None if self.valid_from is None else _iso(self.valid_from),
            "expires": None if self.expires_at is None else _iso(self.expires_at),
            "state": self.state(at),
            "size": self.size,
            "root": self.root,
            "root_name": self.root_name,
        }


class CollateralCache:
    """Collateral items in a :class:`~veritee.store.kv.KeyValueStore`, each with its own expiry,
    filed under the root it chains to.

    ``test_roots`` admits items under roots other than the pinned vendor roots (an
    emulator's test root); without it they are handed back to the caller but never stored.
    """

    def __init__(
        self, store: KeyValueStore, namespace: str = NAMESPACE, *, test_roots: bool = False
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.test_roots = test_roots

    def get(self, kind: str, key: str, *, at: dt.datetime, root: Anchor) -> bytes | None:
        """The item's bytes if it is cached under ``root`` and valid as of ``at``; else ``None``."""
        entry = self.store.get(self.namespace, _store_key(kind, root, key))
        if entry is None:
            return None
        item = _cached_item(kind, key, entry.value, entry.stored_at, entry.expires_at, entry.meta)
        return entry.value if item.state(_utc(at)) == "valid" else None

    def item(self, kind: str, key: str, root: Anchor) -> CachedItem | None:
        """What is cached under ``kind``/``key`` for ``root``, valid or not."""
        entry = self.store.get(self.namespace, _store_key(kind, root, key))
        if entry is None:
            return None
        return _cached_item(kind, key, entry.value, entry.stored_at, entry.expires_at, entry.meta)

    def admits(self, root: Anchor) -> bool:
        """Whether items under ``root`` may be stored here."""
        return root.vendor or self.test_roots

    def put(self, kind: str, key: str, fetched: Fetched, *, what: str) -> bool:
        """File ``fetched`` under its root; False (nothing stored) if the cache refuses it."""
        if not self.admits(fetched.anchor):
            return False
        meta = {
            "kind": kind,
            "key": key,
            "what": what,
            "root": fetched.anchor.fingerprint,
            "root_name": fetched.anchor.name,
        }
        if fetched.valid_from is not None:
            meta["valid_from"] = _iso(fetched.valid_from)
        self.store.put(
            self.namespace,
            _store_key(kind, fetched.anchor, key),
            fetched.value,
            expires_at=fetched.expires_at,
            meta=meta,
        )
        return True

    def entries(self) -> list[CachedItem]:
        """Every cached item, ordered by kind, key, then root (entries older than root
        keying, which no lookup can reach, are left out)."""
        found = []
        for entry in self.store.items(self.namespace):
            kind = entry.meta.get("kind")
            key = entry.meta.get("key")
            if kind is None or key is None or "root" not in entry.meta:
                continue
            found.append(
                _cached_item(kind, key, entry.value, entry.stored_at, entry.expires_at, entry.meta)
            )
        return sorted(found, key=lambda i: (i.kind, i.key, i.root))


def obtain(
    cache: CollateralCache | None,
    *,
    kind: str,
    key: str,
    what: str,
    at: dt.datetime,
    offline: bool,
    fetch: Callable[[], Fetched],
    roots: Sequence[Anchor],
) -> Obtained:
    """Return the item cached under one of ``roots`` when valid as of ``at``; otherwise
    fetch it, check that it chains to one of ``roots``, and cache it.

    Offline, a miss raises :class:`CollateralMissing` naming ``what``.  A fetched
    item under another root is a :class:`CollateralError` naming the root it
    chains to, and is not cached.  A fetched item is returned even when ``at`` is
    outside its window: the verifier then rejects it with a precise reason, which
    beats a vague "missing".
    """
    if not roots:
        raise CollateralError(what, "no trusted root to look it up under")
    if cache is not None:
        for root in roots:
            hit = cache.get(kind, key, at=at, root=root)
            if hit is not None:
                return Obtained(hit, "cache", in_cache=True)
    if offline:
        raise CollateralMissing(what, _why_missing(cache, kind, key, at, roots))
    fetched = fetch()
    if all(fetched.anchor.fingerprint != root.fingerprint for root in roots):
        wanted = " or ".join(root.describe() for root in roots)
        raise CollateralError(
            what,
            f"{fetched.origin} served an item that chains to {fetched.anchor.describe()}, "
            f"not to {wanted}; it was not used or cached",
        )
    stored = cache is not None and cache.put(kind, key, fetched, what=what)
    return Obtained(fetched.value, "network", in_cache=stored)


def window_of(
    certs: Iterable[x509.Certificate],
    *,
    not_before: Iterable[dt.datetime | None] = (),
    not_after: Iterable[dt.datetime | None] = (),
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The (valid_from, expires_at) window: latest start and earliest end of all inputs."""
    starts = [t for t in not_before if t is not None]
    ends = [t for t in not_after if t is not None]
    for cert in certs:
        starts.append(cert.not_valid_before_utc)
        ends.append(cert.not_valid_after_utc)
    return (max(starts) if starts else None, min(ends) if ends else None)


def _why_missing(
    cache: CollateralCache | None, kind: str, key: str, at: dt.datetime, roots: Sequence[Anchor]
) -> str:
    if cache is None:
        return "offline mode and no cache configured"
    item = next((i for i in (cache.item(kind, key, r) for r in roots) if i is not None), None)
    if item is None:
        return "offline mode and not in the cache"
    state = item.state(_utc(at))
    if state == "expired" and item.expires_at is not None:
        return f"offline mode and the cached copy expired at {_iso(item.expires_at)}"
    if item.valid_from is not None:
        return f"offline mode and the cached copy is valid only from {_iso(item.valid_from)}"
    return "offline mode and the cached copy is not valid"  # pragma: no cover


def _cached_item(
    kind: str,
    key: str,
    value: bytes,
    stored_at: dt.datetime,
    expires_at: dt.datetime | None,
    meta: Mapping[str, str],
) -> CachedItem:
    valid_from = meta.get("valid_from")
    return CachedItem(
        kind=kind,
        key=key,
        what=meta.get("what", f"{kind} {key}"),
        fetched_at=stored_at,
        valid_from=None if valid_from is None else dt.datetime.fromisoformat(valid_from),
        expires_at=expires_at,
        size=len(value),
        root=meta.get("root", ""),
        root_name=meta.get("root_name", ""),
    )


def _store_key(kind: str, root: Anchor, key: str) -> str:
    return f"{kind}/{root.fingerprint}/{key}"


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _iso(value: dt.datetime) -> str:
    return _utc(value).isoformat().replace("+00:00", "Z")
