"""PostgresStore's connection: one per store, reused by every call and thread, and never
shared with a forked process (a forked KBS worker opens its own)."""

from __future__ import annotations

import os
import threading

import psycopg

from veritee.store.postgres import PostgresStore


def _sessions(dsn: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND query ILIKE %s",
            (f"%{table}%",),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_one_connection_serves_every_call_and_thread(pg_table: str, postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, table=pg_table) as store:
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(20):
                    store.put("ns", f"{n}-{i}", b"v")
                    assert store.get("ns", f"{n}-{i}") is not None
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(store.items("ns")) == 80
        # Every statement went through one session of the server.
        assert _sessions(postgres_dsn, pg_table) == 1


def test_a_forked_process_opens_its_own_and_leaves_the_parents_alone(
    pg_table: str, postgres_dsn: str
) -> None:
    for child_uses_it in (True, False):
        _fork_and_close(pg_table, postgres_dsn, child_uses_it)


def _backend(store: PostgresStore) -> int:
    conn = store._conn  # the store's one session
    assert conn is not None
    return int(conn.info.backend_pid)


def _fork_and_close(pg_table: str, postgres_dsn: str, child_uses_it: bool) -> None:
    with PostgresStore(postgres_dsn, table=pg_table) as store:
        store.delete("ns", "child")
        store.put("ns", "parent", b"1")
        backend = _backend(store)
        pid = os.fork()
        if pid == 0:  # the child: maybe use the store, then close it as a worker would
            code = 1  # an exception leaves it 1
            try:
                result = 0
                if child_uses_it:
                    store.put("ns", "child", b"2")
                    entry = store.get("ns", "parent")
                    result = 0 if entry is not None and entry.value == b"1" else 2
                    result = result or (3 if _backend(store) == backend else 0)
                store.close()
                code = result
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's session survived the child's close: the same backend serves it.
        assert store.get("ns", "parent") is not None
        assert _backend(store) == backend
        if not child_uses_it:
            return
        entry = store.get("ns", "child")
        assert entry is not None
        assert entry.value == b"2"
        store.put("ns", "after", b"3")
        assert [e.key for e in store.items("ns")] == ["after", "child", "parent"]
        store.delete("ns", "after")
