"""Trustee's GPU attestation policy, unchanged, over the claims veritee's NVIDIA verifier
writes (issue 13: "Trustee's GPU policy reads them unchanged").

The policy is Trustee's HEAD ``ear_default_policy_gpu.rego`` (tests/data/trustee, see
SOURCES.md).  The claims come from our verifier: the emulated H100 with the test root's RIMs
and OCSP responses, and the real Hopper report.  Expected vectors are read off the policy's
rules: hardware 2 needs a valid chain with OCSP "good" and the report checks; executables 3
needs both RIMs fetched, validated, version-matched and ``measres`` "success" with the VBIOS
RIM chain good; configuration 3 needs ``secboot`` and ``dbgstat`` "disabled", and 2 also
the VBIOS and driver versions among the reference values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from datadir import TRUSTEE, VECTORS

from veritee.emulator.nvidia import EmulatedGpu, GpuFields
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.nvidia import NvidiaAttester
from veritee.policy.attestation import TRUST_CLAIMS, AttestationPolicies, ear_status
from veritee.store.kv import MemoryStore
from veritee.verifier.base import VerifyOptions
from veritee.verifier.nvidia import NvidiaVerifier
from veritee.verifier.registry import VerifierSettings, build_verifier

POLICY = TRUSTEE / "attestation-service/src/ear_token/ear_default_policy_gpu.rego"


class Values:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def snapshot(self) -> tuple[int, dict[str, Any]]:
        return 1, self.values

    def lookup(self, names: Iterable[str]) -> tuple[int, Mapping[str, Any]]:
        return 1, {n: self.values[n] for n in names if n in self.values}


def appraise(claims: dict[str, Any], reference: dict[str, Any] | None = None) -> dict[str, int]:
    policies = AttestationPolicies(MemoryStore(), Values(reference or {}))
    policies.set_policy("default_gpu", POLICY.read_text("utf-8"))
    return dict(policies.appraise("default", "gpu", {"nvidia": claims}).vector)


def expected(**claims: int) -> dict[str, int]:
    vector = dict.fromkeys(TRUST_CLAIMS, 0)
    vector.update({name.replace("_", "-"): value for name, value in claims.items()})
    return vector


def emulated_claims(root: TestRoot, fields: GpuFields | None = None) -> dict[str, Any]:
    evidence = NvidiaAttester([EmulatedGpu(root.gpu(), fields)]).evidence(b"nonce")
    verifier = build_verifier("nvidia", VerifierSettings(trust_root=root.directory))
    verdict = verifier.verify(evidence, VerifyOptions(report_data=b"nonce"))
    claims: dict[str, Any] = json.loads(json.dumps(verdict.claims))
    return claims


def test_an_emulated_gpu_matching_its_rims_is_affirming(test_root: TestRoot) -> None:
    claims = emulated_claims(test_root)
    assert claims["measres"] == "success"
    vector = appraise(claims)
    assert vector == expected(hardware=2, executables=3, configuration=3)
    assert ear_status(vector) == "affirming"
    allowed = {
        "allowed_vbios_versions": [claims["x-nvidia-gpu-vbios-version"]],
        "allowed_driver_versions": [claims["x-nvidia-gpu-driver-version"]],
    }
    assert appraise(claims, allowed) == expected(hardware=2, executables=3, configuration=2)
    other = {"allowed_vbios_versions": ["96.00.00.00.00"], "allowed_driver_versions": ["1.0"]}
    assert appraise(claims, other) == expected(hardware=2, executables=3, configuration=3)


def test_a_gpu_measured_otherwise_loses_executables_and_secboot(test_root: TestRoot) -> None:
    fields = GpuFields()
    fields.measurements[3] = b"\x42" * 48
    claims = emulated_claims(test_root, fields)
    assert claims["measres"] == "fail"
    # Trustee's policy leaves such a GPU at the warning defaults (ours says 96: default_gpu.rego)
    assert appraise(claims) == expected(hardware=2, executables=33, configuration=36)


def test_the_real_hopper_report_without_ocsp_or_rims() -> None:
    # Offline there is no OCSP answer for NVIDIA's real chain ("unknown", never "good") and
    # no RIM: Trustee's rules for hardware and executables are not met.
    nv = VECTORS / "nvidia"
    verifier = NvidiaVerifier(cert_chain=(nv / "hopperCertChain.txt").read_bytes())
    nonce = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
    verdict = verifier.verify(
        (nv / "hopperAttestationReport.txt").read_bytes(), VerifyOptions(report_data=nonce)
    )
    assert verdict.verified, verdict.error
    claims: dict[str, Any] = json.loads(json.dumps(verdict.claims))
    chain = claims["x-nvidia-gpu-attestation-report-cert-chain"]
    assert chain["x-nvidia-cert-status"] == "valid"
    assert chain["x-nvidia-cert-ocsp-status"] == "unknown"
    assert appraise(claims) == expected(hardware=97, executables=33, configuration=36)
    # ...and the same claims with a good OCSP answer meet the hardware rule as written.
    chain["x-nvidia-cert-ocsp-status"] = "good"
    assert appraise(claims)["hardware"] == 2
