"""veritee.policy.attestation: storage, lookup, generations, caching, our defaults."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from veritee.errors import VeriteeError
from veritee.policy.attestation import (
    TRUST_CLAIMS,
    Appraisal,
    AttestationPolicies,
    Generation,
    UnknownPolicy,
    ear_status,
    generation_of,
    tier,
)
from veritee.policy.engine import CompiledQuery, PolicyError
from veritee.store.kv import MemoryStore, SqliteStore

FIXTURES = Path(__file__).parent / "fixtures"
INTEL_VENDOR = "939a7233f79c4ca9940a0db3957f0607"


class FakeReferenceValues:
    """A ReferenceValues whose generation moves on every change."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {})
        self.generation = 1
        self.snapshots = 0

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value
        self.generation += 1

    def snapshot(self) -> tuple[int, Mapping[str, Any]]:
        self.snapshots += 1
        return self.generation, dict(self.values)

    def lookup(self, names: Iterable[str]) -> tuple[int, Mapping[str, Any]]:
        return self.generation, {n: self.values[n] for n in names if n in self.values}


@pytest.fixture
def rvs() -> FakeReferenceValues:
    return FakeReferenceValues()


@pytest.fixture
def policies(rvs: FakeReferenceValues) -> AttestationPolicies:
    return AttestationPolicies(MemoryStore(), rvs)


def tdx_claims(
    *, status: str = "UpToDate", debug: bool = False, mr_td: str = "aa" * 48
) -> dict[str, Any]:
    return {
        "tdx": {
            "quote": {
                "header": {"tee_type": "81000000", "vendor_id": INTEL_VENDOR, "version": "0400"},
                "body": {"mr_td": mr_td, "rtmr_1": "11" * 48, "rtmr_2": "22" * 48},
            },
            "td_attributes": {"debug": debug},
            "tcb_status": status,
        },
        "report_data": "00" * 64,
        "runtime_data_claims": None,
    }


def full(**claims: int) -> dict[str, int]:
    vector = dict.fromkeys(TRUST_CLAIMS, 0)
    vector.update({name.replace("_", "-"): value for name, value in claims.items()})
    return vector


# ------------------------------------------------------------------ tiers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "none"),
        (1, "none"),
        (-1, "none"),
        (2, "affirming"),
        (31, "affirming"),
        (-32, "affirming"),
        (32, "warning"),
        (36, "warning"),
        (95, "warning"),
        (-96, "warning"),
        (96, "contraindicated"),
        (97, "contraindicated"),
        (-97, "contraindicated"),
        (127, "contraindicated"),
        (-128, "contraindicated"),
    ],
)
def test_tier(value: int, expected: str) -> None:
    assert tier(value) == expected


def test_ear_status_is_the_worst_tier() -> None:
    assert ear_status({}) == "none"
    assert ear_status(full()) == "none"
    assert ear_status(full(executables=3, hardware=2, configuration=2)) == "affirming"
    assert ear_status(full(executables=33, hardware=2)) == "warning"
    assert ear_status({"hardware": 97, "executables": 33}) == "contraindicated"


# ---------------------------------------------------------------- storage


def test_defaults_are_installed(policies: AttestationPolicies) -> None:
    assert policies.list_policies() == ["default_cpu", "default_gpu"]
    assert "package policy" in policies.get_policy("default_cpu")


def test_defaults_never_overwrite(rvs: FakeReferenceValues) -> None:
    store = MemoryStore()
    mine = 'package policy\nimport rego.v1\ntrust_claims := {"hardware": 2}\n'
    store.put("attestation-policy", "default_cpu", mine.encode())
    policies = AttestationPolicies(store, rvs)
    assert policies.get_policy("default_cpu") == mine
    assert policies.appraise("default", "cpu", {}).vector == {"hardware": 2}


def test_set_get_list_delete(policies: AttestationPolicies) -> None:
    policies.set_policy("mine", "package policy\ndefault hardware := 2\n")
    assert policies.list_policies() == ["default_cpu", "default_gpu", "mine"]
    assert policies.get_policy("mine") == "package policy\ndefault hardware := 2\n"
    policies.delete_policy("mine")
    assert "mine" not in policies.list_policies()
    with pytest.raises(UnknownPolicy, match="mine"):
        policies.get_policy("mine")
    with pytest.raises(UnknownPolicy):
        policies.delete_policy("mine")


def test_bad_policy_is_not_stored(policies: AttestationPolicies) -> None:
    policies.set_policy("p", "package policy\ndefault hardware := 2\n")
    bad = "package policy\n\nimport rego.v1\n\nhardware := 2 if {\n\tinput.x ==\n}\n"
    with pytest.raises(PolicyError) as caught:
        policies.set_policy("p", bad)
    assert caught.value.policy_id == "p"
    assert (caught.value.line, caught.value.column) == (6, 10)
    assert policies.get_policy("p") == "package policy\ndefault hardware := 2\n"
    with pytest.raises(PolicyError):
        policies.set_policy("q", bad)
    assert "q" not in policies.list_policies()


def test_wrong_package_is_not_stored(policies: AttestationPolicies) -> None:
    with pytest.raises(PolicyError, match="package policy"):
        policies.set_policy("p", "package kbs\ndefault allow := true\n")
    assert "p" not in policies.list_policies()


@pytest.mark.parametrize("bad_id", ["", "../x", "a b", "x" * 129, "-x"])
def test_invalid_policy_ids(policies: AttestationPolicies, bad_id: str) -> None:
    with pytest.raises(PolicyError, match="invalid policy id"):
        policies.set_policy(bad_id, "package policy\n")


def test_load_directory(policies: AttestationPolicies, tmp_path: Path) -> None:
    (tmp_path / "default.rego").write_text((FIXTURES / "seed000_default.rego").read_text())
    (tmp_path / "client.rego").write_text((FIXTURES / "seed000_client.rego").read_text())
    (tmp_path / "notes.txt").write_text("not a policy")
    assert policies.load_directory(tmp_path) == ["client", "default"]
    assert policies.list_policies() == ["client", "default", "default_cpu", "default_gpu"]


def test_load_directory_is_all_or_nothing(policies: AttestationPolicies, tmp_path: Path) -> None:
    (tmp_path / "a.rego").write_text("package policy\ndefault hardware := 2\n")
    (tmp_path / "b.rego").write_text("package policy\nhardware := \n")
    with pytest.raises(PolicyError) as caught:
        policies.load_directory(tmp_path)
    assert caught.value.policy_id == "b"
    assert (caught.value.line, caught.value.column) == (2, 10)
    assert "a" not in policies.list_policies()


def test_policies_persist_in_sqlite(tmp_path: Path, rvs: FakeReferenceValues) -> None:
    with SqliteStore(tmp_path / "s.db") as store:
        AttestationPolicies(store, rvs).set_policy("x", "package policy\ndefault hardware := 2\n")
    with SqliteStore(tmp_path / "s.db") as store:
        again = AttestationPolicies(store, rvs)
        assert again.appraise("x", "cpu", {}).vector == {"hardware": 2}


# ---------------------------------------------------------------- lookup


def test_lookup_exact_id_then_tee_class_policy(policies: AttestationPolicies) -> None:
    policies.set_policy("p_gpu", "package policy\ndefault hardware := 32\n")
    assert policies.appraise("p", "gpu", {}).vector == {"hardware": 32}  # Trustee's <id>_<class>
    appraisal = policies.appraise("p", "gpu", {})
    assert appraisal.policy_id == "p"  # the requested id, as ear.appraisal-policy-id
    policies.set_policy("p", "package policy\ndefault hardware := 2\n")
    assert policies.appraise("p", "gpu", {}).vector == {"hardware": 2}  # a stored exact id wins


def test_unknown_policy_names_the_id(policies: AttestationPolicies) -> None:
    with pytest.raises(UnknownPolicy) as caught:
        policies.appraise("nosuch", "cpu", {})
    assert isinstance(caught.value, VeriteeError)
    assert caught.value.policy_id == "nosuch"
    assert "'nosuch'" in str(caught.value)
    assert caught.value.tried == ("nosuch", "nosuch_cpu")


# ------------------------------------------------------------ generations


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("package policy\ntrust_claims := {}\nresult := {}\nhardware := 2\n", Generation.CURRENT),
        ("package policy\nresult := {}\nhardware := 2\n", Generation.V016),
        ("package policy\ndefault file_system := 2\n", Generation.LEGACY),
        ("package policy\ndefault allow := true\n", Generation.NONE),
    ],
)
def test_generation_of(text: str, kind: Generation) -> None:
    assert generation_of(text) is kind


def test_current_generation_with_extensions(policies: AttestationPolicies) -> None:
    policies.set_policy(
        "cur",
        """package policy
import rego.v1
trust_claims := {"hardware": 2, "executables": 3} if input.ok
extensions := [{"name": "ear.trustee.identifiers", "key": -18, "value": {"validated": {}}}]
""",
    )
    appraisal = policies.appraise("cur", "cpu", {"ok": True})
    assert appraisal == Appraisal(
        policy_id="cur",
        vector={"executables": 3, "hardware": 2},
        extensions=[{"name": "ear.trustee.identifiers", "key": -18, "value": {"validated": {}}}],
    )
    # Trustee: an undefined trust_claims sets all eight claims to 0.
    assert policies.appraise("cur", "cpu", {"ok": False}).vector == full()


def test_v016_result_rule(policies: AttestationPolicies) -> None:
    policies.set_policy(
        "old",
        'package policy\nimport rego.v1\nresult := {"hardware": 2, "file-system": 32}\n',
    )
    appraisal = policies.appraise("old", "cpu", {})
    assert appraisal.vector == {"file-system": 32, "hardware": 2}
    assert appraisal.extensions == []


def test_legacy_rules_map_underscores(policies: AttestationPolicies) -> None:
    policies.set_policy(
        "legacy",
        """package policy
import rego.v1
default file_system := 2
default instance_identity := 2
runtime_opaque := 2 if input.x
sourced_data := 32 if input.y
storage_opaque := 2
""",
    )
    assert policies.appraise("legacy", "cpu", {"x": True}).vector == {
        "instance-identity": 2,
        "file-system": 2,
        "runtime-opaque": 2,
        "storage-opaque": 2,
    }


def test_policy_without_claim_rules_gives_zeros(policies: AttestationPolicies) -> None:
    policies.set_policy("allow", "package policy\ndefault allow = true\n")
    appraisal = policies.appraise("allow", "cpu", {})
    assert appraisal.vector == full()
    assert ear_status(appraisal.vector) == "none"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("trust_claims := {}", "At least one policy claim must be set."),
        ('trust_claims := {"hardware": "2"}', "not a number"),
        ('trust_claims := {"hardware": true}', "not a number"),
        ('trust_claims := {"hardware": 2.5}', "not an integer"),
        ('trust_claims := {"hardware": 128}', "does not fit an i8"),
        ('trust_claims := {"hardware": -129}', "does not fit an i8"),
        ('trust_claims := {"hardwar": 2}', "unknown trust claim"),
        ('trust_claims := {"file_system": 2}', "unknown trust claim"),
        ("trust_claims := [2]", "not an object"),
        ('result := {"hardware": 200}', "does not fit an i8"),
        ("hardware := 1000", "does not fit an i8"),
        ('hardware := "x"', "not a number"),
        ("hardware := 2 if input.never", "At least one policy claim must be set."),
        ('trust_claims := {"hardware": 2}\nextensions := {"a": 1}', "not an array"),
        ('trust_claims := {"hardware": 2}\nextensions := [{"name": "x"}]', "extension"),
        (
            'trust_claims := {"hardware": 2}\n'
            'extensions := [{"name": "x", "key": "k", "value": 1}]',
            "key must be an integer",
        ),
        ("trust_claims := x\nx := 1\nx := 2", "multiple outputs"),
    ],
)
def test_trustee_result_checks(policies: AttestationPolicies, body: str, message: str) -> None:
    policies.set_policy("chk", f"package policy\nimport rego.v1\n{body}\n")
    with pytest.raises(PolicyError, match=message) as caught:
        policies.appraise("chk", "cpu", {})
    assert caught.value.policy_id == "chk"


def test_i8_bounds_are_accepted(policies: AttestationPolicies) -> None:
    policies.set_policy(
        "b", 'package policy\ntrust_claims := {"hardware": 127, "executables": -128}\n'
    )
    assert policies.appraise("b", "cpu", {}).vector == {"executables": -128, "hardware": 127}


# ---------------------------------------------------------- reference values


def test_reference_values_reach_both_forms(
    policies: AttestationPolicies, rvs: FakeReferenceValues
) -> None:
    policies.set_policy(
        "both",
        """package policy
import rego.v1
default hardware := 97
default executables := 33
hardware := 2 if input.svn in data.reference.svn
executables := 3 if input.digest in query_reference_value("digest")
""",
    )
    claims = {"svn": "1", "digest": "abc"}
    assert policies.appraise("both", "cpu", claims).vector == {"executables": 33, "hardware": 97}
    rvs.set("svn", ["1"])
    rvs.set("digest", ["abc"])
    assert policies.appraise("both", "cpu", claims).vector == {"executables": 3, "hardware": 2}


def test_unknown_reference_value_is_null(policies: AttestationPolicies) -> None:
    policies.set_policy(
        "null",
        'package policy\nimport rego.v1\ntrust_claims := {"hardware": 2} if '
        'query_reference_value("absent") == null\n',
    )
    assert policies.appraise("null", "cpu", {}).vector == {"hardware": 2}


def test_policy_may_define_its_own_query_reference_value(policies: AttestationPolicies) -> None:
    policies.set_policy(
        "own",
        """package policy
import rego.v1
query_reference_value(id) := ["fixed"]
trust_claims := {"executables": 3} if "fixed" in query_reference_value("x")
""",
    )
    assert policies.appraise("own", "cpu", {}).vector == {"executables": 3}


def test_bundle_is_cached_and_rebuilt_on_generation_change(
    policies: AttestationPolicies, rvs: FakeReferenceValues, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[str] = []
    real = CompiledQuery

    def counting(*args: Any, **kwargs: Any) -> Any:
        builds.append(kwargs.get("policy_id", ""))
        return real(*args, **kwargs)

    monkeypatch.setattr("veritee.policy.attestation.CompiledQuery", counting)
    claims = {"sample": {"launch_digest": "abcde", "debug": False}}
    first = policies.appraise("default", "cpu", claims)
    policies.appraise("default", "cpu", claims)
    policies.appraise("default", "cpu", claims)
    assert builds == ["default_cpu"]
    assert first.vector["executables"] == 33

    rvs.set("launch_digest", ["abcde"])  # new generation → one rebuild
    assert policies.appraise("default", "cpu", claims).vector["executables"] == 3
    policies.appraise("default", "cpu", claims)
    assert builds == ["default_cpu", "default_cpu"]

    policies.set_policy("default_cpu", "package policy\ndefault hardware := 2\n")  # new text
    assert policies.appraise("default", "cpu", claims).vector == {"hardware": 2}
    assert builds == ["default_cpu", "default_cpu", "default_cpu"]


def test_text_changed_behind_our_back_is_noticed(rvs: FakeReferenceValues) -> None:
    store = MemoryStore()
    policies = AttestationPolicies(store, rvs)
    policies.set_policy("p", "package policy\ndefault hardware := 2\n")
    assert policies.appraise("p", "cpu", {}).vector == {"hardware": 2}
    other = AttestationPolicies(store, rvs)  # e.g. another worker on the same store
    other.set_policy("p", "package policy\ndefault hardware := 32\n")
    assert policies.appraise("p", "cpu", {}).vector == {"hardware": 32}


def test_appraise_prints_nothing(
    policies: AttestationPolicies, capfd: pytest.CaptureFixture[str]
) -> None:
    policies.appraise("default", "cpu", tdx_claims())
    policies.set_policy("e", "package policy\ntrust_claims := x\nx := 1\nx := 2\n")
    with pytest.raises(PolicyError):
        policies.appraise("e", "cpu", {})
    assert capfd.readouterr() == ("", "")


# -------------------------------------------------------------- seed 000


def test_seed_000_client_policy(policies: AttestationPolicies, tmp_path: Path) -> None:
    """Seed 000 (shared/seeds/000): client.rego with TDX evidence gives exactly this vector."""
    (tmp_path / "client.rego").write_text((FIXTURES / "seed000_client.rego").read_text())
    policies.load_directory(tmp_path)
    claims = {
        "tdx": {
            "quote": {
                "header": {"tee_type": "81000000", "vendor_id": INTEL_VENDOR, "version": "0400"},
                "body": {"mr_td": "00" * 48},
            }
        }
    }
    appraisal = policies.appraise("client", "cpu", claims)
    assert appraisal.vector == {
        "configuration": 2,
        "executables": 3,
        "file-system": 2,
        "hardware": 2,
    }
    assert list(appraisal.vector) == ["configuration", "executables", "file-system", "hardware"]
    assert ear_status(appraisal.vector) == "affirming"
    assert appraisal.extensions == []


def test_seed_000_default_policy(policies: AttestationPolicies) -> None:
    policies.set_policy("default", (FIXTURES / "seed000_default.rego").read_text())
    vector = policies.appraise("default", "tdx-only", tdx_claims()).vector
    assert vector == {"configuration": 2, "executables": 3, "file-system": 2, "hardware": 2}
    # Without TDX evidence the seed's defaults apply.
    other = policies.appraise("default", "tdx-only", {"snp": {}}).vector
    assert other == {"configuration": 32, "executables": 32, "file-system": 32, "hardware": 97}
    assert ear_status(other) == "contraindicated"
    # A stored "default" wins over the built-in per-class "default_cpu" ...
    assert policies.appraise("default", "cpu", {"snp": {}}).vector["executables"] == 32
    # ... and without it, "default" means "default_cpu" for the cpu class.
    policies.delete_policy("default")
    assert policies.appraise("default", "cpu", {"snp": {}}).vector["executables"] == 33


# --------------------------------------------------- veritee default_cpu


def test_default_cpu_tdx_without_reference_values_is_warning(
    policies: AttestationPolicies,
) -> None:
    appraisal = policies.appraise("default", "cpu", tdx_claims())
    assert appraisal.vector == full(executables=33, hardware=2, configuration=2)
    assert ear_status(appraisal.vector) == "warning"


@pytest.mark.parametrize(
    "rv",
    [
        {"mr_td": ["aa" * 48]},
        {"mr_td": "aa" * 48},  # a scalar reference value is compared for equality
        {"rtmr_1": ["11" * 48], "rtmr_2": ["22" * 48]},
    ],
)
def test_default_cpu_tdx_with_reference_values_is_affirming(
    policies: AttestationPolicies, rvs: FakeReferenceValues, rv: dict[str, Any]
) -> None:
    for name, value in rv.items():
        rvs.set(name, value)
    appraisal = policies.appraise("default", "cpu", tdx_claims())
    assert appraisal.vector == full(executables=3, hardware=2, configuration=2)
    assert ear_status(appraisal.vector) == "affirming"


def test_default_cpu_tdx_needs_both_rtmrs(
    policies: AttestationPolicies, rvs: FakeReferenceValues
) -> None:
    rvs.set("rtmr_1", ["11" * 48])
    assert policies.appraise("default", "cpu", tdx_claims()).vector["executables"] == 33


@pytest.mark.parametrize(
    ("status", "hardware"),
    [
        ("UpToDate", 2),
        ("OutOfDate", 32),
        ("SWHardeningNeeded", 32),
        ("ConfigurationNeeded", 32),
        ("ConfigurationAndSWHardeningNeeded", 32),
        ("OutOfDateConfigurationNeeded", 32),
        ("Revoked", 97),
        ("NotApplicable", 97),
    ],
)
def test_default_cpu_tdx_tcb_status(
    policies: AttestationPolicies, status: str, hardware: int
) -> None:
    assert (
        policies.appraise("default", "cpu", tdx_claims(status=status)).vector["hardware"]
        == hardware
    )


def test_default_cpu_tdx_not_genuine(policies: AttestationPolicies) -> None:
    claims = tdx_claims()
    claims["tdx"]["quote"]["header"]["vendor_id"] = "00" * 16
    assert policies.appraise("default", "cpu", claims).vector["hardware"] == 97


def test_default_cpu_tdx_debug(policies: AttestationPolicies) -> None:
    vector = policies.appraise("default", "cpu", tdx_claims(debug=True)).vector
    assert vector["configuration"] == 96
    assert ear_status(vector) == "contraindicated"


def snp_claims(*, debug: bool = False, status: str | None = "NotApplicable") -> dict[str, Any]:
    snp: dict[str, Any] = {
        "measurement": "ab" * 48,
        "policy_debug_allowed": debug,
        "policy_migrate_ma": False,
        "reported_tcb_bootloader": 9,
        "reported_tcb_tee": 0,
        "reported_tcb_snp": 23,
        "reported_tcb_microcode": 72,
    }
    if status is not None:
        snp["tcb_status"] = status
    return {"snp": snp, "report_data": "00" * 64}


@pytest.mark.parametrize("status", ["NotApplicable", None])
def test_default_cpu_snp(
    policies: AttestationPolicies, rvs: FakeReferenceValues, status: str | None
) -> None:
    claims = snp_claims(status=status)
    assert policies.appraise("default", "cpu", claims).vector == full(
        executables=33, hardware=2, configuration=2
    )
    rvs.set("snp_launch_measurement", ["ab" * 48])
    vector = policies.appraise("default", "cpu", claims).vector
    assert vector == full(executables=3, hardware=2, configuration=2)
    assert ear_status(vector) == "affirming"


def test_default_cpu_snp_debug(policies: AttestationPolicies) -> None:
    assert policies.appraise("default", "cpu", snp_claims(debug=True)).vector["configuration"] == 96


def test_default_cpu_sgx(policies: AttestationPolicies, rvs: FakeReferenceValues) -> None:
    claims = {
        "sgx": {
            "header": {"version": "0300", "vendor_id": INTEL_VENDOR},
            "body": {"mr_enclave": "cd" * 32},
            "debug": False,
            "tcb_status": "SWHardeningNeeded",
        }
    }
    assert policies.appraise("default", "cpu", claims).vector == full(
        executables=33, hardware=32, configuration=2
    )
    rvs.set("mr_enclave", ["cd" * 32])
    assert policies.appraise("default", "cpu", claims).vector["executables"] == 3


def test_default_cpu_sample(policies: AttestationPolicies, rvs: FakeReferenceValues) -> None:
    claims = {
        "sample": {
            "svn": "1",
            "launch_digest": "abcde",
            "platform_version": {"major": 1, "minor": 4},
            "debug": False,
        }
    }
    assert ear_status(policies.appraise("default", "cpu", claims).vector) == "warning"
    rvs.set("launch_digest", ["abcde"])
    assert ear_status(policies.appraise("default", "cpu", claims).vector) == "affirming"


def test_default_cpu_unknown_tee(policies: AttestationPolicies) -> None:
    vector = policies.appraise("default", "cpu", {"cca": {}}).vector
    assert vector == full(executables=33, hardware=97, configuration=36)


def test_default_cpu_identifiers_extension(policies: AttestationPolicies) -> None:
    claims = tdx_claims()
    claims["init_data_claims"] = {
        "agent_policy_claims": {
            "containers": [
                {
                    "OCI": {
                        "Annotations": {"io.kubernetes.cri.image-name": "pause:3.9"},
                        "Process": {"User": {"UID": 65535}},
                    }
                },
                {"OCI": {"Annotations": {"io.kubernetes.cri.image-name": "busybox"}}},
            ]
        }
    }
    assert policies.appraise("default", "cpu", claims).extensions == [
        {
            "name": "ear.trustee.identifiers",
            "key": -18,
            "value": {
                "validated": {
                    "container_images": ["pause:3.9", "busybox"],
                    "container_uids": [65535],
                }
            },
        }
    ]
    claims["init_data_claims"] = None
    assert policies.appraise("default", "cpu", claims).extensions == [
        {"name": "ear.trustee.identifiers", "key": -18, "value": {"validated": {}}}
    ]


# --------------------------------------------------- veritee default_gpu


def nras_claims() -> dict[str, Any]:
    chain = {"x-nvidia-cert-status": "valid", "x-nvidia-cert-ocsp-status": "good"}
    nvidia: dict[str, Any] = {
        "x-nvidia-gpu-attestation-report-cert-chain": chain,
        "x-nvidia-gpu-vbios-rim-cert-chain": chain,
        "secboot": True,
        "dbgstat": "disabled",
        "measres": "success",
        "x-nvidia-gpu-vbios-version": "96.00.5e.00.01",
        "x-nvidia-gpu-driver-version": "550.90.07",
    }
    for check in (
        "x-nvidia-gpu-attestation-report-cert-chain-fwid-match",
        "x-nvidia-gpu-attestation-report-parsed",
        "x-nvidia-gpu-attestation-report-signature-verified",
        "x-nvidia-gpu-arch-check",
        "x-nvidia-gpu-driver-rim-fetched",
        "x-nvidia-gpu-driver-rim-schema-validated",
        "x-nvidia-gpu-driver-rim-signature-verified",
        "x-nvidia-gpu-driver-rim-version-match",
        "x-nvidia-gpu-driver-rim-measurements-available",
        "x-nvidia-gpu-vbios-rim-fetched",
        "x-nvidia-gpu-vbios-rim-schema-validated",
        "x-nvidia-gpu-vbios-rim-signature-verified",
        "x-nvidia-gpu-vbios-rim-version-match",
        "x-nvidia-gpu-vbios-rim-measurements-available",
    ):
        nvidia[check] = True
    return {"nvidia": nvidia}


def test_default_gpu_nvidia(policies: AttestationPolicies, rvs: FakeReferenceValues) -> None:
    claims = nras_claims()
    assert policies.appraise("default", "gpu", claims).vector == full(
        executables=3, hardware=2, configuration=3
    )
    rvs.set("allowed_vbios_versions", ["96.00.5e.00.01"])
    rvs.set("allowed_driver_versions", ["550.90.07"])
    assert policies.appraise("default", "gpu", claims).vector["configuration"] == 2
    claims["nvidia"]["x-nvidia-gpu-arch-check"] = False
    claims["nvidia"]["dbgstat"] = "enabled"
    vector = policies.appraise("default", "gpu", claims).vector
    assert (vector["hardware"], vector["configuration"]) == (97, 96)


def test_default_gpu_measurement_mismatch_is_contraindicated(
    policies: AttestationPolicies,
) -> None:
    claims = nras_claims()
    claims["nvidia"]["measres"] = "fail"
    appraisal = policies.appraise("default", "gpu", claims)
    assert appraisal.vector["executables"] == 96
    assert appraisal.vector["hardware"] == 2  # the report itself still verified
    claims["nvidia"]["measres"] = "not-compared"  # no RIM: unrecognised, not condemned
    assert policies.appraise("default", "gpu", claims).vector["executables"] == 33


def test_default_gpu_sample_device(policies: AttestationPolicies, rvs: FakeReferenceValues) -> None:
    claims = {"sampledevice": {"svn": "2"}}
    assert policies.appraise("default", "gpu", claims).vector["hardware"] == 97
    rvs.set("device_svn", ["2"])
    assert policies.appraise("default", "gpu", claims).vector["hardware"] == 2
