"""Bulky claims (event logs) reach exactly the policies that can read them."""

from __future__ import annotations

from veritee.policy.attestation import AttestationPolicies
from veritee.policy.pruning import _prunable
from veritee.policy.pruning import pruned_input as _pruned_input
from veritee.rvps.store import ReferenceValueStore
from veritee.store.kv import MemoryStore

CLAIMS = {"tdx": {"uefi_event_logs": [{"type_name": "EV_SEPARATOR"}], "quote": {"x": 1}}}


def test_static_policy_without_the_member_does_not_get_it() -> None:
    text = "package policy\nhardware := 2 if { input.tdx.quote.x == 1 }\n"
    assert _prunable(text) == ("uefi_event_logs",)
    assert _pruned_input(text, CLAIMS) == {"tdx": {"quote": {"x": 1}}}


def test_policies_that_name_or_may_reach_it_get_everything() -> None:
    for text in (
        "package policy\nx := count(input.tdx.uefi_event_logs)\n",
        "package policy\nx := count(input[k])\n",
        "package policy\nx := walk(input)\n",
        "package policy\nx := input\n",
        'package policy\ny := object.get(input, "tdx", {})\n',
    ):
        assert _prunable(text) == (), text
        assert _pruned_input(text, CLAIMS) == CLAIMS


def test_a_policy_that_reads_the_event_log_sees_it() -> None:
    policies = AttestationPolicies(MemoryStore(), ReferenceValueStore(MemoryStore()))
    policies.set_policy(
        "p",
        "package policy\nimport rego.v1\n"
        "default executables := 33\n"
        "executables := 3 if { count(input.tdx.uefi_event_logs) == 1 }\n",
    )
    assert policies.appraise("p", "cpu", CLAIMS).vector == {"executables": 3}


def test_a_hash_inside_a_string_does_not_hide_dynamic_input_use() -> None:
    text = 'package policy\nx := concat("#", [input[k] | k := "tdx"])\n'
    assert _prunable(text) == ()
    commented = "package policy\n# input[k] in a comment only\nx := input.tdx.quote\n"
    assert _prunable(commented) == ("uefi_event_logs",)


def test_nested_members_in_a_token_are_pruned_too() -> None:
    token = {"submods": {"cpu0": {"ear.veraison.annotated-evidence": CLAIMS}}}
    text = 'package policy\nallow if input.submods.cpu0["ear.status"] == "affirming"\n'
    assert _pruned_input(text, token) == {
        "submods": {"cpu0": {"ear.veraison.annotated-evidence": {"tdx": {"quote": {"x": 1}}}}}
    }
