"""Initdata: the TOML document a pod carries into its TEE, its digest, and its claims.

``digest = H_algorithm(exact bytes of the TOML document)``; nothing is
canonicalised.  The digest is bound into MRCONFIGID (TDX, 48 bytes), HOST_DATA
(SNP, 32) or CONFIGID (SGX, 64), zero-padded or truncated to the field.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from veritee.errors import ParseError

VERSION = "0.1.0"
ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_POLICY_DATA = re.compile(r"policy_data\s*:=\s*\{")


@dataclass(frozen=True)
class Initdata:
    version: str
    algorithm: str
    data: dict[str, str]
    text: str

    @property
    def digest(self) -> bytes:
        return ALGORITHMS[self.algorithm](self.text.encode()).digest()

    def claims(self) -> dict[str, Any]:
        """Trustee's ``init_data_claims``: ``data`` with aa.toml / cdh.toml as JSON objects
        and policy.rego replaced by ``agent_policy_claims`` (its ``policy_data`` object)."""
        out: dict[str, Any] = {}
        for name, value in self.data.items():
            if name in ("aa.toml", "cdh.toml"):
                try:
                    out[name] = tomllib.loads(value)
                except tomllib.TOMLDecodeError:
                    out[name] = value
            elif name == "policy.rego":
                policy = agent_policy_claims(value)
                if policy is not None:
                    out["agent_policy_claims"] = policy
            else:
                out[name] = value
        return out


def parse_initdata(text: str) -> Initdata:
    """Parse an initdata TOML document; ParseError names what is wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParseError("initdata", f"not TOML: {exc}") from exc
    version, algorithm, data = doc.get("version"), doc.get("algorithm"), doc.get("data", {})
    if version != VERSION:
        raise ParseError("initdata", f"version must be {VERSION!r}, not {version!r}")
    if algorithm not in ALGORITHMS:
        raise ParseError(
            "initdata", f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}"
        )
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ParseError("initdata", "[data] must map names to strings")
    return Initdata(version=version, algorithm=algorithm, data=dict(data), text=text)


def agent_policy_claims(rego: str) -> dict[str, Any] | None:
    """The JSON object after the first ``policy_data := {`` in a kata agent policy, if it parses."""
    match = _POLICY_DATA.search(rego)
    if match is None:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(rego[match.end() - 1 :])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
