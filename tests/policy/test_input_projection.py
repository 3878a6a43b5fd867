"""A policy gets only the input paths it can read, and its verdict never changes for it.

The differential tests evaluate every Trustee policy we carry and our defaults twice per
input, on the whole claims and on their projection, over many inputs (each leaf changed,
each member removed), and require the same bindings or the same error.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from datadir import TRUSTEE

from veritee.as_.service import transform_claims
from veritee.policy.attestation import (
    DEFAULT_POLICIES,
    OUTPUT_RULES,
    AttestationPolicies,
    _default_text,
)
from veritee.policy.engine import PolicyError, evaluate
from veritee.policy.projection import input_paths, project, projected_input
from veritee.policy.resource import ResourcePolicy
from veritee.store.kv import MemoryStore, SqliteStore

INTEL_VENDOR = "939a7233f79c4ca9940a0db3957f0607"
CONTAINERS = [
    {"OCI": {"Annotations": {"io.kubernetes.cri.image-name": "busybox"},
             "Process": {"User": {"UID": 0}}}},
]
TDX: dict[str, Any] = {
    "tdx": {
        "quote": {
            "header": {"tee_type": "81000000", "vendor_id": INTEL_VENDOR, "version": "0400"},
            "body": {"mr_td": "aa" * 48, "rtmr_1": "11" * 48, "rtmr_2": "22" * 48,
                     "mr_seam": "33" * 48, "xfam": "e702060000000000"},
        },
        "td_attributes": {"debug": False, "septve_disable": True},
        "tcb_status": "UpToDate",
        "collateral_expiration_status": "0",
        "advisory_ids": ["INTEL-SA-00001"],
        "uefi_event_logs": [{"type_name": "EV_SEPARATOR", "details": {}}],
    },
    "init_data": "00" * 48,
    "init_data_claims": {"agent_policy_claims": {"containers": CONTAINERS}},
    "report_data": "01" * 64,
    "runtime_data_claims": {"nonce": "n", "tee-pubkey": {"kty": "EC"}},
}
SAMPLE: dict[str, Any] = {
    "sample": {"svn": "1", "report_data": "cmVwb3J0", "launch_digest": "abcde",
               "platform_version": {"major": 1, "minor": 4}, "debug": False},
    "report_data": "cmVwb3J0",
    "runtime_data_claims": {"nonce": "n"},
}
SNP: dict[str, Any] = {
    "snp": {"measurement": "44" * 48, "policy_debug_allowed": False, "policy_migrate_ma": False,
            "reported_tcb_bootloader": 3, "reported_tcb_microcode": 209,
            "reported_tcb_snp": 20, "reported_tcb_tee": 0, "platform_smt_enabled": True},
    "report_data": "02" * 64,
}
RVS: dict[str, Any] = {
    "mr_td": ["aa" * 48], "rtmr_1": ["11" * 48], "rtmr_2": ["22" * 48],
    "xfam": ["e702060000000000"], "launch_digest": ["abcde"], "svn": ["1"],
    "major_version": 1, "minimum_minor_version": 0, "snp_launch_measurement": ["44" * 48],
    "snp_bootloader": [3], "snp_microcode": [209], "snp_snp_svn": [20], "snp_tee_svn": [0],
}


class StaticValues:
    def snapshot(self) -> tuple[int, Mapping[str, Any]]:
        return 1, RVS

    def lookup(self, names: Iterable[str]) -> tuple[int, Mapping[str, Any]]:
        return 1, {n: RVS[n] for n in names if n in RVS}


def _trustee_policies() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(TRUSTEE.rglob("*.rego")):
        if "kbs" in path.relative_to(TRUSTEE).parts:
            continue  # resource policies: their input is a token, not claims
        text = path.read_text("utf-8")
        if text.lstrip().startswith("package policy") or "\npackage policy" in text:
            out[str(path.relative_to(TRUSTEE))] = text
    return out


def _ours() -> dict[str, str]:
    return {name: _default_text(filename) for name, filename in DEFAULT_POLICIES.items()}


def _tdx_from_trustee_verifier() -> dict[str, Any]:
    path = TRUSTEE / "deps/verifier/test_data/parse_tdx_claims_expected.json"
    claims = json.loads(path.read_text("utf-8"))
    return dict(transform_claims("tdx", claims, runtime_data_claims=None, init_data_claims=None))


def _variants(claims: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``claims``, then one change at every leaf, then each member of every object removed."""
    yield claims

    def paths(value: Any, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        if isinstance(value, dict):
            for key, item in value.items():
                yield (*prefix, key), item
                yield from paths(item, (*prefix, key))

    for path, value in list(paths(claims, ())):
        changed: Any
        if isinstance(value, bool):
            changed = not value
        elif isinstance(value, int):
            changed = value + 1
        elif isinstance(value, str):
            changed = value[::-1] + "x"
        elif isinstance(value, dict):
            changed = None
        else:
            changed = []
        for new in (changed, "<removed>"):
            out = copy.deepcopy(claims)
            parent = out
            for key in path[:-1]:
                parent = parent[key]
            if new == "<removed>":
                del parent[path[-1]]
            else:
                parent[path[-1]] = new
            yield out


def _outcome(compiled: Any, claims: Any) -> Any:
    try:
        return evaluate(compiled, claims)
    except PolicyError as exc:
        return ("error", exc.message)


POLICIES = {**_ours(), **_trustee_policies()}
INPUTS = {"tdx": TDX, "sample": SAMPLE, "snp": SNP}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_projection_never_changes_a_verdict(name: str) -> None:
    text = POLICIES[name]
    policies = AttestationPolicies(MemoryStore(), StaticValues())
    policies.set_policy("p", text)
    _, compiled = policies.compiled("p", text)
    paths = input_paths(text, OUTPUT_RULES)
    inputs = {**INPUTS, "trustee-tdx": _tdx_from_trustee_verifier()}
    for claims in (v for base in inputs.values() for v in _variants(base)):
        reduced = claims if paths is None else project(claims, paths)
        assert _outcome(compiled, reduced) == _outcome(compiled, claims), (name, claims)


def test_the_policies_we_ship_and_trustees_are_projected() -> None:
    """The projection is not vacuous: the policies in use get a bounded input."""
    for name in ("default_cpu", "default_gpu",
                 "attestation-service/src/ear_token/ear_default_policy_cpu.rego"):
        assert input_paths(POLICIES[name], OUTPUT_RULES) is not None, name
    reduced = projected_input(POLICIES["default_cpu"], TDX, outputs=OUTPUT_RULES)
    assert reduced == {
        "tdx": {
            "quote": {
                "header": {"tee_type": "81000000", "vendor_id": INTEL_VENDOR},
                "body": {"mr_td": "aa" * 48, "rtmr_1": "11" * 48, "rtmr_2": "22" * 48},
            },
            "td_attributes": {"debug": False},
            "tcb_status": "UpToDate",
        },
        "init_data_claims": {"agent_policy_claims": {"containers": CONTAINERS}},
    }


@pytest.mark.parametrize(
    "text",
    [
        "package policy\nx := input\n",
        "package policy\nx := walk(input)\n",
        "package policy\nx := count(input[k])\n",
        'package policy\nx := object.get(input, "tdx", {})\n',
        "package policy\nimport input.tdx as t\nx := t.quote\n",
        'package policy\nx := y with input as {"a": 1}\ny := input.a\n',
        'package policy\nx := $"{input.tdx}"\ny := input.a\n',
    ],
)
def test_unbounded_input_use_is_not_projected(text: str) -> None:
    assert input_paths(text, OUTPUT_RULES) is None


ALIAS = "package policy\nimport rego.v1\nevidence := input.tdx if { input.tdx }\n"


@pytest.mark.parametrize(
    ("use", "kept"),
    [
        # the aliased value used whole in any way keeps all of input.tdx
        ("n := count(evidence)", TDX["tdx"]),
        ("n := [k | some k, _ in evidence]", TDX["tdx"]),
        ("n := json.marshal(evidence)", TDX["tdx"]),
        ("n := f(evidence)\nf(x) := x", TDX["tdx"]),
        ('n := evidence == {"a": 1}', TDX["tdx"]),
        ("n := data.policy.evidence.quote", TDX["tdx"]),
        ("n if { some evidence in [1]; evidence == 1 }", TDX["tdx"]),
        # a dynamic key below a static path keeps that subtree
        ('n := [v | v := evidence.quote[k]]', {"quote": TDX["tdx"]["quote"]}),
        ('n := object.get(evidence, "tcb_status", "")', {"tcb_status": "UpToDate"}),
        ("n := evidence.td_attributes.debug",
         {"td_attributes": {"debug": False}}),
    ],
)
def test_alias_uses(use: str, kept: dict[str, Any]) -> None:
    reduced = projected_input(ALIAS + use + "\n", TDX, outputs=OUTPUT_RULES)
    assert reduced is not None
    assert reduced["tdx"] == kept


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        # a path used as a value (set literal, function argument, comparison) is kept whole
        ("package policy\nx := {input.tdx}\n", TDX["tdx"]),
        ("package policy\nx := count(input.tdx)\n", TDX["tdx"]),
        ("package policy\nimport rego.v1\nx if { input.tdx == {} }\n", TDX["tdx"]),
        ("package policy\nimport rego.v1\nx if { not input.tdx }\n", TDX["tdx"]),
        ("package policy\nx := input.tdx.quote[0]\n", {"quote": TDX["tdx"]["quote"]}),
        # only a bare condition of an if-body is an existence test
        ("package policy\nimport rego.v1\nx if {\n\tinput.tdx\n}\n", {}),
        ("package policy\nimport rego.v1\nx if {\n\ttrue\n\tinput.tdx\n\ttrue\n}\n", {}),
        ('package policy\nhardware := input["tdx"].tcb_status\n', {"tcb_status": "UpToDate"}),
        ("package policy\n# input.tdx.advisory_ids in a comment\nresult := input.tdx.tcb_status\n",
         {"tcb_status": "UpToDate"}),
    ],
)
def test_path_uses(text: str, kept: dict[str, Any]) -> None:
    reduced = projected_input(text, TDX, outputs=OUTPUT_RULES)
    assert reduced is not None
    assert reduced["tdx"] == kept


def test_a_different_input_gives_a_different_verdict() -> None:
    """The projection keeps what decides the verdict: debug and mr_td still count."""
    policies = AttestationPolicies(MemoryStore(), StaticValues())
    good = policies.appraise("default", "cpu", TDX).vector
    debug = copy.deepcopy(TDX)
    debug["tdx"]["td_attributes"]["debug"] = True
    other_td = copy.deepcopy(TDX)
    other_td["tdx"]["quote"]["body"]["mr_td"] = "bb" * 48
    assert good["configuration"] == 2
    assert good["executables"] == 3
    assert policies.appraise("default", "cpu", debug).vector["configuration"] == 96
    assert policies.appraise("default", "cpu", other_td).vector["executables"] == 3  # rtmrs
    other_td["tdx"]["quote"]["body"]["rtmr_2"] = "cc" * 48
    assert policies.appraise("default", "cpu", other_td).vector["executables"] == 33


def test_a_replaced_policy_gets_the_paths_it_reads() -> None:
    """The paths are per policy text: a new text reading another member sees it."""
    policies = AttestationPolicies(MemoryStore(), StaticValues())
    policies.set_policy(
        "p", 'package policy\nimport rego.v1\nhardware := 2 if input.tdx.tcb_status == "UpToDate"\n'
    )
    assert policies.appraise("p", "cpu", TDX).vector == {"hardware": 2}
    policies.set_policy(
        "p", "package policy\nimport rego.v1\nhardware := 3 if count(input.tdx.advisory_ids) == 1\n"
    )
    assert policies.appraise("p", "cpu", TDX).vector == {"hardware": 3}


def test_a_queried_rule_that_aliases_input_keeps_it_whole() -> None:
    """``extensions := input.x`` leaves the policy: all of input.x reaches the query."""
    policies = AttestationPolicies(MemoryStore(), StaticValues())
    text = (
        "package policy\nimport rego.v1\ndefault hardware := 2\n"
        "trust_claims := {\"hardware\": hardware}\n"
        "extensions := input.tdx.ext if true\n"
    )
    policies.set_policy("p", text)
    ext = [{"name": "n", "key": -70000, "value": {"deep": [1, {"x": "y"}]}}]
    claims = {"tdx": {"ext": ext}, "other": 1}
    assert policies.appraise("p", "cpu", claims).extensions == ext
    assert projected_input(text, claims, outputs=OUTPUT_RULES) == {"tdx": {"ext": ext}}


def test_a_policy_replaced_through_another_sqlite_connection_is_seen(tmp_path: Path) -> None:
    """Two services on one SQLite file: the bundle and the paths follow the stored text."""
    with SqliteStore(tmp_path / "s.db") as first, SqliteStore(tmp_path / "s.db") as second:
        one = AttestationPolicies(first, StaticValues())
        two = AttestationPolicies(second, StaticValues())
        one.set_policy(
            "p",
            'package policy\nimport rego.v1\nhardware := 2 if input.tdx.tcb_status == "UpToDate"\n',
        )
        assert two.appraise("p", "cpu", TDX).vector == {"hardware": 2}
        one.set_policy(
            "p", "package policy\nimport rego.v1\nhardware := 3 if input.tdx.quote.body.mr_seam\n"
        )
        assert two.appraise("p", "cpu", TDX).vector == {"hardware": 3}


def _token(claims: dict[str, Any]) -> dict[str, Any]:
    return {
        "eat_profile": "tag:github.com,2024:confidential-containers/Trustee",
        "iat": 1, "exp": 301, "iss": "CoCo-Attestation-Service",
        "ear.verifier-id": {"developer": "https://confidentialcontainers.org", "build": "b"},
        "submods": {"cpu0": {
            "ear.status": "affirming",
            "ear.trustworthiness-vector": {"executables": 3, "hardware": 2, "configuration": 2},
            "ear.appraisal-policy-id": "default",
            "ear.veraison.annotated-evidence": claims,
        }},
    }


RESOURCE_POLICIES = {
    str(path.relative_to(TRUSTEE)): path.read_text("utf-8")
    for path in sorted((TRUSTEE / "kbs").rglob("*.rego"))
}


@pytest.mark.parametrize("name", sorted(RESOURCE_POLICIES))
def test_resource_policy_verdicts_never_change(name: str) -> None:
    """KBS resource policies read a token: the same verdict on the whole and the projection."""
    text = RESOURCE_POLICIES[name]
    policy = ResourcePolicy(text)
    compiled = policy._compiled(policy.data(repository="r", type_="t", tag="k", query={}))
    paths = input_paths(text, frozenset({"allow"}))
    for base in (_token(TDX), _token(SAMPLE)):
        for claims in _variants(base):
            reduced = claims if paths is None else project(claims, paths)
            assert _outcome(compiled, reduced) == _outcome(compiled, claims), (name, claims)
            assert policy.allows(claims, repository="r", type_="t", tag="k") is (
                _outcome(compiled, claims) == {"allow": [True]}
            )


def test_trustees_default_resource_policy_reads_one_member_of_the_token() -> None:
    text = RESOURCE_POLICIES["kbs/sample_policies/default.rego"]
    assert projected_input(text, _token(TDX), outputs=frozenset({"allow"})) == {
        "submods": {"cpu0": {"ear.veraison.annotated-evidence": {}}}
    }
