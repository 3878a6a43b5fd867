"""Keyset pages and batched writes, on every backend: memory, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from veritee.store.kv import MAX_PAGE, Entry, KeyValueStore

WHEN = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


def keys(entries: list[Entry]) -> list[str]:
    return [e.key for e in entries]


def test_pages_walk_every_key_once_in_order(store: KeyValueStore) -> None:
    names = [f"k{i:03d}" for i in range(25)]
    for name in reversed(names):
        store.put("ns", name, name.encode())
    store.put("other", "k000", b"x")
    seen: list[str] = []
    after = None
    while True:
        page = store.items_page("ns", after=after, limit=10)
        seen += keys(page)
        if len(page) < 10:
            break
        after = page[-1].key
    assert seen == names
    assert len(store.items_page("ns", limit=10)) == 10
    assert keys(store.items_page("ns", after="k019", limit=10)) == names[20:]
    assert store.items_page("ns", after="k024", limit=10) == []
    # A key that is not stored still marks a place in the order.
    assert keys(store.items_page("ns", after="k0105", limit=2)) == ["k011", "k012"]
    assert store.items_page("empty", limit=5) == []


def test_pages_order_by_code_point(store: KeyValueStore) -> None:
    names = ["B", "a", "é", "Z", "\U0001f600", "a\x00b", "a/b"]
    for name in names:
        store.put("ns", name, b"v")
    first = store.items_page("ns", limit=3)
    rest = store.items_page("ns", after=first[-1].key, limit=10)
    assert keys(first + rest) == sorted(names) == keys(store.items("ns"))


def test_page_entries_are_whole(store: KeyValueStore) -> None:
    store.put("ns", "a", b"\x00\xff", expires_at=WHEN, meta={"m": "1"})
    [entry] = store.items_page("ns", limit=1)
    assert (entry.value, entry.expires_at, dict(entry.meta)) == (b"\x00\xff", WHEN, {"m": "1"})


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1, True])
def test_page_limit_is_bounded(store: KeyValueStore, limit: int) -> None:
    with pytest.raises(ValueError, match="page limit"):
        store.items_page("ns", limit=limit)


def test_put_many_stores_a_batch(store: KeyValueStore) -> None:
    store.put("ns", "k0001", b"old", meta={"x": "y"})
    store.put_many("ns", [(f"k{i:04d}", f"v{i}".encode(), WHEN if i % 2 else None)
                          for i in range(2000)])
    entries = store.items("ns")
    assert len(entries) == 2000
    assert entries[1].value == b"v1"
    assert entries[1].expires_at == WHEN
    assert dict(entries[1].meta) == {}  # replaced whole, as put does
    assert entries[2].expires_at is None
    store.put_many("ns", [])
    assert len(store.items("ns")) == 2000


def test_put_many_is_all_or_nothing(store: KeyValueStore) -> None:
    with pytest.raises(ValueError, match="namespace"):
        store.put_many("bad ns", [("a", b"1", None)])
    with pytest.raises(ValueError, match="key must not be empty"):
        store.put_many("ns", [("a", b"1", None), ("", b"2", None)])
    assert store.items("ns") == []
