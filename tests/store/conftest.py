"""Store fixtures: a table of its own in the real PostgreSQL, and a store of every kind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from veritee.store.kv import KeyValueStore, MemoryStore, SqliteStore
from veritee.store.postgres import PostgresStore

DSN = os.environ.get("VERITEE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


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
