"""The PostgreSQL backend of :mod:`veritee.store.kv`, and :func:`open_store`.

:class:`PostgresStore` keeps every namespace in one table (``veritee_kv`` by
default, created when absent) and has exactly the semantics of
:class:`~veritee.store.kv.SqliteStore`:

* keys are any non-empty string, NUL characters included: the key column is
  ``BYTEA`` holding the key's UTF-8 bytes, so ``items`` orders keys by code
  point exactly as SQLite and :class:`~veritee.store.kv.MemoryStore` do,
  whatever collation the database uses;
* ``stored_at`` and ``expires_at`` are ``TIMESTAMPTZ`` (microseconds, read back
  as aware UTC datetimes); expired entries are kept until overwritten or deleted;
* ``meta`` is the JSON text of the string map (``TEXT``, not ``JSONB``, which
  would refuse ``\\u0000``).

Each statement runs in autocommit, and ``put`` is one ``INSERT … ON CONFLICT``,
so several processes (two KBS replicas, say) can share a table; table creation
is serialised with an advisory lock.  One connection per store object, used
behind a lock, is re-opened on the next call after the server dropped it, and in a
process forked after it was opened (a forked worker opens its own and leaves the
parent's untouched: closing it there would end the parent's session too).  Statements
are composed once per store and prepared by psycopg after a few uses.

Every database failure becomes an :class:`~veritee.errors.InputError` (cannot
connect, cannot create the table) or a :class:`~veritee.errors.VeriteeError`
(a statement failed), whose message names the DSN with its password removed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from veritee.errors import InputError, VeriteeError
from veritee.store.kv import (
    Entry,
    KeyValueStore,
    NewEntry,
    SqliteStore,
    _check,
    _check_page,
    _utc,
)

__all__ = [
    "DEFAULT_TABLE",
    "ClosableStore",
    "PostgresStore",
    "open_store",
    "redact_dsn",
]

DEFAULT_TABLE = "veritee_kv"
_TABLE = re.compile(r"\A[a-z_][a-z0-9_]{0,62}\Z")
_CONNECT_TIMEOUT_S = 10
_URL_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_PREFIX = "sqlite://"
# ``password=…`` in a keyword/value conninfo string, quoted or not.
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


class ClosableStore(KeyValueStore, Protocol):
    """A key-value store holding a connection or a file: close it when done."""

    def close(self) -> None:
        """Release the connection or file; the store is unusable afterwards."""
        ...


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL or keyword form)."""
    if dsn.startswith(_URL_SCHEMES):
        try:
            parts = urlsplit(dsn)
            netloc = parts.netloc
            if "@" in netloc:
                userinfo, _, hostinfo = netloc.rpartition("@")
                user, sep, _password = userinfo.partition(":")
                netloc = f"{user}:***@{hostinfo}" if sep else netloc
            query = parts.query
            if query:
                pairs = parse_qsl(query, keep_blank_values=True)
                query = urlencode(
                    [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*"
                )
            return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        except ValueError:
            return f"{dsn.split('://', 1)[0]}://***"
    return _KEYWORD_PASSWORD.sub(r"\1***", dsn)


def _password(dsn: str) -> str | None:
    try:
        value = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        return None
    return value if isinstance(value, str) and value else None


_SCHEMA = sql.SQL("""
CREATE TABLE IF NOT EXISTS {} (
    namespace  TEXT        NOT NULL,
    key        BYTEA       NOT NULL,
    value      BYTEA       NOT NULL,
    stored_at  TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    meta       TEXT        NOT NULL DEFAULT '{{}}',
    PRIMARY KEY (namespace, key)
)
""")
_SELECT = sql.SQL(
    "SELECT namespace, key, value, stored_at, expires_at, meta FROM {}"
    " WHERE namespace = %s AND key = %s"
)
_PUT = sql.SQL(
    "INSERT INTO {} (namespace, key, value, stored_at, expires_at, meta)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value,"
    " stored_at = EXCLUDED.stored_at, expires_at = EXCLUDED.expires_at, meta = EXCLUDED.meta"
)
_DELETE = sql.SQL("DELETE FROM {} WHERE namespace = %s AND key = %s RETURNING 1")
_ITEMS = sql.SQL(
    "SELECT namespace, key, value, stored_at, expires_at, meta FROM {}"
    " WHERE namespace = %s ORDER BY key"
)
_PAGE = sql.SQL(
    "SELECT namespace, key, value, stored_at, expires_at, meta FROM {}"
    " WHERE namespace = %s AND key > %s ORDER BY key LIMIT %s"
)

_Row = tuple[str, bytes, bytes, dt.datetime, dt.datetime | None, str]


class PostgresStore:
    """A store in one PostgreSQL table, shareable between threads and processes.

    ``dsn`` is a libpq connection string (``postgresql://user:pw@host/db`` or
    ``host=… dbname=…``); ``table`` is a plain lower-case identifier.  Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, dsn: str, *, table: str = DEFAULT_TABLE) -> None:
        if not _TABLE.match(table):
            raise InputError(f"invalid store table name {table!r}")
        self._dsn = dsn
        self.table = table
        self.url = redact_dsn(dsn)
        self._secret = _password(dsn)
        self._lock = threading.Lock()
        self._closed = False
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()
        self._ident = sql.Identifier(table)
        # Composed once (by the query's identity: psycopg's SQL objects are unhashable).
        queries = (_SELECT, _PUT, _DELETE, _ITEMS, _PAGE)
        self._statements = {id(q): q.format(self._ident) for q in queries}
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    # Two replicas starting together must not both run CREATE TABLE.
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (table,))
                    conn.execute(_SCHEMA.format(self._ident))
            except psycopg.Error as exc:
                conn.close()
                self._conn = None
                raise InputError(f"cannot use store {self.url}: {self._clean(exc)}") from exc

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r}, table={self.table!r})"

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                if self._pid != os.getpid():
                    _detach(self._conn)  # a parent's session: leave it open
                self._conn.close()
                self._conn = None

    def get(self, namespace: str, key: str) -> Entry | None:
        _check(namespace, key)
        rows = self._run(_SELECT, (namespace, _key(key)))
        return None if not rows else _entry(rows[0])

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
        self._run(
            _PUT,
            (
                namespace,
                _key(key),
                bytes(value),
                dt.datetime.now(dt.UTC),
                None if expires_at is None else _utc(expires_at),
                json.dumps(dict(meta or {}), sort_keys=True),
            ),
            fetch=False,
        )

    def delete(self, namespace: str, key: str) -> bool:
        _check(namespace, key)
        rows = self._run(_DELETE, (namespace, _key(key)))
        return bool(rows)

    def items(self, namespace: str) -> list[Entry]:
        _check(namespace, "-")
        rows = self._run(_ITEMS, (namespace,))
        return [_entry(row) for row in rows]

    def items_page(self, namespace: str, *, after: str | None = None, limit: int) -> list[Entry]:
        _check_page(namespace, after, limit)
        rows = self._run(_PAGE, (namespace, b"" if after is None else _key(after), limit))
        return [_entry(row) for row in rows]

    def put_many(self, namespace: str, entries: Iterable[NewEntry]) -> None:
        stored_at = dt.datetime.now(dt.UTC)
        rows = []
        for key, value, expires_at in entries:
            _check(namespace, key)
            expires = None if expires_at is None else _utc(expires_at)
            rows.append((namespace, _key(key), bytes(value), stored_at, expires, "{}"))
        if not rows:
            return
        statement = self._statements[id(_PUT)]
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cursor:
                    cursor.executemany(statement, rows)
            except psycopg.Error as exc:
                raise VeriteeError(f"store {self.url}: {self._clean(exc)}") from exc

    # -- connection handling -------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, (re)connecting first; call with the lock held."""
        if self._closed:
            raise VeriteeError(f"store {self.url} is closed")
        if self._pid != os.getpid():
            # Forked: the connection's socket is the parent's session.  Point our copy
            # of the descriptor at /dev/null first, so that closing it here (or its
            # finaliser) cannot send the server a Terminate, then open our own.
            if self._conn is not None and not self._conn.closed:
                _detach(self._conn)
            self._conn, self._pid = None, os.getpid()
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            self._conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
            )
        except psycopg.Error as exc:
            raise InputError(f"cannot open store {self.url}: {self._clean(exc)}") from exc
        return self._conn

    def _run(self, query: sql.SQL, params: tuple[Any, ...], *, fetch: bool = True) -> list[_Row]:
        statement = self._statements.get(id(query)) or query.format(self._ident)
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    cursor = conn.execute(statement, params)
                    return list(cursor.fetchall()) if fetch else []
                except psycopg.OperationalError as exc:
                    # A connection the server dropped while idle (restart, failover,
                    # idle timeout) fails its next statement: reconnect and retry once.
                    if attempt == 1 and conn.broken:
                        continue
                    raise VeriteeError(f"store {self.url}: {self._clean(exc)}") from exc
                except psycopg.Error as exc:
                    raise VeriteeError(f"store {self.url}: {self._clean(exc)}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _clean(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self._secret:
            text = text.replace(self._secret, "***")
        return text


def _detach(conn: psycopg.Connection[Any]) -> None:
    """Close a connection inherited through fork without touching the parent's session."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, conn.fileno())
    finally:
        os.close(devnull)
    conn.close()


def _key(key: str) -> bytes:
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("store key must be encodable as UTF-8") from exc


def _entry(row: _Row) -> Entry:
    namespace, key, value, stored_at, expires_at, meta = row
    loaded = json.loads(meta)
    return Entry(
        namespace=namespace,
        key=bytes(key).decode("utf-8"),
        value=bytes(value),
        stored_at=stored_at.astimezone(dt.UTC),
        expires_at=None if expires_at is None else expires_at.astimezone(dt.UTC),
        meta={str(k): str(v) for k, v in loaded.items()},
    )


def open_store(url_or_path: str | Path) -> ClosableStore:
    """Open the store ``url_or_path`` names.

    * ``postgresql://…`` or ``postgres://…`` → :class:`PostgresStore`;
    * ``sqlite:///relative.db``, ``sqlite:////absolute.db`` (SQLAlchemy's form),
      ``sqlite://`` or ``sqlite:///:memory:`` (private in-memory) → :class:`SqliteStore`;
    * a :class:`~pathlib.Path`, or a string without ``scheme://`` → :class:`SqliteStore`.

    Any other ``scheme://`` is an :class:`~veritee.errors.InputError`.
    """
    if isinstance(url_or_path, Path):
        return SqliteStore(url_or_path)
    text = url_or_path.strip()
    if text.startswith(_URL_SCHEMES):
        return PostgresStore(text)
    if text.startswith(_SQLITE_PREFIX):
        rest = text[len(_SQLITE_PREFIX) :]
        if rest in ("", "/", "/:memory:"):
            return SqliteStore(":memory:")
        if not rest.startswith("/"):
            raise InputError(
                f"unsupported SQLite URL {text!r}: use sqlite:///relative.db or sqlite:////abs.db"
            )
        return SqliteStore(rest[1:])
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InputError(
            f"unsupported store URL scheme {scheme!r}: use a path, sqlite:///…, postgresql://…"
        )
    if not text:
        raise InputError("empty store path")
    return SqliteStore(text)
