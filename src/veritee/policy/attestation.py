"""Attestation policies: Rego that turns one device's claims into an AR4SI trust vector.

Three generations of Trustee attestation policy run unchanged:

* **current** (Trustee ≥ v0.17): rule ``trust_claims`` (an object of AR4SI claim
  names, e.g. ``"file-system"``) plus an optional ``extensions`` list of
  ``{"name", "key", "value"}``; reference values come from the custom built-in
  ``query_reference_value(id)`` (``null`` for an unknown id).
* **v0.16**: the same object under rule ``result``.
* **≤ v0.15** (and the per-claim policies of many guides): one rule per claim,
  ``executables``, ``hardware``, ``configuration``, ``file_system``,
  ``instance_identity``, ``runtime_opaque``, ``storage_opaque``,
  ``sourced_data``; the vector then holds only the claims the policy defines
  and that are defined for this input, underscores becoming hyphens.

The generation is read from the rules the text defines (``trust_claims`` wins
over ``result``, which wins over per-claim rules).  A policy defining none of
them gets Trustee's "undefined ``trust_claims``" treatment: all eight claims 0.

Reference values reach every generation twice: as ``data.reference.<name>``
(≤ v0.15 form) and through ``query_reference_value(name)``, a Rego function
veritee adds to ``package policy`` from the same data unless the policy
defines its own.  rego-cpp folds ``data`` into the compiled bundle, so each
policy's bundle is cached and rebuilt only when its text or the
reference-value generation changes.

Trustee's checks on the result are kept: ``trust_claims`` must be an object;
claim values must be integers that fit an i8; an object that sets no claim is
the error "At least one policy claim must be set.".
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Protocol

from veritee.errors import VeriteeError
from veritee.policy.engine import (
    JSON,
    CompiledQuery,
    PolicyError,
    compile_policy,
    evaluate,
    rule_names,
)
from veritee.policy.projection import projected_input
from veritee.policy.pruning import pruned_input
from veritee.rvps.names import reference_names
from veritee.store.kv import KeyValueStore
from veritee.token.ear import TRUST_CLAIMS, ear_status, tier

__all__ = [
    "TRUST_CLAIMS",
    "Appraisal",
    "AttestationPolicies",
    "ReferenceValues",
    "UnknownPolicy",
    "ear_status",
    "tier",
]


#: Legacy (≤ v0.15) rule name → AR4SI claim name.
LEGACY_RULES: dict[str, str] = {name.replace("-", "_"): name for name in TRUST_CLAIMS}

#: Policies veritee installs when absent (id → file under ``policy/defaults``).
DEFAULT_POLICIES: dict[str, str] = {
    "default_cpu": "default_cpu.rego",
    "default_gpu": "default_gpu.rego",
}

_POLICY_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")

_RV_FUNCTION = "query_reference_value"
_RV_MODULE_NAME = "veritee_reference_values.rego"
_RV_MODULE = """package policy

# Added by veritee: Trustee's query_reference_value(id) custom built-in, answered
# from the reference values compiled into data.reference (null when unknown).
query_reference_value(id) := value if {
	value := data.reference[id]
} else := null
"""

#: Every rule an appraisal query reads (see ``_QUERIES``).
OUTPUT_RULES = frozenset({"trust_claims", "extensions", "result", *LEGACY_RULES})

_TRUST_CLAIMS_ERROR = "At least one policy claim must be set."


class ReferenceValues(Protocol):
    """Where attestation policies get reference values from (the RVPS)."""

    def snapshot(self) -> tuple[int, Mapping[str, JSON]]:
        """``(generation, {name: value})`` of the values not expired; the
        generation changes whenever the values change."""
        ...

    def lookup(self, names: Iterable[str]) -> tuple[int, Mapping[str, JSON]]:
        """The same for just ``names`` (those stored and not expired), read one by one."""
        ...


class UnknownPolicy(VeriteeError):
    """No attestation policy with this id (nor ``<id>_<tee class>``) is stored."""

    def __init__(self, policy_id: str, tried: tuple[str, ...] = ()) -> None:
        self.policy_id = policy_id
        self.tried = tried or (policy_id,)
        names = " or ".join(repr(t) for t in self.tried)
        super().__init__(f"unknown attestation policy {policy_id!r} (no policy {names})")


@dataclass(frozen=True)
class Appraisal:
    """One device's appraisal: the requested policy id, the AR4SI vector (only
    the claims the policy set) and the EAR extensions the policy asked for."""

    policy_id: str
    vector: dict[str, int]
    extensions: list[dict[str, JSON]]


# EAR tiers are defined once, with the token (``veritee.token.ear``).


# ---------------------------------------------------------------- generations


class Generation(Enum):
    """Which output rule(s) a policy uses."""

    CURRENT = "trust_claims"
    V016 = "result"
    LEGACY = "per-claim"
    NONE = "none"


def generation_of(text: str) -> Generation:
    """The policy generation ``text`` is written in (see the module docstring)."""
    names = rule_names(text)
    if "trust_claims" in names:
        return Generation.CURRENT
    if "result" in names:
        return Generation.V016
    if names & LEGACY_RULES.keys():
        return Generation.LEGACY
    return Generation.NONE


def _collect(name: str, ref: str) -> str:
    # A comprehension is always defined, so one undefined rule does not make the
    # whole query undefined: [] means undefined, [v] means v.
    return f"{name} := [v | v := {ref}]"


_QUERIES: dict[Generation, str] = {
    Generation.CURRENT: "; ".join(
        [_collect("tc", "data.policy.trust_claims"), _collect("ext", "data.policy.extensions")]
    ),
    Generation.V016: _collect("tc", "data.policy.result"),
    Generation.LEGACY: "; ".join(_collect(rule, f"data.policy.{rule}") for rule in LEGACY_RULES),
    Generation.NONE: "x := true",
}


@dataclass(frozen=True)
class _Cached:
    text: str
    generation: int
    kind: Generation
    compiled: CompiledQuery


def _digest(text: str) -> str:
    return hashlib.sha384(text.encode("utf-8")).hexdigest()


def _default_text(filename: str) -> str:
    return resources.files("veritee.policy").joinpath("defaults", filename).read_text("utf-8")


def _check_id(policy_id: str) -> None:
    if not _POLICY_ID.match(policy_id):
        raise PolicyError(
            policy_id or "<empty>",
            "invalid policy id (letters, digits, '_', '.', '-'; at most 128)",
        )


class AttestationPolicies:
    """Attestation policies kept in a :class:`KeyValueStore` namespace, compiled
    on demand and cached per (policy text, reference-value generation)."""

    def __init__(
        self,
        store: KeyValueStore,
        reference_values: ReferenceValues,
        *,
        namespace: str = "attestation-policy",
    ) -> None:
        self._store = store
        self._rvs = reference_values
        self._namespace = namespace
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        for policy_id, filename in DEFAULT_POLICIES.items():
            if self._store.get(namespace, policy_id) is None:
                text = _default_text(filename)
                compile_policy(policy_id, text)
                self._put(policy_id, text)

    # ---------------------------------------------------------------- storage

    def _put(self, policy_id: str, text: str) -> None:
        self._store.put(
            self._namespace, policy_id, text.encode("utf-8"), meta={"sha384": _digest(text)}
        )
        with self._lock:
            self._cache.pop(policy_id, None)

    def set_policy(self, policy_id: str, text: str) -> None:
        """Compile ``text`` and store it under ``policy_id`` (replacing any
        previous one).  A policy that does not compile raises
        :class:`PolicyError` with its line and column and is not stored."""
        _check_id(policy_id)
        compile_policy(policy_id, text)
        self._put(policy_id, text)

    def _text(self, policy_id: str) -> str | None:
        entry = self._store.get(self._namespace, policy_id)
        if entry is None:
            return None
        return entry.value.decode("utf-8")

    def get_policy(self, policy_id: str) -> str:
        """The text of policy ``policy_id``; :class:`UnknownPolicy` if absent."""
        _check_id(policy_id)
        text = self._text(policy_id)
        if text is None:
            raise UnknownPolicy(policy_id)
        return text

    def list_policies(self) -> list[str]:
        """Every stored policy id, sorted."""
        return [entry.key for entry in self._store.items(self._namespace)]

    def delete_policy(self, policy_id: str) -> None:
        """Remove policy ``policy_id``; :class:`UnknownPolicy` if absent."""
        _check_id(policy_id)
        with self._lock:
            self._cache.pop(policy_id, None)
        if not self._store.delete(self._namespace, policy_id):
            raise UnknownPolicy(policy_id)

    def load_directory(self, directory: Path) -> list[str]:
        """Store every ``*.rego`` of ``directory`` under its file stem (like
        Trustee's ``attestation-service/policies/opa/``), replacing existing
        ones.  All files are compiled first: one bad file stores nothing."""
        loaded: list[tuple[str, str]] = []
        for path in sorted(Path(directory).glob("*.rego")):
            if not path.is_file():
                continue
            policy_id = path.stem
            _check_id(policy_id)
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise PolicyError(policy_id, f"cannot read {path}: {exc}") from None
            compile_policy(policy_id, text)
            loaded.append((policy_id, text))
        for policy_id, text in loaded:
            self._put(policy_id, text)
        return [policy_id for policy_id, _ in loaded]

    # -------------------------------------------------------------- appraisal

    def resolve(self, policy_id: str, tee_class: str) -> tuple[str, str]:
        """``(stored id, text)`` of the policy used for ``policy_id`` and ``tee_class``:
        ``policy_id`` itself if stored (a policy a user uploaded or dropped in as
        ``default.rego``, as in Trustee's older releases), else Trustee's per-class
        ``<policy_id>_<tee_class>`` (``default`` → ``default_cpu``)."""
        tried: list[str] = []
        for candidate in (policy_id, f"{policy_id}_{tee_class}"):
            if not _POLICY_ID.match(candidate):
                continue
            tried.append(candidate)
            text = self._text(candidate)
            if text is not None:
                return candidate, text
        raise UnknownPolicy(policy_id, tuple(tried))

    def compiled(self, stored_id: str, text: str) -> tuple[Generation, CompiledQuery]:
        """The cached bundle of ``text`` for the current reference values,
        rebuilt when the text or the reference-value generation changed."""
        # Only the values the policy can name (all of them when that is unbounded):
        # rego-cpp's build and every query grow with the data compiled in.
        names = reference_names(text)
        generation, values = self._rvs.snapshot() if names is None else self._rvs.lookup(names)
        with self._lock:
            cached = self._cache.get(stored_id)
        # The text itself is the key (exact comparison, cheaper than hashing it again).
        if cached is not None and cached.text == text and cached.generation == generation:
            return cached.kind, cached.compiled
        kind = generation_of(text)
        modules = [(f"{stored_id}.rego", text)]
        if _RV_FUNCTION not in rule_names(text):
            modules.append((_RV_MODULE_NAME, _RV_MODULE))
        compiled = CompiledQuery(
            modules,
            _QUERIES[kind],
            data={"reference": dict(values)},
            policy_id=stored_id,
        )
        with self._lock:
            self._cache[stored_id] = _Cached(text, generation, kind, compiled)
        return kind, compiled

    def appraise(self, policy_id: str, tee_class: str, claims: JSON) -> Appraisal:
        """Evaluate the policy for ``policy_id``/``tee_class`` on ``claims``
        (the transformed claims of one device, the policy's ``input``)."""
        stored_id, text = self.resolve(policy_id, tee_class)
        kind, compiled = self.compiled(stored_id, text)
        policy_input = projected_input(text, claims, outputs=OUTPUT_RULES)
        bindings = evaluate(compiled, pruned_input(text, claims) if policy_input is None
                            else policy_input)
        extensions: list[dict[str, JSON]] = []
        if kind is Generation.LEGACY:
            vector = _legacy_vector(stored_id, bindings)
        elif kind is Generation.NONE:
            vector = dict.fromkeys(TRUST_CLAIMS, 0)
        else:
            vector = _object_vector(stored_id, bindings)
            if kind is Generation.CURRENT:
                extensions = _extensions(stored_id, bindings)
        if not vector:
            raise PolicyError(stored_id, _TRUST_CLAIMS_ERROR)
        return Appraisal(policy_id=policy_id, vector=vector, extensions=extensions)


# ----------------------------------------------------------- result checks


def _one(bindings: Mapping[str, JSON], name: str) -> tuple[bool, JSON]:
    values = bindings.get(name)
    if not isinstance(values, list) or not values:
        return False, None
    return True, values[0]


def _claim_value(policy_id: str, name: str, value: JSON) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(policy_id, f"trust claim {name!r} is not a number: {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise PolicyError(policy_id, f"trust claim {name!r} is not an integer: {value!r}")
    number = int(value)
    if not -128 <= number <= 127:
        raise PolicyError(policy_id, f"trust claim {name!r} = {number} does not fit an i8")
    return number


def _ordered(vector: Mapping[str, int]) -> dict[str, int]:
    return {name: vector[name] for name in TRUST_CLAIMS if name in vector}


def _object_vector(policy_id: str, bindings: Mapping[str, JSON]) -> dict[str, int]:
    present, value = _one(bindings, "tc")
    if not present:
        # Trustee: an undefined trust_claims sets every claim to 0.
        return dict.fromkeys(TRUST_CLAIMS, 0)
    if not isinstance(value, dict):
        raise PolicyError(policy_id, f"trust claims is not an object: {value!r}")
    vector: dict[str, int] = {}
    for name, claim in value.items():
        if name not in TRUST_CLAIMS:
            raise PolicyError(policy_id, f"unknown trust claim {name!r}")
        vector[name] = _claim_value(policy_id, name, claim)
    return _ordered(vector)


def _legacy_vector(policy_id: str, bindings: Mapping[str, JSON]) -> dict[str, int]:
    vector: dict[str, int] = {}
    for rule, name in LEGACY_RULES.items():
        present, value = _one(bindings, rule)
        if present:
            vector[name] = _claim_value(policy_id, rule, value)
    return _ordered(vector)


def _extensions(policy_id: str, bindings: Mapping[str, JSON]) -> list[dict[str, JSON]]:
    present, value = _one(bindings, "ext")
    if not present:
        return []
    if not isinstance(value, list):
        raise PolicyError(policy_id, f"extensions is not an array: {value!r}")
    out: list[dict[str, JSON]] = []
    for item in value:
        if not isinstance(item, dict) or not {"name", "key", "value"} <= item.keys():
            raise PolicyError(policy_id, f"an extension must be {{name, key, value}}, not {item!r}")
        name, key = item["name"], item["key"]
        if not isinstance(name, str) or not name:
            raise PolicyError(policy_id, f"extension name must be a string: {name!r}")
        if isinstance(key, bool) or not isinstance(key, int):
            raise PolicyError(policy_id, f"extension {name!r} key must be an integer: {key!r}")
        out.append({"name": name, "key": key, "value": item["value"]})
    return out
