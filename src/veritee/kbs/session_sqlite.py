"""RCAR sessions in one SQLite file, shared by every worker process of one machine.

``veritee serve --workers N`` runs N processes behind one port: a client's ``/auth``,
``/attest`` and resource request may each land on a different one, so the session must
live where all of them see it.  This store keeps it in a SQLite file in WAL mode (readers
never wait for the writer), with a busy timeout for the rare moment two processes write
at once.

The single-use challenge is one statement, ``UPDATE … SET state = 'claimed' WHERE id = ?
AND state = 'authed' AND expires_at > ? RETURNING …``: SQLite runs it under its
database-wide write lock, so across every process and thread exactly one caller gets the
row back.  ``save_attested`` is an ``UPDATE`` of an existing row, so it never resurrects
a deleted session.  Expired rows are deleted when read and by a sweep of the table at
most every ``sweep_interval`` seconds.

Each thread gets its own connection (opened on first use and reused after), so a thread
waiting on the write lock never blocks readers in its process.  The file is created
mode 0600: it holds attestation tokens.  Commits use ``synchronous = NORMAL``: durable
across a crash of any process, not across a power loss, which may roll back the last
commits; :meth:`SqliteSessionStore.drop_unfinished` (run once at server start) then
drops every handshake that was not attested, so a rolled-back claim cannot be replayed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from veritee.errors import ConfigError
from veritee.kbs.session import Session

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rcar_session (
    id           TEXT PRIMARY KEY,
    state        TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    tee          TEXT NOT NULL,
    extra_params TEXT NOT NULL,
    expires_at   REAL NOT NULL,
    token        TEXT,
    tee_pubkey   TEXT
) WITHOUT ROWID
"""
_INSERT = (
    "INSERT OR REPLACE INTO rcar_session"
    " (id, state, nonce, tee, extra_params, expires_at, token, tee_pubkey)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT = (
    "SELECT id, state, nonce, tee, extra_params, expires_at, token, tee_pubkey"
    " FROM rcar_session WHERE id = ?"
)
# The single-use claim: authed -> claimed for exactly one caller, in one statement.
_CLAIM = (
    "UPDATE rcar_session SET state = 'claimed'"
    " WHERE id = ? AND state = 'authed' AND expires_at > ?"
    " RETURNING id, state, nonce, tee, extra_params, expires_at, token, tee_pubkey"
)
_Row = tuple[str, str, str, str, str, float, str | None, str | None]
_AUTHED, _ATTESTED = "authed", "attested"
BUSY_TIMEOUT_MS = 10_000


class SqliteSessionStore:
    """Sessions in the SQLite file ``path``, atomic across processes.  Thread-safe."""

    def __init__(self, path: str | Path, *, sweep_interval: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        self._sweep_interval = sweep_interval
        self._last_sweep: float | None = None
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            os.chmod(self.path, 0o600)  # the -wal and -shm files copy this mode
        except OSError as exc:
            raise ConfigError(f"cannot create the session store {self.path}: {exc}") from exc
        conn = self._conn()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            self.close()
            raise ConfigError(f"cannot use the session store {self.path}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,  # autocommit: every statement is its transaction
                    check_same_thread=False,  # only so that close() may close it
                    timeout=BUSY_TIMEOUT_MS / 1000,
                )
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise ConfigError(f"cannot open the session store {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection (the store is unusable afterwards)."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def __len__(self) -> int:
        row = self._conn().execute("SELECT count(*) FROM rcar_session").fetchone()
        return int(row[0])

    def create(self, session: Session) -> None:
        self._conn().execute(
            _INSERT,
            (
                session.id,
                _ATTESTED if session.attested else _AUTHED,
                session.nonce,
                session.tee,
                json.dumps(session.extra_params),
                float(session.expires_at),
                session.token,
                json.dumps(session.tee_pubkey) if session.tee_pubkey is not None else None,
            ),
        )

    def get(self, session_id: str, *, now: float) -> Session | None:
        self._maybe_sweep(now)
        conn = self._conn()
        rows: list[_Row] = conn.execute(_SELECT, (session_id,)).fetchall()
        if not rows:
            return None
        row = rows[0]
        if now >= row[5]:
            conn.execute(
                "DELETE FROM rcar_session WHERE id = ? AND expires_at <= ?", (session_id, now)
            )
            return None
        return self._session(row)

    def claim_challenge(self, session_id: str, *, now: float) -> Session | None:
        self._maybe_sweep(now)
        # fetchall: the statement runs to its end, so its write transaction ends here.
        rows: list[_Row] = self._conn().execute(_CLAIM, (session_id, now)).fetchall()
        return self._session(rows[0]) if rows else None

    def save_attested(
        self, session_id: str, *, token: str, tee_pubkey: dict[str, Any], expires_at: float
    ) -> None:
        self._conn().execute(
            "UPDATE rcar_session SET state = ?, token = ?, tee_pubkey = ?, expires_at = ? "
            "WHERE id = ?",
            (_ATTESTED, token, json.dumps(tee_pubkey), float(expires_at), session_id),
        )

    def delete(self, session_id: str) -> None:
        self._conn().execute("DELETE FROM rcar_session WHERE id = ?", (session_id,))

    def sweep(self, now: float) -> int:
        """Delete every expired session; return how many were deleted."""
        self._last_sweep = now
        cursor = self._conn().execute("DELETE FROM rcar_session WHERE expires_at <= ?", (now,))
        return cursor.rowcount

    def drop_unfinished(self) -> int:
        """Delete every session that is not attested (run once when the server starts:
        a handshake does not outlive the server, as with sessions in memory)."""
        cursor = self._conn().execute("DELETE FROM rcar_session WHERE state != ?", (_ATTESTED,))
        return cursor.rowcount

    def _maybe_sweep(self, now: float) -> None:
        last = self._last_sweep
        if last is None or now - last >= self._sweep_interval or now < last:
            self.sweep(now)

    def _session(self, row: _Row) -> Session | None:
        sid, state, nonce, tee, extra, expires_at, token, pubkey = row
        try:
            return Session(
                id=sid,
                nonce=nonce,
                tee=tee,
                extra_params=json.loads(extra),
                expires_at=float(expires_at),
                attested=state == _ATTESTED,
                token=token,
                tee_pubkey=json.loads(pubkey) if pubkey is not None else None,
            )
        except ValueError:
            self.delete(sid)  # a record we did not write: unusable
            return None


__all__ = ["BUSY_TIMEOUT_MS", "SqliteSessionStore"]
