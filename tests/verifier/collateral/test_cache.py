"""The per-item expiry cache and the cache-or-fetch rule, without any network."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from veritee.errors import CollateralError, CollateralMissing
from veritee.pem import load_certificates
from veritee.store.kv import MemoryStore, SqliteStore
from veritee.verifier.collateral.anchor import Anchor
from veritee.verifier.collateral.cache import CollateralCache, Fetched, obtain, window_of
from veritee.verifier.collateral.http import safe_url
from veritee.verifier.intel_root import intel_root_ca

T0 = dt.datetime(2023, 6, 8, tzinfo=dt.UTC)
T1 = dt.datetime(2023, 7, 8, tzinfo=dt.UTC)
MID = dt.datetime(2023, 6, 20, tzinfo=dt.UTC)
INTEL = Anchor.of_der(intel_root_ca())
# A test root reuses the vendor's name; only the fingerprint tells them apart.
TEST = Anchor("ab" * 32, INTEL.name)


def fetched(
    value: bytes,
    expires: dt.datetime | None,
    start: dt.datetime | None = None,
    anchor: Anchor = INTEL,
) -> Fetched:
    return Fetched(value, expires, start, anchor, "http://pccs.test/x")


def cache_with_item() -> CollateralCache:
    cache = CollateralCache(MemoryStore())
    cache.put("intel-pck-crl", "platform", fetched(b"crl", T1, T0), what="PCK CRL (platform CA)")
    return cache


def test_served_only_inside_its_window() -> None:
    cache = cache_with_item()
    assert cache.get("intel-pck-crl", "platform", at=MID, root=INTEL) == b"crl"
    assert cache.get("intel-pck-crl", "platform", at=T0, root=INTEL) == b"crl"
    assert cache.get("intel-pck-crl", "platform", at=T1, root=INTEL) is None  # nextUpdate
    assert (
        cache.get("intel-pck-crl", "platform", at=T0 - dt.timedelta(seconds=1), root=INTEL) is None
    )
    assert cache.get("intel-pck-crl", "processor", at=MID, root=INTEL) is None


def test_items_are_kept_apart_by_root() -> None:
    cache = CollateralCache(MemoryStore(), test_roots=True)
    cache.put("k", "x", fetched(b"real", T1, T0), what="thing")
    assert cache.get("k", "x", at=MID, root=TEST) is None
    cache.put("k", "x", fetched(b"emulated", T1, T0, TEST), what="thing")
    assert cache.get("k", "x", at=MID, root=INTEL) == b"real"
    assert cache.get("k", "x", at=MID, root=TEST) == b"emulated"
    assert sorted((i.root, i.root_name) for i in cache.entries()) == sorted(
        [(INTEL.fingerprint, INTEL.name), (TEST.fingerprint, INTEL.name)]
    )


def test_default_cache_refuses_test_root_items() -> None:
    cache = CollateralCache(MemoryStore())
    assert INTEL.vendor
    assert not TEST.vendor
    assert cache.put("k", "x", fetched(b"emulated", T1, T0, TEST), what="thing") is False
    assert cache.entries() == []
    assert cache.put("k", "x", fetched(b"real", T1, T0), what="thing") is True


def test_item_without_expiry_is_always_valid() -> None:
    cache = CollateralCache(MemoryStore())
    cache.put("k", "x", fetched(b"v", None), what="thing")
    assert cache.get("k", "x", at=dt.datetime(2999, 1, 1, tzinfo=dt.UTC), root=INTEL) == b"v"


def test_entries_and_states(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "c.db") as store:
        cache = CollateralCache(store)
        cache.put("b-kind", "k", fetched(b"12345", T1, T0), what="B item")
        cache.put("a-kind", "k", fetched(b"1", None), what="A item")
        store.put("collateral", "foreign", b"")  # no kind/key metadata: not listed
        store.put("collateral", "old/k", b"", meta={"kind": "old", "key": "k"})  # no root
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
        return fetched(b"fresh", T1, T0)

    args = {
        "kind": "k",
        "key": "x",
        "what": "the thing",
        "offline": False,
        "fetch": fetch,
        "roots": (INTEL,),
    }
    first = obtain(cache, at=MID, **args)  # type: ignore[arg-type]
    second = obtain(cache, at=MID, **args)  # type: ignore[arg-type]
    assert (first.source, second.source, second.value) == ("network", "cache", b"fresh")
    assert first.in_cache
    assert second.in_cache
    assert len(calls) == 1
    third = obtain(cache, at=T1, **args)  # type: ignore[arg-type]
    assert third.source == "network"
    assert len(calls) == 2


def test_obtain_without_cache_always_fetches() -> None:
    got = obtain(
        None,
        kind="k",
        key="x",
        what="w",
        at=MID,
        offline=False,
        fetch=lambda: fetched(b"v", T1),
        roots=(INTEL,),
    )
    assert (got.source, got.in_cache) == ("network", False)


def test_obtain_refuses_an_item_under_another_root_and_caches_nothing() -> None:
    cache = CollateralCache(MemoryStore(), test_roots=True)
    with pytest.raises(CollateralError) as caught:
        obtain(
            cache,
            kind="k",
            key="x",
            what="the tcbInfo",
            at=MID,
            offline=False,
            fetch=lambda: fetched(b"emulated", T1, T0, TEST),
            roots=(INTEL,),
        )
    message = str(caught.value)
    assert "the tcbInfo" in message
    assert "http://pccs.test/x" in message
    assert f"non-vendor (test) root '{INTEL.name}' (SHA-256 {TEST.fingerprint})" in message
    assert f"not to the vendor root '{INTEL.name}' (SHA-256 {INTEL.fingerprint})" in message
    assert cache.entries() == []


def test_obtain_looks_under_every_trusted_root() -> None:
    cache = CollateralCache(MemoryStore(), test_roots=True)
    cache.put("k", "x", fetched(b"emulated", T1, T0, TEST), what="thing")
    got = obtain(
        cache,
        kind="k",
        key="x",
        what="w",
        at=MID,
        offline=True,
        fetch=never,
        roots=(INTEL, TEST),
    )
    assert (got.source, got.value) == ("cache", b"emulated")
    with pytest.raises(CollateralMissing):
        obtain(
            cache, kind="k", key="x", what="w", at=MID, offline=True, fetch=never, roots=(INTEL,)
        )


def test_test_root_item_fetched_into_the_default_cache_is_handed_out_but_not_kept() -> None:
    cache = CollateralCache(MemoryStore())
    got = obtain(
        cache,
        kind="k",
        key="x",
        what="w",
        at=MID,
        offline=False,
        fetch=lambda: fetched(b"emulated", T1, T0, TEST),
        roots=(TEST,),
    )
    assert (got.value, got.source, got.in_cache) == (b"emulated", "network", False)
    assert cache.entries() == []


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
            roots=(INTEL,),
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
