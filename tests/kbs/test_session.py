"""Session stores: single-use challenges, expiry, and Redis shared by two replicas.

Every case of the first part runs on the memory, Redis and SQLite stores; what is
particular to SQLite (several processes on one file) is in test_session_sqlite.py.

The Redis cases talk to a real redis-server, the session's throwaway one (the
``redis_url`` fixture, tests/support/services.py); without the binary they fail
rather than skip.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from veritee.kbs.session import (
    MemorySessionStore,
    RedisSessionStore,
    Session,
    SessionStore,
    new_session_id,
)
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
def prefix(redis_url: str) -> Iterator[str]:
    value = f"veritee:test:{uuid.uuid4().hex}:"
    yield value
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=value + "*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def redis_factory(redis_url: str, prefix: str) -> Iterator[Callable[[], RedisSessionStore]]:
    stores: list[RedisSessionStore] = []

    def make() -> RedisSessionStore:
        store = RedisSessionStore(redis_url, prefix=prefix)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture(params=["memory", "redis", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    if request.param == "memory":
        yield MemorySessionStore()
        return
    if request.param == "sqlite":
        sqlite = SqliteSessionStore(tmp_path / "sessions.db")
        yield sqlite
        sqlite.close()
        return
    # Only the Redis cases start the session's throwaway redis-server.
    redis_factory: Callable[[], RedisSessionStore] = request.getfixturevalue("redis_factory")
    yield redis_factory()


# --------------------------------------------------------------------------- every store


def test_unknown_session_is_none(store: SessionStore) -> None:
    now = time.time()
    assert store.get(new_session_id(), now=now) is None
    assert store.claim_challenge(new_session_id(), now=now) is None
    store.save_attested(new_session_id(), token="t", tee_pubkey=PUBKEY, expires_at=now + 60)
    store.delete(new_session_id())  # no error


def test_expired_session_is_gone(store: SessionStore) -> None:
    now = time.time()
    session = make_session(now + 60)
    store.create(session)
    assert store.get(session.id, now=now + 61) is None
    assert store.get(session.id, now=now) is None  # deleted when found expired
    other = make_session(now + 60)
    store.create(other)
    assert store.claim_challenge(other.id, now=now + 60) is None


def test_challenge_is_single_use(store: SessionStore) -> None:
    now = time.time()
    session = make_session(now + 60)
    store.create(session)
    got = store.get(session.id, now=now)
    assert got == session
    claimed = store.claim_challenge(session.id, now=now)
    assert claimed == session
    assert not claimed.attested
    assert store.claim_challenge(session.id, now=now) is None  # the replay
    assert store.get(session.id, now=now) is not None  # still there, not yet attested


def test_attested_session_keeps_id_and_expiry(store: SessionStore) -> None:
    now = time.time()
    session = make_session(now + 60)
    store.create(session)
    assert store.claim_challenge(session.id, now=now) is not None
    store.save_attested(
        session.id, token="tok.en.x", tee_pubkey=PUBKEY, expires_at=session.expires_at
    )
    got = store.get(session.id, now=now)
    assert got is not None
    assert got.attested
    assert got.token == "tok.en.x"
    assert got.tee_pubkey == PUBKEY
    assert got.id == session.id
    assert got.expires_at == session.expires_at
    assert got.nonce == session.nonce
    assert got.extra_params == session.extra_params
    assert store.claim_challenge(session.id, now=now) is None  # attested: no second claim


def test_save_attested_does_not_resurrect_a_deleted_session(store: SessionStore) -> None:
    now = time.time()
    session = make_session(now + 60)
    store.create(session)
    store.claim_challenge(session.id, now=now)
    store.delete(session.id)
    store.save_attested(session.id, token="t", tee_pubkey=PUBKEY, expires_at=now + 60)
    assert store.get(session.id, now=now) is None


def test_concurrent_claims_have_one_winner(store: SessionStore) -> None:
    now = time.time()
    session = make_session(now + 60)
    store.create(session)
    barrier = threading.Barrier(8)
    winners: list[Session] = []
    lock = threading.Lock()

    def claim() -> None:
        barrier.wait()
        got = store.claim_challenge(session.id, now=now)
        if got is not None:
            with lock:
                winners.append(got)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_stored_sessions_are_copies(store: SessionStore) -> None:
    now = time.time()
    session = make_session(now + 60)
    store.create(session)
    session.nonce = "changed"
    got = store.get(session.id, now=now)
    assert got is not None
    assert got.nonce == "bm9uY2U="


# --------------------------------------------------------------------------- memory


def test_memory_sweep_drops_abandoned_sessions() -> None:
    store = MemorySessionStore(sweep_interval=60)
    for _ in range(50):
        store.create(make_session(100.0))
    live = make_session(1000.0)
    store.create(live)
    assert len(store) == 51
    store.get(new_session_id(), now=50.0)  # first sweep: nothing expired yet
    assert len(store) == 51
    store.get(new_session_id(), now=101.0)  # within the interval: no sweep
    assert len(store) == 51
    store.get(new_session_id(), now=111.0)  # interval passed: sweep
    assert len(store) == 1
    assert store.get(live.id, now=111.0) is not None
    assert store.sweep(now=2000.0) == 1
    assert len(store) == 0


def test_session_ids_are_128_bit_url_safe() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)


# --------------------------------------------------------------------------- redis


def test_redis_two_replicas_share_one_handshake(
    redis_factory: Callable[[], RedisSessionStore],
) -> None:
    replica_a, replica_b = redis_factory(), redis_factory()
    now = time.time()
    session = make_session(now + 60)
    replica_a.create(session)  # /auth served by A
    claimed = replica_b.claim_challenge(session.id, now=now)  # /attest served by B
    assert claimed == session
    assert replica_a.claim_challenge(session.id, now=now) is None  # replay on A
    replica_b.save_attested(
        session.id, token="tok", tee_pubkey=PUBKEY, expires_at=session.expires_at
    )
    on_a = replica_a.get(session.id, now=now)  # resource request served by A
    assert on_a is not None
    assert on_a.attested
    assert on_a.token == "tok"


def test_redis_expiry_is_a_redis_ttl(
    redis_factory: Callable[[], RedisSessionStore], prefix: str, redis_url: str
) -> None:
    store = redis_factory()
    session = make_session(time.time() + 0.3)
    store.create(session)
    client = redis.Redis.from_url(redis_url)
    try:
        key = prefix + session.id
        ttl = client.pttl(key)
        assert isinstance(ttl, int)
        assert 0 < ttl <= 300
        deadline = time.monotonic() + 5
        while client.exists(key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not client.exists(key)  # Redis dropped it by itself
    finally:
        client.close()
    assert store.get(session.id, now=time.time()) is None


def test_redis_attested_expiry_moves_with_save(
    redis_factory: Callable[[], RedisSessionStore], prefix: str, redis_url: str
) -> None:
    store = redis_factory()
    now = time.time()
    session = make_session(now + 30)
    store.create(session)
    store.claim_challenge(session.id, now=now)
    store.save_attested(session.id, token="t", tee_pubkey=PUBKEY, expires_at=now + 120)
    client = redis.Redis.from_url(redis_url)
    try:
        ttl = client.pttl(prefix + session.id)
    finally:
        client.close()
    assert isinstance(ttl, int)
    assert 60_000 < ttl <= 120_000


def test_redis_ignores_records_it_did_not_write(
    redis_factory: Callable[[], RedisSessionStore], prefix: str, redis_url: str
) -> None:
    store = redis_factory()
    client = redis.Redis.from_url(redis_url)
    sid = new_session_id()
    try:
        client.hset(prefix + sid, mapping={"state": "authed", "junk": "1"})
        client.expire(prefix + sid, 60)
    finally:
        client.close()
    assert store.get(sid, now=time.time()) is None
    assert store.claim_challenge(sid, now=time.time()) is None
