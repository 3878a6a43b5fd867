"""Policies over a verified RA-TLS peer: a Rego module, or a JSON file of reference values.

Rego (``*.rego``): ``package policy`` with an ``allow`` rule (write ``default allow :=
false``); only ``allow == true`` admits.  ``input`` is ``{"tee": <tee>, <tee>: <the
verifier's claims>, "measurements": <the flat hex view>}``, e.g.
``input.measurements.mrenclave`` or ``input.sgx.body.isv_svn``.

JSON (``*.json``): reference values, every key optional but at least one given.
SGX: ``mrenclave`` and ``mrsigner`` (lists of hex; the peer's value must be one of them),
``isvprodid`` (integer, exact) and ``isvsvn`` (integer, minimum).  TDX: ``mrtd`` and
``rtmr0``..``rtmr3`` (lists of hex).  SNP: ``measurement`` and ``host_data`` (lists of hex).
A key that does not apply to the peer's TEE refuses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from veritee.errors import ConfigError, InputError
from veritee.policy.engine import CompiledQuery, PolicyError, compile_policy, evaluate
from veritee.ratls.verify import RatlsError, RatlsPeer

__all__ = ["JsonReferencePolicy", "RatlsPolicy", "RegoPolicy", "load_policy"]

_QUERY = "allow := [v | v := data.policy.allow]"
_HEX_LISTS: Final = {
    "mrenclave": "sgx",
    "mrsigner": "sgx",
    "mrtd": "tdx",
    "rtmr0": "tdx",
    "rtmr1": "tdx",
    "rtmr2": "tdx",
    "rtmr3": "tdx",
    "measurement": "snp",
    "host_data": "snp",
}
_INTEGERS: Final = {"isvprodid": "sgx", "isvsvn": "sgx"}


class RatlsPolicy(Protocol):
    def check(self, peer: RatlsPeer) -> None:
        """Return if the peer is admitted; raise ``RatlsError("policy", why)`` if not."""
        ...


def policy_input(peer: RatlsPeer) -> dict[str, Any]:
    return {"tee": peer.tee, peer.tee: peer.claims, "measurements": dict(peer.measurements)}


class RegoPolicy:
    """A Rego module in ``package policy``; admits when ``data.policy.allow`` is ``true``."""

    def __init__(self, text: str, *, policy_id: str = "ratls-policy") -> None:
        compile_policy(policy_id, text)
        self.policy_id = policy_id
        self._query = CompiledQuery([(f"{policy_id}.rego", text)], _QUERY, policy_id=policy_id)

    def check(self, peer: RatlsPeer) -> None:
        try:
            values = evaluate(self._query, policy_input(peer)).get("allow")
        except PolicyError as exc:
            raise RatlsError("policy", f"the policy could not be evaluated: {exc}") from exc
        if not isinstance(values, list) or not values or values[0] is not True:
            raise RatlsError("policy", f"{self.policy_id} does not allow this {peer.tee} peer")


@dataclass(frozen=True)
class JsonReferencePolicy:
    """Reference values (see the module docstring); ``values`` hex lists are lower-case."""

    hex_lists: Mapping[str, tuple[str, ...]]
    integers: Mapping[str, int]
    source: str = "reference values"

    @classmethod
    def from_document(cls, doc: object, source: str) -> JsonReferencePolicy:
        if not isinstance(doc, dict) or not doc:
            raise ConfigError(f"{source}: expected a non-empty JSON object of reference values")
        hex_lists: dict[str, tuple[str, ...]] = {}
        integers: dict[str, int] = {}
        for key, value in doc.items():
            if key in _HEX_LISTS:
                hex_lists[key] = _hex_list(source, key, value)
            elif key in _INTEGERS:
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**16:
                    raise ConfigError(f"{source}: {key} must be an integer 0..65535")
                integers[key] = value
            else:
                known = ", ".join([*_HEX_LISTS, *_INTEGERS])
                raise ConfigError(f"{source}: unknown key {key!r}; known keys: {known}")
        tees = {_HEX_LISTS.get(k) or _INTEGERS[k] for k in doc}
        if len(tees) > 1:
            raise ConfigError(f"{source}: mixes keys of {' and '.join(sorted(tees))}")
        return cls(hex_lists, integers, source)

    def check(self, peer: RatlsPeer) -> None:
        for key, allowed in self.hex_lists.items():
            self._applies(peer, _HEX_LISTS[key], key)
            got = peer.measurements.get(key, "").lower()
            if got not in allowed:
                raise RatlsError("policy", f"{key} {got} is not among the {len(allowed)} allowed")
        for key, want in self.integers.items():
            self._applies(peer, _INTEGERS[key], key)
            got_int = int.from_bytes(bytes.fromhex(peer.measurements[key]), "little")
            if key == "isvprodid" and got_int != want:
                raise RatlsError("policy", f"isvprodid {got_int} is not {want}")
            if key == "isvsvn" and got_int < want:
                raise RatlsError("policy", f"isvsvn {got_int} is below the minimum {want}")

    def _applies(self, peer: RatlsPeer, tee: str, key: str) -> None:
        if peer.tee != tee:
            raise RatlsError(
                "policy",
                f"{self.source} holds {tee} reference values ({key}); the peer is {peer.tee}",
            )


def _hex_list(source: str, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: {key} must be a non-empty list of hex strings")
    out = []
    for item in value:
        try:
            bytes.fromhex(item)
        except ValueError as exc:
            raise ConfigError(f"{source}: {key} entry {item!r} is not hex") from exc
        out.append(item.lower())
    return tuple(out)


def load_policy(path: Path) -> RatlsPolicy:
    """A policy from a ``.rego`` or ``.json`` file.  InputError for a file that cannot be
    read or of another kind; ConfigError for one whose content is unusable."""
    suffix = path.suffix.lower()
    if suffix not in (".rego", ".json"):
        raise InputError(f"{path}: an RA-TLS policy is a .rego or a .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the RA-TLS policy {path}: {exc}") from exc
    if suffix == ".rego":
        try:
            return RegoPolicy(text, policy_id=path.stem)
        except PolicyError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from exc
    return JsonReferencePolicy.from_document(doc, str(path))
