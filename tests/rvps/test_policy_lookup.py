"""Attestation policies over a real reference value store: changes are seen at once, and
the named lookup at 10^5 values gives the verdicts of the whole snapshot."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from veritee.policy.attestation import AttestationPolicies
from veritee.rvps.model import ReferenceValue
from veritee.rvps.names import reference_names
from veritee.rvps.store import ReferenceValueStore
from veritee.store.kv import KeyValueStore, MemoryStore, SqliteStore
from veritee.token.ear import ear_status

INTEL_VENDOR = "939a7233f79c4ca9940a0db3957f0607"
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
DEFAULT_CPU = resources.files("veritee.policy").joinpath("defaults/default_cpu.rego").read_text()


def tdx_claims(mr_td: str = "aa" * 48) -> dict[str, Any]:
    return {
        "tdx": {
            "quote": {
                "header": {"tee_type": "81000000", "vendor_id": INTEL_VENDOR, "version": "0400"},
                "body": {"mr_td": mr_td, "rtmr_1": "11" * 48, "rtmr_2": "22" * 48},
            },
            "td_attributes": {"debug": False},
            "tcb_status": "UpToDate",
        },
        "report_data": "00" * 64,
        "runtime_data_claims": None,
    }


def rv(name: str, value: object, expiration: dt.datetime = LATER) -> ReferenceValue:
    return ReferenceValue(name=name, value=value, expiration=expiration)  # type: ignore[arg-type]


class Named:
    """The lookup path: the values ``text`` can name, read one by one."""

    def __init__(self, store: ReferenceValueStore, text: str) -> None:
        names = reference_names(text)
        assert names is not None
        self.store, self.names = store, names

    def snapshot(self) -> tuple[int, Mapping[str, Any]]:
        return self.store.lookup(self.names)


def status(policies: AttestationPolicies, claims: dict[str, Any] | None = None) -> str:
    return ear_status(policies.appraise("default", "cpu", claims or tdx_claims()).vector)


def scenario(writer: ReferenceValueStore, policies: AttestationPolicies) -> list[str]:
    """Verdicts through a series of changes, each made after an attestation."""
    seen = [status(policies)]
    writer.register([rv("mr_td", ["aa" * 48])])
    seen.append(status(policies))
    writer.register([rv("mr_td", ["bb" * 48])])
    seen.append(status(policies))
    seen.append(status(policies, tdx_claims("bb" * 48)))
    writer.delete("mr_td")
    seen.append(status(policies, tdx_claims("bb" * 48)))
    writer.register([rv("rtmr_1", ["11" * 48]), rv("rtmr_2", ["22" * 48])])
    seen.append(status(policies))
    return seen


EXPECTED = ["warning", "affirming", "warning", "affirming", "warning", "affirming"]


def test_changes_from_another_handle_are_seen_at_once(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "rv.db") as reader_kv, SqliteStore(tmp_path / "rv.db") as kv:
        reader = ReferenceValueStore(reader_kv)
        policies = AttestationPolicies(MemoryStore(), reader)
        assert scenario(ReferenceValueStore(kv), policies) == EXPECTED


def filled(kv: KeyValueStore, count: int) -> ReferenceValueStore:
    store = ReferenceValueStore(kv)
    store.register(rv(f"filler/{i:06d}", [f"{i:096x}"]) for i in range(count))
    return store


@pytest.mark.parametrize("count", [0, 100_000])
def test_named_lookup_gives_the_verdicts_of_the_whole_snapshot(count: int) -> None:
    store = filled(MemoryStore(), count)
    policies = AttestationPolicies(MemoryStore(), store)  # looks up only what it names
    assert scenario(store, policies) == EXPECTED


def test_named_lookup_sees_an_expired_value_go(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "rv.db") as kv:
        store = filled(kv, 1000)
        named = Named(store, DEFAULT_CPU)
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
        store.register([rv("mr_td", ["aa" * 48], soon)])
        first, values = named.snapshot()
        assert dict(values) == {"mr_td": ["aa" * 48]}
        later, values = store.lookup(named.names, at=soon + dt.timedelta(seconds=1))
        assert (later != first, dict(values)) == (True, {})


def _names(items: Iterable[ReferenceValue]) -> list[str]:
    return [item.name for item in items]


def test_a_policy_with_unbounded_names_gets_every_value() -> None:
    text = DEFAULT_CPU.replace('"mr_td")', 'input.name)', 1)
    assert reference_names(text) is None
    store = filled(MemoryStore(), 3)
    policies = AttestationPolicies(MemoryStore(), store)
    policies.set_policy("default_cpu", text)
    store.register([rv("mr_td", ["aa" * 48])])
    claims = tdx_claims() | {"name": "mr_td"}
    assert status(policies, claims) == "affirming"
    assert _names(store.list()) == ["filler/000000", "filler/000001", "filler/000002", "mr_td"]
