"""Trustee's AttestationRequest: every malformed part is a precise error."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
import rfc8785

from veritee.as_.errors import MalformedEvidence, MalformedRequest, UnknownTee
from veritee.as_.request import parse_attestation_request


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


EVIDENCE = _b64u(json.dumps({"svn": "1", "report_data": ""}).encode())


def _req(**vr: Any) -> dict[str, Any]:
    return {"verification_requests": [{"tee": "sample", "evidence": EVIDENCE, **vr}]}


def test_defaults() -> None:
    parsed = parse_attestation_request(_req())
    assert parsed.policy_ids == ["default"]
    assert parsed.verification_requests[0].hash_algorithm == "sha384"


def test_structured_runtime_data_is_hashed_over_jcs() -> None:
    structured = {"tee-pubkey": {"kty": "EC", "crv": "P-256"}, "nonce": "abc"}
    vr = parse_attestation_request(
        _req(runtime_data={"structured": structured}, runtime_data_hash_algorithm="sha256")
    ).verification_requests[0]
    assert vr.runtime_data is not None
    assert (
        vr.runtime_data.expected_report_data("sha256")
        == hashlib.sha256(rfc8785.dumps(structured)).digest()
    )
    assert vr.runtime_data.claims() == structured


def test_raw_runtime_data_and_digest_init_data() -> None:
    vr = parse_attestation_request(
        _req(
            runtime_data={"raw": _b64u(b"\x01\x02")},
            init_data={"init_data_digest": _b64u(b"\x07" * 48)},
        )
    ).verification_requests[0]
    assert vr.runtime_data is not None
    assert vr.runtime_data.raw == b"\x01\x02"
    assert vr.init_data is not None
    assert vr.init_data.digest == b"\x07" * 48


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], MalformedRequest),
        ({}, MalformedRequest),
        ({"verification_requests": []}, MalformedRequest),
        ({"verification_requests": [{"tee": "tpm", "evidence": EVIDENCE}]}, UnknownTee),
        ({"verification_requests": [{"tee": "sample", "evidence": "***"}]}, MalformedEvidence),
        (
            {"verification_requests": [{"tee": "sample", "evidence": _b64u(b"not json")}]},
            MalformedEvidence,
        ),
        (_req(runtime_data={"raw": "***"}), MalformedRequest),
        (_req(runtime_data={"raw": "", "structured": {}}), MalformedRequest),
        (_req(init_data={"init_data_toml": 'version = "9"'}), MalformedRequest),
        (_req(runtime_data_hash_algorithm="md5"), MalformedRequest),
        ({**_req(), "policy_ids": [""]}, MalformedRequest),
    ],
)
def test_malformed(body: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_attestation_request(body)
