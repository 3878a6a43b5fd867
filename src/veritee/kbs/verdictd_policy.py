"""Verdictd's attestation gate and the resource-policy input of an RA-TLS peer.

**The gate** (:class:`VerdictdGate`).  Verdictd checks the client's evidence in the
rats-tls verification callback: for SGX it builds the OPA input ::

    {"mrEnclave": "<standard base64 of the 32 bytes>", "mrSigner": "<same>",
     "productId": <ISV_PROD_ID>, "svn": <ISV_SVN>}

and evaluates ``sgxPolicy.rego`` (``package policy``) with the reference document
``sgxData`` as ``data``; ``data.policy.allow`` must be ``true``.  Any other TEE is "Not
implemented" in Verdictd and refused here too (Hygon CSV does not exist in veritee).
:data:`DEFAULT_SGX_POLICY` is veritee's own text with the semantics of Verdictd's default:
an empty ``mrEnclave``/``mrSigner`` list accepts any value, a non-empty one must contain
the peer's, and ``productId``/``svn`` are minimums.  :data:`DEFAULT_SGX_DATA` is Verdictd's
default reference (accept every genuine enclave).  The gate implements R1's
:class:`~veritee.ratls.policy.RatlsPolicy`, so it runs inside the RA-TLS verification,
before a byte of application data: a refused peer gets nothing.

**The resource-policy input** (:func:`peer_policy_input`).  Over RCAR the KBS's resource
policy sees the claims of the EAR token the built-in AS signed.  For an RA-TLS peer the
same document is built without the signature: the peer's verified claims go through the
AS's ``transform_claims`` (under the TEE's name, ``report_data`` and ``init_data`` on top;
``runtime_data_claims`` and ``init_data_claims`` are null, as the RA-TLS report data is
the hash of the certificate key, not a runtime-data document), are appraised by the
AS's attestation policy ``default`` (``default_cpu`` unless an operator replaced it) and
wrapped by ``ear_claims``, so a resource policy reads ``input.submods.cpu0["ear.status"]``,
``input.submods.cpu0["ear.veraison.annotated-evidence"].sgx...`` and
``input["ear.veritee.emulated"]`` exactly as over RCAR.  One member is added at the top
level, ``"ear.veritee.ratls": {"tee", "fmt", "measurements"}``, so a policy can tell a
channel peer from an RCAR token (``measurements`` is the flat hex view of the peer).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from veritee.as_.service import TEE_CLASS, AttestationService, transform_claims
from veritee.errors import ConfigError, VeriteeError
from veritee.policy.engine import JSON, CompiledQuery, PolicyError, compile_policy, evaluate
from veritee.token.ear import SubmodAppraisal, ear_claims, submod_names

__all__ = [
    "DEFAULT_SGX_DATA",
    "DEFAULT_SGX_POLICY",
    "RATLS_CLAIM",
    "GateRefusal",
    "PeerView",
    "VerdictdGate",
    "load_gate",
    "peer_policy_input",
    "sgx_opa_input",
]

log = logging.getLogger("veritee.kbs.verdictd")

#: veritee's default sgxPolicy.rego (Verdictd's default semantics, our own text).
DEFAULT_SGX_POLICY = """package policy

import rego.v1

# veritee's default Verdictd gate for SGX peers.  input: mrEnclave and mrSigner (standard
# base64 of the 32 raw bytes), productId and svn (numbers).  data: the sgxData reference.
# An empty list of accepted measurements accepts any; productId and svn are minimums.
default allow := false

allow if {
	accepted(data.mrEnclave, input.mrEnclave)
	accepted(data.mrSigner, input.mrSigner)
	input.productId >= data.productId
	input.svn >= data.svn
}

accepted(values, _) if count(values) == 0

accepted(values, value) if value in values
"""

#: Verdictd's default sgxData: every genuine enclave passes.
DEFAULT_SGX_DATA: dict[str, JSON] = {"mrEnclave": [], "mrSigner": [], "productId": 0, "svn": 0}

#: The member of the resource-policy input that describes the RA-TLS channel.
RATLS_CLAIM = "ear.veritee.ratls"

_QUERY = "allow := [v | v := data.policy.allow]"
_GATE_ID = "sgxPolicy"


class PeerView(Protocol):
    """What the broker reads of an RA-TLS peer (R1's ``RatlsPeer`` has these members)."""

    @property
    def tee(self) -> str: ...

    @property
    def fmt(self) -> str: ...

    @property
    def claims(self) -> dict[str, Any]: ...

    @property
    def measurements(self) -> dict[str, str]: ...

    @property
    def emulated(self) -> bool: ...


class GateRefusal(VeriteeError):
    """The Verdictd gate refused a peer (its policy said no, or its TEE has no policy)."""


def _number(value: object, what: str) -> int:
    """ISV_PROD_ID / ISV_SVN from the peer's measurements: a number, or the 2-byte
    little-endian hex the verifier's claims use."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if raw:
            return int.from_bytes(raw, "little")
    raise GateRefusal(f"the peer's {what} is not a number")


def _measurement_b64(measurements: Mapping[str, Any], name: str) -> str:
    value = measurements.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise GateRefusal(f"the peer's {name} is not 32 bytes of hex")
    return base64.b64encode(raw).decode()


def sgx_opa_input(peer: PeerView) -> dict[str, JSON]:
    """Verdictd's OPA input for an SGX peer (§3.1 of the RA-TLS digest)."""
    m = peer.measurements
    return {
        "mrEnclave": _measurement_b64(m, "mrenclave"),
        "mrSigner": _measurement_b64(m, "mrsigner"),
        "productId": _number(m.get("isvprodid"), "isvprodid"),
        "svn": _number(m.get("isvsvn"), "isvsvn"),
    }


class VerdictdGate:
    """``sgxPolicy.rego`` over ``sgxData``: may this RA-TLS peer talk to the broker?

    ``check`` raises R1's ``RatlsError("policy", why)`` so that the TLS layer closes the
    connection and logs the reason; :meth:`refusal` gives the same decision as a value.
    A policy that does not compile, or data that is not a JSON object, is a ConfigError.
    """

    def __init__(
        self, policy: str = DEFAULT_SGX_POLICY, data: Mapping[str, JSON] | None = None
    ) -> None:
        reference = dict(DEFAULT_SGX_DATA if data is None else data)
        try:
            compile_policy(_GATE_ID, policy)
            self._compiled = CompiledQuery(
                [(f"{_GATE_ID}.rego", policy)], _QUERY, data=reference, policy_id=_GATE_ID
            )
        except PolicyError as exc:
            raise ConfigError(f"the Verdictd SGX policy: {exc}") from exc
        self.policy = policy
        self.data = reference

    def refusal(self, peer: PeerView) -> str | None:
        """Why ``peer`` is refused, or None when the policy allows it."""
        if peer.tee != "sgx":
            return (
                f"Verdictd's gate has a policy for sgx evidence only; {peer.tee} is "
                "not implemented"
            )
        try:
            opa_input = sgx_opa_input(peer)
        except GateRefusal as exc:
            return str(exc)
        try:
            values = evaluate(self._compiled, opa_input).get("allow")
        except PolicyError as exc:
            return f"the SGX policy failed: {exc.message}"
        if isinstance(values, list) and values and values[0] is True:
            return None
        shown = json.dumps(opa_input, sort_keys=True, separators=(",", ":"))
        return f"sgxPolicy.rego refused {shown} under sgxData"

    def check(self, peer: PeerView) -> None:
        """R1's RatlsPolicy: raise ``RatlsError("policy", why)`` for a refused peer."""
        why = self.refusal(peer)
        if why is not None:
            from veritee.ratls.verify import RatlsError

            raise RatlsError("policy", why)


def load_gate(policy_path: Path | None, data_path: Path | None) -> VerdictdGate:
    """A gate from Verdictd-style files (either may be absent: the default is used)."""
    policy = DEFAULT_SGX_POLICY
    data: Mapping[str, JSON] | None = None
    if policy_path is not None:
        try:
            policy = policy_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the SGX policy {policy_path}: {exc}") from exc
    if data_path is not None:
        try:
            loaded = json.loads(data_path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read the SGX reference {data_path}: {exc}") from exc
        except ValueError:
            raise ConfigError(f"{data_path}: the SGX reference is not JSON") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{data_path}: the SGX reference must be a JSON object")
        data = loaded
    return VerdictdGate(policy, data)


def peer_policy_input(
    peer: PeerView,
    attestation: AttestationService,
    *,
    policy_id: str = "default",
    clock: Callable[[], float] = time.time,
) -> JSON:
    """The resource policy's input for an RA-TLS peer: the EAR claims RCAR would give
    (unsigned; see the module doc), plus :data:`RATLS_CLAIM`.  Raises PolicyError when the
    attestation policy cannot appraise the claims."""
    claims = dict(peer.claims)
    evidence = transform_claims(
        peer.tee, claims, runtime_data_claims=None, init_data_claims=None,
        verbose=attestation.ear.verbose,
    )
    tee_class = TEE_CLASS.get(peer.tee, "cpu")
    try:
        appraisal = attestation.policies.appraise(policy_id, tee_class, evidence)
    except PolicyError:
        raise
    except VeriteeError as exc:  # an unknown policy id
        raise PolicyError(policy_id, str(exc)) from exc
    name = submod_names([tee_class])[0]
    submod = SubmodAppraisal(
        name=name, vector=dict(appraisal.vector), policy_id=policy_id,
        annotated_evidence=evidence, extensions=list(appraisal.extensions),
        emulated=peer.emulated,
    )
    out = ear_claims([submod], attestation.ear, now=int(clock()))
    out[RATLS_CLAIM] = {
        "tee": peer.tee, "fmt": peer.fmt, "measurements": dict(peer.measurements),
    }
    return out
