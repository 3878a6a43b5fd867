"""RCAR protocol logic: Trustee's version rule, Challenge, Attestation parsing, binding."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from datadir import TRUSTEE

from veritee.as_.errors import UnknownTee
from veritee.as_.request import AttestationRequest
from veritee.errors import VerificationError
from veritee.kbs import rcar
from veritee.kbs.errors import AttestationError
from veritee.kbs.session import Session

RCAR_VECTORS = TRUSTEE / "derived" / "rcar-sample-vectors.json"
KBS_CLIENT = TRUSTEE / "tools" / "kbs-client"
ERROR_TYPE = "https://github.com/confidential-containers/kbs/errors/AttestationError"


@pytest.fixture(scope="module")
def vec() -> dict[str, Any]:
    if not RCAR_VECTORS.is_file():
        pytest.fail(f"RCAR vectors not found at {RCAR_VECTORS}")
    doc: dict[str, Any] = json.loads(RCAR_VECTORS.read_text())
    return doc


def request_body(**overrides: Any) -> bytes:
    doc: dict[str, Any] = {
        "version": "0.4.0",
        "tee": "sample",
        "extra-params": {"supported-hash-algorithms": ["sha384"]},
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


def session_for(vec: dict[str, Any], tee: str = "sample") -> Session:
    return Session(
        id="a" * 32,
        nonce=vec["single_device"]["challenge"]["nonce"],
        tee=tee,
        extra_params={},
        expires_at=1e12,
    )


# --------------------------------------------------------------------------- /auth


@pytest.mark.parametrize(
    "version", ["0.1.0", "0.1.1", "0.2.0", "0.3.0", "0.4.1", "1.0.0", "0.4.0-rc1", "0.4.0-alpha.1"]
)
def test_other_protocol_versions_are_refused_with_trustee_detail(version: str) -> None:
    with pytest.raises(AttestationError) as exc:
        rcar.new_session(request_body(version=version), timeout_s=300, now=0)
    assert exc.value.detail == (
        "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: "
        f"expect =0.4.0 while the request is {version}"
    )
    assert exc.value.status == 401
    assert exc.value.body()["type"] == ERROR_TYPE


@pytest.mark.parametrize(
    "version", ["0.4", "v0.4.0", " 0.4.0", "0.4.0 ", "00.4.0", "0.04.0", "", "0.4.0-", "0.4.0+"]
)
def test_unparseable_versions_fail_to_parse(version: str) -> None:
    with pytest.raises(AttestationError) as exc:
        rcar.new_session(request_body(version=version), timeout_s=300, now=0)
    assert exc.value.detail == (
        "Attestation error: RCAR handshake Auth failed: failed to parse KBS version"
    )


def test_build_metadata_is_ignored_as_the_semver_crate_does() -> None:
    rcar.check_version("0.4.0+build.7")  # matches =0.4.0


def test_kbs_client_sample_auth_json_is_refused() -> None:
    body = (KBS_CLIENT / "auth.json").read_bytes()  # version 0.1.0, extra-params "foo"
    with pytest.raises(AttestationError) as exc:
        rcar.new_session(body, timeout_s=300, now=0)
    assert exc.value.detail.endswith("expect =0.4.0 while the request is 0.1.0")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'"0.4.0"',
        b"\xff\xfe",
        b'{"tee": "sample"}',
        b'{"version": 4, "tee": "sample"}',
        b'{"version": "0.4.0", "tee": "sev"}',  # gone from kbs-types
        b'{"version": "0.4.0", "tee": "TDX"}',  # serde names are lowercase
        b'{"version": "0.4.0", "tee": "nope"}',
        b'{"version": "0.4.0"}',
        b'{"version": "0.4.0", "tee": "tdx", "tee": "sample"}',  # duplicate field
        b'{"version": "0.4.0", "tee": "tdx", "extra-params": NaN}',
    ],
)
def test_malformed_requests_and_unknown_tees_fail_to_deserialize(body: bytes) -> None:
    with pytest.raises(AttestationError) as exc:
        rcar.new_session(body, timeout_s=300, now=0)
    assert exc.value.detail == (
        "Attestation error: RCAR handshake Auth failed: deserialize Request"
    )


def test_challenge_is_a_44_char_standard_base64_nonce_and_empty_extra_params() -> None:
    session, challenge = rcar.new_session(request_body(tee="tdx"), timeout_s=300, now=1000.0)
    assert list(challenge) == ["nonce", "extra-params"]
    assert challenge["extra-params"] == ""
    nonce = challenge["nonce"]
    assert len(nonce) == 44
    assert nonce.endswith("=")
    assert len(base64.b64decode(nonce, validate=True)) == 32
    assert session.nonce == nonce
    assert session.tee == "tdx"
    assert session.expires_at == 1300.0
    assert not session.attested
    assert len(session.id) == 32
    assert all(c in "0123456789abcdef" for c in session.id)
    other, again = rcar.new_session(request_body(tee="tdx"), timeout_s=300, now=1000.0)
    assert again["nonce"] != nonce
    assert other.id != session.id


@pytest.mark.parametrize("extra", [None, "", "foo", {}, {"supported-hash-algorithms": []}])
def test_extra_params_of_any_json_shape_are_accepted(extra: Any) -> None:
    session, challenge = rcar.new_session(
        json.dumps({"version": "0.4.0", "tee": "snp", "extra-params": extra}).encode(),
        timeout_s=5,
        now=0,
    )
    assert challenge["extra-params"] == ""
    assert session.extra_params == (extra if isinstance(extra, dict) else {})


def test_missing_extra_params_is_null_as_serde_reads_it() -> None:
    _, challenge = rcar.new_session(b'{"version":"0.4.0","tee":"sgx"}', timeout_s=5, now=0)
    assert challenge["extra-params"] == ""


def test_se_negotiates_sha512() -> None:
    _, challenge = rcar.new_session(
        request_body(
            tee="se", **{"extra-params": {"supported-hash-algorithms": ["sha384", "SHA512"]}}
        ),
        timeout_s=5,
        now=0,
    )
    assert challenge["extra-params"] == {"selected-hash-algorithm": "sha512"}
    _, plain = rcar.new_session(request_body(tee="se", **{"extra-params": ""}), timeout_s=5, now=0)
    assert plain["extra-params"] == ""


@pytest.mark.parametrize("algorithms", [["sha384"], "sha512"])
def test_se_without_sha512_fails_to_generate_a_challenge(algorithms: Any) -> None:
    with pytest.raises(AttestationError) as exc:
        rcar.new_session(
            request_body(tee="se", **{"extra-params": {"supported-hash-algorithms": algorithms}}),
            timeout_s=5,
            now=0,
        )
    assert exc.value.detail == (
        "Attestation error: RCAR handshake Auth failed: "
        "Attestation Service generate challenge failed"
    )


# --------------------------------------------------------------------------- vectors


def test_upstream_jcs_vector(vec: dict[str, Any]) -> None:
    unit = vec["upstream_unit_vector"]
    assert rcar.jcs(unit["input"]).decode() == unit["jcs"]
    assert hashlib.sha384(rcar.jcs(unit["input"])).hexdigest() == unit["sha384_hex"]


def test_single_device_vector(vec: dict[str, Any]) -> None:
    single = vec["single_device"]
    attestation = rcar.parse_attestation(json.dumps(single["attestation"]).encode())
    runtime = rcar.runtime_data(
        single["challenge"]["nonce"], attestation.tee_pubkey, attestation.additional_evidence
    )
    assert runtime == single["primary_runtime_data"]
    assert rcar.jcs(runtime).decode() == single["primary_runtime_data_jcs"]
    digest = rcar.expected_report_data("sample", runtime)
    assert digest.hex() == single["primary_report_data_sha384_hex"]
    # ...and the sample evidence carries exactly that digest as its report data.
    evidence = single["attestation"]["tee-evidence"]["primary_evidence"]
    assert base64.b64decode(evidence["report_data"]) == digest


def test_composite_vector(vec: dict[str, Any]) -> None:
    composite = vec["with_sampledevice_additional_evidence"]
    nonce = vec["single_device"]["challenge"]["nonce"]
    attestation = rcar.parse_attestation(json.dumps(composite["attestation"]).encode())
    primary = rcar.runtime_data(nonce, attestation.tee_pubkey, attestation.additional_evidence)
    device = rcar.runtime_data(nonce, attestation.tee_pubkey, None)
    assert rcar.jcs(primary).decode() == composite["primary_runtime_data_jcs"]
    assert rcar.jcs(device).decode() == composite["device_runtime_data_jcs"]
    assert rcar.device_runtime_data(primary) == device
    assert (
        rcar.expected_report_data("sample", primary).hex()
        == composite["primary_report_data_sha384_hex"]
    )
    device_digest = rcar.expected_report_data("sampledevice", device)
    assert device_digest.hex() == composite["device_report_data_sha384_hex"]
    [(tee, evidence)] = attestation.additional()
    assert tee == "sampledevice"
    assert base64.b64decode(evidence["report_data"]) == device_digest


def test_guest_components_example_vector() -> None:
    # guest-components digest §6.4 (verified there): dummy x/y, no devices.
    nonce = "q1Yk0r7o3zq2m0JY4JfBqz1M5m3+9e7bLqT4l0YVx2c="
    key = {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "AAAA", "y": "BBBB"}
    runtime = rcar.runtime_data(nonce, key)
    assert rcar.jcs(runtime).decode() == (
        '{"additional-evidence":"","nonce":"q1Yk0r7o3zq2m0JY4JfBqz1M5m3+9e7bLqT4l0YVx2c=",'
        '"tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"AAAA","y":"BBBB"}}'
    )
    assert rcar.expected_report_data("tdx", runtime).hex() == (
        "a79cf2c4bdd3e121327b79e7083a05d1994f84645820decbe817befb41c4907f"
        "856d2cae7d4b1a93e5a8bc973b663d72"
    )


def test_se_hashes_with_sha512_and_others_with_sha384() -> None:
    runtime = {"nonce": "n", "tee-pubkey": {"kty": "EC"}}
    assert rcar.expected_report_data("se", runtime) == hashlib.sha512(rcar.jcs(runtime)).digest()
    for tee in ("tdx", "snp", "sgx", "sample", "nvidia"):
        assert len(rcar.expected_report_data(tee, runtime)) == 48
    assert rcar.hash_algorithm("se") == "sha512"
    assert rcar.hash_algorithm("tdx") == "sha384"


# --------------------------------------------------------------------------- Attestation


def attestation_doc(vec: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(vec["single_device"]["attestation"]))
    doc.update(overrides)
    return doc


def test_pubkey_extra_fields_are_dropped_as_serde_drops_them(vec: dict[str, Any]) -> None:
    doc = attestation_doc(vec)
    doc["runtime-data"]["tee-pubkey"].update({"kid": "k1", "use": "enc"})
    attestation = rcar.parse_attestation(json.dumps(doc).encode())
    assert attestation.tee_pubkey == vec["single_device"]["primary_runtime_data"]["tee-pubkey"]


def test_rsa_pubkey_is_accepted() -> None:
    doc = {
        "runtime-data": {
            "nonce": "n",
            "tee-pubkey": {"kty": "RSA", "alg": "RSA-OAEP-256", "n": "AQAB", "e": "AQAB"},
        },
        "tee-evidence": {"primary_evidence": {}, "additional_evidence": ""},
        "init-data": None,
    }
    attestation = rcar.parse_attestation(json.dumps(doc).encode())
    assert attestation.tee_pubkey == {"kty": "RSA", "alg": "RSA-OAEP-256", "n": "AQAB", "e": "AQAB"}
    assert attestation.init_data is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("runtime-data"),
        lambda d: d["runtime-data"].pop("nonce"),
        lambda d: d["runtime-data"].update(nonce=5),
        lambda d: d["runtime-data"].pop("tee-pubkey"),
        lambda d: d["runtime-data"]["tee-pubkey"].pop("alg"),  # serde requires alg
        lambda d: d["runtime-data"]["tee-pubkey"].pop("y"),
        lambda d: d["runtime-data"]["tee-pubkey"].update(kty="OKP"),
        lambda d: d["runtime-data"]["tee-pubkey"].update(kty="AKP"),  # pqc-experimental only
        lambda d: d["runtime-data"]["tee-pubkey"].update(x=1),
        lambda d: d.pop("tee-evidence"),
        lambda d: d.update({"tee-evidence": "my_evidence"}),  # pre-0.4 form
        lambda d: d.update({"tee-evidence": {"svn": "1", "report_data": "AA=="}}),  # bare evidence
        lambda d: d["tee-evidence"].pop("additional_evidence"),
        lambda d: d["tee-evidence"].update(additional_evidence={"nvidia": {}}),  # must be a string
        lambda d: d.update({"init-data": {"format": "toml"}}),
        lambda d: d.update({"init-data": "toml"}),
    ],
)
def test_malformed_attestations_fail_with_trustee_detail(vec: dict[str, Any], mutate: Any) -> None:
    doc = attestation_doc(vec)
    mutate(doc)
    with pytest.raises(AttestationError) as exc:
        rcar.parse_attestation(json.dumps(doc).encode())
    assert exc.value.detail == "Attestation error: RCAR handshake Attest failed"
    assert isinstance(exc.value, rcar.RcarAttestFailed)
    assert exc.value.cause


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b"\xff", b'{"a":1,"a":2}'])
def test_non_json_attestations_fail(body: bytes) -> None:
    with pytest.raises(rcar.RcarAttestFailed):
        rcar.parse_attestation(body)


def test_kbs_client_legacy_attest_json_is_refused() -> None:
    with pytest.raises(rcar.RcarAttestFailed):
        rcar.parse_attestation((KBS_CLIENT / "attest.json").read_bytes())


# --------------------------------------------------------------------------- attest()


class Recorder:
    """A test double of the AS boundary: records its arguments, returns a fake token."""

    def __init__(self, token: str = "fake.token.value") -> None:
        self.calls: list[tuple[list[tuple[str, bytes]], dict[str, Any], str]] = []
        self.token = token

    def __call__(
        self, evidences: list[tuple[str, bytes]], runtime: dict[str, Any], hash_alg: str
    ) -> str:
        self.calls.append((evidences, runtime, hash_alg))
        return self.token


def test_attest_passes_primary_evidence_and_runtime_data(vec: dict[str, Any]) -> None:
    single = vec["single_device"]
    attestation = rcar.parse_attestation(json.dumps(single["attestation"]).encode())
    verify = Recorder()
    assert rcar.attest(session_for(vec), attestation, verify=verify) == "fake.token.value"
    [(evidences, runtime, hash_alg)] = verify.calls
    assert hash_alg == "sha384"
    assert runtime == single["primary_runtime_data"]
    [(tee, evidence)] = evidences
    assert tee == "sample"
    assert json.loads(evidence) == single["attestation"]["tee-evidence"]["primary_evidence"]


def test_attest_passes_composite_evidence_through(vec: dict[str, Any]) -> None:
    composite = vec["with_sampledevice_additional_evidence"]
    attestation = rcar.parse_attestation(json.dumps(composite["attestation"]).encode())
    verify = Recorder()
    rcar.attest(session_for(vec), attestation, verify=verify)
    [(evidences, runtime, _)] = verify.calls
    assert [tee for tee, _ in evidences] == ["sample", "sampledevice"]
    device = json.loads(evidences[1][1])
    assert (
        device
        == json.loads(composite["attestation"]["tee-evidence"]["additional_evidence"])[
            "sampledevice"
        ]
    )
    assert rcar.jcs(runtime).decode() == composite["primary_runtime_data_jcs"]
    assert (
        rcar.jcs(rcar.device_runtime_data(runtime)).decode() == composite["device_runtime_data_jcs"]
    )


@pytest.mark.parametrize("additional", ["not json", "[1]", '{"sev": {}}', '{"x": 1}'])
def test_bad_additional_evidence_fails(vec: dict[str, Any], additional: str) -> None:
    doc = attestation_doc(vec)
    doc["tee-evidence"]["additional_evidence"] = additional
    attestation = rcar.parse_attestation(json.dumps(doc).encode())
    verify = Recorder()
    with pytest.raises(rcar.RcarAttestFailed):
        rcar.attest(session_for(vec), attestation, verify=verify)
    assert verify.calls == []


def test_attest_refuses_a_different_nonce(vec: dict[str, Any]) -> None:
    doc = attestation_doc(vec)
    doc["runtime-data"]["nonce"] = base64.b64encode(b"\x01" * 32).decode()
    verify = Recorder()
    with pytest.raises(rcar.RcarAttestFailed) as exc:
        rcar.attest(
            session_for(vec), rcar.parse_attestation(json.dumps(doc).encode()), verify=verify
        )
    assert "nonce" in exc.value.cause
    assert verify.calls == []


def test_attest_refuses_an_attested_session(vec: dict[str, Any]) -> None:
    session = session_for(vec)
    session.attested = True
    with pytest.raises(rcar.RcarAttestFailed):
        rcar.attest(
            session,
            rcar.parse_attestation(json.dumps(vec["single_device"]["attestation"]).encode()),
            verify=Recorder(),
        )


def test_as_errors_become_attest_failed_with_the_cause_kept(vec: dict[str, Any]) -> None:
    def refuse(evidences: list[tuple[str, bytes]], runtime: dict[str, Any], alg: str) -> str:
        raise VerificationError("report_data", "the runtime data does not match")

    attestation = rcar.parse_attestation(json.dumps(vec["single_device"]["attestation"]).encode())
    with pytest.raises(rcar.RcarAttestFailed) as exc:
        rcar.attest(session_for(vec), attestation, verify=refuse)
    assert exc.value.detail == "Attestation error: RCAR handshake Attest failed"
    assert "VerificationError: report_data: the runtime data does not match" in exc.value.cause
    assert isinstance(exc.value.__cause__, VerificationError)


def test_unexpected_errors_are_named_not_echoed(vec: dict[str, Any]) -> None:
    def broken(evidences: list[tuple[str, bytes]], runtime: dict[str, Any], alg: str) -> str:
        raise RuntimeError("secret-material-xyz")

    attestation = rcar.parse_attestation(json.dumps(vec["single_device"]["attestation"]).encode())
    with pytest.raises(rcar.RcarAttestFailed) as exc:
        rcar.attest(session_for(vec), attestation, verify=broken)
    assert "RuntimeError" in exc.value.cause
    assert "secret" not in exc.value.cause
    assert "secret" not in exc.value.detail


def with_init_data(vec: dict[str, Any], fmt: str = "toml") -> rcar.Attestation:
    doc = attestation_doc(vec, **{"init-data": {"format": fmt, "body": 'version = "0.1.0"'}})
    return rcar.parse_attestation(json.dumps(doc).encode())


def test_init_data_reaches_a_verify_that_takes_it(vec: dict[str, Any]) -> None:
    seen: list[rcar.InitData | None] = []

    def verify(
        evidences: list[tuple[str, bytes]],
        runtime: dict[str, Any],
        alg: str,
        /,
        *,
        init_data: rcar.InitData | None = None,
    ) -> str:
        seen.append(init_data)
        return "t"

    assert rcar.attest(session_for(vec), with_init_data(vec), verify=verify) == "t"
    assert seen == [rcar.InitData(format="toml", body='version = "0.1.0"')]


def test_init_data_fails_closed_with_a_verify_that_cannot_take_it(vec: dict[str, Any]) -> None:
    verify = Recorder()
    with pytest.raises(rcar.RcarAttestFailed) as exc:
        rcar.attest(session_for(vec), with_init_data(vec), verify=verify)
    assert "init_data" in exc.value.cause
    assert verify.calls == []


def test_init_data_must_be_toml(vec: dict[str, Any]) -> None:
    with pytest.raises(rcar.RcarAttestFailed) as exc:
        rcar.attest(session_for(vec), with_init_data(vec, "json"), verify=Recorder())
    assert "Unsupported initdata format" in exc.value.cause


# --------------------------------------------------------------------------- AS adapter


def test_attestation_request_binds_each_device_to_its_own_runtime_data(vec: dict[str, Any]) -> None:
    composite = vec["with_sampledevice_additional_evidence"]
    attestation = rcar.parse_attestation(json.dumps(composite["attestation"]).encode())
    seen: list[AttestationRequest] = []

    def fake_as(request: AttestationRequest) -> str:
        seen.append(request)
        return "token"

    verify = rcar.as_verify(fake_as)
    # sampledevice is not a TEE our AS verifies: the adapter's request parser says so.
    with pytest.raises(rcar.RcarAttestFailed) as exc:
        rcar.attest(session_for(vec), attestation, verify=verify)
    assert isinstance(exc.value.__cause__, UnknownTee)
    assert "UnknownTee" in exc.value.cause
    assert seen == []
    evidences, runtime, alg = rcar.verification_inputs(session_for(vec), attestation)
    request = rcar.attestation_request(
        evidences[:1],
        runtime,
        alg,
        init_data=rcar.InitData("toml", 'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n'),
    )
    [primary] = request.verification_requests
    assert primary.tee == "sample"
    assert primary.hash_algorithm == "sha384"
    assert primary.runtime_data is not None
    assert (
        primary.runtime_data.expected_report_data("sha384").hex()
        == composite["primary_report_data_sha384_hex"]
    )
    assert primary.init_data is not None
    assert primary.init_data.document is not None
    assert request.policy_ids == ["default"]


def test_attestation_request_for_a_device_uses_the_device_runtime_data(vec: dict[str, Any]) -> None:
    composite = vec["with_sampledevice_additional_evidence"]
    attestation = rcar.parse_attestation(json.dumps(composite["attestation"]).encode())
    _, runtime, _ = rcar.verification_inputs(session_for(vec), attestation)
    # Two CPU evidences stand in for "primary + device" (both tees the AS knows).
    request = rcar.attestation_request([("sample", b"{}"), ("sample", b"{}")], runtime, "sha384")
    first, second = request.verification_requests
    assert first.runtime_data is not None
    assert second.runtime_data is not None
    assert (
        first.runtime_data.expected_report_data("sha384").hex()
        == composite["primary_report_data_sha384_hex"]
    )
    assert (
        second.runtime_data.expected_report_data("sha384").hex()
        == composite["device_report_data_sha384_hex"]
    )
    assert second.init_data is None
