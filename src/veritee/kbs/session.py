"""RCAR handshake sessions: what ``/auth`` creates and ``/attest`` consumes.

A session is born *authed* (it holds the challenge nonce), is *claimed* by the one
``/attest`` call that gets to use its challenge, and ends *attested* (it holds the
token and the TEE public key) with the same id and expiry.  The challenge is single
use: :meth:`SessionStore.claim_challenge` hands the authed session to exactly one
caller, so a replayed or concurrent ``/attest`` fails.

Two stores: :class:`MemorySessionStore` for one process and :class:`RedisSessionStore`
for several KBS replicas sharing one Redis (a client may ``/auth`` on one replica and
``/attest`` on another).  Expiry times are epoch seconds; the Redis store also sets a
Redis expiry at that instant, so it needs real (``time.time()``) timestamps.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

SESSION_ID_BYTES = 16  # 128 random bits; 32 lowercase hex characters, like Trustee's ids


def new_session_id() -> str:
    """A fresh, URL-safe session id: 128 random bits as 32 lowercase hex characters."""
    return secrets.token_hex(SESSION_ID_BYTES)


@dataclass
class Session:
    id: str
    nonce: str
    tee: str
    extra_params: dict[str, Any]
    expires_at: float
    attested: bool = False
    token: str | None = None
    tee_pubkey: dict[str, Any] | None = None

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


class SessionStore(Protocol):
    """Where sessions live between ``/auth``, ``/attest`` and resource requests."""

    def create(self, session: Session) -> None:
        """Store a new session (authed, or already attested)."""

    def get(self, session_id: str, *, now: float) -> Session | None:
        """The session, or None when it is absent or expired (expired ones are deleted)."""

    def claim_challenge(self, session_id: str, *, now: float) -> Session | None:
        """Atomically take the session's challenge: the first caller gets the authed,
        unexpired session; every later caller (and any caller once it is attested) None."""

    def save_attested(
        self, session_id: str, *, token: str, tee_pubkey: dict[str, Any], expires_at: float
    ) -> None:
        """Mark the session attested with its token; a no-op if the session is gone."""

    def delete(self, session_id: str) -> None:
        """Forget the session (no error when it is absent)."""


# --------------------------------------------------------------------------- memory

_AUTHED, _CLAIMED, _ATTESTED = "authed", "claimed", "attested"


@dataclass
class _Entry:
    session: Session
    state: str = field(default=_AUTHED)


class MemorySessionStore:
    """Sessions in one process's memory.  Thread-safe.

    Expired sessions are dropped when read and by a sweep of the whole map at most every
    ``sweep_interval`` seconds (run from :meth:`get` and :meth:`claim_challenge`, which
    know the time), so abandoned handshakes do not accumulate.
    """

    def __init__(self, *, sweep_interval: float = 60.0) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._sweep_interval = sweep_interval
        self._last_sweep: float | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def create(self, session: Session) -> None:
        state = _ATTESTED if session.attested else _AUTHED
        with self._lock:
            self._entries[session.id] = _Entry(dataclasses.replace(session), state)

    def get(self, session_id: str, *, now: float) -> Session | None:
        with self._lock:
            self._maybe_sweep(now)
            entry = self._live(session_id, now)
            return dataclasses.replace(entry.session) if entry is not None else None

    def claim_challenge(self, session_id: str, *, now: float) -> Session | None:
        with self._lock:
            self._maybe_sweep(now)
            entry = self._live(session_id, now)
            if entry is None or entry.state != _AUTHED:
                return None
            entry.state = _CLAIMED
            return dataclasses.replace(entry.session)

    def save_attested(
        self, session_id: str, *, token: str, tee_pubkey: dict[str, Any], expires_at: float
    ) -> None:
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None:
                return
            entry.session = dataclasses.replace(
                entry.session,
                attested=True,
                token=token,
                tee_pubkey=dict(tee_pubkey),
                expires_at=expires_at,
            )
            entry.state = _ATTESTED

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._entries.pop(session_id, None)

    def sweep(self, now: float) -> int:
        """Drop every expired session; return how many were dropped."""
        with self._lock:
            return self._sweep(now)

    def _live(self, session_id: str, now: float) -> _Entry | None:
        entry = self._entries.get(session_id)
        if entry is not None and entry.session.expired(now):
            del self._entries[session_id]
            return None
        return entry

    def _maybe_sweep(self, now: float) -> None:
        if (
            self._last_sweep is None
            or now - self._last_sweep >= self._sweep_interval
            or now < self._last_sweep
        ):
            self._sweep(now)

    def _sweep(self, now: float) -> int:
        self._last_sweep = now
        dead = [sid for sid, entry in self._entries.items() if entry.session.expired(now)]
        for sid in dead:
            del self._entries[sid]
        return len(dead)


# --------------------------------------------------------------------------- redis

# Take the challenge only from an authed session: authed -> claimed, atomically.
_CLAIM = """
if redis.call('HGET', KEYS[1], 'state') ~= 'authed' then
  return false
end
redis.call('HSET', KEYS[1], 'state', 'claimed')
return redis.call('HGETALL', KEYS[1])
"""

# Mark an existing session attested and move its Redis expiry; never resurrect one.
_SAVE_ATTESTED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'attested', 'token', ARGV[1], 'tee_pubkey', ARGV[2],
           'expires_at', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1
"""


class RedisSessionStore:
    """Sessions in Redis, one hash per session under ``prefix + id``, shared by replicas.

    Each hash expires (PEXPIREAT) at the session's ``expires_at``, so Redis itself drops
    abandoned sessions.  The challenge claim and the attested update are Lua scripts, so
    they are atomic across processes.
    """

    def __init__(self, url: str, *, prefix: str = "veritee:kbs:session:") -> None:
        self.prefix = prefix
        self._redis: redis.Redis = redis.Redis.from_url(url, decode_responses=True)
        self._claim = self._redis.register_script(_CLAIM)
        self._save_attested = self._redis.register_script(_SAVE_ATTESTED)

    def close(self) -> None:
        self._redis.close()

    def _key(self, session_id: str) -> str:
        return self.prefix + session_id

    def create(self, session: Session) -> None:
        fields: Mapping[Any, Any] = {
            "id": session.id,
            "nonce": session.nonce,
            "tee": session.tee,
            "extra_params": json.dumps(session.extra_params),
            "expires_at": repr(float(session.expires_at)),
            "state": _ATTESTED if session.attested else _AUTHED,
        }
        if session.token is not None:
            fields = {**fields, "token": session.token}
        if session.tee_pubkey is not None:
            fields = {**fields, "tee_pubkey": json.dumps(session.tee_pubkey)}
        key = self._key(session.id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            pipe.pexpireat(key, _millis(session.expires_at))
            pipe.execute()

    def get(self, session_id: str, *, now: float) -> Session | None:
        raw = self._redis.hgetall(self._key(session_id))
        fields = {str(k): str(v) for k, v in raw.items()}
        return self._session(session_id, fields, now)

    def claim_challenge(self, session_id: str, *, now: float) -> Session | None:
        flat = self._claim(keys=[self._key(session_id)])
        if not flat:
            return None
        fields = {str(k): str(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
        return self._session(session_id, fields, now)

    def save_attested(
        self, session_id: str, *, token: str, tee_pubkey: dict[str, Any], expires_at: float
    ) -> None:
        self._save_attested(
            keys=[self._key(session_id)],
            args=[token, json.dumps(tee_pubkey), repr(float(expires_at)), _millis(expires_at)],
        )

    def delete(self, session_id: str) -> None:
        self._redis.delete(self._key(session_id))

    def _session(self, session_id: str, fields: dict[str, str], now: float) -> Session | None:
        if not fields:
            return None
        try:
            session = Session(
                id=fields["id"],
                nonce=fields["nonce"],
                tee=fields["tee"],
                extra_params=json.loads(fields["extra_params"]),
                expires_at=float(fields["expires_at"]),
                attested=fields["state"] == _ATTESTED,
                token=fields.get("token"),
                tee_pubkey=json.loads(fields["tee_pubkey"]) if "tee_pubkey" in fields else None,
            )
        except (KeyError, ValueError):
            self.delete(session_id)  # a record we did not write: unusable
            return None
        if session.expired(now):
            self.delete(session_id)
            return None
        return session


def _millis(epoch_seconds: float) -> int:
    return max(1, int(epoch_seconds * 1000))


__all__ = ["MemorySessionStore", "RedisSessionStore", "Session", "SessionStore", "new_session_id"]
