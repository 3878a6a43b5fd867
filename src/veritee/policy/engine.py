"""A thin, typed wrapper over regopy (Microsoft's rego-cpp) for veritee's policies.

Three things live here:

* :func:`compile_policy` checks one Rego module the way Trustee's policy storage
  does before it accepts a policy (``package policy`` is mandatory), and turns
  rego-cpp's error S-expressions (byte offsets) into :class:`PolicyError` with a
  1-based ``line`` and ``column``.
* :class:`CompiledQuery` is a rego-cpp *bundle*: the modules, the base document
  (``data``) and one query compiled together once.  rego-cpp merges ``data``
  into the bundle at build time, so data that changes means a new
  :class:`CompiledQuery`.
* :func:`evaluate` runs a compiled query against one ``input`` and returns the
  query's bindings as plain JSON values.

Interpreters are cheap to create but the first query on a fresh one pays a
one-off set-up cost, so each thread keeps one interpreter for evaluations and
reuses it; bundles are immutable once built and are shared between threads.
rego-cpp's own logging is switched off on every interpreter: nothing here
prints to stdout or stderr.

:func:`rule_names` and :func:`package_of` are a small Rego lexer (comments,
strings, brackets) that lists a module's package and its top-level rule names
without evaluating anything; callers use them to tell policy generations apart.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import regopy  # type: ignore[import-untyped]
from regopy import LogLevel, RegoError
from regopy.rego_shared import (  # type: ignore[import-untyped]
    NodeKind,
    rego_bundle_query,
    rego_free_output,
    rego_node_get,
    rego_node_size,
    rego_node_type,
    rego_node_value,
    rego_output_node,
    rego_output_ok,
    rego_output_string,
)

from veritee.errors import VeriteeError

__all__ = [
    "JSON",
    "CompiledQuery",
    "PolicyError",
    "compile_policy",
    "evaluate",
    "package_of",
    "rule_names",
]

#: Any JSON value (``null``, bool, number, string, array, object).
JSON: TypeAlias = Any

#: The package every veritee/Trustee policy must declare.
POLICY_PACKAGE = "policy"


class PolicyError(VeriteeError):
    """A policy that does not compile, or whose evaluation failed.

    ``line`` and ``column`` (1-based, column counted in characters) point into
    the policy text when rego-cpp reported a location; ``message`` is the bare
    reason and ``policy_id`` names the policy.
    """

    def __init__(
        self,
        policy_id: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.policy_id = policy_id
        self.message = message
        self.line = line
        self.column = column
        where = f":{line}:{column}" if line is not None and column is not None else ""
        super().__init__(f"policy {policy_id}{where}: {message}")


# --------------------------------------------------------------------------- lexer

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPENERS = {"{": "}", "[": "]", "(": ")"}
_CLOSERS = frozenset(_OPENERS.values())


@dataclass
class _Statement:
    """The leading words of one top-level statement and where it starts."""

    words: list[str]
    offset: int


def _statements(text: str) -> list[_Statement]:
    """Top-level statements: the leading identifiers (dotted parts split) of each
    line that starts at bracket depth 0, outside comments and strings."""
    out: list[_Statement] = []
    depth = 0
    i = 0
    n = len(text)
    line_start = True
    words: list[str] | None = None  # the statement whose leading words are being read
    while i < n:
        ch = text[i]
        if ch == "\n":
            if depth == 0:
                line_start = True
                words = None
            i += 1
            continue
        if ch in " \t\r\f\v":
            i += 1
            continue
        if ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        match = _IDENT.match(text, i)
        if match is not None:
            if depth == 0 and line_start:
                words = [match.group(0)]
                out.append(_Statement(words, i))
            elif words is not None:
                words.append(match.group(0))
            line_start = False
            i = match.end()
            continue
        line_start = False
        if ch == ".":
            i += 1
            continue
        words = None
        if ch == '"':
            i += 1
            while i < n and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif ch == "`":
            end = text.find("`", i + 1)
            i = n if end < 0 else end + 1
        elif ch in _OPENERS:
            depth += 1
            i += 1
        elif ch in _CLOSERS:
            depth = max(0, depth - 1)
            i += 1
        else:
            i += 1
    return out


def package_of(text: str) -> str | None:
    """The dotted package name a Rego module declares, or ``None``."""
    for statement in _statements(text):
        if statement.words[0] == "package":
            return ".".join(statement.words[1:]) or None
        return None
    return None


_NOT_RULES = frozenset({"package", "import", "else"})


def rule_names(text: str) -> frozenset[str]:
    """The names of the top-level rules and functions a Rego module defines.

    ``default x := ...`` counts as defining ``x``; ``a.b := ...`` defines ``a``.
    Only the lexical structure is read, so this never fails on bad Rego.
    """
    names: set[str] = set()
    for statement in _statements(text):
        words = statement.words
        if words[0] in _NOT_RULES:
            continue
        if words[0] == "default":
            if len(words) > 1:
                names.add(words[1])
            continue
        names.add(words[0])
    return frozenset(names)


# ------------------------------------------------------------------ error decoding

_ERROR = re.compile(rb"\(error\s+(?:(\d+):)?")
_ERRORMSG = re.compile(rb"\(errormsg\s+(\d+):")
_LOCATION = re.compile(rb"\|(\d+)\|(\d+)")


@dataclass(frozen=True)
class _RegoProblem:
    message: str
    file: str | None = None
    offset: int | None = None


def _decode_problems(sexpr: str) -> list[_RegoProblem]:
    """The ``(error ...)`` entries of a rego-cpp error S-expression.

    Each is ``(error <len>:<file>|<offset>|<length> (errormsg <len>:<text>) ...)``
    with length-prefixed UTF-8 byte strings; the location may be missing.
    """
    raw = sexpr.encode("utf-8")
    problems: list[_RegoProblem] = []
    starts = [m for m in _ERROR.finditer(raw)]
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(raw)
        file: str | None = None
        offset: int | None = None
        cursor = match.end()
        if match.group(1) is not None:
            size = int(match.group(1))
            file = raw[cursor : cursor + size].decode("utf-8", errors="replace")
            cursor += size
            location = _LOCATION.match(raw, cursor)
            if location is not None:
                offset = int(location.group(1))
        message = "rego error"
        found = _ERRORMSG.search(raw, match.end(), end)
        if found is not None:
            size = int(found.group(1))
            message = raw[found.end() : found.end() + size].decode("utf-8", errors="replace")
        problems.append(_RegoProblem(message=message, file=file, offset=offset))
    if not problems:
        text = sexpr.strip() or "rego error"
        problems.append(_RegoProblem(message=text))
    return problems


def line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and character column of a UTF-8 byte ``offset`` into ``text``."""
    raw = text.encode("utf-8")
    offset = max(0, min(offset, len(raw)))
    before = raw[:offset]
    line = before.count(b"\n") + 1
    line_start = before.rfind(b"\n") + 1
    column = len(before[line_start:].decode("utf-8", errors="replace")) + 1
    return line, column


def _module_error(
    policy_id: str, error: RegoError, sources: Mapping[str, str], *, primary: str
) -> PolicyError:
    """A :class:`PolicyError` located in the module the first problem names."""
    problems = _decode_problems(str(error))
    first = next((p for p in problems if p.file in sources and p.offset is not None), problems[0])
    message = first.message
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more error(s))"
    if first.file is not None and first.file in sources and first.offset is not None:
        line, column = line_column(sources[first.file], first.offset)
        if first.file != primary:
            message += f" [in {first.file}]"
        return PolicyError(policy_id, message, line=line, column=column)
    return PolicyError(policy_id, message)


# --------------------------------------------------------------------- interpreters


def _interpreter() -> Any:
    interp = regopy.Interpreter()
    interp.log_level = LogLevel.NONE
    return interp


_local = threading.local()


def _thread_interpreter() -> Any:
    interp = getattr(_local, "interpreter", None)
    if interp is None:
        interp = _interpreter()
        _local.interpreter = interp
    return interp


def _module_name(policy_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", policy_id) or "policy"
    return f"{safe}.rego"


def _check_text(policy_id: str, text: str) -> None:
    if "\x00" in text:
        offset = len(text[: text.index("\x00")].encode("utf-8"))
        line, column = line_column(text, offset)
        raise PolicyError(policy_id, "policy text contains a NUL byte", line=line, column=column)


def _check_package(policy_id: str, text: str) -> None:
    statements = _statements(text)
    first = statements[0] if statements else None
    if first is None or first.words[0] != "package":
        line, column = (1, 1) if first is None else _offset_position(text, first.offset)
        raise PolicyError(
            policy_id, "the policy must start with 'package policy'", line=line, column=column
        )
    name = ".".join(first.words[1:])
    if name != POLICY_PACKAGE:
        line, column = _offset_position(text, first.offset)
        raise PolicyError(
            policy_id,
            f"the policy must be in 'package policy', not 'package {name}'",
            line=line,
            column=column,
        )


def _offset_position(text: str, char_offset: int) -> tuple[int, int]:
    return line_column(text, len(text[:char_offset].encode("utf-8")))


def compile_policy(policy_id: str, text: str) -> None:
    """Check that ``text`` is a Rego module in ``package policy`` that rego-cpp
    parses and builds; raise :class:`PolicyError` (with line and column when
    rego-cpp gives a location) otherwise."""
    _check_text(policy_id, text)
    name = _module_name(policy_id)
    interp = _interpreter()
    try:
        interp.add_module(name, text)
    except RegoError as exc:
        raise _module_error(policy_id, exc, {name: text}, primary=name) from None
    _check_package(policy_id, text)
    try:
        interp.build("x := [v | v := data.policy]")
    except RegoError as exc:
        raise _module_error(policy_id, exc, {name: text}, primary=name) from None


# ------------------------------------------------------------------ compiled queries


def _dumps(policy_id: str, value: JSON, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise PolicyError(policy_id, f"{what} is not JSON: {exc}") from None


class CompiledQuery:
    """Modules, base data and one query compiled into a rego-cpp bundle.

    ``modules`` are ``(name, text)`` pairs (names end in ``.rego``); ``data`` is
    the base document (a JSON object) or ``None``; ``query`` is a Rego query
    whose variables become :func:`evaluate`'s result.  ``policy_id`` names the
    policy in errors.  Construction raises :class:`PolicyError`.
    """

    def __init__(
        self,
        modules: Sequence[tuple[str, str]],
        query: str,
        *,
        data: Mapping[str, JSON] | None = None,
        policy_id: str = "policy",
    ) -> None:
        self.policy_id = policy_id
        self.query = query
        self.module_names = tuple(name for name, _ in modules)
        sources = dict(modules)
        primary = self.module_names[0] if self.module_names else ""
        interp = _interpreter()
        if data is not None:
            data_json = _dumps(policy_id, dict(data), "policy data")
            try:
                interp.add_data_json(data_json)
            except RegoError as exc:
                raise PolicyError(policy_id, f"rego-cpp rejected the data: {exc}") from None
        for name, text in modules:
            _check_text(policy_id, text)
            try:
                interp.add_module(name, text)
            except RegoError as exc:
                raise _module_error(policy_id, exc, sources, primary=primary) from None
        try:
            bundle = interp.build(query)
        except RegoError as exc:
            raise _module_error(policy_id, exc, sources, primary=primary) from None
        if not bundle.ok():
            raise PolicyError(policy_id, "rego-cpp could not build the policy")
        self._bundle = bundle

    def __repr__(self) -> str:
        return f"CompiledQuery({self.policy_id!r}, {self.query!r})"


def _error_messages(output: Any) -> list[str]:
    """Every ``errormsg`` in an output's error node (depth-first)."""
    messages: list[str] = []
    stack = [rego_output_node(output)]
    while stack:
        node = stack.pop()
        if not node:
            continue
        kind = rego_node_type(node)
        if kind == NodeKind.ErrorMessage:
            with contextlib.suppress(RegoError):
                messages.append(str(rego_node_value(node)))
            continue
        size = rego_node_size(node)
        stack.extend(rego_node_get(node, index) for index in reversed(range(size)))
    return messages


def _run(compiled: CompiledQuery, input_json: str) -> str:
    interp = _thread_interpreter()
    interp.set_input_term(input_json)
    output = rego_bundle_query(interp._impl, compiled._bundle._impl)
    try:
        if not rego_output_ok(output):
            messages = _error_messages(output) or ["evaluation failed"]
            raise PolicyError(compiled.policy_id, "; ".join(messages))
        return str(rego_output_string(output))
    finally:
        rego_free_output(output)


def evaluate(compiled: CompiledQuery, input: JSON) -> dict[str, JSON]:
    """Evaluate ``compiled`` against ``input`` and return its bindings.

    A query with no result gives ``{}``; a query with several results gives the
    first result's bindings.  Evaluation errors (conflicting rule values,
    unknown functions, recursion, ...) raise :class:`PolicyError`.
    """
    input_json = _dumps(compiled.policy_id, input, "policy input")
    try:
        text = _run(compiled, input_json)
    except RegoError as exc:
        problems = _decode_problems(str(exc))
        raise PolicyError(compiled.policy_id, problems[0].message) from None
    return _bindings(compiled.policy_id, text)


def _bindings(policy_id: str, text: str) -> dict[str, JSON]:
    stripped = text.strip()
    if stripped == "undefined" or not stripped:
        return {}
    if stripped.startswith("("):
        raise PolicyError(policy_id, _decode_problems(stripped)[0].message)
    try:
        result = json.loads(stripped)
    except ValueError as exc:
        raise PolicyError(policy_id, f"unreadable rego-cpp output: {exc}") from None
    if isinstance(result, list):
        result = result[0] if result else {}
    if not isinstance(result, dict):
        raise PolicyError(policy_id, "unreadable rego-cpp output")
    bindings = result.get("bindings", {})
    if not isinstance(bindings, dict):
        raise PolicyError(policy_id, "unreadable rego-cpp output")
    return bindings


def defined(bindings: Mapping[str, JSON], name: str) -> Iterable[JSON]:
    """The values a ``name := [v | v := <ref>]`` binding collected (0 or 1)."""
    value = bindings.get(name, [])
    return value if isinstance(value, list) else [value]
