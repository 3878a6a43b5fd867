"""EAR (EAT Attestation Result) claims, built exactly as Trustee's attestation service does.

Pure data: no keys, no clock, no I/O.  The caller passes ``now``; :mod:`veritee.token.signer`
turns the claims into a signed JWT.  Names and shapes follow ``veraison/rust-ear`` as used
by Trustee (``attestation-service/src/ear_token/broker.rs``):

* top level, in this order: ``eat_profile``, ``iat``, ``ear.verifier-id`` ``{developer,
  build}``, ``submods``, then the broker's two extensions ``exp`` and ``iss``;
* ``submods`` keyed ``cpu0``, ``gpu0``, ``gpu1`` ... and serialized with sorted keys;
* each appraisal: ``ear.status`` (the worst tier of its set claims),
  ``ear.trustworthiness-vector`` (only the set claims, in EAR key order),
  ``ear.appraisal-policy-id``, ``ear.veraison.annotated-evidence``, then each policy
  extension as a member ``name: value``.

veritee adds one thing Trustee has no notion of: evidence that chained to an emulator test
root is marked ``"ear.veritee.emulated": true`` in its appraisal and at the top level, so
a relying party can refuse it without re-reading the evidence.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from veritee import __version__

#: The eight AR4SI trustworthiness claims, in EAR key order (CBOR keys 0..7).
TRUST_CLAIMS: tuple[str, ...] = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)

#: Tier names from least to most severe (rust-ear ``TrustTier``).
TIERS: tuple[str, ...] = ("none", "affirming", "warning", "contraindicated")

EAR_PROFILE = "tag:github.com,2024:confidential-containers/Trustee"

STATUS = "ear.status"
TRUST_VECTOR = "ear.trustworthiness-vector"
POLICY_ID = "ear.appraisal-policy-id"
ANNOTATED_EVIDENCE = "ear.veraison.annotated-evidence"
VERIFIER_ID = "ear.verifier-id"
EMULATED = "ear.veritee.emulated"

_APPRAISAL_KEYS = frozenset(
    {STATUS, TRUST_VECTOR, POLICY_ID, ANNOTATED_EVIDENCE, "ear.veraison.policy-claims", EMULATED}
)
_I8_MIN, _I8_MAX = -128, 127


def tier(value: int) -> str:
    """The trust tier of one claim value (rust-ear ``TrustClaim::tier``).

    ``[-1, 1]`` none, ``[-32, 31]`` affirming, ``[-96, 95]`` warning, otherwise
    contraindicated.  Values are EAR's i8; anything else is a ``ValueError``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"trust claim value must be an int, not {type(value).__name__}")
    if not _I8_MIN <= value <= _I8_MAX:
        raise ValueError(f"trust claim value {value} is outside [-128, 127]")
    if -1 <= value <= 1:
        return "none"
    if -32 <= value <= 31:
        return "affirming"
    if -96 <= value <= 95:
        return "warning"
    return "contraindicated"


def _check_vector(vector: Mapping[str, int]) -> None:
    unknown = sorted(set(vector) - set(TRUST_CLAIMS))
    if unknown:
        raise ValueError(f"unknown trust claim(s): {', '.join(unknown)}")
    for value in vector.values():
        tier(value)


def ear_status(vector: Mapping[str, int]) -> str:
    """The worst tier over the claims that are set; ``"none"`` when none is set."""
    _check_vector(vector)
    worst = 0
    for value in vector.values():
        worst = max(worst, TIERS.index(tier(value)))
    return TIERS[worst]


def _ordered_vector(vector: Mapping[str, int]) -> dict[str, int]:
    return {name: int(vector[name]) for name in TRUST_CLAIMS if name in vector}


@dataclass(frozen=True)
class SubmodAppraisal:
    """One appraised device (a submod of the EAR).

    ``extensions`` are the policy's ``data.policy.extensions`` entries, each
    ``{"name", "key", "value"}``; each becomes a member ``name: value`` of the appraisal
    (``key`` is the CBOR key, unused in JSON).
    """

    name: str
    vector: dict[str, int]
    policy_id: str
    annotated_evidence: dict[str, Any]
    extensions: list[dict[str, Any]] = field(default_factory=list)
    emulated: bool = False


@dataclass(frozen=True)
class EarSettings:
    """Trustee's ``attestation_token_broker`` settings that shape the claims."""

    profile: str = EAR_PROFILE
    issuer: str = "CoCo-Attestation-Service"
    developer: str = "https://confidentialcontainers.org"
    build: str = f"veritee {__version__}"
    duration_s: int = 300
    verbose: bool = True


_SCALARS = (str, int, float, bool, type(None))


def _copy(value: Any) -> Any:
    """A deep copy of a JSON value (several times faster than ``copy.deepcopy``, which
    remembers every object it visits); anything that is not JSON goes to ``deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {key: _copy(item) for key, item in value.items()}
    if kind is list:
        return [_copy(item) for item in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


def _annotated(evidence: Mapping[str, Any], verbose: bool) -> dict[str, Any]:
    out: dict[str, Any] = _copy(dict(evidence))
    runtime = out.get("runtime_data_claims")
    if not verbose and isinstance(runtime, dict):
        # Trustee's verbose_token=false drops the (large) additional evidence.
        runtime.pop("additional-evidence", None)
    return out


def _appraisal(submod: SubmodAppraisal, verbose: bool) -> dict[str, Any]:
    if not submod.vector:
        raise ValueError(f"{submod.name}: at least one policy claim must be set")
    _check_vector(submod.vector)
    body: dict[str, Any] = {
        STATUS: ear_status(submod.vector),
        TRUST_VECTOR: _ordered_vector(submod.vector),
        POLICY_ID: submod.policy_id,
        ANNOTATED_EVIDENCE: _annotated(submod.annotated_evidence, verbose),
    }
    for extension in submod.extensions:
        name = extension.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{submod.name}: an extension has no name")
        if "value" not in extension:
            raise ValueError(f"{submod.name}: extension {name} has no value")
        if name in _APPRAISAL_KEYS or name in body:
            raise ValueError(f"{submod.name}: extension {name} collides with an EAR member")
        body[name] = _copy(extension["value"])
    if submod.emulated:
        body[EMULATED] = True
    return body


def ear_claims(
    appraisals: Sequence[SubmodAppraisal], settings: EarSettings, *, now: int
) -> dict[str, Any]:
    """The EAR claims Trustee's broker signs, for ``appraisals`` issued at ``now``."""
    if not appraisals:
        raise ValueError("an EAR needs at least one appraisal")
    names = [submod.name for submod in appraisals]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate submod names: {names}")
    if settings.duration_s <= 0:
        raise ValueError("token duration must be positive")
    submods = {
        submod.name: _appraisal(submod, settings.verbose)
        for submod in sorted(appraisals, key=lambda s: s.name)
    }
    claims: dict[str, Any] = {
        "eat_profile": settings.profile,
        "iat": now,
        VERIFIER_ID: {"developer": settings.developer, "build": settings.build},
        "submods": submods,
        "exp": now + settings.duration_s,
        "iss": settings.issuer,
    }
    if any(submod.emulated for submod in appraisals):
        claims[EMULATED] = True
    return claims


def submod_names(tee_classes: Sequence[str]) -> list[str]:
    """``<class><n>`` per device, ``n`` counting from 0 per class in order."""
    counts: dict[str, int] = {}
    names = []
    for tee_class in tee_classes:
        index = counts.get(tee_class, 0)
        counts[tee_class] = index + 1
        names.append(f"{tee_class}{index}")
    return names


__all__ = [
    "ANNOTATED_EVIDENCE",
    "EAR_PROFILE",
    "EMULATED",
    "POLICY_ID",
    "STATUS",
    "TIERS",
    "TRUST_CLAIMS",
    "TRUST_VECTOR",
    "VERIFIER_ID",
    "EarSettings",
    "SubmodAppraisal",
    "ear_claims",
    "ear_status",
    "submod_names",
    "tier",
]
