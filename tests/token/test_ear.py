"""EAR claims: tiers, status, and the exact shape Trustee's broker produces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from veritee.token.ear import (
    EMULATED,
    TRUST_CLAIMS,
    EarSettings,
    SubmodAppraisal,
    ear_claims,
    ear_status,
    submod_names,
    tier,
)

EXAMPLE = ("trustee", "attestation-service", "docs", "example.token.json")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "none"),
        (1, "none"),
        (-1, "none"),
        (2, "affirming"),
        (3, "affirming"),
        (31, "affirming"),
        (-2, "affirming"),
        (-32, "affirming"),
        (32, "warning"),
        (33, "warning"),
        (36, "warning"),
        (95, "warning"),
        (-33, "warning"),
        (-96, "warning"),
        (96, "contraindicated"),
        (97, "contraindicated"),
        (99, "contraindicated"),
        (127, "contraindicated"),
        (-97, "contraindicated"),
        (-128, "contraindicated"),
    ],
)
def test_tier(value: int, expected: str) -> None:
    assert tier(value) == expected


@pytest.mark.parametrize("value", [128, -129, 1000])
def test_tier_outside_i8(value: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        tier(value)


@pytest.mark.parametrize("value", [True, 2.0, "2", None])
def test_tier_needs_an_int(value: Any) -> None:
    with pytest.raises(TypeError):
        tier(value)


def test_ear_status() -> None:
    assert ear_status({}) == "none"
    assert ear_status({"hardware": 0, "configuration": 1}) == "none"
    assert ear_status({"hardware": 2, "executables": 3}) == "affirming"
    assert ear_status({"hardware": 2, "executables": 33}) == "warning"
    assert ear_status({"hardware": 97, "executables": 33, "configuration": 36}) == (
        "contraindicated"
    )
    assert ear_status({"hardware": -1, "executables": 2}) == "affirming"


def test_ear_status_rejects_unknown_claims() -> None:
    with pytest.raises(ValueError, match="unknown trust claim"):
        ear_status({"hardware": 2, "firmware": 2})


def test_trust_claims_order() -> None:
    assert TRUST_CLAIMS == (
        "instance-identity",
        "configuration",
        "executables",
        "file-system",
        "hardware",
        "runtime-opaque",
        "storage-opaque",
        "sourced-data",
    )


def test_reproduces_trustees_example_token(vectors: Path) -> None:
    example: dict[str, Any] = json.loads(vectors.parent.joinpath(*EXAMPLE).read_text())
    cpu0 = example["submods"]["cpu0"]
    vector = dict(reversed(list(cpu0["ear.trustworthiness-vector"].items())))  # any order in
    appraisal = SubmodAppraisal(
        name="cpu0",
        vector=vector,
        policy_id="default",
        annotated_evidence=cpu0["ear.veraison.annotated-evidence"],
    )
    settings = EarSettings(build="attestation-service 0.1.0")
    claims = ear_claims([appraisal], settings, now=example["iat"])
    # the upstream example predates the broker's iss extension; current code adds it
    assert claims == {**example, "iss": "CoCo-Attestation-Service"}
    assert list(claims) == ["eat_profile", "iat", "ear.verifier-id", "submods", "exp", "iss"]
    out = claims["submods"]["cpu0"]
    assert list(out) == list(cpu0)
    assert list(out["ear.trustworthiness-vector"]) == list(TRUST_CLAIMS)
    assert json.dumps(claims["submods"]) == json.dumps(example["submods"])


def test_defaults_follow_trustee_broker_config() -> None:
    settings = EarSettings()
    assert settings.profile == "tag:github.com,2024:confidential-containers/Trustee"
    assert settings.issuer == "CoCo-Attestation-Service"
    assert settings.developer == "https://confidentialcontainers.org"
    assert settings.build.startswith("veritee ")
    assert settings.duration_s == 300
    assert settings.verbose is True


def test_only_set_claims_in_ear_order_and_sorted_submods() -> None:
    gpu = SubmodAppraisal("gpu0", {"hardware": 2}, "default", {})
    cpu = SubmodAppraisal("cpu0", {"hardware": 97, "instance-identity": 2}, "default", {"t": 1})
    claims = ear_claims([gpu, cpu], EarSettings(duration_s=60), now=100)
    assert list(claims["submods"]) == ["cpu0", "gpu0"]
    assert claims["submods"]["cpu0"]["ear.trustworthiness-vector"] == {
        "instance-identity": 2,
        "hardware": 97,
    }
    assert list(claims["submods"]["cpu0"]["ear.trustworthiness-vector"]) == [
        "instance-identity",
        "hardware",
    ]
    assert claims["submods"]["cpu0"]["ear.status"] == "contraindicated"
    assert claims["submods"]["gpu0"]["ear.status"] == "affirming"
    assert claims["iat"] == 100
    assert claims["exp"] == 160


def test_extensions_become_appraisal_members() -> None:
    identifiers = {"name": "ear.trustee.identifiers", "key": -18, "value": {"validated": {}}}
    appraisal = SubmodAppraisal("cpu0", {"hardware": 2}, "default", {}, extensions=[identifiers])
    cpu0 = ear_claims([appraisal], EarSettings(), now=1)["submods"]["cpu0"]
    assert cpu0["ear.trustee.identifiers"] == {"validated": {}}
    assert list(cpu0)[-1] == "ear.trustee.identifiers"


@pytest.mark.parametrize(
    "extension",
    [
        {"name": "ear.status", "key": 1, "value": "affirming"},
        {"name": "ear.veritee.emulated", "key": 1, "value": False},
        {"name": "", "key": 1, "value": 1},
        {"key": 1, "value": 1},
        {"name": "x", "key": 1},
    ],
)
def test_bad_extensions(extension: dict[str, Any]) -> None:
    appraisal = SubmodAppraisal("cpu0", {"hardware": 2}, "default", {}, extensions=[extension])
    with pytest.raises(ValueError, match="cpu0"):
        ear_claims([appraisal], EarSettings(), now=1)


def test_emulated_is_marked_per_submod_and_at_the_top() -> None:
    real = SubmodAppraisal("cpu0", {"hardware": 2}, "default", {})
    fake = SubmodAppraisal("gpu0", {"hardware": 2}, "default", {}, emulated=True)
    claims = ear_claims([real, fake], EarSettings(), now=1)
    assert claims[EMULATED] is True
    assert claims["submods"]["gpu0"][EMULATED] is True
    assert EMULATED not in claims["submods"]["cpu0"]
    plain = ear_claims([real], EarSettings(), now=1)
    assert EMULATED not in plain
    assert not any(EMULATED in json.dumps(v) for v in plain.values())


def test_non_verbose_drops_additional_evidence_without_mutating_input() -> None:
    evidence = {
        "runtime_data_claims": {
            "nonce": "n",
            "tee-pubkey": {"kty": "EC"},
            "additional-evidence": "x",
        }
    }
    appraisal = SubmodAppraisal("cpu0", {"hardware": 2}, "default", evidence)
    terse = ear_claims([appraisal], EarSettings(verbose=False), now=1)
    runtime = terse["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["runtime_data_claims"]
    assert runtime == {"nonce": "n", "tee-pubkey": {"kty": "EC"}}
    assert "additional-evidence" in evidence["runtime_data_claims"]
    verbose = ear_claims([appraisal], EarSettings(), now=1)
    annotated = verbose["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert annotated == evidence
    assert annotated is not evidence



def test_claims_share_nothing_with_the_evidence_and_extensions() -> None:
    """The EAR holds copies: changing the claims never reaches the caller's evidence or
    extension values, nor the other way round (nested objects and lists included)."""
    evidence: dict[str, Any] = {"tdx": {"quote": {"body": {"mr_td": "aa"}}, "ids": [["x"]]}}
    value: dict[str, Any] = {"validated": {"container_images": ["busybox"]}}
    appraisal = SubmodAppraisal(
        "cpu0", {"hardware": 2}, "default", evidence,
        extensions=[{"name": "ear.trustee.identifiers", "key": -18, "value": value}],
    )
    claims = ear_claims([appraisal], EarSettings(), now=1)
    body = claims["submods"]["cpu0"]
    body["ear.veraison.annotated-evidence"]["tdx"]["quote"]["body"]["mr_td"] = "bb"
    body["ear.veraison.annotated-evidence"]["tdx"]["ids"][0].append("y")
    body["ear.trustee.identifiers"]["validated"]["container_images"].append("other")
    assert evidence == {"tdx": {"quote": {"body": {"mr_td": "aa"}}, "ids": [["x"]]}}
    assert value == {"validated": {"container_images": ["busybox"]}}
    evidence["tdx"]["quote"]["body"]["mr_td"] = "cc"
    again = ear_claims([appraisal], EarSettings(), now=1)["submods"]["cpu0"]
    assert again["ear.veraison.annotated-evidence"]["tdx"]["quote"]["body"]["mr_td"] == "cc"
    assert body["ear.veraison.annotated-evidence"]["tdx"]["quote"]["body"]["mr_td"] == "bb"


def test_invalid_appraisals() -> None:
    ok = SubmodAppraisal("cpu0", {"hardware": 2}, "default", {})
    with pytest.raises(ValueError, match="at least one appraisal"):
        ear_claims([], EarSettings(), now=1)
    with pytest.raises(ValueError, match="duplicate"):
        ear_claims([ok, ok], EarSettings(), now=1)
    with pytest.raises(ValueError, match="at least one policy claim"):
        ear_claims([SubmodAppraisal("cpu0", {}, "default", {})], EarSettings(), now=1)
    with pytest.raises(ValueError, match="unknown trust claim"):
        ear_claims([SubmodAppraisal("cpu0", {"bogus": 2}, "d", {})], EarSettings(), now=1)
    with pytest.raises(ValueError, match="outside"):
        ear_claims([SubmodAppraisal("cpu0", {"hardware": 300}, "d", {})], EarSettings(), now=1)
    with pytest.raises(ValueError, match="duration"):
        ear_claims([ok], EarSettings(duration_s=0), now=1)


def test_submod_names() -> None:
    assert submod_names([]) == []
    assert submod_names(["cpu"]) == ["cpu0"]
    assert submod_names(["cpu", "gpu", "gpu", "switch", "gpu", "cpu"]) == [
        "cpu0",
        "gpu0",
        "gpu1",
        "switch0",
        "gpu2",
        "cpu1",
    ]
