"""Which reference values an attestation policy can look up, read from its text.

A policy reaches reference values through ``data.reference.<name>``,
``data.reference["<name>"]`` or ``query_reference_value(<name>)`` (veritee's
module answers it from ``data.reference[id]``).  When every name the policy can
ask for is written in its text, only those values need to be given to it, and an
attestation then costs the same with ten registered values or a hundred thousand.

:func:`reference_names` returns that set of names, or ``None`` when it cannot prove
that the policy asks for no other (the caller then gives the policy every value):

* ``data.reference`` must be followed by ``.name`` or ``["literal"]``; ``data``
  must be followed by ``.`` and a name (``data[x]``, ``data`` whole, ``walk(data)``
  give ``None``); ``with`` anywhere, or an ``import`` of ``data``, give ``None``;
* unless the policy defines its own ``query_reference_value`` (its body is then
  covered by the rules above), each call's argument must be a string literal, or a
  parameter of the function the call is in, every call of which passes a string
  literal there (followed through at most :data:`MAX_DEPTH` functions); any other
  argument (a local variable, an input value, a computed string) gives ``None``.

Nothing is evaluated: this is a small lexer and a conservative reading of calls.
Every doubt gives ``None``, never a smaller set.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

__all__ = ["MAX_DEPTH", "QUERY_FUNCTION", "reference_names"]

QUERY_FUNCTION = "query_reference_value"
MAX_DEPTH = 4

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


@dataclass(frozen=True)
class _Tok:
    kind: str  # "str", "ident", "num", "op"
    text: str  # the literal's value for "str"
    head: bool  # first token of a line at bracket depth 0 (a rule's head)


class _Unknown(Exception):
    """The text does not let us bound the names."""


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    depth, line_start, pos = 0, True, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _Unknown
        pos = match.end()
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "nl":
            line_start = True
            continue
        if kind in ("ws", "comment"):
            continue
        if kind == "str":
            try:
                value = json.loads(value)
            except ValueError:
                raise _Unknown from None
        elif kind == "raw":
            kind, value = "str", value[1:-1]
        elif value in ('"', "`"):
            raise _Unknown  # an unterminated string
        out.append(_Tok(kind, value, line_start and depth == 0))
        line_start = False
        if kind == "op" and value in "([{":
            depth += 1
        elif kind == "op" and value in ")]}":
            depth -= 1
    return out


def _args(toks: list[_Tok], open_at: int) -> list[list[_Tok]]:
    """The arguments of the call whose ``(`` is at ``open_at``, split at depth-0 commas."""
    args: list[list[_Tok]] = [[]]
    depth = 0
    for tok in toks[open_at + 1 :]:
        if tok.kind == "op" and tok.text in "([{":
            depth += 1
        elif tok.kind == "op" and tok.text in ")]}":
            if depth == 0:
                return args if args != [[]] else []
            depth -= 1
        elif tok.kind == "op" and tok.text == "," and depth == 0:
            args.append([])
            continue
        args[-1].append(tok)
    raise _Unknown


def _is(toks: list[_Tok], index: int, kind: str, text: str | None = None) -> bool:
    if index >= len(toks):
        return False
    tok = toks[index]
    return tok.kind == kind and (text is None or tok.text == text)


class _Reader:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.heads = [i for i, t in enumerate(toks) if t.head]

    def defines(self, name: str) -> bool:
        return any(self.toks[i].kind == "ident" and self.toks[i].text == name for i in self.heads)

    def data_names(self) -> set[str]:
        toks, names = self.toks, set()
        for i, tok in enumerate(toks):
            if _is(toks, i, "ident", "with") or (
                _is(toks, i, "ident", "import") and _is(toks, i + 1, "ident", "data")
            ):
                raise _Unknown
            if tok.kind != "ident" or tok.text != "data" or _is(toks, i - 1, "op", "."):
                continue
            if not (_is(toks, i + 1, "op", ".") and _is(toks, i + 2, "ident")):
                raise _Unknown
            if toks[i + 2].text != "reference":
                continue
            dotted = _is(toks, i + 3, "op", ".") and _is(toks, i + 4, "ident")
            indexed = (
                _is(toks, i + 3, "op", "[")
                and _is(toks, i + 4, "str")
                and _is(toks, i + 5, "op", "]")
            )
            if not (dotted or indexed):
                raise _Unknown
            names.add(toks[i + 4].text)
        return names

    def call_names(self, function: str, position: int | None, depth: int) -> set[str]:
        """Names passed to ``function`` (at argument ``position``, or its only argument)."""
        if depth > MAX_DEPTH:
            raise _Unknown
        toks, names = self.toks, set()
        for i, tok in enumerate(toks):
            if tok.kind != "ident" or tok.text != function or tok.head:
                continue  # not a use, or one of the function's own definitions
            if _is(toks, i - 1, "op", ".") or not _is(toks, i + 1, "op", "("):
                raise _Unknown  # data.policy.f(...), or the function not called
            args = _args(toks, i + 1)
            index = 0 if position is None else position
            if (position is None and len(args) != 1) or index >= len(args):
                raise _Unknown
            names |= self.argument_names(args[index], i, depth)
        return names

    def argument_names(self, arg: list[_Tok], at: int, depth: int) -> set[str]:
        if len(arg) == 1 and arg[0].kind == "str":
            return {arg[0].text}
        if len(arg) != 1 or arg[0].kind != "ident":
            raise _Unknown
        toks, name = self.toks, arg[0].text
        head = max((h for h in self.heads if h < at), default=None)
        if head is None or toks[head].kind != "ident" or not _is(toks, head + 1, "op", "("):
            raise _Unknown  # not inside a function: a local variable
        params = _args(toks, head + 1)
        plain = [p[0].text if len(p) == 1 and p[0].kind == "ident" else None for p in params]
        if plain.count(name) != 1:
            raise _Unknown
        end = min((h for h in self.heads if h > head), default=len(toks))
        for i in range(head + 1, end):
            rebinds = _is(toks, i + 1, "op", ":=") or any(
                _is(toks, i - back, "ident", word) for back in (1, 3) for word in ("some", "every")
            )
            if _is(toks, i, "ident", name) and rebinds:
                raise _Unknown  # the parameter may be bound to something else here
        return self.call_names(toks[head].text, plain.index(name), depth + 1)


@functools.lru_cache(maxsize=256)
def reference_names(text: str) -> frozenset[str] | None:
    """The reference value names policy ``text`` can look up, or ``None`` if unbounded."""
    try:
        reader = _Reader(_tokens(text))
        names = reader.data_names()
        if not reader.defines(QUERY_FUNCTION):
            names |= reader.call_names(QUERY_FUNCTION, None, 0)
    except (_Unknown, IndexError):
        return None
    return frozenset(names)
