"""The per-item expiry cache and the cache-or-fetch rule, without any network."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from veritee.errors import CollateralMissing
from veritee.pem import load_certificates
from veritee.store.kv import MemoryStore, SqliteStore
from veritee.verifier.collateral.cache import CollateralCache, Fetched, obtain, window_of
from veritee.verifier.collateral.http import safe_url

T0 = dt.datetime(2023, 6, 8, tzinfo=dt.UTC)
T1 = dt.datetime(2023, 7, 8, tzinfo=dt.UTC)
MID = dt.datetime(2023, 6, 20, tzinfo=dt.UTC)


def cache_with_item() -> CollateralCache:
    cache = CollateralCache(MemoryStore())
    cache.put("intel-pck-crl", "platform", Fetched(b"crl", T1, T0), what="PCK CRL (platform CA)")
    return cache


def test_served_only_inside_its_window() -> None:
    cache = cache_with_item()
    assert cache.get("intel-pck-crl", "platform", at=MID) == b"crl"
    assert cache.get("intel-pck-crl", "platform", at=T0) == b"crl"
    assert cache.get("intel-pck-crl", "platform", at=T1) is None  # expired at nextUpdate
    assert cache.get("intel-pck-crl", "platform", at=T0 - dt.timedelta(seconds=1)) is None
    assert cache.get("intel-pck-crl", "processor", at=MID) is None


def test_item_without_expiry_is_always_valid() -> None:
    cache = CollateralCache(MemoryStore())
    cache.put("k", "x", Fetched(b"v", None), what="thing")
    assert cache.get("k", "x", at=dt.datetime(2999, 1, 1, tzinfo=dt.UTC)) == b"v"


def test_entries_and_states(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "c.db") as store:
        cache = CollateralCache(store)
        cache.put("b-kind", "k", Fetched(b"12345", T1, T0), what="B item")
        cache.put("a-kind", "k", Fetched(b"1", None), what="A item")
        store.put("collateral", "foreign", b"")  # no kind/key metadata: not listed
        items = cache.entries()
    assert [(i.kind, i.key, i.what, i.size) for i in items] == [
        ("a-kind", "k", "A item", 1),
        ("b-kind", "k", "B item", 5),
    ]
    item = items[1]
    assert (item.valid_from, item.expires_at) == (T0, T1)
    assert [item.state(t) for t in (T0 - dt.timedelta(days=1), MID, T1)] == [
        "not-yet-valid",
        "valid",
        "expired",
    ]
    shown = item.to_json(MID)
    assert shown["expires"] == "2023-07-08T00:00:00Z"
    assert shown["valid_from"] == "2023-06-08T00:00:00Z"
    assert shown["state"] == "valid"
    assert str(shown["fetched"]).endswith("Z")


def test_obtain_fetches_once_then_serves_from_cache() -> None:
    cache = CollateralCache(MemoryStore())
    calls: list[int] = []

    def fetch() -> Fetched:
        calls.append(1)
        return Fetched(b"fresh", T1, T0)

    args = {"kind": "k", "key": "x", "what": "the thing", "offline": False, "fetch": fetch}
    first = obtain(cache, at=MID, **args)  # type: ignore[arg-type]
    second = obtain(cache, at=MID, **args)  # type: ignore[arg-type]
    assert (first.source, second.source, second.value) == ("network", "cache", b"fresh")
    assert len(calls) == 1
    third = obtain(cache, at=T1, **args)  # type: ignore[arg-type]
    assert third.source == "network"
    assert len(calls) == 2


def test_obtain_without_cache_always_fetches() -> None:
    got = obtain(
        None, kind="k", key="x", what="w", at=MID, offline=False, fetch=lambda: Fetched(b"v", T1)
    )
    assert got.source == "network"


def never() -> Fetched:
    raise AssertionError("offline mode must not fetch")


@pytest.mark.parametrize(
    ("cache", "at", "reason"),
    [
        (None, MID, "no cache configured"),
        (CollateralCache(MemoryStore()), MID, "not in the cache"),
        (cache_with_item(), T1, "expired at 2023-07-08T00:00:00Z"),
        (cache_with_item(), T0 - dt.timedelta(days=1), "valid only from 2023-06-08T00:00:00Z"),
    ],
)
def test_obtain_offline_names_the_item_and_the_reason(
    cache: CollateralCache | None, at: dt.datetime, reason: str
) -> None:
    with pytest.raises(CollateralMissing) as caught:
        obtain(
            cache,
            kind="intel-pck-crl",
            key="platform",
            what="PCK CRL (platform CA)",
            at=at,
            offline=True,
            fetch=never,
        )
    assert caught.value.what == "PCK CRL (platform CA)"
    assert reason in str(caught.value)


def test_window_of_takes_latest_start_and_earliest_end(vectors: Path) -> None:
    chain = (vectors / "go-tdx-guest" / "derived" / "tcb_info_issuer_chain.pem").read_bytes()
    certs = load_certificates(chain)
    start, end = window_of(certs, not_before=[T0, None], not_after=[None])
    assert start == T0
    assert end == dt.datetime(2025, 5, 21, 10, 50, 10, tzinfo=dt.UTC)  # TCB Signing notAfter
    assert window_of([], not_before=[T0], not_after=[T1, MID]) == (T0, MID)
    assert window_of([]) == (None, None)


def test_safe_url_drops_credentials() -> None:
    assert safe_url("https://u:p@pccs.example:8081/x?y=1") == "https://pccs.example:8081/x?y=1"
    assert safe_url("https://pccs.example/x") == "https://pccs.example/x"
