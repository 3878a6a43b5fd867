"""Give an attestation policy only the parts of its input it can read.

rego-cpp builds ``input`` node by node (a few microseconds per JSON value, whatever its
length), then carries it through the query, so a TDX claim set of some 90 values costs
more than the policy's own rules.  Most policies read a handful of them, through static
paths: ``input.tdx.quote.body.mr_td``, ``input["az-snp-vtpm"].measurement``.

:func:`input_paths` reads a policy's text (a small Rego lexer, nothing is evaluated) and
returns the input paths it can reach, or ``None`` when it cannot prove that: ``input``
used whole (``x := input``, ``walk(input)``, ``input[k]``), ``with`` (an input override),
``import input`` or a template string (``$"{input.x}"``, whose inside is not read
here).  :func:`project` then keeps exactly those paths:

* ``input.a.b`` used in any expression keeps the whole value at ``a.b``; a static path
  followed by a dynamic index (``input.a.b[k]``) keeps everything under ``a.b``;
* ``input.a`` alone as one condition of an ``if { ... }`` body (Trustee's
  ``input.tdx`` platform test) only asks whether ``a`` is defined and not ``false``: an
  object stays an object (truthy even when empty), any other value is kept whole;
* a rule that is an alias of an input path, ``evidence := input.tdx if ...`` (veritee's
  default policy), is followed through its uses: ``evidence.quote.body.mr_td`` and
  ``object.get(evidence, "tcb_status", d)`` keep ``tdx.quote.body.mr_td`` and
  ``tdx.tcb_status``.  Any other use of the rule's name (passed to a function, iterated,
  compared whole, shadowed, or the package read through ``data.policy``), or a rule the
  query itself reads (``outputs``: ``trust_claims := input.x`` leaves the policy whole),
  keeps the aliased path whole.

Every doubt keeps more, never less: the projection may only drop values no expression
of the policy can reach.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

JSON = Any

__all__ = ["Projection", "input_paths", "project", "projected_input"]

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\f\v]+)
      | (?P<nl>\n)
      | (?P<comment>\#[^\n]*)
      | (?P<str>"(?:[^"\\\n]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>:=|==|!=|<=|>=|.)
    """,
    re.VERBOSE | re.DOTALL,
)

#: Keywords that continue an expression or start a statement: never a value at a line end.
_KEYWORDS = frozenset(
    {"as", "contains", "default", "else", "every", "if", "import", "in", "not", "package",
     "some", "with"}
)
#: Tokens that may end one body expression at a line end.
_VALUE_ENDS = frozenset({"}", ")", "]"})


@dataclass(frozen=True)
class _Tok:
    kind: str  # nl, str, num, ident, op
    text: str
    value: str | None = None  # a string literal's value


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "op"
        raw = match.group(0)
        if kind in ("ws", "comment"):
            continue
        if kind == "str":
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
            out.append(_Tok("str", raw, value if isinstance(value, str) else None))
        elif kind == "raw":
            out.append(_Tok("str", raw, raw[1:-1]))
        else:
            out.append(_Tok(kind, raw))
    return out


@dataclass
class Projection:
    """A trie of input paths: ``whole`` keeps the value, ``exists`` keeps the key (an
    object projected by the children, anything else whole)."""

    whole: bool = False
    exists: bool = False
    children: dict[str, Projection] = field(default_factory=dict)

    def add(self, path: tuple[str, ...], *, exists_only: bool = False) -> None:
        node = self
        for key in path:
            if node.whole:
                return
            node = node.children.setdefault(key, Projection())
        if exists_only:
            node.exists = True
        else:
            node.whole = True
            node.children.clear()


class _Unprovable(Exception):
    """The policy may read input in a way the lexer cannot bound."""


class _Reader:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.n = len(self.toks)
        # For each token: the opener of the innermost enclosing bracket (index) or -1.
        self.enclosing: list[int] = []
        self.depth: list[int] = []
        stack: list[int] = []
        for index, tok in enumerate(self.toks):
            if tok.kind == "op" and tok.text in "})]" and stack:
                stack.pop()
            self.enclosing.append(stack[-1] if stack else -1)
            self.depth.append(len(stack))
            if tok.kind == "op" and tok.text in "{([":
                stack.append(index)

    def tok(self, index: int) -> _Tok | None:
        return self.toks[index] if 0 <= index < self.n else None

    def is_op(self, index: int, text: str) -> bool:
        tok = self.tok(index)
        return tok is not None and tok.kind == "op" and tok.text == text

    def is_ident(self, index: int, text: str | None = None) -> bool:
        tok = self.tok(index)
        return tok is not None and tok.kind == "ident" and (text is None or tok.text == text)

    def prev(self, index: int) -> tuple[int, bool]:
        """The previous token other than a newline, and whether a newline came between."""
        newline = False
        index -= 1
        while index >= 0 and self.toks[index].kind == "nl":
            newline = True
            index -= 1
        return index, newline

    def next_(self, index: int) -> tuple[int, bool]:
        newline = False
        while index < self.n and self.toks[index].kind == "nl":
            newline = True
            index += 1
        return index, newline

    def path(self, index: int) -> tuple[tuple[str, ...], int]:
        """The static segments after token ``index - 1`` and the index after them."""
        segments: list[str] = []
        while True:
            if self.is_op(index, ".") and self.is_ident(index + 1):
                segments.append(self.toks[index + 1].text)
                index += 2
                continue
            lit = self.tok(index + 1)
            if (self.is_op(index, "[") and lit is not None and lit.kind == "str"
                    and lit.value is not None and self.is_op(index + 2, "]")):
                segments.append(lit.value)
                index += 3
                continue
            return tuple(segments), index

    def statement_start(self, index: int) -> bool:
        before = self.tok(index - 1)
        return self.depth[index] == 0 and (before is None or before.kind == "nl")

    def if_body(self, index: int) -> bool:
        """Whether token ``index`` is directly inside the braces of ``if { ... }``."""
        opener = self.enclosing[index]
        if opener < 0 or not self.is_op(opener, "{"):
            return False
        before, _ = self.prev(opener)
        return self.is_ident(before, "if")

    def alone_in_body(self, start: int, end: int) -> bool:
        """Whether tokens ``start..end-1`` are one whole condition of an ``if`` body."""
        if not self.if_body(start):
            return False
        before, newline = self.prev(start)
        tok = self.tok(before)
        if tok is None:
            return False
        opener = self.enclosing[start]
        starts = before == opener or (tok.kind == "op" and tok.text == ";") or (
            newline and (
                tok.kind in ("str", "num")
                or (tok.kind == "ident" and tok.text not in _KEYWORDS)
                or (tok.kind == "op" and tok.text in _VALUE_ENDS)
            )
        )
        if not starts:
            return False
        after, newline = self.next_(end)
        tok = self.tok(after)
        if tok is None:
            return False
        if tok.kind == "op" and tok.text in ("}", ";"):
            return True
        return newline and (
            tok.kind in ("str", "num")
            or (tok.kind == "ident" and tok.text not in ("in", "with", "as", "contains", "else"))
        )


def _aliases_allowed(reader: _Reader) -> bool:
    """Rules can be read only by name unless ``data.policy`` (or ``data`` whole) appears."""
    for index, tok in enumerate(reader.toks):
        if tok.kind != "ident" or tok.text != "data" or reader.is_op(index - 1, "."):
            continue
        if not (reader.is_op(index + 1, ".") and reader.is_ident(index + 2)):
            return False
        if reader.toks[index + 2].text == "policy":
            return False
    return True


def _analyse(text: str, outputs: frozenset[str]) -> Projection:
    reader = _Reader(text)
    toks = reader.toks
    for index, tok in enumerate(toks):
        if tok.kind == "ident" and tok.text == "with":
            raise _Unprovable("with")
        if tok.kind == "ident" and tok.text == "import" and reader.is_ident(index + 1, "input"):
            raise _Unprovable("import input")
        if tok.kind == "op" and tok.text == "$" and (following := reader.tok(index + 1)) \
                and following.kind == "str":
            raise _Unprovable("a template string may read input unseen")
    aliases_ok = _aliases_allowed(reader)
    root = Projection()
    aliases: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
    for index, tok in enumerate(toks):
        if tok.kind != "ident" or tok.text != "input" or reader.is_op(index - 1, "."):
            continue
        segments, end = reader.path(index + 1)
        if not segments:
            raise _Unprovable("input used whole or by a dynamic key")
        name = reader.tok(index - 2)
        after = reader.tok(end)
        if (aliases_ok and name is not None and name.kind == "ident"
                and name.text not in _KEYWORDS and name.text != "input"
                and name.text not in outputs
                and (reader.is_op(index - 1, ":=") or reader.is_op(index - 1, "="))
                and reader.statement_start(index - 2)
                and (after is None or after.kind == "nl" or reader.is_ident(end, "if")
                     or reader.is_op(end, "{"))):
            aliases.setdefault(name.text, []).append((index - 2, segments))
            continue
        root.add(segments, exists_only=reader.alone_in_body(index, end))
    for alias, definitions in aliases.items():
        suffixes = _alias_uses(reader, alias, {head for head, _ in definitions})
        for _, base in definitions:
            if suffixes is None:
                root.add(base)
            else:
                for suffix in suffixes:
                    root.add(base + suffix)
    return root


def _alias_uses(reader: _Reader, name: str, heads: set[int]) -> list[tuple[str, ...]] | None:
    """The static paths read from rule ``name``, or ``None`` if it is used otherwise."""
    suffixes: list[tuple[str, ...]] = []
    for index, tok in enumerate(reader.toks):
        if tok.kind != "ident" or tok.text != name or reader.is_op(index - 1, "."):
            continue
        if index in heads:
            continue
        if reader.is_ident(index - 1, "default") and reader.statement_start(index - 1):
            continue
        segments, _ = reader.path(index + 1)
        if segments:
            suffixes.append(segments)
            continue
        key = reader.tok(index + 2)
        if (reader.is_op(index - 1, "(") and reader.is_ident(index - 2, "get")
                and reader.is_op(index - 3, ".") and reader.is_ident(index - 4, "object")
                and not reader.is_op(index - 5, ".")
                and reader.is_op(index + 1, ",") and key is not None and key.kind == "str"
                and key.value is not None and reader.is_op(index + 3, ",")):
            suffixes.append((key.value,))
            continue
        return None
    return suffixes


@functools.lru_cache(maxsize=256)
def input_paths(text: str, outputs: frozenset[str]) -> Projection | None:
    """The input paths policy ``text`` can reach, or ``None`` if that cannot be bounded.

    ``outputs`` are the rules the caller's query reads: their values leave the policy, so
    a rule among them that aliases an input path keeps that path whole.
    """
    try:
        return _analyse(text, outputs)
    except _Unprovable:
        return None


def project(value: JSON, node: Projection) -> JSON:
    """``value`` restricted to the paths of ``node`` (see the module docstring)."""
    if node.whole or not isinstance(value, dict):
        return value
    return {key: project(value[key], child)
            for key, child in node.children.items() if key in value}


def projected_input(text: str, claims: JSON, *, outputs: frozenset[str]) -> JSON | None:
    """``claims`` restricted to what policy ``text`` can read when a query reads rules
    ``outputs``; ``None`` when that cannot be bounded."""
    paths = input_paths(text, outputs)
    if paths is None:
        return None
    return project(claims, paths)
