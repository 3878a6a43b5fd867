"""Store fixtures: a table of its own in the throwaway PostgreSQL, and a store of every kind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from veritee.store.kv import KeyValueStore, MemoryStore, SqliteStore
from veritee.store.postgres import PostgresStore


@pytest.fixture
def pg_table(postgres_dsn: str) -> Iterator[str]:
    table = f"kv_test_{uuid.uuid4().hex[:16]}"
    yield table
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
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
        dsn = request.getfixturevalue("postgres_dsn")
        table = request.getfixturevalue("pg_table")
        with PostgresStore(dsn, table=table) as postgres:
            yield postgres
