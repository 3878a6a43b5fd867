"""PostgresStore's own behaviour against a real PostgreSQL (the kv contract it shares with
every backend is in test_kv.py).

The PostgreSQL server is the session's throwaway one (the ``postgres_dsn`` fixture,
tests/support/services.py); each test gets its own table, dropped afterwards.  Without
the PostgreSQL binaries these cases fail rather than skip.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg
import pytest

from veritee.errors import InputError, VeriteeError
from veritee.store.kv import SqliteStore
from veritee.store.postgres import PostgresStore, open_store, redact_dsn

WHEN = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


# -- PostgreSQL specifics ------------------------------------------------------


def test_two_stores_share_one_table(pg_table: str, postgres_dsn: str) -> None:
    with (
        PostgresStore(postgres_dsn, table=pg_table) as first,
        PostgresStore(postgres_dsn, table=pg_table) as second,
    ):
        first.put("ns", "k", b"v", expires_at=WHEN, meta={"m": "1"})
        entry = second.get("ns", "k")
        assert entry is not None
        assert (entry.value, entry.expires_at, dict(entry.meta)) == (b"v", WHEN, {"m": "1"})
        assert second.delete("ns", "k") is True
        assert first.get("ns", "k") is None


def test_data_survives_reopening(pg_table: str, postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, table=pg_table) as first:
        first.put("ns", "k", b"v")
    with PostgresStore(postgres_dsn, table=pg_table) as second:
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


def test_several_processes_create_and_write_one_table(pg_table: str, postgres_dsn: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, postgres_dsn, pg_table, str(worker)],
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
    with PostgresStore(postgres_dsn, table=pg_table) as store:
        assert len(store.items("ns")) == 400
        assert len(store.items("shared")) == 1


def test_reconnects_after_the_server_drops_the_connection(pg_table: str, postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, table=pg_table) as store:
        store.put("ns", "k", b"1")
        assert store._conn is not None
        pid = store._conn.info.backend_pid
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
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


def test_unknown_database_is_an_input_error_without_the_password(
    pg_table: str, postgres_dsn: str
) -> None:
    base = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    dsn = psycopg.conninfo.make_conninfo(
        "", **{**base, "dbname": f"nosuchdb_{uuid.uuid4().hex[:8]}", "password": "s3cr3t-pw"}
    )
    with pytest.raises(InputError) as caught:
        PostgresStore(dsn, table=pg_table)
    assert "s3cr3t-pw" not in str(caught.value)
    assert "password=***" in str(caught.value)


def test_statement_failure_is_a_veritee_error(pg_table: str, postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, table=pg_table) as store:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(pg_table)))
        with pytest.raises(VeriteeError, match=f"store postgresql://.*{pg_table}"):
            store.get("ns", "k")


def test_closed_store_refuses_work(pg_table: str, postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn, table=pg_table)
    store.close()
    with pytest.raises(VeriteeError, match="closed"):
        store.get("ns", "k")


@pytest.mark.parametrize("table", ["", "Upper", "a-b", "x;drop", "1abc", "t" * 64])
def test_invalid_table_name(table: str, postgres_dsn: str) -> None:
    with pytest.raises(InputError, match="table"):
        PostgresStore(postgres_dsn, table=table)


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


def test_open_store_picks_postgres_for_urls(pg_table: str, postgres_dsn: str) -> None:
    # The default table, in a schema of its own chosen through the URL's search_path.
    schema = f"kv_schema_{uuid.uuid4().hex[:12]}"
    ident = psycopg.sql.Identifier(schema)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(ident))
    rest = postgres_dsn.split("://", 1)[1]
    options = ("&" if "?" in rest else "?") + f"options=-csearch_path%3D{schema}"
    try:
        for scheme in ("postgresql://", "postgres://"):
            opened = open_store(scheme + rest + options)
            assert isinstance(opened, PostgresStore)
            assert opened.table == "veritee_kv"
            opened.put("ns", scheme, b"v")
            opened.close()
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            rows = conn.execute(
                psycopg.sql.SQL("SELECT count(*) FROM {}.veritee_kv").format(ident)
            ).fetchone()
        assert rows == (2,)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
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
