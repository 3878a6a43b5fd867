"""RA-TLS policies: Rego over ``{"tee", <tee>: claims, "measurements"}`` and JSON reference
values, both through RatlsVerifier (a refusal is ``RatlsError("policy", ...)``).

Measurements are the emulator inputs the identities were made with.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veritee.emulator.root import TestRoot
from veritee.errors import ConfigError, InputError
from veritee.ratls.cert import RatlsIdentity, make_identity
from veritee.ratls.policy import load_policy
from veritee.ratls.quoter import EmulatedQuoter
from veritee.ratls.verify import RatlsError, RatlsPeer, RatlsVerifier
from veritee.verifier.registry import VerifierSettings

MRENCLAVE = bytes([0xAA]) * 32
MRSIGNER = bytes([0xBB]) * 32
MRTD = bytes([0xCC]) * 48
OTHER = "11" * 32


@pytest.fixture(scope="module")
def sgx(test_root: TestRoot) -> RatlsIdentity:
    settings = {
        "mr_enclave": MRENCLAVE,
        "mr_signer": MRSIGNER,
        "isv_prod_id": (7).to_bytes(2, "little"),
        "isv_svn": (3).to_bytes(2, "little"),
    }
    return make_identity(EmulatedQuoter(test_root.directory, "sgx", settings))


@pytest.fixture(scope="module")
def tdx(test_root: TestRoot) -> RatlsIdentity:
    return make_identity(EmulatedQuoter(test_root.directory, "tdx", {"mr_td": MRTD}), fmt="legacy")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _json(tmp_path: Path, doc: object) -> Path:
    return _write(tmp_path, "reference.json", json.dumps(doc))


def _verify(root: TestRoot, path: Path, identity: RatlsIdentity) -> RatlsPeer:
    verifier = RatlsVerifier(VerifierSettings(trust_root=root.directory), load_policy(path))
    return verifier.verify_certificate(identity.cert_der)


REGO_MRENCLAVE = f"""package policy

import rego.v1

default allow := false

allow if {{
    input.tee == "sgx"
    input.measurements.mrenclave == "{MRENCLAVE.hex()}"
    input.sgx.body.mr_signer == "{MRSIGNER.hex()}"
}}
"""


# ------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "name", ["policy.txt", "policy", "policy.yaml"], ids=["txt", "none", "yaml"]
)
def test_other_file_kinds_are_input_errors(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match=r"\.rego or a \.json"):
        load_policy(_write(tmp_path, name, "{}"))


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_policy(tmp_path / "absent.rego")


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"mrenclave": ["aa"], "mrenclve": ["bb"]}, "unknown key 'mrenclve'"),
        ({}, "non-empty JSON object"),
        ([], "non-empty JSON object"),
        ({"mrenclave": "aa"}, "list of hex"),
        ({"mrenclave": []}, "list of hex"),
        ({"mrenclave": ["xyz"]}, "not hex"),
        ({"isvsvn": "3"}, "integer"),
        ({"isvprodid": True}, "integer"),
        ({"isvsvn": 70000}, "integer"),
        ({"mrenclave": ["aa"], "mrtd": ["bb"]}, "mixes keys of sgx and tdx"),
    ],
)
def test_bad_reference_files_are_config_errors(tmp_path: Path, doc: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_policy(_json(tmp_path, doc))


def test_json_that_is_not_json_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not JSON"):
        load_policy(_write(tmp_path, "bad.json", "{mrenclave:"))


def test_rego_that_does_not_compile_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bad"):
        load_policy(_write(tmp_path, "bad.rego", "package policy\n\nallow := {\n"))


def test_rego_in_another_package_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_policy(_write(tmp_path, "other.rego", "package other\n\ndefault allow := true\n"))


def test_rego_refusal_fails_at_policy(
    test_root: TestRoot, sgx: RatlsIdentity, tmp_path: Path
) -> None:
    path = _write(tmp_path, "p.rego", REGO_MRENCLAVE.replace(MRENCLAVE.hex(), OTHER))
    with pytest.raises(RatlsError) as info:
        _verify(test_root, path, sgx)
    assert info.value.step == "policy"


def test_rego_with_no_allow_value_fails_at_policy(
    test_root: TestRoot, sgx: RatlsIdentity, tmp_path: Path
) -> None:
    text = 'package policy\n\nimport rego.v1\n\nallow if input.tee == "tdx"\n'
    with pytest.raises(RatlsError) as info:
        _verify(test_root, _write(tmp_path, "p.rego", text), sgx)
    assert info.value.step == "policy"


def test_rego_allow_must_be_true_not_truthy(
    test_root: TestRoot, sgx: RatlsIdentity, tmp_path: Path
) -> None:
    text = 'package policy\n\nallow := "yes"\n'
    with pytest.raises(RatlsError) as info:
        _verify(test_root, _write(tmp_path, "p.rego", text), sgx)
    assert info.value.step == "policy"


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"mrenclave": [OTHER]}, "mrenclave"),
        ({"mrsigner": [OTHER]}, "mrsigner"),
        ({"isvprodid": 8}, "isvprodid 7 is not 8"),
        ({"isvsvn": 4}, "isvsvn 3 is below the minimum 4"),
        ({"mrtd": ["cc" * 48]}, "tdx reference values"),
    ],
)
def test_json_refusals_fail_at_policy(
    test_root: TestRoot, sgx: RatlsIdentity, tmp_path: Path, doc: object, match: str
) -> None:
    with pytest.raises(RatlsError, match=match) as info:
        _verify(test_root, _json(tmp_path, doc), sgx)
    assert info.value.step == "policy"


def test_json_tdx_refusal_fails_at_policy(
    test_root: TestRoot, tdx: RatlsIdentity, tmp_path: Path
) -> None:
    with pytest.raises(RatlsError, match="rtmr3") as info:
        _verify(test_root, _json(tmp_path, {"mrtd": [MRTD.hex()], "rtmr3": [OTHER]}), tdx)
    assert info.value.step == "policy"


# ------------------------------------------------------------------------- accepted


def test_rego_admits_the_reference_enclave(
    test_root: TestRoot, sgx: RatlsIdentity, tmp_path: Path
) -> None:
    peer = _verify(test_root, _write(tmp_path, "p.rego", REGO_MRENCLAVE), sgx)
    assert peer.measurements["mrenclave"] == MRENCLAVE.hex()


def test_rego_sees_tdx_claims_under_their_tee(
    test_root: TestRoot, tdx: RatlsIdentity, tmp_path: Path
) -> None:
    text = f"""package policy

import rego.v1

default allow := false

allow if {{
    input.tee == "tdx"
    input.tdx.quote.body.mr_td == "{MRTD.hex()}"
    input.measurements.mrtd == input.tdx.quote.body.mr_td
}}
"""
    peer = _verify(test_root, _write(tmp_path, "p.rego", text), tdx)
    assert peer.fmt == "legacy"


def test_json_admits_matching_sgx_values(
    test_root: TestRoot, sgx: RatlsIdentity, tmp_path: Path
) -> None:
    doc = {
        "mrenclave": [OTHER, MRENCLAVE.hex().upper()],
        "mrsigner": [MRSIGNER.hex()],
        "isvprodid": 7,
        "isvsvn": 3,
    }
    peer = _verify(test_root, _json(tmp_path, doc), sgx)
    assert peer.measurements["isvsvn"] == "0300"  # little-endian u16, as Trustee's claims


def test_json_admits_matching_tdx_values(
    test_root: TestRoot, tdx: RatlsIdentity, tmp_path: Path
) -> None:
    probe = RatlsVerifier(VerifierSettings(trust_root=test_root.directory))
    rtmr0 = probe.verify_certificate(tdx.cert_der).measurements["rtmr0"]
    doc = {"mrtd": [MRTD.hex()], "rtmr0": [rtmr0]}
    assert _verify(test_root, _json(tmp_path, doc), tdx).tee == "tdx"
