"""Trustee's own policies (tests/data/trustee) give Trustee's results.

Expected values come from Trustee's tests at the commits in SOURCES.md
(repo confidential-containers/trustee), cited per test; a few are marked
"derived": no upstream test asserts them, they follow from the policy text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from datadir import TRUSTEE

from veritee.policy.attestation import TRUST_CLAIMS, AttestationPolicies, ear_status
from veritee.policy.engine import CompiledQuery, evaluate
from veritee.policy.resource import ResourcePolicy
from veritee.store.kv import MemoryStore


@pytest.fixture(scope="module", autouse=True)
def _need_fixtures() -> None:
    if not TRUSTEE.is_dir():
        pytest.fail(f"Trustee fixtures not found at {TRUSTEE}")


def text(path: str) -> str:
    return (TRUSTEE / path).read_text("utf-8")


class StaticValues:
    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.values = dict(values or {})

    def snapshot(self) -> tuple[int, Mapping[str, Any]]:
        return 1, self.values

    def lookup(self, names: Iterable[str]) -> tuple[int, Mapping[str, Any]]:
        return 1, {n: self.values[n] for n in names if n in self.values}


def policies_with(policy_id: str, path: str, rvs: Mapping[str, Any] | None = None) -> Any:
    policies = AttestationPolicies(MemoryStore(), StaticValues(rvs))
    policies.set_policy(policy_id, text(path))
    return policies


def full(**claims: int) -> dict[str, int]:
    vector = dict.fromkeys(TRUST_CLAIMS, 0)
    vector.update({name.replace("_", "-"): value for name, value in claims.items()})
    return vector


# What Trustee's sample verifier reports (deps/verifier/src/sample/mod.rs at HEAD).
SAMPLE = {
    "sample": {
        "svn": "1",
        "report_data": "cmVwb3J0",
        "launch_digest": "abcde",
        "platform_version": {"major": 1, "minor": 4},
        "debug": False,
    },
    "report_data": "cmVwb3J0",
    "runtime_data_claims": {"nonce": "n"},
}

HEAD_CPU = "attestation-service/src/ear_token/ear_default_policy_cpu.rego"
SAMPLE_RVS = {"svn": ["1"], "launch_digest": ["abcde"], "major_version": 1}


# ------------------------------------------------------- default_cpu (HEAD)


@pytest.mark.parametrize("minimum_minor_version", [0, 1, 2, 3, 4])
def test_head_default_cpu_sample_with_reference_values_is_affirming(
    minimum_minor_version: int,
) -> None:
    """trustee.md §g.1 / upstream e2e: registering svn=["1"], launch_digest=["abcde"],
    major_version=1, minimum_minor_version=0..4 makes the sample affirming."""
    rvs = {**SAMPLE_RVS, "minimum_minor_version": minimum_minor_version}
    appraisal = policies_with("default_cpu", HEAD_CPU, rvs).appraise("default", "cpu", SAMPLE)
    assert appraisal.policy_id == "default"
    assert appraisal.vector == full(executables=3, hardware=2, configuration=2)
    assert ear_status(appraisal.vector) == "affirming"
    assert appraisal.extensions == [
        {"name": "ear.trustee.identifiers", "key": -18, "value": {"validated": {}}}
    ]


def test_head_default_cpu_sample_minor_version_too_low() -> None:
    rvs = {**SAMPLE_RVS, "minimum_minor_version": 5}
    policies = policies_with("default_cpu", HEAD_CPU, rvs)
    vector = policies.appraise("default", "cpu", SAMPLE).vector
    assert vector == full(executables=3, hardware=97, configuration=2)


def test_head_default_cpu_sample_without_reference_values() -> None:
    """trustee.md §g.1: no reference values → executables 33, hardware 97,
    configuration 2 → contraindicated (the KBS integration test
    `policy_contraindicated` relies on the same status)."""
    appraisal = policies_with("default_cpu", HEAD_CPU).appraise("default", "cpu", SAMPLE)
    assert appraisal.vector == full(executables=33, hardware=97, configuration=2)
    assert ear_status(appraisal.vector) == "contraindicated"


def test_head_default_cpu_identifiers_extension() -> None:
    """trustee.md §g.1: images and UIDs from the agent policy's containers."""
    claims = {
        **SAMPLE,
        "init_data_claims": {
            "agent_policy_claims": {
                "containers": [
                    {
                        "OCI": {
                            "Annotations": {"io.kubernetes.cri.image-name": "nginx:1"},
                            "Process": {"User": {"UID": 101}},
                        }
                    }
                ]
            }
        },
    }
    appraisal = policies_with("default_cpu", HEAD_CPU).appraise("default", "cpu", claims)
    assert appraisal.extensions == [
        {
            "name": "ear.trustee.identifiers",
            "key": -18,
            "value": {"validated": {"container_images": ["nginx:1"], "container_uids": [101]}},
        }
    ]


def test_head_default_cpu_tdx_fixture() -> None:
    """Derived: Trustee's parsed TDX claims fixture plus DCAP supplemental claims;
    RTMRs match but the fixture's event log has no kernel events → executables 4
    (the GKE/grub branch), mr_td + UpToDate → hardware 2; the fixture is a debug TD
    (td_attributes.debug true) → configuration stays 36, and 2 once debug is off."""
    claims = json.loads(text("deps/verifier/test_data/parse_tdx_claims_expected.json"))
    claims.update(tcb_status="UpToDate", collateral_expiration_status="0")
    body = claims["quote"]["body"]
    rvs = {name: [body[name]] for name in ("mr_td", "rtmr_1", "rtmr_2", "xfam")}
    policies = policies_with("default_cpu", HEAD_CPU, rvs)
    vector = policies.appraise("default", "cpu", {"tdx": claims}).vector
    assert vector == full(executables=4, hardware=2, configuration=36)
    claims["td_attributes"]["debug"] = False
    vector = policies.appraise("default", "cpu", {"tdx": claims}).vector
    assert vector == full(executables=4, hardware=2, configuration=2)
    claims["tcb_status"] = "OutOfDate"
    vector = policies.appraise("default", "cpu", {"tdx": claims}).vector
    assert vector == full(executables=4, hardware=97, configuration=2)


# --------------------------------------------- ear_sample.rego, legacy v0.15


def sample_input(svn: int, digest: str) -> dict[str, Any]:
    return {
        "sample": {
            "svn": str(svn),
            "launch_digest": digest,
            "platform_version": {"major": 1, "minor": 4},
        }
    }


def sample_reference(svn: int, digest: str) -> dict[str, Any]:
    return {
        "svn": [str(svn)],
        "launch_digest": [digest],
        "major_version": 1,
        "minimum_minor_version": 1,
    }


# (reference svn, input svn, reference digest, input digest, executables, hardware)
OPA_CASES = [
    (1, 1, "aac43bb3", "aac43bb3", 3, 2),
    (2, 1, "aac43bb3", "aac43bb3", 3, 97),
    (1, 1, "aac43bb4", "aac43bb3", 33, 2),
    (2, 1, "aac43bb4", "aac43bb3", 33, 97),
]


@pytest.mark.parametrize(("svn_a", "svn_b", "digest_a", "digest_b", "ex", "hw"), OPA_CASES)
def test_ear_sample_policy(
    svn_a: int, svn_b: int, digest_a: str, digest_b: str, ex: int, hw: int
) -> None:
    """v0.16.0 attestation-service/src/policy_engine/opa/mod.rs `test_evaluate`
    (policy tests/policy/ear_sample.rego, reference values as data.reference)."""
    policies = policies_with(
        "ear_sample",
        "attestation-service/tests/policy/ear_sample.rego",
        sample_reference(svn_a, digest_a),
    )
    vector = policies.appraise("ear_sample", "cpu", sample_input(svn_b, digest_b)).vector
    assert (vector["executables"], vector["hardware"]) == (ex, hw)
    assert vector == full(executables=ex, hardware=hw, configuration=36)


@pytest.mark.parametrize(("svn_a", "svn_b", "digest_a", "digest_b", "ex", "hw"), OPA_CASES)
def test_legacy_v015_default_cpu_policy(
    svn_a: int, svn_b: int, digest_a: str, digest_b: str, ex: int, hw: int
) -> None:
    """v0.15.0 attestation-service/src/policy_engine/opa/mod.rs `test_evaluate`
    (policy src/token/ear_default_policy_cpu.rego, one rule per claim): the
    vector holds only the claims the policy defines."""
    policies = policies_with(
        "default_cpu",
        "legacy-v0.15.0/attestation-service/src/token/ear_default_policy_cpu.rego",
        sample_reference(svn_a, digest_a),
    )
    vector = policies.appraise("default", "cpu", sample_input(svn_b, digest_b)).vector
    assert vector == {"configuration": 36, "executables": ex, "hardware": hw}


def test_legacy_v015_default_gpu_policy() -> None:
    """Derived: the ≤v0.15 GPU policy defines only `hardware`."""
    policies = policies_with(
        "default_gpu",
        "legacy-v0.15.0/attestation-service/src/token/ear_default_policy_gpu.rego",
        {"device_svn": ["2"]},
    )
    assert policies.appraise("default", "gpu", {"sampledevice": {"svn": "2"}}).vector == {
        "hardware": 2
    }
    assert policies.appraise("default", "gpu", {"sampledevice": {"svn": "3"}}).vector == {
        "hardware": 97
    }


# ---------------------------------------------------- ear_no_rv_policy_cpu


def test_ear_no_rv_policy_resolves_with_the_tee_class() -> None:
    """HEAD ear_token/broker.rs `test_issue_ear_ephemeral_key`: the policy is stored
    as ear_no_rv_policy_cpu, requested as ear_no_rv_policy, with sample claims
    {"claim": "claim1"}: the token is issued (vector derived: the defaults)."""
    policies = policies_with(
        "ear_no_rv_policy_cpu",
        "attestation-service/tests/coco-as/policy/opa/ear_no_rv_policy_cpu.rego",
    )
    claims = {
        "sample": {"claim": "claim1"},
        "runtime_data_claims": {"runtime_data": "111"},
        "init_data_claims": {"initdata": "111"},
    }
    appraisal = policies.appraise("ear_no_rv_policy", "cpu", claims)
    assert appraisal.policy_id == "ear_no_rv_policy"
    assert appraisal.vector == full(executables=33, hardware=97, configuration=36)
    # Derived: real sample claims satisfy every existence check.
    vector = policies.appraise("ear_no_rv_policy", "cpu", SAMPLE).vector
    assert vector == full(executables=3, hardware=2, configuration=2)
    assert ear_status(vector) == "affirming"


# ------------------------------------- GPU / switch / ppcie / CCA (HEAD)


def test_head_default_gpu_nras_claims() -> None:
    """HEAD ear_token/policy_tests.rs `verifier_claim_selects_policy_path`, remote
    claims: hardware 2 (the fixture copy predates the `verifier` switch)."""
    nvidia = {
        "x-nvidia-gpu-attestation-report-cert-chain": {
            "x-nvidia-cert-ocsp-status": "good",
            "x-nvidia-cert-status": "valid",
        },
        "x-nvidia-gpu-attestation-report-cert-chain-fwid-match": True,
        "x-nvidia-gpu-attestation-report-parsed": True,
        "x-nvidia-gpu-attestation-report-signature-verified": True,
        "x-nvidia-gpu-arch-check": True,
    }
    policies = policies_with(
        "default_gpu", "attestation-service/src/ear_token/ear_default_policy_gpu.rego"
    )
    vector = policies.appraise("default", "gpu", {"nvidia": nvidia}).vector
    assert vector == full(executables=33, hardware=2, configuration=36)


def test_head_default_gpu_sample_device_reads_data_reference() -> None:
    """trustee.md §g.2: the GPU policy's leftover `data.reference.device_svn` rule.
    Trustee at HEAD passes no data, so it always gives 97; veritee supplies
    data.reference, so the rule works as written (a deliberate difference)."""
    policies = policies_with(
        "default_gpu",
        "attestation-service/src/ear_token/ear_default_policy_gpu.rego",
        {"device_svn": ["2"]},
    )
    assert (
        policies.appraise("default", "gpu", {"sampledevice": {"svn": "2"}}).vector["hardware"] == 2
    )


def test_head_default_ppcie_and_switch() -> None:
    """trustee.md §g.2: ppcie → configuration 2, everything else 0; switch defaults."""
    ppcie = policies_with(
        "default_ppcie", "attestation-service/src/ear_token/ear_default_policy_ppcie.rego"
    )
    vector = ppcie.appraise("default", "ppcie", {"nvidia": {}}).vector
    assert vector == full(configuration=2)
    assert ear_status(vector) == "affirming"
    switch = policies_with(
        "default_switch", "attestation-service/src/ear_token/ear_default_policy_switch.rego"
    )
    assert switch.appraise("default", "switch", {"nvidia": {}}).vector == full(
        executables=33, hardware=97, configuration=36
    )


def test_cca_policy() -> None:
    """Derived: deps/verifier/test_data/cca/conf/default.rego sets five claims and
    reads data.reference["cca.realm.cca-realm-initial-measurement"]."""
    rim = "ab" * 32
    policies = policies_with(
        "default_cpu",
        "deps/verifier/test_data/cca/conf/default.rego",
        {"cca.realm.cca-realm-initial-measurement": [rim]},
    )
    claims = {"cca": {"realm": {"cca-realm-initial-measurement": rim}}}
    assert policies.appraise("default", "cpu", claims).vector == {
        "instance-identity": 2,
        "configuration": 36,
        "executables": 3,
        "hardware": 2,
        "runtime-opaque": 2,
    }


# -------------------------------------------- coco-as example policies


def test_coco_as_example_1_flattened_sgx_claims() -> None:
    """Derived: tests/coco-as/policy/example-1.rego is per-claim (only
    `executables`) over the old flattened claims."""
    policies = policies_with("example", "attestation-service/tests/coco-as/policy/example-1.rego")
    claims = {
        "sgx.body.mr_enclave": "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68",
        "sgx.body.mr_signer": "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e",
    }
    assert policies.appraise("example", "cpu", claims).vector == {"executables": 3}
    assert policies.appraise("example", "cpu", {}).vector == {"executables": 33}


@pytest.mark.parametrize("name", ["example-2.rego", "example-3.rego", "new_policy.rego"])
def test_coco_as_example_policies_compile(name: str) -> None:
    policies = policies_with("p", f"attestation-service/tests/coco-as/policy/{name}")
    assert policies.appraise("p", "cpu", {}).vector


# ------------------------------------------ KBS integration test (HEAD)

# integration-tests/tests/get_resource.rs at HEAD: attestation policies set as
# default_cpu / default_gpu and the KBS resource policies that check ear.status.
_CLAIM_DEFAULTS = """package policy
import rego.v1

default hardware := 97
default executables := 33
default configuration := 36
default file_system := 0
default instance_identity := 0
default runtime_opaque := 0
default storage_opaque := 0
default sourced_data := 0

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
	"file-system": file_system,
	"instance-identity": instance_identity,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": storage_opaque,
	"sourced-data": sourced_data,
}
"""
EAR_CONTRAINDICATED = _CLAIM_DEFAULTS
EAR_RV = (
    _CLAIM_DEFAULTS
    + 'hardware := 2 if {\n    input.sample.svn in query_reference_value("svn")\n}\n'
)
EAR_DEVICE_RV = (
    _CLAIM_DEFAULTS
    + 'hardware := 2 if {\n    input.sampledevice.svn in query_reference_value("device_svn")\n}\n'
)
CHECK_CONTRAINDICATED = """package policy
import rego.v1

default allow = false

allow if {
    input["submods"]["cpu0"]["ear.status"] != "contraindicated"
}
"""
CHECK_CONTRAINDICATED_DEVICE = """package policy
import rego.v1

default allow = false

allow if {
    input["submods"]["cpu0"]["ear.status"] != "contraindicated"
    input["submods"]["gpu0"]["ear.status"] != "contraindicated"
}
"""
SAMPLE_DEVICE = {"sampledevice": {"svn": "2", "report_data": "cmVwb3J0"}}
INTEGRATION_RVS = {
    "svn": ["1"],
    "launch_digest": ["abcde"],
    "major_version": 1,
    "minimum_minor_version": 1,
}


@pytest.mark.parametrize(
    ("resource_policy", "rvs", "cpu_policy", "gpu_policy", "released"),
    [
        pytest.param("allow_all", {}, EAR_CONTRAINDICATED, None, True, id="basic_ear_allow_all"),
        pytest.param("deny_all", {}, EAR_CONTRAINDICATED, None, False, id="basic_ear_deny_all"),
        pytest.param(
            CHECK_CONTRAINDICATED,
            {},
            EAR_CONTRAINDICATED,
            None,
            False,
            id="policy_contraindicated",
        ),
        pytest.param(
            CHECK_CONTRAINDICATED,
            INTEGRATION_RVS,
            EAR_RV,
            None,
            True,
            id="policy_not_contraindicated",
        ),
        pytest.param(
            CHECK_CONTRAINDICATED_DEVICE,
            INTEGRATION_RVS,
            EAR_RV,
            EAR_RV,
            False,
            id="device_contraindicated",
        ),
        pytest.param(
            CHECK_CONTRAINDICATED_DEVICE,
            {**INTEGRATION_RVS, "device_svn": ["2"]},
            EAR_RV,
            EAR_DEVICE_RV,
            True,
            id="device_not_contraindicated",
        ),
    ],
)
def test_kbs_integration_cases(
    resource_policy: str,
    rvs: dict[str, Any],
    cpu_policy: str,
    gpu_policy: str | None,
    released: bool,
) -> None:
    policies = AttestationPolicies(MemoryStore(), StaticValues(rvs))
    policies.set_policy("default_cpu", cpu_policy)
    devices: list[tuple[str, dict[str, Any]]] = [("cpu", SAMPLE)]
    if gpu_policy is not None:
        policies.set_policy("default_gpu", gpu_policy)
        devices.append(("gpu", SAMPLE_DEVICE))
    submods: dict[str, Any] = {}
    for tee_class, claims in devices:
        appraisal = policies.appraise("default", tee_class, claims)
        submods[f"{tee_class}0"] = {
            "ear.status": ear_status(appraisal.vector),
            "ear.trustworthiness-vector": appraisal.vector,
            "ear.veraison.annotated-evidence": claims,
        }
    if resource_policy in {"allow_all", "deny_all"}:
        resource_policy = text(f"kbs/sample_policies/{resource_policy}.rego")
    policy = ResourcePolicy(resource_policy)
    token_claims = {"submods": submods}
    assert (
        policy.allows(token_claims, repository="default", type_="test", tag="secret", query={})
        is released
    )


# ------------------------------------------------ KBS resource policies


def kbs_claims(product: str, svn: int) -> dict[str, Any]:
    # deps/policy-engine/src/policy/rego.rs `test_kbs_policy_evaluate` input
    return {
        "submods": {
            "cpu0": {
                "ear.trustworthiness-vector": {"executables": 2, "hardware": 3},
                "ear.veraison.annotated-evidence": {"sample": {"productId": product, "svn": svn}},
            }
        }
    }


def engine_allow(policy: str, data: dict[str, Any], claims: dict[str, Any]) -> bool:
    compiled = CompiledQuery(
        [("p.rego", text(f"deps/policy-engine/test_data/{policy}"))],
        "allow := data.policy.allow",
        data=data,
    )
    result = evaluate(compiled, claims).get("allow")
    assert isinstance(result, bool)
    return result


# HEAD deps/policy-engine/src/policy/rego.rs `test_kbs_policy_evaluate`:
# (policy, plugin, resource path, productId, svn, expected)
POLICY_ENGINE_CASES = [
    ("policy_1.rego", "resource", ["my_repo", "Alice", "key"], "Alice", 1, True),
    ("policy_1.rego", "another-plugin", ["my_repo", "Alice", "key"], "Alice", 1, False),
    ("policy_4.rego", "resource", ["my_repo", "Alice", "key"], "Alice", 1, True),
    ("policy_1.rego", "resource", ["my_repo", "Alice", "key"], "Bob", 1, False),
    ("policy_3.rego", "resource", ["my_repo", "Alice", "key"], "Alice", 1, False),
    ("policy_5.rego", "resource", ["myrepo", "secret", "secret"], "n", 2, False),
    ("policy_5.rego", "resource", ["myrepo", "secret", "secret1"], "n", 1, False),
    ("policy_5.rego", "resource", ["myrepo", "secret", "secret2"], "n", 2, False),
    ("policy_5.rego", "resource", ["myrepo", "secret", "secret3"], "n", 3, False),
    ("policy_5.rego", "resource", ["a", "b", "secret2"], "n", 3, False),
    ("policy_5.rego", "abc", [], "n", 3, False),
]


@pytest.mark.parametrize(
    ("policy", "plugin", "path", "product", "svn", "expected"), POLICY_ENGINE_CASES
)
def test_policy_engine_cases(
    policy: str, plugin: str, path: list[str], product: str, svn: int, expected: bool
) -> None:
    data = {"plugin": plugin, "resource-path": path, "query": {}}
    assert engine_allow(policy, data, kbs_claims(product, svn)) is expected
    if plugin == "resource" and len(path) == 3:
        rp = ResourcePolicy(text(f"deps/policy-engine/test_data/{policy}"))
        repository, type_, tag = path
        assert (
            rp.allows(kbs_claims(product, svn), repository=repository, type_=type_, tag=tag)
            is expected
        )


@pytest.mark.parametrize(
    ("path", "svn", "expected"),
    [
        # The true cases of the v0.x (request_path) version of this rstest, on the
        # current data form; derived from policy_5's resources map.
        (["myrepo", "secret", "secret1"], 2, True),
        (["myrepo", "secret", "secret2"], 3, True),
        (["myrepo", "secret", "secret2"], 2, False),
    ],
)
def test_policy_5_minimum_svn(path: list[str], svn: int, expected: bool) -> None:
    rp = ResourcePolicy(text("deps/policy-engine/test_data/policy_5.rego"))
    repository, type_, tag = path
    assert rp.allows(kbs_claims("n", svn), repository=repository, type_=type_, tag=tag) is expected


def test_policy_2_allows_everything() -> None:
    rp = ResourcePolicy(text("deps/policy-engine/test_data/policy_2.rego"))
    assert rp.allows({}, repository="a", type_="b", tag="c")


def ear_token(*statuses: str, tee: str = "tdx") -> dict[str, Any]:
    return {
        "submods": {
            f"cpu{i}": {"ear.status": s, "ear.veraison.annotated-evidence": {tee: {}}}
            for i, s in enumerate(statuses)
        }
    }


@pytest.mark.parametrize(
    ("policy", "claims", "expected"),
    [
        # trustee.md §g.3: default releases to any real TEE (even contraindicated),
        # never to the sample TEE
        ("default", ear_token("affirming"), True),
        ("default", ear_token("contraindicated"), True),
        ("default", ear_token("affirming", tee="sample"), False),
        ("allow_all", ear_token("contraindicated", tee="sample"), True),
        ("deny_all", ear_token("affirming"), False),
        ("affirming", ear_token("affirming"), True),
        ("affirming", ear_token("affirming", "affirming"), True),
        ("affirming", ear_token("affirming", "warning"), False),
        ("affirming", ear_token(), False),
    ],
)
def test_kbs_sample_policies(policy: str, claims: dict[str, Any], expected: bool) -> None:
    rp = ResourcePolicy(text(f"kbs/sample_policies/{policy}.rego"))
    assert rp.allows(claims, repository="default", type_="key", tag="k", query={}) is expected


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        (ear_token("affirming"), True),
        (ear_token("affirming", tee="sample"), False),
    ],
)
def test_legacy_v015_kbs_default_policy(claims: dict[str, Any], expected: bool) -> None:
    """trustee.md §g.3: ≤v0.16 data {"resource-path": "<repo>/<type>/<tag>"}; the
    built-in default refuses only the sample TEE (no plugin check)."""
    rp = ResourcePolicy(
        text("legacy-v0.15.0/kbs/src/policy_engine/opa/default_policy.rego"), legacy_data=True
    )
    assert rp.allows(claims, repository="a", type_="b", tag="c") is expected


@pytest.mark.parametrize(
    ("flattened", "reference", "expected"),
    [
        (
            {"sgx.body.mr_enclave": "aa", "sgx.body.isv_svn": "1"},
            {"sgx.body.mr_enclave": ["aa"]},
            True,
        ),
        ({"sgx.body.mr_enclave": "bb"}, {"sgx.body.mr_enclave": ["aa"]}, False),
        ({"sgx.body.mr_enclave": "bb"}, {"sgx.body.mr_enclave": []}, True),
        ({"x": "1"}, {"x": "1"}, True),
        ({"x": "2"}, {"x": "1"}, False),
    ],
)
def test_legacy_simple_token_policy(
    flattened: dict[str, str], reference: dict[str, Any], expected: bool
) -> None:
    """Derived from the policy's own documentation: the removed Simple token's
    default policy (allow over flattened claims against data.reference)."""
    compiled = CompiledQuery(
        [
            (
                "simple.rego",
                text("legacy-v0.15.0/attestation-service/src/token/simple_default_policy.rego"),
            )
        ],
        "allow := data.policy.allow",
        data={"reference": reference},
    )
    assert evaluate(compiled, flattened) == {"allow": expected}
