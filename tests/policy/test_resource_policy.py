"""veritee.policy.resource: KBS resource policies (data.policy.allow must be true)."""

from __future__ import annotations

from typing import Any

import pytest

from veritee.policy.engine import CompiledQuery, PolicyError
from veritee.policy.resource import RESOURCE_POLICY_ID, ResourcePolicy


def ear(status: str = "affirming", tee: str = "tdx") -> dict[str, Any]:
    return {
        "submods": {
            "cpu0": {"ear.status": status, "ear.veraison.annotated-evidence": {tee: {"svn": 1}}}
        }
    }


def allows(policy: ResourcePolicy, claims: Any, path: str = "repo/type/tag", **query: str) -> bool:
    repository, type_, tag = path.split("/")
    return policy.allows(claims, repository=repository, type_=type_, tag=tag, query=query)


def test_data_document() -> None:
    policy = ResourcePolicy("package policy\ndefault allow := false\n")
    assert policy.policy_id == RESOURCE_POLICY_ID
    assert policy.data(repository="r", type_="t", tag="g", query={"v": "1"}) == {
        "plugin": "resource",
        "resource-path": ["r", "t", "g"],
        "query": {"v": "1"},
    }
    legacy = ResourcePolicy("package policy\ndefault allow := false\n", legacy_data=True)
    assert legacy.data(repository="r", type_="t", tag="g", query={}) == {"resource-path": "r/t/g"}


def test_policy_sees_path_and_query() -> None:
    policy = ResourcePolicy(
        """package policy
import rego.v1
default allow := false
allow if {
    data.plugin == "resource"
    data["resource-path"] == ["default", "key", input.name]
    data.query.version == "2"
}
"""
    )
    assert allows(policy, {"name": "k1"}, "default/key/k1", version="2")
    assert not allows(policy, {"name": "k1"}, "default/key/k1", version="1")
    assert not allows(policy, {"name": "k1"}, "default/key/k2", version="2")
    assert not allows(policy, {"name": "k1"}, "default/key/k1")


def test_legacy_string_path() -> None:
    policy = ResourcePolicy(
        'package policy\ndefault allow = false\nallow { data["resource-path"] == "a/b/c" }\n',
        legacy_data=True,
    )
    assert allows(policy, {}, "a/b/c")
    assert not allows(policy, {}, "a/b/d")


@pytest.mark.parametrize(
    "rule",
    [
        "allow := 1",
        'allow := "true"',
        "allow := [true]",
        "allow := {}",
        "allow := null",
        "allow := true if input.never",
        "other := true",
    ],
)
def test_only_boolean_true_allows(rule: str) -> None:
    policy = ResourcePolicy(f"package policy\nimport rego.v1\n{rule}\n")
    assert allows(policy, ear()) is False


def test_true_allows() -> None:
    assert allows(ResourcePolicy("package policy\nallow := true\n"), {}) is True


def test_evaluation_error_raises() -> None:
    policy = ResourcePolicy("package policy\nimport rego.v1\nallow := true\nallow := false\n")
    with pytest.raises(PolicyError, match="multiple outputs") as caught:
        allows(policy, {})
    assert caught.value.policy_id == RESOURCE_POLICY_ID


def test_bad_policy_does_not_construct() -> None:
    with pytest.raises(PolicyError) as caught:
        ResourcePolicy("package policy\n\nallow if {\n  x := \n}\n")
    assert (caught.value.line, caught.value.column) == (4, 5)
    with pytest.raises(PolicyError, match="package policy"):
        ResourcePolicy("package kbs\nallow := true\n")


def test_bundles_are_cached_per_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    real = CompiledQuery

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(kwargs.get("data"))
        return real(*args, **kwargs)

    monkeypatch.setattr("veritee.policy.resource.CompiledQuery", counting)
    policy = ResourcePolicy("package policy\nallow := true\n", cache_size=2)
    for _ in range(3):
        allows(policy, {}, "a/b/c")
    assert len(built) == 1
    allows(policy, {}, "a/b/d")
    allows(policy, {}, "a/b/e")  # evicts a/b/c
    allows(policy, {}, "a/b/c")
    assert len(built) == 4


def test_allows_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PolicyError):
        ResourcePolicy("package policy\nallow if {\n")
    allows(ResourcePolicy("package policy\nallow := true\n"), ear())
    assert capfd.readouterr() == ("", "")
