"""Trustee's unsigned sample TEE: refused unless enabled, always marked emulated."""

from __future__ import annotations

import base64
import json

import pytest

from veritee.errors import ParseError
from veritee.verifier.base import VerifyOptions
from veritee.verifier.sample import SampleVerifier

EVIDENCE = json.dumps({"svn": "1", "report_data": base64.b64encode(b"nonce").decode()}).encode()


def test_refused_unless_enabled() -> None:
    verdict = SampleVerifier().verify(EVIDENCE, VerifyOptions())
    assert not verdict.verified
    assert verdict.step == "sample_disabled"


def test_enabled_checks_report_data_exactly() -> None:
    verifier = SampleVerifier(enabled=True)
    assert verifier.verify(EVIDENCE, VerifyOptions(report_data=b"nonce")).verified
    wrong = verifier.verify(EVIDENCE, VerifyOptions(report_data=b"nonce\x00"))
    assert not wrong.verified
    assert wrong.step == "report_data"


def test_claims_are_trustees_and_marked_emulated() -> None:
    claims = SampleVerifier(enabled=True).verify(EVIDENCE, VerifyOptions()).claims
    assert claims == {
        "svn": "1",
        "report_data": base64.b64encode(b"nonce").decode(),
        "launch_digest": "abcde",
        "platform_version": {"major": 1, "minor": 4},
        "debug": False,
        "emulated": True,
    }


@pytest.mark.parametrize(
    "data", [b"", b"[]", b'{"svn": 1}', b'{"svn": "1", "report_data": 5}', b"{bad"]
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(ParseError):
        SampleVerifier(enabled=True).verify(data, VerifyOptions())


def test_report_data_not_base64() -> None:
    bad = json.dumps({"svn": "1", "report_data": "***"}).encode()
    with pytest.raises(ParseError):
        SampleVerifier(enabled=True).verify(bad, VerifyOptions(report_data=b"x"))
