"""The emulated H100 from the outside: ``veritee emulator evidence --tee nvidia``, the guest's
composite evidence, test roots made before GPU support, and veritee's own GPU verifier on
emulated evidence and RIMs end to end."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.evidence import EvidenceRequest, emulate
from veritee.emulator.nvidia import GpuFields, build_gpu_report, build_rims, gpu_evidence_json
from veritee.emulator.root import TestRoot
from veritee.errors import InputError
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_protocol import KbsClientError
from veritee.verifier.base import VerifyOptions
from veritee.verifier.nvidia import NvidiaVerifier
from veritee.verifier.nvidia_spdm import parse_gpu_evidence, parse_report

runner = CliRunner()
REPORT_DATA = bytes(range(48))  # the AS's SHA-384 report data: the nonce is its first 32 bytes


def test_cli_writes_parseable_evidence_chain_and_rims(test_root: TestRoot, tmp_path: Path) -> None:
    block3 = "42" * 48
    result = runner.invoke(
        app,
        [
            "emulator", "evidence", "--root", str(test_root.directory), "--tee", "nvidia",
            "--out", str(tmp_path), "--report-data", REPORT_DATA.hex(),
            "--set", f"measurement.3={block3}", "--rims",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "evidence.json").read_text())
    (device,) = parse_gpu_evidence(json.dumps(doc).encode())
    assert device.arch == "Hopper"
    assert device.report == (tmp_path / "evidence.bin").read_bytes()
    assert device.chain == (tmp_path / "cert_chain.pem").read_bytes()
    assert device.chain == test_root.gpu().device_chain_pem()
    report = parse_report(device.report)
    assert report.nonce == REPORT_DATA[:32]
    assert report.measurements[3].hex() == block3
    rims = sorted(p.name for p in (tmp_path / "rims").iterdir())
    assert rims == [
        "NV_GPU_DRIVER_GH100_550.90.07.swidtag",
        "NV_GPU_VBIOS_1010_0200_882_96009F0001.swidtag",
    ]
    assert block3.encode() in (tmp_path / "rims" / rims[1]).read_bytes()


def test_cli_short_report_data_is_zero_padded_and_bad_requests_exit_2(
    test_root: TestRoot, tmp_path: Path
) -> None:
    base = ["emulator", "evidence", "--root", str(test_root.directory), "--out", str(tmp_path)]
    ok = runner.invoke(app, [*base, "--tee", "nvidia", "--report-data", "00ff"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "evidence.bin").read_bytes()[4:36] == b"\x00\xff" + bytes(30)
    for args in (
        ["--tee", "nvidia", "--set", "measurement.99=00"],
        ["--tee", "nvidia", "--set", "colour=00"],
        ["--tee", "nvidia", "--rim-set", "fwid=00"],
        ["--tee", "tdx", "--rims"],
    ):
        assert runner.invoke(app, [*base, *args]).exit_code == 2, args


def _old_root(test_root: TestRoot, tmp_path: Path) -> Path:
    old = tmp_path / "old-root"
    shutil.copytree(test_root.directory, old)
    shutil.rmtree(old / "nvidia")
    return old


def test_a_root_without_nvidia_still_serves_the_cpu_tees(
    test_root: TestRoot, tmp_path: Path
) -> None:
    old = TestRoot.load(_old_root(test_root, tmp_path))
    assert old.nvidia is None
    assert emulate(old, EvidenceRequest("tdx", report_data=b"\x01")).tee == "tdx"
    with pytest.raises(InputError, match="no NVIDIA GPU PKI"):
        emulate(old, EvidenceRequest("nvidia", report_data=b"\x01"))
    provider = EmulatedEvidenceProvider(old.directory, devices=["nvidia"])
    assert json.loads(provider.evidence("tdx", b"\x01"))["quote"]
    with pytest.raises(KbsClientError, match="no NVIDIA GPU PKI"):
        provider.additional_evidence(b"\x01")
    result = runner.invoke(
        app,
        ["emulator", "evidence", "--root", str(old.directory), "--tee", "nvidia",
         "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "NVIDIA GPU PKI" in " ".join(result.output.split())


def test_the_guest_carries_trustees_composite_gpu_evidence(test_root: TestRoot) -> None:
    provider = EmulatedEvidenceProvider(
        test_root.directory,
        devices=["nvidia", "sampledevice"],
        settings={"measurement.5": b"\x07" * 48},
    )
    extra = provider.additional_evidence(REPORT_DATA)
    assert set(extra) == {"nvidia", "sampledevice"}
    (device,) = extra["nvidia"]["device_evidence_list"]
    assert device["arch"] == "HOPPER"
    report = parse_report(base64.b64decode(device["evidence"]))
    assert report.nonce == REPORT_DATA[:32]
    assert report.measurements[5] == b"\x07" * 48
    assert test_root.nvidia is not None
    assert base64.b64decode(device["certificate"]) == test_root.nvidia.device_chain_pem()
    # the GPU setting went to the GPU, not to the CPU TEE
    assert json.loads(provider.evidence("tdx", REPORT_DATA))["quote"]
    routed = EmulatedEvidenceProvider(
        test_root.directory, devices=["nvidia"], device_settings={"nvidia": {"fwid": bytes(48)}}
    )
    (dev,) = routed.additional_evidence(REPORT_DATA)["nvidia"]["device_evidence_list"]
    assert parse_report(base64.b64decode(dev["evidence"])).fwid == "00" * 48


def _verifier(root: TestRoot, rims: tuple[bytes, bytes]) -> NvidiaVerifier:
    assert root.nvidia is not None
    return NvidiaVerifier(
        device_roots=[root.nvidia.device_root], rim_roots=[root.nvidia.rim_root], rims=rims
    )


def test_emulated_evidence_and_rims_verify_end_to_end(test_root: TestRoot) -> None:
    pki = test_root.gpu()
    fields = GpuFields(nonce=REPORT_DATA[:32])
    evidence = json.dumps(gpu_evidence_json(build_gpu_report(pki, fields), pki.device_chain_pem()))
    verdict = _verifier(test_root, build_rims(pki, fields)).verify(
        evidence.encode(), VerifyOptions(report_data=REPORT_DATA)
    )
    assert verdict.verified, verdict.error
    assert verdict.claims["measres"] == "success"
    assert verdict.claims["emulated"] is True
    assert verdict.claims["x-nvidia-gpu-attestation-report-cert-chain-fwid-match"] is True


def test_one_changed_measurement_names_its_index(test_root: TestRoot) -> None:
    pki = test_root.gpu()
    fields = GpuFields(nonce=REPORT_DATA[:32])
    rims = build_rims(pki, fields)  # the RIMs describe the unchanged GPU
    fields.measurements[3] = b"\x42" * 48
    evidence = json.dumps(gpu_evidence_json(build_gpu_report(pki, fields), pki.device_chain_pem()))
    verdict = _verifier(test_root, rims).verify(
        evidence.encode(), VerifyOptions(report_data=REPORT_DATA)
    )
    assert not verdict.verified
    assert verdict.step == "rim_measurements"
    assert "index(es) 3 " in (verdict.error or "")
    assert verdict.claims["measres"] == "fail"
    # ...and a RIM tampered at one index, for an unchanged GPU, names that index too
    fields.measurements[3] = GpuFields().measurements[3]
    tampered = build_rims(pki, fields, tamper={22: b"\x01" * 48})
    evidence = json.dumps(gpu_evidence_json(build_gpu_report(pki, fields), pki.device_chain_pem()))
    verdict = _verifier(test_root, tampered).verify(
        evidence.encode(), VerifyOptions(report_data=REPORT_DATA)
    )
    assert verdict.step == "rim_measurements"
    assert "index(es) 22 " in (verdict.error or "")


def test_a_report_without_a_vbios_rim_id_part_is_a_named_refusal(
    test_root: TestRoot, tmp_path: Path
) -> None:
    # The RIM service's VBIOS id is built from the report's project, SKUs and version; a GPU
    # that reports no project cannot be looked up.  With RIMs required that is rim_missing;
    # otherwise the driver RIM is still compared and the claims carry the warning.
    from veritee.emulator.nvidia import write_rims
    from veritee.verifier.collateral.nvidia_rims import RimSource

    pki = test_root.gpu()
    fields = GpuFields(nonce=REPORT_DATA[:32], project="")
    write_rims(pki, fields, tmp_path / "rims")
    evidence = json.dumps(gpu_evidence_json(build_gpu_report(pki, fields), pki.device_chain_pem()))
    options = VerifyOptions(report_data=REPORT_DATA)

    def verifier(require: bool) -> NvidiaVerifier:
        return NvidiaVerifier(
            device_roots=[pki.device_root],
            rim_roots=[pki.rim_root],
            rim_source=RimSource(directory=tmp_path / "rims", offline=True),
            require_rims=require,
        )

    refused = verifier(True).verify(evidence.encode(), options)
    assert not refused.verified
    assert refused.step == "rim_missing"
    assert "no vbios RIM id" in (refused.error or "")
    partial = verifier(False).verify(evidence.encode(), options)
    assert partial.claims["x-nvidia-attestation-warning"].startswith("vbios RIM not fetched")
    assert partial.claims["x-nvidia-gpu-driver-rim-fetched"] is True
    assert partial.claims["x-nvidia-gpu-vbios-rim-fetched"] is False
