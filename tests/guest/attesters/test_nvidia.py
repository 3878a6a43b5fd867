"""The NVIDIA attester over the emulated H100: Trustee's evidence JSON, the SPDM nonce taken
from the report data, and evidence that our ``nvidia`` verifier accepts under the test root
(whose RIMs describe the default emulated GPU, so the measurements match)."""

from __future__ import annotations

import base64
import errno
import json
from collections.abc import Callable

import pytest

from veritee.emulator.nvidia import EmulatedGpu, GpuFields
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.base import AttesterError
from veritee.guest.attesters.nvidia import NvidiaAttester
from veritee.verifier.base import Verdict
from veritee.verifier.nvidia_spdm import parse_report

Verify = Callable[..., Verdict]


class UnpluggedGpu:
    """A GPU that has fallen off the bus: what NVML reports as a lost device."""

    arch = "HOPPER"
    uuid = "GPU-lost"

    def attestation_report(self, nonce: bytes) -> bytes:
        raise OSError(errno.ENODEV, "GPU is lost")

    def certificate_chain(self) -> bytes:
        raise AssertionError("not reached")


# -- negative first ---------------------------------------------------------------------------


def test_refusals(test_root: TestRoot) -> None:
    with pytest.raises(AttesterError, match="at least one GPU"):
        NvidiaAttester([])
    attester = NvidiaAttester([EmulatedGpu(test_root.gpu())])
    with pytest.raises(AttesterError, match="65 bytes; nvidia takes at most 64"):
        attester.evidence(bytes(65))
    assert not attester.supports_runtime_measurement()
    with pytest.raises(AttesterError, match="no runtime measurement register"):
        attester.extend_runtime_measurement(bytes(48), 17)
    assert attester.init_data_binding() is None


def test_a_failing_gpu_is_named(test_root: TestRoot) -> None:
    attester = NvidiaAttester([EmulatedGpu(test_root.gpu()), UnpluggedGpu()])
    with pytest.raises(AttesterError, match=r"nvidia GPU 1 \(GPU-lost\): .*GPU is lost"):
        attester.evidence(b"x")


def test_a_gpu_measured_otherwise_fails_at_the_rim_comparison(
    test_root: TestRoot, verify: Verify
) -> None:
    fields = GpuFields()
    fields.measurements[5] = b"\x05" * 48
    evidence = NvidiaAttester([EmulatedGpu(test_root.gpu(), fields)]).evidence(b"n")
    verdict = verify("nvidia", evidence, report_data=b"n")
    assert not verdict.verified
    assert verdict.step == "rim_measurements"
    assert "index(es) 5 " in (verdict.error or "")


# -- positive ---------------------------------------------------------------------------------


def test_evidence_is_trustees_device_list_and_verifies(test_root: TestRoot, verify: Verify) -> None:
    report_data = bytes(range(48))
    evidence = NvidiaAttester([EmulatedGpu(test_root.gpu())]).evidence(report_data)
    doc = json.loads(evidence)
    (device,) = doc["device_evidence_list"]
    assert set(device) == {"arch", "uuid", "evidence", "certificate"}
    assert device["arch"] == "HOPPER"
    assert base64.b64decode(device["certificate"]) == test_root.gpu().device_chain_pem()
    assert parse_report(base64.b64decode(device["evidence"])).nonce == report_data[:32]
    verdict = verify("nvidia", evidence, report_data=report_data)
    assert verdict.verified, verdict.error
    assert verdict.claims["measres"] == "success"
    assert verdict.claims["x-nvidia-gpu-attestation-report-nonce-match"] is True


def test_short_report_data_is_zero_padded_to_the_nonce(test_root: TestRoot) -> None:
    evidence = NvidiaAttester([EmulatedGpu(test_root.gpu())]).evidence(b"\x01\x02")
    (device,) = json.loads(evidence)["device_evidence_list"]
    nonce = parse_report(base64.b64decode(device["evidence"])).nonce
    assert nonce == b"\x01\x02" + bytes(30)


def test_every_gpu_in_order(test_root: TestRoot, verify: Verify) -> None:
    gpus = [EmulatedGpu(test_root.gpu(), uuid=f"GPU-{n}") for n in range(2)]
    evidence = NvidiaAttester(gpus).evidence(b"both")
    devices = json.loads(evidence)["device_evidence_list"]
    assert [d["uuid"] for d in devices] == ["GPU-0", "GPU-1"]
    assert verify("nvidia", evidence, report_data=b"both").verified
