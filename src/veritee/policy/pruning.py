"""Leave out of a policy's input what the policy provably cannot read.

rego-cpp spends about 0.2 us per input byte building ``input``, and a TDX CC event log
is most of a TDX claim set.  A member listed in ``_BULKY_MEMBERS`` is dropped only when
the policy text never names it and reads ``input`` through static paths alone
(``input.a.b`` or ``input["a"]``); any other use of ``input`` keeps everything.
"""

from __future__ import annotations

import functools
import re
from typing import Any

JSON = Any

# Members of a TEE's claims that are large and that most policies never read.  They
# are left out of the policy input only when the policy text provably cannot reach
# them: it never names them and uses ``input`` only through static paths.
_BULKY_MEMBERS = ("uefi_event_logs",)
_INPUT_USE = re.compile(r"\binput\b(?!\s*(?:\.|\[\s*\"))")


def _strip_comment(line: str) -> str:
    """``line`` without its ``#`` comment; a ``#`` inside a string literal is kept."""
    quote: str | None = None
    escaped = False
    for index, char in enumerate(line):
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = None
        elif char in ('"', "`"):
            quote = char
        elif char == "#":
            return line[:index]
    return line


@functools.lru_cache(maxsize=256)
def _prunable(text: str) -> tuple[str, ...]:
    """The bulky members this policy text cannot read (none if it uses input dynamically)."""
    code = "\n".join(_strip_comment(line) for line in text.splitlines())
    if _INPUT_USE.search(code):
        return ()
    return tuple(m for m in _BULKY_MEMBERS if m not in code)


def pruned_input(text: str, claims: JSON) -> JSON:
    """``claims`` without the bulky members this policy cannot read, at any depth
    (an EAR token nests them under submods/<id>/ear.veraison.annotated-evidence/<tee>)."""
    drop = _prunable(text)
    return _without(claims, frozenset(drop)) if drop else claims


def _without(value: JSON, drop: frozenset[str]) -> JSON:
    if isinstance(value, dict):
        return {k: _without(v, drop) for k, v in value.items() if k not in drop}
    return value
