"""The throwaway PostgreSQL and Redis (tests/support/services.py) are ours alone.

They listen on free ports, never the system instances' 5432 and 6379, keep their data
in temporary directories of their own, and PostgreSQL runs unprivileged even when the
suite runs as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
import services


def test_ports_are_not_the_system_instances(postgres_dsn: str, redis_url: str) -> None:
    pg, rd = urlsplit(postgres_dsn), urlsplit(redis_url)
    assert (pg.scheme, pg.hostname, pg.username, pg.path) == (
        "postgresql",
        "127.0.0.1",
        "postgres",
        "/test",
    )
    assert (rd.scheme, rd.hostname, rd.path) == ("redis", "127.0.0.1", "/0")
    assert pg.port is not None
    assert pg.port != 5432
    assert rd.port is not None
    assert rd.port != 6379
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone() == (pg.port,)
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.config_get("port") == {"port": str(rd.port)}
    finally:
        client.close()


def test_postgres_round_trip(postgres_dsn: str) -> None:
    table = psycopg.sql.Identifier(f"services_{uuid.uuid4().hex[:12]}")
    with psycopg.connect(postgres_dsn, autocommit=True) as writer:
        writer.execute(psycopg.sql.SQL("CREATE TABLE {} (k text, v bytea)").format(table))
        writer.execute(
            psycopg.sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(table), ("k", b"\x00v")
        )
    try:
        with psycopg.connect(postgres_dsn) as reader:
            rows = reader.execute(psycopg.sql.SQL("SELECT k, v FROM {}").format(table)).fetchall()
            assert rows == [("k", b"\x00v")]
            settings = {
                name: reader.execute(f"SHOW {name}").fetchone()
                for name in ("fsync", "synchronous_commit", "full_page_writes", "listen_addresses")
            }
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(table))
    assert settings == {
        "fsync": ("off",),
        "synchronous_commit": ("off",),
        "full_page_writes": ("off",),
        "listen_addresses": ("127.0.0.1",),
    }


def test_redis_round_trip(redis_url: str) -> None:
    key = f"veritee:test:services:{uuid.uuid4().hex}"
    writer, reader = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    try:
        writer.set(key, b"\x00v", ex=60)
        assert reader.get(key) == b"\x00v"
        assert reader.config_get("save") == {"save": ""}
        assert reader.config_get("appendonly") == {"appendonly": "no"}
        directory = str(reader.config_get("dir")["dir"])
        assert Path(directory).name.startswith("veritee-redis-")
    finally:
        writer.delete(key)
        writer.close()
        reader.close()


def test_postgres_runs_unprivileged_in_its_own_directory(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute("SELECT current_setting('data_directory'), pg_backend_pid()").fetchone()
    assert row is not None
    data_dir, backend_pid = Path(row[0]), int(row[1])
    assert data_dir.parent.name.startswith("veritee-pg-")
    owner = data_dir.stat().st_uid
    proc = Path(f"/proc/{backend_pid}")
    if os.geteuid() == 0:
        # PostgreSQL refuses root: the cluster belongs to, and runs as, the postgres user.
        assert data_dir.parent.parent == Path("/tmp")
        assert owner != 0
        assert pwd.getpwuid(owner).pw_name == services.PG_USER
        if proc.exists():
            assert proc.stat().st_uid == owner
    else:
        assert owner == os.geteuid()


def test_missing_postgres_binaries_name_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(services.ServiceError) as caught:
        services.postgres_bindir(lib_root=tmp_path)
    message = str(caught.value)
    assert "initdb" in message
    assert "pg_ctl" in message
    assert "apt-get install postgresql" in message


def test_missing_redis_server_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(
        services.ServiceError, match=r"redis-server not found.*apt-get install redis-server"
    ):
        services.start_redis()
