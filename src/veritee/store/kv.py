"""A small namespaced key-value interface, with SQLite and in-memory backends.

Values are opaque bytes.  Each entry carries the time it was stored, an
optional expiry and a little string metadata.  Backends may drop an entry once
its ``expires_at`` has passed (a Redis TTL would), so callers must not rely on
expired entries being returned; the two backends here keep them until they
are overwritten or deleted.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from veritee.errors import InputError

__all__ = ["MAX_PAGE", "Entry", "KeyValueStore", "MemoryStore", "NewEntry", "SqliteStore"]

# Namespaces become table names or key prefixes in other backends: keep them plain.
_NAMESPACE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")

#: The most entries one :meth:`KeyValueStore.items_page` call returns.
MAX_PAGE = 10_000


@dataclass(frozen=True)
class Entry:
    """One stored value and what is known about it."""

    namespace: str
    key: str
    value: bytes
    stored_at: dt.datetime
    expires_at: dt.datetime | None = None
    meta: Mapping[str, str] = field(default_factory=dict)


class KeyValueStore(Protocol):
    """Namespaced bytes storage; every backend implements exactly this."""

    def get(self, namespace: str, key: str) -> Entry | None:
        """The entry under ``key``, or ``None``."""
        ...

    def put(
        self,
        namespace: str,
        key: str,
        value: bytes,
        *,
        expires_at: dt.datetime | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        """Store ``value`` under ``key``, replacing any previous entry."""
        ...

    def delete(self, namespace: str, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        ...

    def items(self, namespace: str) -> list[Entry]:
        """Every entry of ``namespace``, ordered by key."""
        ...

    def items_page(self, namespace: str, *, after: str | None = None, limit: int) -> list[Entry]:
        """At most ``limit`` entries of ``namespace`` whose key sorts after ``after``
        (from the first when ``None``), ordered by key (code point order, as
        :meth:`items`): keyset pagination, each page costs its own size only."""
        ...

    def put_many(self, namespace: str, entries: Iterable[NewEntry]) -> None:
        """Store every ``(key, value, expires_at)`` of ``entries`` as :meth:`put`
        would, all or none (one transaction where the backend has them)."""
        ...


#: ``(key, value, expires_at)``: one entry for :meth:`KeyValueStore.put_many`.
NewEntry = tuple[str, bytes, dt.datetime | None]


def _check_page(namespace: str, after: str | None, limit: int) -> None:
    _check(namespace, "-")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"page limit must be an integer from 1 to {MAX_PAGE}")
    if after is not None and not isinstance(after, str):
        raise ValueError("page start must be a key (a string) or None")


def _check(namespace: str, key: str) -> None:
    if not _NAMESPACE.match(namespace):
        raise ValueError(f"invalid store namespace {namespace!r}")
    if not key:
        raise ValueError("store key must not be empty")


def _utc(value: dt.datetime) -> dt.datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MemoryStore:
    """A process-local store for tests and one-shot commands."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], Entry] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, key: str) -> Entry | None:
        _check(namespace, key)
        with self._lock:
            return self._data.get((namespace, key))

    def put(
        self,
        namespace: str,
        key: str,
        value: bytes,
        *,
        expires_at: dt.datetime | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        _check(namespace, key)
        entry = Entry(
            namespace=namespace,
            key=key,
            value=bytes(value),
            stored_at=_now(),
            expires_at=None if expires_at is None else _utc(expires_at),
            meta=dict(meta or {}),
        )
        with self._lock:
            self._data[(namespace, key)] = entry

    def delete(self, namespace: str, key: str) -> bool:
        _check(namespace, key)
        with self._lock:
            return self._data.pop((namespace, key), None) is not None

    def items(self, namespace: str) -> list[Entry]:
        _check(namespace, "-")
        with self._lock:
            found = [e for (ns, _), e in self._data.items() if ns == namespace]
        return sorted(found, key=lambda e: e.key)

    def items_page(self, namespace: str, *, after: str | None = None, limit: int) -> list[Entry]:
        _check_page(namespace, after, limit)
        with self._lock:
            found = [
                e
                for (ns, key), e in self._data.items()
                if ns == namespace and (after is None or key > after)
            ]
        return heapq.nsmallest(limit, found, key=lambda e: e.key)

    def put_many(self, namespace: str, entries: Iterable[NewEntry]) -> None:
        batch = list(entries)
        for key, _, _ in batch:
            _check(namespace, key)
        stored_at = _now()
        made = {
            (namespace, key): Entry(
                namespace=namespace,
                key=key,
                value=bytes(value),
                stored_at=stored_at,
                expires_at=None if expires_at is None else _utc(expires_at),
            )
            for key, value, expires_at in batch
        }
        with self._lock:
            self._data.update(made)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    stored_at  TEXT NOT NULL,
    expires_at TEXT,
    meta       TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (namespace, key)
)
"""

_Row = tuple[str, str, bytes, str, str | None, str]


class SqliteStore:
    """A store in one SQLite file (WAL mode), safe to share between threads.

    The parent directory is created when missing.  ``":memory:"`` gives a
    private in-memory database.  Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                Path(self.path).expanduser() if self.path != ":memory:" else self.path,
                check_same_thread=False,
                isolation_level=None,
                timeout=10.0,
            )
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"cannot open store {self.path}: {exc}") from exc
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            self._conn.close()
            raise InputError(f"cannot use store {self.path}: {exc}") from exc

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def get(self, namespace: str, key: str) -> Entry | None:
        _check(namespace, key)
        with self._lock:
            row = self._conn.execute(
                "SELECT namespace, key, value, stored_at, expires_at, meta"
                " FROM kv WHERE namespace = ? AND key = ?",
                (namespace, key),
            ).fetchone()
        return None if row is None else _entry(row)

    def put(
        self,
        namespace: str,
        key: str,
        value: bytes,
        *,
        expires_at: dt.datetime | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        _check(namespace, key)
        expires = None if expires_at is None else _utc(expires_at).isoformat()
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO kv (namespace, key, value, stored_at, expires_at, meta)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    namespace,
                    key,
                    bytes(value),
                    _now().isoformat(),
                    expires,
                    json.dumps(dict(meta or {}), sort_keys=True),
                ),
            )

    def delete(self, namespace: str, key: str) -> bool:
        _check(namespace, key)
        with self._lock:
            cursor = self._conn.execute(
                "DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
            )
            return cursor.rowcount > 0

    def items(self, namespace: str) -> list[Entry]:
        _check(namespace, "-")
        with self._lock:
            rows = self._conn.execute(
                "SELECT namespace, key, value, stored_at, expires_at, meta"
                " FROM kv WHERE namespace = ? ORDER BY key",
                (namespace,),
            ).fetchall()
        return [_entry(row) for row in rows]

    def items_page(self, namespace: str, *, after: str | None = None, limit: int) -> list[Entry]:
        _check_page(namespace, after, limit)
        with self._lock:
            rows = self._conn.execute(
                "SELECT namespace, key, value, stored_at, expires_at, meta"
                " FROM kv WHERE namespace = ? AND key > ? ORDER BY key LIMIT ?",
                (namespace, "" if after is None else after, limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def put_many(self, namespace: str, entries: Iterable[NewEntry]) -> None:
        batch = list(entries)
        for key, _, _ in batch:
            _check(namespace, key)
        stored_at = _now().isoformat()
        rows = [
            (
                namespace,
                key,
                bytes(value),
                stored_at,
                None if expires_at is None else _utc(expires_at).isoformat(),
                "{}",
            )
            for key, value, expires_at in batch
        ]
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    "INSERT OR REPLACE INTO kv"
                    " (namespace, key, value, stored_at, expires_at, meta)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")


def _entry(row: _Row) -> Entry:
    namespace, key, value, stored_at, expires_at, meta = row
    loaded = json.loads(meta)
    return Entry(
        namespace=namespace,
        key=key,
        value=bytes(value),
        stored_at=dt.datetime.fromisoformat(stored_at),
        expires_at=None if expires_at is None else dt.datetime.fromisoformat(expires_at),
        meta={str(k): str(v) for k, v in loaded.items()},
    )
