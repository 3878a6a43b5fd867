"""reference_names: the reference values a policy can look up, or None when unbounded."""

from __future__ import annotations

from importlib import resources

import pytest

from veritee.policy.engine import CompiledQuery, evaluate
from veritee.rvps.names import reference_names

RV_MODULE = """package policy

query_reference_value(id) := value if {
	value := data.reference[id]
} else := null
"""

HEAD = "package policy\n\nimport rego.v1\n\n"


def test_default_policies() -> None:
    text = resources.files("veritee.policy").joinpath("defaults/default_cpu.rego").read_text()
    assert reference_names(text) == frozenset({
        "mr_td", "rtmr_1", "rtmr_2", "tdx_pcr11", "mr_enclave",
        "snp_launch_measurement", "snp_pcr11", "launch_digest",
    })


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ('ok if "a" in query_reference_value("svn")', {"svn"}),
        ("ok if query_reference_value(`raw/name`)", {"raw/name"}),
        ("ok if data.reference.svn == 1", {"svn"}),
        ('ok if data.reference["a/b"] == 1', {"a/b"}),
        ('ok if data.policy.x == 1\nx := 1', set()),
        ("ok if input.data.x == data.reference.y", {"y"}),
        ("# query_reference_value(input.x) in a comment\nok := true", set()),
        ('f(v, n) if v in query_reference_value(n)\nok if f(input.a, "n1")\nok if f(1, "n2")',
         {"n1", "n2"}),
        ('f(n) := query_reference_value(n)\ng(m) := f(m)\nok if g("deep") == 1', {"deep"}),
        ('query_reference_value(id) := data.reference.fixed\nok if query_reference_value(input.x)',
         {"fixed"}),
    ],
)
def test_bounded(body: str, names: set[str]) -> None:
    assert reference_names(HEAD + body + "\n") == frozenset(names)


@pytest.mark.parametrize(
    "body",
    [
        "ok if query_reference_value(input.name)",
        'ok if query_reference_value(concat("", ["a", "b"]))',
        'ok if {\n\tn := "a"\n\tquery_reference_value(n)\n}',
        "ok if data.reference[input.k] == 1",
        "ok if count(data.reference) > 0",
        "ok if data.reference == {}",
        "ok if walk(data, x)",
        "ok if data[input.k]",
        'ok if query_reference_value("a") with data.reference as {}',
        'ok if f("a") with input as {}\nf(n) := query_reference_value(n)',
        "f(n) := query_reference_value(n)\nok if f(input.x)",
        'f(n) := query_reference_value(n)\nok if data.policy.f("a")',
        'f(n) := query_reference_value(n)\nok if g("a")\ng(m) := f(concat("", [m]))',
        'f(n) := x if {\n\tsome n in input.names\n\tx := query_reference_value(n)\n}\nok if f("a")',
        'f(n) := x if {\n\tn := input.name\n\tx := query_reference_value(n)\n}\nok if f("a")',
        'f(n) := query_reference_value(n)\ng(n) := f(n)\nh(n) := g(n)\ni(n) := h(n)\n'
        'j(n) := i(n)\nk(n) := j(n)\nok if k("a")',
        "ok := query_reference_value",
        'ok if query_reference_value("a", "b")',
        'ok if "unterminated',
    ],
)
def test_unbounded(body: str) -> None:
    assert reference_names(HEAD + body + "\n") is None


def test_import_of_data_is_unbounded() -> None:
    assert reference_names("package policy\n\nimport data.reference\n\nok if reference.a\n") is None


POLICIES = [
    'allow if "v1" in query_reference_value("svn")',
    'allow if data.reference.svn == ["v1"]',
    'allow if not query_reference_value("absent")',
    'ok(v, n) if v in query_reference_value(n)\nallow if ok(input.v, "svn")',
    'allow if query_reference_value("svn") == null',
]


@pytest.mark.parametrize("body", POLICIES)
@pytest.mark.parametrize("value", ["v1", "v2"])
def test_restricted_data_gives_the_same_verdict(body: str, value: str) -> None:
    text = HEAD + "default allow := false\n\n" + body + "\n"
    names = reference_names(text)
    assert names is not None
    every = {"svn": [value], "other": ["v1"], "absent2": 1} | {f"f{i}": [i] for i in range(200)}
    restricted = {k: v for k, v in every.items() if k in names}

    def verdict(data: dict[str, object]) -> object:
        compiled = CompiledQuery(
            [("p.rego", text), ("rv.rego", RV_MODULE)], "x = data.policy.allow",
            data={"reference": data},
        )
        return evaluate(compiled, {"v": "v1"})

    assert verdict(restricted) == verdict(every)
