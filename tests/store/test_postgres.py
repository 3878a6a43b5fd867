"""PostgresStore against a real PostgreSQL, and the kv contract on every backend.

The PostgreSQL server comes from ``$VERITEE_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``); each test gets its own table,
dropped afterwards.  PostgreSQL is part of this machine's environment: without a
server these cases fail rather than skip.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from veritee.errors import InputError, VeriteeError
from veritee.store.kv import Entry, KeyValueStore, MemoryStore, SqliteStore
from veritee.store.postgres import PostgresStore, open_store, redact_dsn

DSN = os.environ.get("VERITEE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
WHEN = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc)
    return None


_UNAVAILABLE = _postgres_available()


@pytest.fixture
def pg_table() -> Iterator[str]:
    if _UNAVAILABLE is not None:
        pytest.fail(f"PostgreSQL required but unreachable: {_UNAVAILABLE}")
    table = f"kv_test_{uuid.uuid4().hex[:16]}"
    yield table
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(table))
        )


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyValueStore]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        with SqliteStore(tmp_path / "kv.db") as sqlite:
            yield sqlite
    else:
        table = request.getfixturevalue("pg_table")
        with PostgresStore(DSN, table=table) as postgres:
            yield postgres


# -- the contract, on every backend -------------------------------------------


def test_put_get_round_trip(store: KeyValueStore) -> None:
    before = dt.datetime.now(dt.UTC)
    store.put("ns", "a/b", b"\x00value\xff", expires_at=WHEN, meta={"kind": "x"})
    entry = store.get("ns", "a/b")
    assert isinstance(entry, Entry)
    assert (entry.namespace, entry.key, entry.value) == ("ns", "a/b", b"\x00value\xff")
    assert entry.expires_at == WHEN
    assert entry.expires_at.tzinfo is not None
    assert dict(entry.meta) == {"kind": "x"}
    assert before <= entry.stored_at <= dt.datetime.now(dt.UTC)
    assert entry.stored_at.utcoffset() == dt.timedelta(0)


def test_defaults_and_missing(store: KeyValueStore) -> None:
    assert store.get("ns", "absent") is None
    store.put("ns", "k", b"")
    entry = store.get("ns", "k")
    assert entry is not None
    assert entry.value == b""
    assert entry.expires_at is None
    assert dict(entry.meta) == {}


def test_overwrite_replaces_value_expiry_and_meta(store: KeyValueStore) -> None:
    store.put("ns", "k", b"1", expires_at=WHEN, meta={"a": "1"})
    store.put("ns", "k", b"2")
    entry = store.get("ns", "k")
    assert entry is not None
    assert (entry.value, entry.expires_at, dict(entry.meta)) == (b"2", None, {})
    assert len(store.items("ns")) == 1


def test_naive_and_non_utc_expiry_is_stored_as_utc(store: KeyValueStore) -> None:
    store.put("ns", "naive", b"", expires_at=WHEN.replace(tzinfo=None))
    plus2 = dt.timezone(dt.timedelta(hours=2))
    store.put("ns", "plus2", b"", expires_at=WHEN.astimezone(plus2))
    for key in ("naive", "plus2"):
        entry = store.get("ns", key)
        assert entry is not None
        assert entry.expires_at == WHEN
        assert entry.expires_at.utcoffset() == dt.timedelta(0)


def test_expired_entries_are_kept(store: KeyValueStore) -> None:
    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    store.put("ns", "old", b"v", expires_at=past)
    entry = store.get("ns", "old")
    assert entry is not None
    assert entry.expires_at == past
    assert [e.key for e in store.items("ns")] == ["old"]


def test_delete(store: KeyValueStore) -> None:
    store.put("ns", "k", b"v")
    assert store.delete("ns", "k") is True
    assert store.delete("ns", "k") is False
    assert store.get("ns", "k") is None


def test_items_are_per_namespace_and_ordered(store: KeyValueStore) -> None:
    for key in ("b", "a", "c"):
        store.put("one", key, key.encode())
    store.put("two", "a", b"other")
    assert [(e.key, e.value) for e in store.items("one")] == [("a", b"a"), ("b", b"b"), ("c", b"c")]
    assert [e.value for e in store.items("two")] == [b"other"]
    assert store.items("three") == []
    assert store.get("two", "b") is None


def test_items_order_by_code_point_whatever_the_collation(store: KeyValueStore) -> None:
    keys = ["é", "a", "Z", "a b", "ab", "😀", "_", "A", "a\x00b", "rvps:///x/y"]
    for key in keys:
        store.put("ns", key, key.encode())
    assert [e.key for e in store.items("ns")] == sorted(keys)
    entry = store.get("ns", "a\x00b")
    assert entry is not None
    assert entry.value == b"a\x00b"


def test_meta_and_values_of_any_content(store: KeyValueStore) -> None:
    meta = {"quote'\"": "back\\slash", "nul": "\x00", "uni": "ü😀", "": ""}
    big = bytes(range(256)) * 4096
    store.put("ns", "big", big, meta=meta)
    entry = store.get("ns", "big")
    assert entry is not None
    assert entry.value == big
    assert dict(entry.meta) == meta


@pytest.mark.parametrize("namespace", ["", "with space", "a/b", "x" * 65, "-lead"])
def test_invalid_namespace_is_refused(store: KeyValueStore, namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        store.put(namespace, "k", b"")
    with pytest.raises(ValueError, match="namespace"):
        store.items(namespace)


def test_empty_key_is_refused(store: KeyValueStore) -> None:
    with pytest.raises(ValueError, match="key"):
        store.get("ns", "")
    with pytest.raises(ValueError, match="key"):
        store.delete("ns", "")


def test_dotted_namespaces_are_separate(store: KeyValueStore) -> None:
    store.put("reference_value", "k", b"1")
    store.put("reference_value.meta", "k", b"2")
    assert [e.value for e in store.items("reference_value")] == [b"1"]
    assert [e.value for e in store.items("reference_value.meta")] == [b"2"]


def test_concurrent_writers(store: KeyValueStore) -> None:
    def write(worker: int) -> None:
        for i in range(50):
            store.put("ns", f"{worker}/{i:02d}", bytes([worker, i]))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.items("ns")) == 400


# -- PostgreSQL specifics ------------------------------------------------------


def test_two_stores_share_one_table(pg_table: str) -> None:
    with PostgresStore(DSN, table=pg_table) as first, PostgresStore(DSN, table=pg_table) as second:
        first.put("ns", "k", b"v", expires_at=WHEN, meta={"m": "1"})
        entry = second.get("ns", "k")
        assert entry is not None
        assert (entry.value, entry.expires_at, dict(entry.meta)) == (b"v", WHEN, {"m": "1"})
        assert second.delete("ns", "k") is True
        assert first.get("ns", "k") is None


def test_data_survives_reopening(pg_table: str) -> None:
    with PostgresStore(DSN, table=pg_table) as first:
        first.put("ns", "k", b"v")
    with PostgresStore(DSN, table=pg_table) as second:
        assert [e.value for e in second.items("ns")] == [b"v"]


_WORKER = textwrap.dedent(
    """
    import sys
    from veritee.store.postgres import PostgresStore

    dsn, table, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with PostgresStore(dsn, table=table) as store:
        for i in range(100):
            store.put("ns", f"{worker}/{i:03d}", bytes([worker]))
            store.put("shared", "counter", str(i).encode())
        print(len(store.items("ns")))
    """
)


def test_several_processes_create_and_write_one_table(pg_table: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, DSN, pg_table, str(worker)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(4)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert int(out) >= 100
    with PostgresStore(DSN, table=pg_table) as store:
        assert len(store.items("ns")) == 400
        assert len(store.items("shared")) == 1


def test_reconnects_after_the_server_drops_the_connection(pg_table: str) -> None:
    with PostgresStore(DSN, table=pg_table) as store:
        store.put("ns", "k", b"1")
        assert store._conn is not None
        pid = store._conn.info.backend_pid
        with psycopg.connect(DSN, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        entry = store.get("ns", "k")
        assert entry is not None
        assert entry.value == b"1"
        assert store._conn is not None
        assert store._conn.info.backend_pid != pid


def test_unreachable_server_is_an_input_error_without_the_password() -> None:
    with pytest.raises(InputError, match="cannot open store") as caught:
        PostgresStore("postgresql://postgres:hunter2@127.0.0.1:1/test")
    assert "hunter2" not in str(caught.value)
    assert "postgres:***@127.0.0.1:1" in str(caught.value)


def test_unknown_database_is_an_input_error_without_the_password(pg_table: str) -> None:
    base = psycopg.conninfo.conninfo_to_dict(DSN)
    dsn = psycopg.conninfo.make_conninfo(
        "", **{**base, "dbname": f"nosuchdb_{uuid.uuid4().hex[:8]}", "password": "s3cr3t-pw"}
    )
    with pytest.raises(InputError) as caught:
        PostgresStore(dsn, table=pg_table)
    assert "s3cr3t-pw" not in str(caught.value)
    assert "password=***" in str(caught.value)


def test_statement_failure_is_a_veritee_error(pg_table: str) -> None:
    with PostgresStore(DSN, table=pg_table) as store:
        with psycopg.connect(DSN, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(pg_table)))
        with pytest.raises(VeriteeError, match=f"store postgresql://.*{pg_table}"):
            store.get("ns", "k")


def test_closed_store_refuses_work(pg_table: str) -> None:
    store = PostgresStore(DSN, table=pg_table)
    store.close()
    with pytest.raises(VeriteeError, match="closed"):
        store.get("ns", "k")


@pytest.mark.parametrize("table", ["", "Upper", "a-b", "x;drop", "1abc", "t" * 64])
def test_invalid_table_name(table: str) -> None:
    with pytest.raises(InputError, match="table"):
        PostgresStore(DSN, table=table)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        (
            "postgresql://u@h/db?password=secret&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password = 'se cret' dbname=d", "host=h password = *** dbname=d"),
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
    ],
)
def test_redact_dsn(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown
    assert "secret" not in redact_dsn(dsn)


# -- open_store ------------------------------------------------------------------


def test_open_store_picks_sqlite_for_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    targets: list[tuple[str | Path, Path]] = [
        (tmp_path / "a.db", tmp_path / "a.db"),
        (str(tmp_path / "b.db"), tmp_path / "b.db"),
        (f"sqlite:///{tmp_path}/c.db", tmp_path / "c.db"),
        ("sqlite:///rel/d.db", tmp_path / "rel" / "d.db"),
    ]
    for target, expected in targets:
        opened = open_store(target)
        assert isinstance(opened, SqliteStore)
        opened.put("ns", "k", b"v")
        opened.close()
        assert expected.exists(), target


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_open_store_in_memory_sqlite(url: str) -> None:
    opened = open_store(url)
    assert isinstance(opened, SqliteStore)
    assert opened.path == ":memory:"
    opened.close()


def test_open_store_picks_postgres_for_urls(pg_table: str) -> None:
    # The default table, in a schema of its own chosen through the URL's search_path.
    schema = f"kv_schema_{uuid.uuid4().hex[:12]}"
    ident = psycopg.sql.Identifier(schema)
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(ident))
    rest = DSN.split("://", 1)[1]
    options = ("&" if "?" in rest else "?") + f"options=-csearch_path%3D{schema}"
    try:
        for scheme in ("postgresql://", "postgres://"):
            opened = open_store(scheme + rest + options)
            assert isinstance(opened, PostgresStore)
            assert opened.table == "veritee_kv"
            opened.put("ns", scheme, b"v")
            opened.close()
        with psycopg.connect(DSN, autocommit=True) as conn:
            rows = conn.execute(
                psycopg.sql.SQL("SELECT count(*) FROM {}.veritee_kv").format(ident)
            ).fetchone()
        assert rows == (2,)
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(ident))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("mysql://h/db", "unsupported store URL scheme"),
        ("redis://h", "unsupported store URL scheme"),
        ("", "empty"),
        ("sqlite://host/x.db", "unsupported SQLite URL"),
    ],
)
def test_open_store_refuses(target: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        open_store(target)
