"""The SQLite session store as several worker processes see it: one file, many stores.

Two :class:`SqliteSessionStore` objects on one file are what two workers of
``veritee serve --workers 2`` hold; the race for a challenge is also run between real
processes.  The cases every store shares are in test_session.py.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from veritee.errors import ConfigError
from veritee.kbs.bootstrap import session_store
from veritee.kbs.session import MemorySessionStore, RedisSessionStore, Session, new_session_id
from veritee.kbs.session_sqlite import SqliteSessionStore

PUBKEY = {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "AAAA", "y": "BBBB"}


def make_session(expires_at: float) -> Session:
    return Session(
        id=new_session_id(),
        nonce="bm9uY2U=",
        tee="sample",
        extra_params={"supported-hash-algorithms": ["sha384"]},
        expires_at=expires_at,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sessions.db"


@pytest.fixture
def two(path: Path) -> Iterator[tuple[SqliteSessionStore, SqliteSessionStore]]:
    a, b = SqliteSessionStore(path), SqliteSessionStore(path)
    yield a, b
    a.close()
    b.close()


def test_two_workers_share_one_handshake(
    two: tuple[SqliteSessionStore, SqliteSessionStore],
) -> None:
    worker_a, worker_b = two
    now = time.time()
    session = make_session(now + 60)
    worker_a.create(session)  # /auth served by A
    assert worker_b.get(session.id, now=now) == session
    claimed = worker_b.claim_challenge(session.id, now=now)  # /attest served by B
    assert claimed == session
    assert worker_a.claim_challenge(session.id, now=now) is None  # the replay, on A
    assert worker_b.claim_challenge(session.id, now=now) is None  # and on B
    worker_b.save_attested(
        session.id, token="tok", tee_pubkey=PUBKEY, expires_at=session.expires_at
    )
    on_a = worker_a.get(session.id, now=now)  # the resource request, on A
    assert on_a is not None
    assert on_a.attested
    assert (on_a.token, on_a.tee_pubkey, on_a.expires_at) == ("tok", PUBKEY, session.expires_at)
    assert worker_a.claim_challenge(session.id, now=now) is None  # attested: never again


def test_expiry_and_deletion_are_seen_by_every_worker(
    two: tuple[SqliteSessionStore, SqliteSessionStore],
) -> None:
    worker_a, worker_b = two
    now = time.time()
    session = make_session(now + 60)
    worker_a.create(session)
    assert worker_b.claim_challenge(session.id, now=now + 60) is None  # expired on B
    assert worker_b.get(session.id, now=now + 61) is None  # and deleted when read
    assert len(worker_a) == 0
    other = make_session(now + 60)
    worker_a.create(other)
    worker_b.claim_challenge(other.id, now=now)
    worker_a.delete(other.id)  # A's attestation failed: the challenge is spent
    worker_b.save_attested(other.id, token="t", tee_pubkey=PUBKEY, expires_at=now + 60)
    assert worker_a.get(other.id, now=now) is None  # never resurrected
    assert worker_b.get(other.id, now=now) is None


def test_sweep_drops_abandoned_sessions(path: Path) -> None:
    store = SqliteSessionStore(path, sweep_interval=60)
    try:
        for _ in range(20):
            store.create(make_session(100.0))
        live = make_session(1000.0)
        store.create(live)
        store.get(new_session_id(), now=50.0)  # first sweep: nothing expired yet
        assert len(store) == 21
        store.get(new_session_id(), now=101.0)  # within the interval: no sweep
        assert len(store) == 21
        store.claim_challenge(new_session_id(), now=111.0)  # interval passed: sweep
        assert len(store) == 1
        assert store.sweep(now=2000.0) == 1
        assert len(store) == 0
    finally:
        store.close()


def test_server_start_drops_unfinished_handshakes(path: Path) -> None:
    store = SqliteSessionStore(path)
    try:
        now = time.time()
        authed, claimed, attested = (make_session(now + 60) for _ in range(3))
        for session in (authed, claimed, attested):
            store.create(session)
        store.claim_challenge(claimed.id, now=now)
        store.claim_challenge(attested.id, now=now)
        store.save_attested(attested.id, token="t", tee_pubkey=PUBKEY, expires_at=now + 60)
        assert store.drop_unfinished() == 2
        assert store.get(authed.id, now=now) is None
        assert store.claim_challenge(claimed.id, now=now) is None
        kept = store.get(attested.id, now=now)
        assert kept is not None
        assert kept.token == "t"
    finally:
        store.close()


def test_file_is_private(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.touch(mode=0o644)
    path.chmod(0o644)
    store = SqliteSessionStore(path)
    try:
        store.create(make_session(time.time() + 60))
        for name in ("sessions.db", "sessions.db-wal", "sessions.db-shm"):
            mode = stat.S_IMODE((path.parent / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_records_it_did_not_write_are_dropped(path: Path) -> None:
    store = SqliteSessionStore(path)
    sid = new_session_id()
    try:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO rcar_session VALUES (?, 'authed', 'n', 'sample', '{bad', ?, NULL, "
                "NULL)",
                (sid, time.time() + 60),
            )
        assert store.get(sid, now=time.time()) is None
        assert len(store) == 0
    finally:
        store.close()


def test_a_store_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="session store"):
        SqliteSessionStore(blocker / "sessions.db")


def test_session_store_specs(tmp_path: Path) -> None:
    assert isinstance(session_store("memory"), MemorySessionStore)
    assert isinstance(session_store("sqlite://"), MemorySessionStore)
    assert isinstance(session_store("postgresql://u@h/db"), MemorySessionStore)
    plain = session_store(str(tmp_path / "a.db"))
    url = session_store(f"sqlite:///{tmp_path / 'b.db'}")
    assert isinstance(plain, SqliteSessionStore)
    assert isinstance(url, SqliteSessionStore)
    assert (plain.path, url.path) == (tmp_path / "a.db", tmp_path / "b.db")
    plain.close()
    url.close()
    redis_store = session_store("redis://127.0.0.1:1")  # connects lazily
    assert isinstance(redis_store, RedisSessionStore)
    redis_store.close()
    with pytest.raises(ConfigError, match="unsupported session store"):
        session_store("mysql://db")


# --------------------------------------------------------------------------- processes


def _claim_in_a_process(
    path: str, session_id: str, now: float, barrier: object, results: object
) -> None:
    store = SqliteSessionStore(path)
    barrier.wait()  # type: ignore[attr-defined]
    won = store.claim_challenge(session_id, now=now) is not None
    results.put(won)  # type: ignore[attr-defined]
    store.close()


def test_concurrent_claims_from_processes_have_one_winner(path: Path) -> None:
    store = SqliteSessionStore(path)
    now = time.time()
    session = make_session(now + 60)
    store.create(session)
    ctx = multiprocessing.get_context("spawn")
    count = 4
    barrier, results = ctx.Barrier(count), ctx.Queue()
    procs = [
        ctx.Process(
            target=_claim_in_a_process, args=(str(path), session.id, now, barrier, results)
        )
        for _ in range(count)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in range(count)]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert sorted(outcomes) == [False, False, False, True]
    store.close()
