"""CPU + GPU composite attestation through RCAR and the AS, over real HTTP on loopback.

The guest is an emulated TDX with an emulated NVIDIA H100 (``EmulatedEvidenceProvider``
with the ``nvidia`` device): RCAR carries the GPU's SPDM evidence as Trustee's composite
evidence (``additional_evidence`` = ``{"nvidia": {"device_evidence_list": [...]}}``), the AS
verifies both to the session's test root (device chain, RIMs and OCSP responses the test
root holds) and gives a ``cpu0`` and a ``gpu0`` submod.  The resource policy requires both.
Expected outcomes come from what the emulated devices were made with: matching RIMs give an
affirming GPU; a GPU whose measurement differs from its RIM gives ``gpu0`` contraindicated
(our default GPU policy: ``measres`` "fail" is executables 96) and PolicyDeny.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kbs_live import CPU_AND_GPU, ERRORS
from live_server import serve_app

from veritee.as_.config import AsSettings
from veritee.emulator.root import TestRoot
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_http import KbsRequestError
from veritee.kbs.bootstrap import KbsSettings, build_kbs


@dataclass
class Kbs:
    url: str
    admin_token: str
    root: TestRoot

    def admin(self) -> KbsClient:
        return KbsClient(self.url, admin_token=self.admin_token)

    def guest(self, **settings: bytes) -> KbsClient:
        provider = EmulatedEvidenceProvider(
            self.root.directory, devices=["nvidia"], settings=settings or None
        )
        return KbsClient(self.url, evidence_provider=provider, tee="tdx")


@pytest.fixture(scope="module")
def kbs(test_root: TestRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    data = tmp_path_factory.mktemp("kbs-gpu")
    parts = build_kbs(
        KbsSettings(attestation=AsSettings(data_dir=data, trust_root=test_root.directory))
    )
    with serve_app(parts.app) as url:
        kbs = Kbs(url, parts.attestation.admin.token_path.read_text().strip(), test_root)
        with kbs.admin() as admin:
            admin.set_resource("default/model/key", b"model decryption key")
            admin.set_resource_policy(CPU_AND_GPU)
        yield kbs


def _submods(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    submods: dict[str, Any] = claims["submods"]
    return submods


def test_cpu_and_gpu_verified_release_the_resource(kbs: Kbs) -> None:
    with kbs.guest() as guest:
        token = guest.attest()
        submods = _submods(token)
        assert sorted(submods) == ["cpu0", "gpu0"]
        gpu = submods["gpu0"]
        assert gpu["ear.status"] == "affirming"
        evidence = gpu["ear.veraison.annotated-evidence"]["nvidia"]
        assert evidence["measres"] == "success"
        assert evidence["x-nvidia-gpu-attestation-report-signature-verified"] is True
        assert evidence["x-nvidia-gpu-attestation-report-nonce-match"] is True
        assert evidence["emulated"] is True
        assert submods["cpu0"]["ear.veraison.annotated-evidence"]["tdx"]
        assert guest.get_resource("default/model/key") == b"model decryption key"


def test_a_gpu_whose_measurement_differs_is_contraindicated_and_denied(kbs: Kbs) -> None:
    # The emulated GPU's measurement block 3 no longer matches the RIM the test root holds.
    with kbs.guest(**{"measurement.3": b"\x42" * 48}) as guest:
        token = guest.attest()
        gpu = _submods(token)["gpu0"]
        assert gpu["ear.status"] == "contraindicated"
        evidence = gpu["ear.veraison.annotated-evidence"]["nvidia"]
        assert evidence["measres"] == "fail"
        assert evidence["x-nvidia-gpu-attestation-report-signature-verified"] is True
        with pytest.raises(KbsRequestError) as denied:
            guest.get_resource("default/model/key")
        assert denied.value.status == 401
        assert denied.value.type == ERRORS + "PolicyDeny"


def test_gpu_evidence_under_another_root_fails_attestation(
    kbs: Kbs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The guest's CPU keys are the trusted test root's, its GPU PKI is another root's: the
    # guest directory is the session root with nvidia/ taken from a stranger root.
    stranger = TestRoot.init(tmp_path / "stranger")
    guest_dir = tmp_path / "guest"
    shutil.copytree(kbs.root.directory, guest_dir)
    shutil.rmtree(guest_dir / "nvidia")
    shutil.copytree(stranger.directory / "nvidia", guest_dir / "nvidia")
    provider = EmulatedEvidenceProvider(guest_dir, devices=["nvidia"])
    with (
        caplog.at_level(logging.WARNING, logger="veritee"),
        KbsClient(kbs.url, evidence_provider=provider, tee="tdx") as guest,
        pytest.raises(KbsRequestError) as failed,
    ):
        guest.attest()
    assert failed.value.status == 401
    assert failed.value.type == ERRORS + "AttestationError"
    # The client sees Trustee's generic message; the server's log names the failed step.
    reasons = " ".join(r.getMessage() for r in caplog.records)
    assert "step cert_chain" in reasons
    assert "not a trusted NVIDIA device root" in reasons
