"""The Gramine SGX attester against the emulated enclave."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from veritee.emulator.machine import EmulatedMachine, Faults
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.base import AttesterError
from veritee.guest.attesters.sgx import ATTESTATION_TYPE, USER_REPORT_DATA, SgxAttester
from veritee.verifier.base import Verdict
from veritee.verifier.intel_quote import parse_quote

Verify = Callable[..., Verdict]


def test_only_dcap_is_accepted(test_root: TestRoot) -> None:
    machine = EmulatedMachine.launch(test_root, "sgx")
    machine.add_file(ATTESTATION_TYPE, read=lambda: b"epid")
    with pytest.raises(AttesterError, match="'epid', not 'dcap'"):
        SgxAttester(machine).evidence(b"")
    assert all(c.op == "read" for c in machine.calls)  # nothing written


def test_refusals(test_root: TestRoot) -> None:
    machine = EmulatedMachine.launch(test_root, "sgx", faults=Faults(fw_error=1))
    attester = SgxAttester(machine)
    with pytest.raises(AttesterError, match="65 bytes; sgx takes at most 64"):
        attester.evidence(bytes(65))
    with pytest.raises(AttesterError, match="reading /dev/attestation/quote failed: EIO"):
        attester.evidence(b"")
    assert attester.supports_runtime_measurement() is False
    assert attester.init_data_binding() is None
    with pytest.raises(AttesterError, match="no runtime measurement register"):
        attester.extend_runtime_measurement(bytes(48), 17)
    with pytest.raises(AttesterError, match="reading /dev/attestation/attestation_type"):
        SgxAttester(EmulatedMachine()).evidence(b"")


def test_evidence_verifies_with_its_report_data(test_root: TestRoot, verify: Verify) -> None:
    machine = EmulatedMachine.launch(test_root, "sgx")
    evidence = SgxAttester(machine).evidence(b"enclave nonce")
    doc = json.loads(evidence)
    assert list(doc) == ["quote"]
    assert evidence == json.dumps(doc, separators=(",", ":")).encode()
    writes = [c for c in machine.calls if c.op == "write"]
    assert [(c.path, c.data) for c in writes] == [(USER_REPORT_DATA, b"enclave nonce" + bytes(51))]
    assert parse_quote(base64.b64decode(doc["quote"])).body.report_data == writes[0].data
    verdict = verify("sgx", evidence, report_data=b"enclave nonce")
    assert verdict.verified, verdict.error
    assert verify("sgx", evidence, report_data=b"other").step == "report_data"
