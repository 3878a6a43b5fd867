"""ReferenceValueStore on every kv backend (PostgreSQL: a real server, one table per test)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from veritee.rvps.extractors import ExtractorError
from veritee.rvps.model import InvalidPageToken, InvalidReferenceValue, ReferenceValue
from veritee.rvps.store import MAX_PAGE_SIZE, Page, ReferenceValueStore
from veritee.store.kv import KeyValueStore, MemoryStore, SqliteStore
from veritee.store.postgres import PostgresStore

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=30)
TRUSTEE = (
    b'{"version": "0.1.0", "name": "svn", "expiration": "2027-08-21T10:00:00Z", "value": ["1"]}'
)

# Opens one more handle on the same storage (another replica, another process).
Opener = Callable[[], KeyValueStore]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[SqliteStore | PostgresStore] = []
    table = f"rvps_test_{uuid.uuid4().hex[:16]}"
    # Only the PostgreSQL cases start the session's throwaway server.
    dsn = request.getfixturevalue("postgres_dsn") if request.param == "postgres" else ""
    memory = MemoryStore()

    def open_one() -> KeyValueStore:
        if request.param == "memory":
            return memory
        store: SqliteStore | PostgresStore
        if request.param == "sqlite":
            store = SqliteStore(tmp_path / "rvps.db")
        else:
            store = PostgresStore(dsn, table=table)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()
    if request.param == "postgres":
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(table))
            )


@pytest.fixture
def kv(opener: Opener) -> KeyValueStore:
    return opener()


@pytest.fixture
def rvps(kv: KeyValueStore) -> ReferenceValueStore:
    return ReferenceValueStore(kv)


def rv(name: str, value: object, expiration: dt.datetime = LATER) -> ReferenceValue:
    return ReferenceValue(name=name, value=value, expiration=expiration)  # type: ignore[arg-type]


def sample_message(payload: dict[str, object]) -> dict[str, str]:
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    return {"version": "0.1.0", "type": "sample", "payload": encoded}


def test_register_get_list_delete(rvps: ReferenceValueStore) -> None:
    stored = rvps.register([rv("b", ["2"]), rv("a", {"x": 1})])
    assert [v.name for v in stored] == ["b", "a"]
    assert rvps.get("a", at=NOW) == {"x": 1}
    assert rvps.get("b", at=NOW) == ["2"]
    assert rvps.get("c", at=NOW) is None
    assert rvps.get("", at=NOW) is None
    assert [v.name for v in rvps.list(at=NOW)] == ["a", "b"]
    assert rvps.delete("a") is True
    assert rvps.delete("a") is False
    assert rvps.delete("") is False
    assert rvps.get("a", at=NOW) is None


def test_stored_as_trustee_does(rvps: ReferenceValueStore, kv: KeyValueStore) -> None:
    rvps.register([rv("svn", ["1"], dt.datetime(2027, 8, 21, 10, tzinfo=dt.UTC))])
    entry = kv.get("reference_value", "svn")
    assert entry is not None
    assert json.loads(entry.value) == json.loads(TRUSTEE)
    assert entry.expires_at == dt.datetime(2027, 8, 21, 10, tzinfo=dt.UTC)


def test_serves_values_trustee_stored(rvps: ReferenceValueStore, kv: KeyValueStore) -> None:
    kv.put("reference_value", "svn", TRUSTEE)
    assert rvps.get("svn", at=NOW) == ["1"]
    assert rvps.snapshot(at=NOW)[1] == {"svn": ["1"]}


def test_register_overwrites(rvps: ReferenceValueStore) -> None:
    rvps.register([rv("a", 1)])
    rvps.register([rv("a", 2)])
    assert rvps.get("a", at=NOW) == 2
    assert len(rvps.list(at=NOW)) == 1


def test_register_message(rvps: ReferenceValueStore) -> None:
    values = rvps.register_message(json.dumps(sample_message({"svn": ["1"], "x": 2})), now=NOW)
    assert [v.name for v in values] == ["svn", "x"]
    assert {v.expiration for v in values} == {dt.datetime(2027, 3, 4, 5, 6, 7, tzinfo=dt.UTC)}
    assert rvps.get("svn", at=NOW) == ["1"]
    with pytest.raises(ExtractorError, match="Could not find extractor for swid"):
        rvps.register_message({"type": "swid", "payload": ""})


def test_expired_values_are_never_served(rvps: ReferenceValueStore) -> None:
    rvps.register([rv("old", 1, NOW), rv("new", 2)])
    assert rvps.get("old", at=NOW) == 1  # not yet: expired means *after* the expiration
    after = NOW + dt.timedelta(seconds=1)
    assert rvps.get("old", at=after) is None
    assert rvps.get_reference_value("old", at=after) is None
    assert [v.name for v in rvps.list(at=after)] == ["new"]
    assert [v.name for v in rvps.list(at=after, include_expired=True)] == ["new", "old"]
    assert rvps.snapshot(at=after)[1] == {"new": 2}
    # With the real clock, a value registered already expired is never served.
    rvps.register([rv("gone", 3, dt.datetime(2000, 1, 1))])
    assert rvps.get("gone") is None
    assert "gone" not in rvps.snapshot()[1]


def test_purge_expired(rvps: ReferenceValueStore) -> None:
    rvps.register([rv("old", 1, NOW), rv("new", 2)])
    generation = rvps.snapshot(at=NOW)[0]
    after = NOW + dt.timedelta(seconds=1)
    assert rvps.purge_expired(at=after) == ["old"]
    assert [v.name for v in rvps.list(at=NOW, include_expired=True)] == ["new"]
    assert rvps.snapshot(at=NOW)[0] != generation
    assert rvps.purge_expired(at=after) == []


def test_register_checks_everything_before_writing(rvps: ReferenceValueStore) -> None:
    with pytest.raises(InvalidReferenceValue, match="ReferenceValue"):
        rvps.register([rv("a", 1), {"name": "b"}])  # type: ignore[list-item]
    assert rvps.list(at=NOW, include_expired=True) == []


def test_register_nothing_changes_nothing(rvps: ReferenceValueStore) -> None:
    before = rvps.snapshot(at=NOW)
    assert rvps.register([]) == []
    assert rvps.register_message(sample_message({}), now=NOW) == []
    assert rvps.snapshot(at=NOW) == before


def test_snapshot_generation(rvps: ReferenceValueStore) -> None:
    empty_generation, values = rvps.snapshot(at=NOW)
    assert values == {}
    assert rvps.snapshot(at=NOW)[0] == empty_generation  # stable while nothing changes

    rvps.register([rv("a", 1), rv("b", [2])])
    g1, values = rvps.snapshot(at=NOW)
    assert values == {"a": 1, "b": [2]}
    assert g1 != empty_generation
    assert rvps.snapshot(at=NOW)[0] == g1

    rvps.register([rv("a", 1)])  # same value again: still a registration
    g2 = rvps.snapshot(at=NOW)[0]
    assert g2 != g1

    assert rvps.delete("nope") is False
    assert rvps.snapshot(at=NOW)[0] == g2  # nothing deleted, nothing changed

    rvps.delete("b")
    g3, values = rvps.snapshot(at=NOW)
    assert values == {"a": 1}
    assert g3 not in (g1, g2)
    assert 0 <= g3 < 2**63


def test_snapshot_generation_changes_when_a_value_expires(rvps: ReferenceValueStore) -> None:
    rvps.register([rv("soon", 1, NOW + dt.timedelta(hours=1)), rv("later", 2)])
    before, values = rvps.snapshot(at=NOW)
    assert values == {"soon": 1, "later": 2}
    assert rvps.snapshot(at=NOW + dt.timedelta(minutes=59))[0] == before
    after, values = rvps.snapshot(at=NOW + dt.timedelta(hours=1, seconds=1))
    assert values == {"later": 2}
    assert after != before


def test_snapshot_is_read_only(rvps: ReferenceValueStore) -> None:
    rvps.register([rv("a", 1)])
    _, values = rvps.snapshot(at=NOW)
    with pytest.raises(TypeError):
        values["b"] = 2  # type: ignore[index]


def test_another_handle_sees_changes(opener: Opener) -> None:
    first = ReferenceValueStore(opener())
    second = ReferenceValueStore(opener())
    g0 = second.snapshot(at=NOW)[0]
    first.register([rv("a", 1)])
    g1, values = second.snapshot(at=NOW)
    assert (g1 != g0, dict(values)) == (True, {"a": 1})
    first.register([rv("a", 1)])
    assert second.snapshot(at=NOW)[0] != g1
    assert first.snapshot(at=NOW) == second.snapshot(at=NOW)
    second.delete("a")
    assert first.get("a", at=NOW) is None


_REGISTER = textwrap.dedent(
    """
    import sys
    from veritee.rvps.store import ReferenceValueStore
    from veritee.store.postgres import open_store, PostgresStore

    target, table = sys.argv[1], sys.argv[2]
    kv = PostgresStore(target, table=table) if table else open_store(target)
    ReferenceValueStore(kv).register_message(sys.stdin.read())
    kv.close()
    """
)


@pytest.mark.parametrize("opener", ["sqlite", "postgres"], indirect=True)
def test_another_process_sees_changes(
    opener: Opener, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    kv = opener()
    target, table = str(tmp_path / "rvps.db"), ""
    if isinstance(kv, PostgresStore):
        target, table = request.getfixturevalue("postgres_dsn"), kv.table
    rvps = ReferenceValueStore(kv)
    before = rvps.snapshot()[0]
    subprocess.run(
        [sys.executable, "-c", _REGISTER, target, table],
        input=json.dumps(sample_message({"svn": ["1"]})),
        text=True,
        check=True,
        timeout=60,
    )
    generation, values = rvps.snapshot()
    assert generation != before
    assert values == {"svn": ["1"]}


def test_unreadable_entries_are_ignored(
    rvps: ReferenceValueStore, kv: KeyValueStore, caplog: pytest.LogCaptureFixture
) -> None:
    rvps.register([rv("good", 1)])
    kv.put("reference_value", "junk", b"\xff not json")
    kv.put(
        "reference_value",
        "nullvalue",
        b'{"name":"nullvalue","expiration":"2099-01-01T00:00:00Z","value":null}',
    )
    kv.put("reference_value", "alias", json.dumps(rv("other", 2).to_json()).encode())
    with caplog.at_level(logging.WARNING, logger="veritee.rvps"):
        assert rvps.get("junk", at=NOW) is None
        assert rvps.get("alias", at=NOW) is None
        assert rvps.snapshot(at=NOW)[1] == {"good": 1}
        assert [v.name for v in rvps.list(at=NOW, include_expired=True)] == ["good"]
    assert "junk" in caplog.text
    assert "stored under key 'alias'" in caplog.text


def test_custom_namespace(kv: KeyValueStore) -> None:
    one = ReferenceValueStore(kv, namespace="rv_one")
    two = ReferenceValueStore(kv)
    one.register([rv("a", 1)])
    assert two.get("a", at=NOW) is None
    assert one.get("a", at=NOW) == 1
    assert [e.key for e in kv.items("rv_one.meta")] == ["generation"]
    with pytest.raises(ValueError, match="namespace"):
        ReferenceValueStore(kv, namespace="bad namespace")


# ------------------------------------------------------------------ pages


def walk(rvps: ReferenceValueStore, limit: int, **options: object) -> list[list[str]]:
    pages, token = [], None
    while True:
        page = rvps.page(limit=limit, token=token, at=NOW, **options)  # type: ignore[arg-type]
        pages.append([v.name for v in page.values])
        if page.next_token is None:
            return pages
        token = page.next_token


def test_pages_by_name(rvps: ReferenceValueStore) -> None:
    names = [f"rv/{i:02d}" for i in range(12)]
    rvps.register([rv(n, i) for i, n in enumerate(reversed(names))])
    assert walk(rvps, 5) == [names[:5], names[5:10], names[10:]]
    assert walk(rvps, 4) == [names[:4], names[4:8], names[8:]]  # full last page: no empty one
    assert walk(rvps, 1000) == [names]
    first = rvps.page(limit=3, at=NOW)
    assert [v.value for v in first.values] == [11, 10, 9]
    assert rvps.page(at=NOW).values == rvps.list(at=NOW)  # default page size 100


def test_pages_leave_out_expired_values_unless_asked(rvps: ReferenceValueStore) -> None:
    expired = NOW - dt.timedelta(days=1)
    rvps.register([rv(f"v{i}", i, expired if i % 3 else LATER) for i in range(10)])
    assert walk(rvps, 2) == [["v0", "v3"], ["v6", "v9"]]
    assert walk(rvps, 4, include_expired=True) == [
        ["v0", "v1", "v2", "v3"], ["v4", "v5", "v6", "v7"], ["v8", "v9"],
    ]
    rvps.register([rv("w", 1, expired)])
    assert walk(rvps, 4) == [["v0", "v3", "v6", "v9"]]


def test_page_of_an_empty_store(rvps: ReferenceValueStore) -> None:
    assert rvps.page(at=NOW) == Page([], None)


def test_page_tokens_survive_changes(rvps: ReferenceValueStore) -> None:
    rvps.register([rv(n, 1) for n in "abcdef"])
    first = rvps.page(limit=3, at=NOW)
    rvps.delete("d")
    rvps.register([rv("c2", 1)])
    assert [v.name for v in rvps.page(limit=3, token=first.next_token, at=NOW).values] == [
        "c2", "e", "f",
    ]


@pytest.mark.parametrize(
    "token", ["", "!!", "YQ=", "a", "Yg" + "=" * 2, "_-_-", "//8", "YWI\u00e9", "x" * 5000]
)
def test_invalid_page_token(rvps: ReferenceValueStore, token: str) -> None:
    with pytest.raises(InvalidPageToken, match="invalid page token"):
        rvps.page(token=token)


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_SIZE + 1, True])
def test_page_limit_bounds(rvps: ReferenceValueStore, limit: int) -> None:
    with pytest.raises(InvalidPageToken, match="page limit"):
        rvps.page(limit=limit)


def test_register_a_large_batch(rvps: ReferenceValueStore) -> None:
    generation = rvps.snapshot(at=NOW)[0]
    rvps.register([rv(f"n/{i:05d}", [str(i)]) for i in range(3000)])
    assert rvps.get("n/02999", at=NOW) == ["2999"]
    assert len(walk(rvps, 1000)) == 3
    assert rvps.snapshot(at=NOW)[0] != generation


# ------------------------------------------------------------ snapshot cache


def test_cached_snapshot_sees_every_change(opener: Opener) -> None:
    reader = ReferenceValueStore(opener())
    writer = ReferenceValueStore(opener())
    writer.register([rv("a", 1), rv("b", 2)])
    g1, values = reader.snapshot(at=NOW)
    assert reader.snapshot(at=NOW) == (g1, values)
    writer.register([rv("a", 3)])  # another handle (replica) changes a value
    g2, values = reader.snapshot(at=NOW)
    assert (g2 != g1, dict(values)) == (True, {"a": 3, "b": 2})
    writer.delete("b")
    g3, values = reader.snapshot(at=NOW)
    assert (g3 not in (g1, g2), dict(values)) == (True, {"a": 3})
    writer.register([rv("a", 3)])  # same content again still refreshes
    assert dict(reader.snapshot(at=NOW)[1]) == {"a": 3}


def test_cached_snapshot_drops_a_value_once_expired(rvps: ReferenceValueStore) -> None:
    rvps.register([rv("soon", 1, NOW + dt.timedelta(seconds=10)), rv("later", 2)])
    first = rvps.snapshot(at=NOW)
    assert rvps.snapshot(at=NOW + dt.timedelta(seconds=10)) == first  # expiration inclusive
    generation, values = rvps.snapshot(at=NOW + dt.timedelta(seconds=11))
    assert (generation != first[0], dict(values)) == (True, {"later": 2})
    # An earlier time than the cached one is computed afresh, never served from it.
    assert rvps.snapshot(at=NOW) == first


def test_lookup_reads_only_the_names_asked(rvps: ReferenceValueStore) -> None:
    rvps.register([rv(f"f{i}", i) for i in range(50)] + [rv("old", 1, NOW - dt.timedelta(1))])
    generation, values = rvps.lookup(["f3", "f7", "missing", "old"], at=NOW)
    assert dict(values) == {"f3": 3, "f7": 7}
    assert rvps.lookup(["f7", "missing", "f3", "old"], at=NOW)[0] == generation
    assert rvps.lookup(["f3"], at=NOW)[0] != generation  # other names, other generation
    rvps.register([rv("f3", 33)])
    changed, values = rvps.lookup(["f3", "f7", "missing", "old"], at=NOW)
    assert (changed != generation, dict(values)) == (True, {"f3": 33, "f7": 7})
    rvps.register([rv("f3", 33, NOW + dt.timedelta(seconds=5))])
    _, values = rvps.lookup(["f3", "f7"], at=NOW + dt.timedelta(seconds=6))
    assert dict(values) == {"f7": 7}
    with pytest.raises(TypeError):
        values["x"] = 1  # type: ignore[index]
