"""The Attestation Service core: requests in, an EAR token out.  No web imports here.

For each verification request: verify the evidence with the TEE's verifier,
binding the expected report data (raw runtime data, or the hash of its JCS
form) and init data; turn the verifier's claims into Trustee's policy input
(``transform_claims``); appraise them with the attestation policy; then sign
one EAR token over all appraisals.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from veritee.as_.errors import (
    CollateralUnavailable,
    InitDataMismatch,
    MalformedEvidence,
    PolicyEngineError,
    RuntimeDataMismatch,
    UnknownPolicy,
    VerificationFailed,
)
from veritee.as_.request import AttestationRequest, VerificationRequest
from veritee.errors import CollateralError, ParseError
from veritee.policy.attestation import AttestationPolicies
from veritee.policy.attestation import UnknownPolicy as PolicyNotFound
from veritee.policy.engine import PolicyError
from veritee.token.ear import EarSettings, SubmodAppraisal, ear_claims, submod_names
from veritee.token.signer import TokenSigner
from veritee.verifier.base import JSON, DeviceVerifier, Verdict, Verifier, VerifyOptions

log = logging.getLogger("veritee.as")

TEE_CLASS = {"tdx": "cpu", "sgx": "cpu", "snp": "cpu", "sample": "cpu", "nvidia": "gpu"}

#: One verified device: its class (cpu, gpu), its policy input, whether it is emulated.
Verified = tuple[str, JSON, bool]


def transform_claims(tee: str, claims: JSON, *, runtime_data_claims: Any,
                     init_data_claims: Any, verbose: bool = True) -> JSON:
    """Trustee's policy input: init_data and report_data on top, the rest under the tee name."""
    rest = dict(claims)
    out: JSON = {}
    if "init_data" in rest:
        out["init_data"] = rest.pop("init_data")
        out["init_data_claims"] = init_data_claims
    if "report_data" in rest:
        out["report_data"] = rest.pop("report_data")
        if isinstance(runtime_data_claims, dict) and not verbose:
            runtime_data_claims = {k: v for k, v in runtime_data_claims.items()
                                   if k != "additional-evidence"}
        out["runtime_data_claims"] = runtime_data_claims
    out[tee] = rest
    return out


#: Steps at which the evidence itself verified but the device differs from its reference
#: values (an NVIDIA GPU's RIMs): the claims say so (``measres`` "fail") and the policy
#: appraises them, so a failing GPU is a contraindicated submod, as with NRAS in Trustee.
REFERENCE_STEPS = frozenset({"rim_version", "rim_measurements"})


def _raise_unless_verified(verdict: Verdict) -> None:
    if verdict.verified:
        return
    if verdict.step in REFERENCE_STEPS:
        log.warning("%s: %s (left to the policy)", verdict.tee, verdict.error)
        return
    step, detail = verdict.step or "verify", verdict.error or "rejected"
    if step == "report_data":
        raise RuntimeDataMismatch(step, "the runtime data does not match the evidence's "
                                        "report data")
    if step == "init_data":
        raise InitDataMismatch(step, "the init data does not match the evidence's "
                                     "init-data binding")
    raise VerificationFailed(step, detail)


class AttestationService:
    """Verifies, appraises and signs.  Thread-safe: verifiers are built once per tee."""

    def __init__(self, *, verifier_factory: Callable[[str], Verifier],
                 policies: AttestationPolicies, signer: TokenSigner, ear: EarSettings,
                 allow_debug: bool = False, clock: Callable[[], float] = time.time) -> None:
        self._factory = verifier_factory
        self._verifiers: dict[str, Verifier] = {}
        self._lock = threading.Lock()
        self.policies = policies
        self.signer = signer
        self.ear = ear
        self._allow_debug = allow_debug
        self._clock = clock

    def verifier(self, tee: str) -> Verifier:
        """The verifier for ``tee``, built on first use."""
        with self._lock:
            verifier = self._verifiers.get(tee)
            if verifier is None:
                verifier = self._verifiers[tee] = self._factory(tee)
            return verifier

    def verify_one(self, request: VerificationRequest) -> list[Verified]:
        """Verify one piece of evidence: one entry per device it describes (one for a CPU
        TEE; one per GPU for an NVIDIA device list), each (class, policy input, emulated)."""
        expected_report = (request.runtime_data.expected_report_data(request.hash_algorithm)
                           if request.runtime_data is not None else None)
        expected_init = request.init_data.digest if request.init_data is not None else None
        options = VerifyOptions(report_data=expected_report, init_data=expected_init,
                                allow_debug=self._allow_debug)
        verifier = self.verifier(request.tee)
        try:
            if isinstance(verifier, DeviceVerifier):
                verdicts = verifier.verify_devices(request.evidence, options)
            else:
                verdicts = [verifier.verify(request.evidence, options)]
        except ParseError as exc:
            raise MalformedEvidence(str(exc)) from exc
        except CollateralError as exc:
            raise CollateralUnavailable(str(exc)) from exc
        for verdict in verdicts:
            _raise_unless_verified(verdict)
        # Trustee's AS logs this line; seed 000 tells operators to look for it.
        log.info("%s Verifier/endorsement check passed.", request.tee.capitalize())
        return [self._policy_input(request, verdict) for verdict in verdicts]

    def _policy_input(self, request: VerificationRequest, verdict: Verdict) -> Verified:
        claims = dict(verdict.claims)
        if request.tee == "sample" and request.init_data is not None:
            claims["init_data"] = base64.b64encode(request.init_data.digest).decode()
        policy_input = transform_claims(
            request.tee, claims,
            runtime_data_claims=(request.runtime_data.claims()
                                 if request.runtime_data is not None else None),
            init_data_claims=(request.init_data.claims()
                              if request.init_data is not None else None),
            verbose=self.ear.verbose)
        return TEE_CLASS[request.tee], policy_input, bool(verdict.claims.get("emulated"))

    def attest(self, request: AttestationRequest) -> str:
        """Return a signed EAR token for the request, or raise a ServiceError."""
        verified = [device for r in request.verification_requests
                    for device in self.verify_one(r)]
        names = submod_names([tee_class for tee_class, _, _ in verified])
        policy_id = request.policy_ids[0]
        appraisals = []
        for name, (tee_class, policy_input, emulated) in zip(names, verified, strict=True):
            try:
                appraisal = self.policies.appraise(policy_id, tee_class, policy_input)
            except PolicyNotFound as exc:
                raise UnknownPolicy(str(exc)) from exc
            except PolicyError as exc:
                raise PolicyEngineError(f"policy {policy_id!r}: {exc}") from exc
            appraisals.append(SubmodAppraisal(
                name=name, vector=dict(appraisal.vector), policy_id=policy_id,
                annotated_evidence=policy_input, extensions=list(appraisal.extensions),
                emulated=emulated))
        claims = ear_claims(appraisals, self.ear, now=int(self._clock()))
        return self.signer.sign(claims)
