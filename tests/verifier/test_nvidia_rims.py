"""NvidiaVerifier with RIMs: the real Hopper report against nvtrust's ``test_no_gpu`` RIMs.

Sources (tests/data/SOURCES.md, NVIDIA sections): the report is for driver 550.90.07 and VBIOS
96.00.9f.00.01; ``Driver_RIM_test_no_gpu.swidtag`` is for driver 545.00 and
``1010_0200_882_96005E0001_test_no_gpu.swidtag`` for VBIOS 96.00.5E.00.01, both signed by "HCC
RIM L4 Signer" certificates valid 2023-06 to 2025-06 under NVIDIA's RIM root.  So at 2024-06-01
the RIMs verify, and the verdict is ``rim_version`` naming both versions on each side and the
mismatched measurement indexes, while every report check in the claims stays true; today the
RIM signers have expired (``rim_expired``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence

import pytest
from cryptography import x509
from datadir import VECTORS
from typer.testing import CliRunner

from veritee.cli import app
from veritee.errors import CollateralError
from veritee.verifier.base import Verdict, VerifyOptions
from veritee.verifier.nvidia import NvidiaVerifier

NV = VECTORS / "nvidia"
REPORT = bytes.fromhex((NV / "hopperAttestationReport.txt").read_text().strip())
CHAIN = (NV / "hopperCertChain.txt").read_bytes()
NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
DRIVER_RIM = NV / "Driver_RIM_test_no_gpu.swidtag"
VBIOS_RIM = NV / "1010_0200_882_96005E0001_test_no_gpu.swidtag"
INSIDE = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
OPTS = VerifyOptions(report_data=NONCE, at=INSIDE)
REPORT_CHECKS = (
    "x-nvidia-gpu-arch-check",
    "x-nvidia-gpu-attestation-report-parsed",
    "x-nvidia-gpu-attestation-report-cert-chain-validated",
    "x-nvidia-gpu-attestation-report-cert-chain-fwid-match",
    "x-nvidia-gpu-attestation-report-signature-verified",
    "x-nvidia-gpu-attestation-report-nonce-match",
)


def _rims() -> list[bytes]:
    return [DRIVER_RIM.read_bytes(), VBIOS_RIM.read_bytes()]


def _rejected(verdict: Verdict, step: str) -> str:
    assert not verdict.verified
    assert verdict.step == step, verdict.error
    error = verdict.error or ""
    assert "Traceback" not in error
    assert " object at " not in error
    return error


def _report_checks_pass(verdict: Verdict) -> None:
    for check in REPORT_CHECKS:
        assert verdict.claims[check] is True, check


class _Source:
    """A RIM source that serves the test_no_gpu RIMs for any id, recording the ids asked."""

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[str] = []
        self.fail = fail

    def rim(self, rim_id: str, *, at: dt.datetime | None = None) -> bytes:
        self.asked.append(rim_id)
        if self.fail:
            raise CollateralError("nvidia-rim", f"{rim_id} is not cached (offline)")
        return (DRIVER_RIM if "DRIVER" in rim_id else VBIOS_RIM).read_bytes()


# ---------------------------------------------------------------------------- rejections


def test_a_rim_that_does_not_parse_fails_at_rim_schema() -> None:
    verifier = NvidiaVerifier(cert_chain=CHAIN, rims=[b"<not-a-swid-tag/>", VBIOS_RIM.read_bytes()])
    _rejected(verifier.verify(REPORT, OPTS), "rim_schema")


def test_two_driver_rims_fail_at_rim_schema() -> None:
    driver = DRIVER_RIM.read_bytes()
    verifier = NvidiaVerifier(cert_chain=CHAIN, rims=[driver, driver])
    assert "two driver RIMs" in _rejected(verifier.verify(REPORT, OPTS), "rim_schema")


def test_a_changed_golden_value_fails_at_rim_signature() -> None:
    text = VBIOS_RIM.read_text()
    match = re.search(r'Hash0="([0-9a-fA-F]{96})"', text)
    assert match is not None
    value = match.group(1)
    flipped = ("1" if value[0] != "1" else "2") + value[1:]
    tampered = text.replace(value, flipped, 1).encode()
    verifier = NvidiaVerifier(cert_chain=CHAIN, rims=[DRIVER_RIM.read_bytes(), tampered])
    error = _rejected(verifier.verify(REPORT, OPTS), "rim_signature")
    assert error.startswith("vbios RIM: ")


def test_today_the_rim_signers_have_expired() -> None:
    verifier = NvidiaVerifier(cert_chain=CHAIN, rims=_rims())
    verdict = verifier.verify(REPORT, VerifyOptions(report_data=NONCE))
    _rejected(verdict, "rim_expired")
    _report_checks_pass(verdict)
    assert verdict.claims["x-nvidia-gpu-driver-rim-cert-chain"]["x-nvidia-cert-status"] == "expired"


def test_a_missing_vbios_rim_fails_at_rim_missing_when_rims_are_required() -> None:
    verifier = NvidiaVerifier(cert_chain=CHAIN, rims=[DRIVER_RIM.read_bytes()], require_rims=True)
    assert "no vbios RIM" in _rejected(verifier.verify(REPORT, OPTS), "rim_missing")


def test_a_revoked_rim_signer_fails_at_ocsp() -> None:
    class RevokesRims:
        def status(self, chain: Sequence[x509.Certificate], *, at: dt.datetime) -> str:
            return "revoked" if "RIM" in chain[0].subject.rfc4514_string() else "good"

    verifier = NvidiaVerifier(cert_chain=CHAIN, rims=_rims(), ocsp=RevokesRims())
    assert "RIM's signer is revoked" in _rejected(verifier.verify(REPORT, OPTS), "ocsp")


def test_the_test_no_gpu_rims_are_a_version_mismatch_naming_versions_and_indexes() -> None:
    """The verdict is rim_version (see the NvidiaVerifier docstring): the versions are the first
    thing that differs; the message also lists every mismatched index."""
    verdict = NvidiaVerifier(cert_chain=CHAIN, rims=_rims()).verify(REPORT, OPTS)
    error = _rejected(verdict, "rim_version")
    _report_checks_pass(verdict)
    c = verdict.claims
    assert "the driver RIM is for 545.00, the report's driver is 550.90.07" in error
    assert "the vbios RIM is for 96.00.5E.00.01, the report's vbios is 96.00.9f.00.01" in error
    records = c["x-nvidia-mismatch-measurement-records"]
    indexes = sorted({r["index"] for r in records})
    assert indexes
    assert f"index(es) {', '.join(map(str, indexes))}" in error
    assert c["measres"] == "fail"
    assert "secboot" not in c
    for kind in ("driver", "vbios"):
        assert c[f"x-nvidia-gpu-{kind}-rim-fetched"] is True
        assert c[f"x-nvidia-gpu-{kind}-rim-schema-validated"] is True
        assert c[f"x-nvidia-gpu-{kind}-rim-signature-verified"] is True
        assert c[f"x-nvidia-gpu-{kind}-rim-version-match"] is False
        assert c[f"x-nvidia-gpu-{kind}-rim-cert-chain"]["x-nvidia-cert-status"] == "valid"
        assert c[f"x-nvidia-gpu-{kind}-rim-cert-chain"]["x-nvidia-cert-ocsp-status"] == "unknown"
    assert c["x-nvidia-gpu-driver-rim-version"] == "545.00"
    assert c["x-nvidia-gpu-vbios-index-no-conflict"] is True
    for record in records:
        assert record["rim"] in ("driver", "vbios")
        assert record["runtimeValue"] in (None, c["measurements"].get(str(record["index"])))


def test_rims_fetched_by_id_from_a_rim_source() -> None:
    source = _Source()
    verdict = NvidiaVerifier(cert_chain=CHAIN, rim_source=source).verify(REPORT, OPTS)
    _rejected(verdict, "rim_version")
    assert source.asked == [
        "NV_GPU_DRIVER_GH100_550.90.07",
        "NV_GPU_VBIOS_1010_0200_882_96009F0001",
    ]


def test_an_unreachable_rim_source_fails_only_when_rims_are_required() -> None:
    with pytest.raises(CollateralError, match="not cached"):
        NvidiaVerifier(cert_chain=CHAIN, rim_source=_Source(fail=True), require_rims=True).verify(
            REPORT, OPTS
        )
    verdict = NvidiaVerifier(cert_chain=CHAIN, rim_source=_Source(fail=True)).verify(REPORT, OPTS)
    assert verdict.verified
    assert verdict.claims["measres"] == "not-compared"
    assert verdict.claims["x-nvidia-gpu-driver-rim-fetched"] is False
    assert "not fetched" in verdict.claims["x-nvidia-attestation-warning"]


# ---------------------------------------------------------------------------- acceptance


def test_one_rim_alone_is_verified_but_not_compared() -> None:
    verifier = NvidiaVerifier(cert_chain=CHAIN, rims=[VBIOS_RIM.read_bytes()])
    verdict = verifier.verify(REPORT, OPTS)
    assert verdict.verified, verdict.error
    assert verdict.claims["measres"] == "not-compared"
    assert verdict.claims["x-nvidia-gpu-vbios-rim-signature-verified"] is True
    assert verdict.claims["x-nvidia-gpu-driver-rim-fetched"] is False


def test_cli_with_both_rims_exits_1_at_rim_version() -> None:
    result = CliRunner().invoke(
        app,
        [
            "verify",
            str(NV / "hopperAttestationReport.txt"),
            "--tee",
            "nvidia",
            "--cert-chain",
            str(NV / "hopperCertChain.txt"),
            "--rim",
            str(DRIVER_RIM),
            "--rim",
            str(VBIOS_RIM),
            "--report-data",
            NONCE.hex(),
            "--at",
            "2024-06-01T00:00:00Z",
            "--json",
        ],
    )
    doc = json.loads(result.output)
    assert result.exit_code == 1
    assert doc["error"].startswith("rim_version: the driver RIM is for 545.00")
    assert doc["claims"]["measres"] == "fail"
    assert doc["claims"]["x-nvidia-gpu-attestation-report-signature-verified"] is True


def test_cli_table_lists_the_mismatched_indexes_in_order() -> None:
    args = [
        "verify", str(NV / "hopperAttestationReport.txt"), "--tee", "nvidia",
        "--cert-chain", str(NV / "hopperCertChain.txt"), "--rim", str(DRIVER_RIM),
        "--rim", str(VBIOS_RIM), "--report-data", NONCE.hex(), "--at", "2024-06-01T00:00:00Z",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    row = result.output.split("mismatched indexes")[1].split("└")[0]
    # The indexes this report and the test_no_gpu RIMs differ at (computed from the artefacts:
    # tests/verifier/test_nvidia_rim.py), listed in numeric order.
    listed = [int(n) for n in re.findall(r"\d+", row)]
    assert listed == [2, 3, 4, 8, 10, 12, 22, 23, 26, 27, 28, 30, 31, 32, 33, 35, 37, 38, 40, 41]
