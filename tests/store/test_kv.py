"""The key-value contract, run against every backend: memory, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest

from veritee.errors import InputError
from veritee.store.kv import Entry, KeyValueStore, SqliteStore

WHEN = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


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


# -- SQLite specifics ----------------------------------------------------------


def test_sqlite_persists_creates_parents_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "kv.db"
    with SqliteStore(path) as first:
        first.put("ns", "k", b"v", expires_at=WHEN, meta={"m": "1"})
    with SqliteStore(path) as second:
        entry = second.get("ns", "k")
    assert entry is not None
    assert (entry.value, entry.expires_at, dict(entry.meta)) == (b"v", WHEN, {"m": "1"})
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_sqlite_in_memory() -> None:
    with SqliteStore(":memory:") as store:
        store.put("ns", "k", b"v")
        assert [e.key for e in store.items("ns")] == ["k"]


def test_sqlite_unopenable_path_is_an_input_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot open store"):
        SqliteStore(blocker / "kv.db")
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match="cannot use store"):
        SqliteStore(not_a_db)
