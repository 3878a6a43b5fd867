"""veritee.policy.engine: compiling, locating errors, evaluating, the Rego lexer."""

from __future__ import annotations

import threading

import pytest

from veritee.errors import VeriteeError
from veritee.policy.engine import (
    CompiledQuery,
    PolicyError,
    compile_policy,
    evaluate,
    line_column,
    package_of,
    rule_names,
)

GOOD = """package policy

import rego.v1

default allow := false

allow if input.user == data.owner
"""


def test_policy_error_is_a_veritee_error() -> None:
    error = PolicyError("p", "boom", line=3, column=7)
    assert isinstance(error, VeriteeError)
    assert (error.policy_id, error.message, error.line, error.column) == ("p", "boom", 3, 7)
    assert str(error) == "policy p:3:7: boom"
    assert str(PolicyError("p", "boom")) == "policy p: boom"


def test_compile_accepts_a_good_policy() -> None:
    compile_policy("good", GOOD)


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        # rego-cpp parse errors carry a UTF-8 byte offset; we report 1-based line/column.
        ("package policy\n\nallow if {\n  x := \n}\n", 4, 5, "Invalid assignment operator"),
        ("package policy\nallow if {\n  x := 1 +\n}\n", 3, 10, "Invalid arithmetic operator"),
        # a multi-byte comment before the error: columns count characters, not bytes
        (
            "package policy\n# héllo wörld ✓\nallow if {\n    y := \n}\n",
            4,
            7,
            "Invalid assignment operator",
        ),
        ("package policy\nallow if {\n  true\n", 2, 10, "this is unclosed"),
        ("", 1, 1, "Invalid file"),
    ],
)
def test_syntax_errors_have_line_and_column(
    text: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        compile_policy("bad", text)
    assert caught.value.policy_id == "bad"
    assert (caught.value.line, caught.value.column) == (line, column)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("allow := true\n", 1, 1),
        ("# comment\npackage foo\nallow := true\n", 2, 1),
        ("package policy.sub\nallow := true\n", 1, 1),
    ],
)
def test_package_policy_is_mandatory(text: str, line: int, column: int) -> None:
    with pytest.raises(PolicyError, match="package policy") as caught:
        compile_policy("pkg", text)
    assert (caught.value.line, caught.value.column) == (line, column)


def test_nul_byte_is_rejected_with_its_position() -> None:
    with pytest.raises(PolicyError, match="NUL") as caught:
        compile_policy("nul", "package policy\nx := 1\x00\n")
    assert (caught.value.line, caught.value.column) == (2, 7)


def test_compile_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PolicyError):
        compile_policy("quiet", "package policy\nallow if {\n  x := \n}\n")
    compiled = CompiledQuery([("q.rego", GOOD)], "x := data.policy.allow", data={"owner": "a"})
    evaluate(compiled, {"user": "a"})
    with pytest.raises(PolicyError):
        CompiledQuery([("q.rego", "package policy\nx := \n")], "x := 1")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_line_column_of_byte_offsets() -> None:
    assert line_column("ab\ncd", 0) == (1, 1)
    assert line_column("ab\ncd", 3) == (2, 1)
    assert line_column("é\nx", 2) == (1, 2)
    assert line_column("ab", 99) == (1, 3)


def test_evaluate_returns_bindings() -> None:
    compiled = CompiledQuery(
        [("p.rego", GOOD)], "x := data.policy.allow; y := input.n + 1", data={"owner": "alice"}
    )
    assert evaluate(compiled, {"user": "alice", "n": 1}) == {"x": True, "y": 2}
    assert evaluate(compiled, {"user": "bob", "n": 41}) == {"x": False, "y": 42}


def test_undefined_query_gives_no_bindings() -> None:
    compiled = CompiledQuery([("p.rego", GOOD)], "x := data.policy.nothing")
    assert evaluate(compiled, {}) == {}


def test_json_values_round_trip() -> None:
    compiled = CompiledQuery([], "x := input")
    value = {"a": [1, -2, 3.5, None, True], "s": 'hé "q"\n', "o": {"n": {}}, "big": 2**63}
    assert evaluate(compiled, value)["x"] == value


def test_sets_come_back_as_arrays() -> None:
    compiled = CompiledQuery([], 'x := {"b", "a"}')
    assert evaluate(compiled, {}) == {"x": ["a", "b"]}


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("package policy\nimport rego.v1\nx := 1\nx := 2\n", "multiple outputs"),
        ("package policy\nimport rego.v1\nx := 1 if nope(1)\n", "Function not found: nope"),
        ("package policy\nimport rego.v1\na if b\nb if a\nx := 1 if a\n", "Recursion"),
    ],
)
def test_evaluation_errors_raise_policy_error(module: str, message: str) -> None:
    compiled = CompiledQuery([("e.rego", module)], "v := data.policy.x", policy_id="errs")
    with pytest.raises(PolicyError, match=message) as caught:
        evaluate(compiled, {})
    assert caught.value.policy_id == "errs"


def test_non_json_input_is_a_policy_error() -> None:
    compiled = CompiledQuery([], "x := input")
    with pytest.raises(PolicyError, match="not JSON"):
        evaluate(compiled, {"x": float("nan")})
    with pytest.raises(PolicyError, match="not JSON"):
        evaluate(compiled, {"x": object()})


def test_module_errors_name_the_module_they_are_in() -> None:
    with pytest.raises(PolicyError) as caught:
        CompiledQuery(
            [("main.rego", "package policy\nx := 1\n"), ("helper.rego", "package policy\ny := \n")],
            "v := data.policy.x",
        )
    assert "[in helper.rego]" in caught.value.message
    assert (caught.value.line, caught.value.column) == (2, 3)


def test_data_is_compiled_into_the_bundle() -> None:
    first = CompiledQuery([("p.rego", GOOD)], "x := data.policy.allow", data={"owner": "a"})
    second = CompiledQuery([("p.rego", GOOD)], "x := data.policy.allow", data={"owner": "b"})
    # The same thread-local interpreter serves both bundles without leaking data.
    for _ in range(2):
        assert evaluate(first, {"user": "a"}) == {"x": True}
        assert evaluate(second, {"user": "a"}) == {"x": False}


def test_bundles_are_shared_between_threads() -> None:
    compiled = CompiledQuery([("p.rego", GOOD)], "x := data.policy.allow", data={"owner": "a"})
    failures: list[object] = []

    def work(offset: int) -> None:
        for n in range(200):
            user = "a" if (n + offset) % 2 else "b"
            result = evaluate(compiled, {"user": user})
            if result != {"x": user == "a"}:
                failures.append(result)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_rule_names_and_package() -> None:
    text = """# package nope
package policy

import rego.v1

default executables := 33
hardware := 2 if {
    x := "file_system := 1"
    y := `raw
trust_claims := 1`
}
else := 3
obj := {
    "configuration": 1,
}
f(x) := x
a.b.c := 1
s contains 1 if true
"""
    assert package_of(text) == "policy"
    assert rule_names(text) == {"executables", "hardware", "obj", "f", "a", "s"}
    assert package_of("# only a comment\n") is None
    assert package_of("allow := 1\npackage policy\n") is None
