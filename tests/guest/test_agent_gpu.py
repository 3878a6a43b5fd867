"""Seed 002's guest: `veritee agent serve` in an emulated TDX with the test root's emulated
H100 (``--device nvidia``), against `veritee serve`, each a separate process on loopback.

The AA gives the GPU's evidence as additional evidence, RCAR carries it as Trustee's
composite evidence, and the KBS releases a model key under a policy that needs an affirming
``gpu0`` beside ``cpu0``.  Expected outcomes come from the emulated devices: the test root's
RIMs describe the default emulated GPU, so its measurements match (``measres`` success).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kbs_live import CPU_AND_GPU
from spawn import veritee_agent, veritee_server
from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.root import TestRoot
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_protocol import token_claims
from veritee.verifier.base import VerifyOptions
from veritee.verifier.nvidia_spdm import parse_report
from veritee.verifier.registry import VerifierSettings, build_verifier

MODEL_KEY = "default/model/key"


@dataclass
class Setup:
    trustee: str
    agent: str
    admin_token: str


@pytest.fixture(scope="module")
def setup(test_root: TestRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("seed002-gpu")
    trustee_args = ["serve", "--data-dir", str(work / "trustee"), "--trust-root"]
    with veritee_server([*trustee_args, str(test_root.directory)], work / "t.log") as trustee:
        (work / "aa.toml").write_text(f'[token_configs.kbs]\nurl = "{trustee}"\n')
        (work / "cdh.toml").write_text(f'[kbc]\nname = "cc_kbc"\nurl = "{trustee}"\n')
        agent_args = [
            "--emulated", str(test_root.directory), "--device", "nvidia", "--features", "all",
            "--config", str(work / "aa.toml"), "--cdh-config", str(work / "cdh.toml"),
        ]  # fmt: skip
        with veritee_agent(agent_args, work / "agent.log") as agent:
            token = (work / "trustee" / "admin.token").read_text().strip()
            yield Setup(trustee, agent, token)


def test_a_device_needs_an_emulated_tee_and_a_known_name(test_root: TestRoot) -> None:
    runner = CliRunner()
    alone = runner.invoke(app, ["agent", "serve", "--device", "nvidia"])
    assert alone.exit_code == 1
    assert "an emulated device needs an emulated TEE" in " ".join(alone.output.split())
    root = str(test_root.directory)
    other = runner.invoke(app, ["agent", "serve", "--emulated", root, "--device", "amd-gpu"])
    assert other.exit_code == 1
    assert "no emulated device amd-gpu; expected nvidia" in " ".join(other.output.split())


def test_additional_evidence_is_the_gpus_bound_to_the_runtime_data(
    setup: Setup, test_root: TestRoot
) -> None:
    runtime = bytes(range(48))  # the AS's SHA-384 report data; the SPDM nonce is its first 32
    encoded = base64.urlsafe_b64encode(runtime).decode()
    reply = httpx.get(
        f"{setup.agent}/aa/additional-evidence",
        params={"runtime_data": encoded, "encoding": "base64"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    doc = json.loads(reply.content)
    assert list(doc) == ["nvidia"]
    (device,) = doc["nvidia"]["device_evidence_list"]
    assert device["arch"] == "HOPPER"
    assert parse_report(base64.b64decode(device["evidence"])).nonce == runtime[:32]
    verifier = build_verifier("nvidia", VerifierSettings(trust_root=test_root.directory))
    evidence = json.dumps(doc["nvidia"]).encode()
    verdict = verifier.verify(evidence, VerifyOptions(report_data=runtime))
    assert verdict.verified, verdict.error
    assert verdict.claims["measres"] == "success"
    wrong = verifier.verify(evidence, VerifyOptions(report_data=bytes(48)))
    assert wrong.step == "report_data"


def test_the_model_key_is_released_to_cpu_and_gpu_attested_together(setup: Setup) -> None:
    with KbsClient(setup.trustee, admin_token=setup.admin_token) as admin:
        admin.set_resource(MODEL_KEY, b"model key")
        admin.set_resource_policy(CPU_AND_GPU)
    reply = httpx.get(f"{setup.agent}/cdh/resource/{MODEL_KEY}", timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.content == b"model key"
    token = json.loads(httpx.get(f"{setup.agent}/aa/token?token_type=kbs", timeout=60).content)
    submods = token_claims(token["token"])["submods"]
    assert set(submods) == {"cpu0", "gpu0"}
    assert submods["gpu0"]["ear.status"] == "affirming"
    gpu = submods["gpu0"]["ear.veraison.annotated-evidence"]["nvidia"]
    assert gpu["x-nvidia-gpu-attestation-report-nonce-match"] is True


def test_an_unknown_runtime_data_encoding_is_refused(setup: Setup, tmp_path: Path) -> None:
    reply = httpx.get(
        f"{setup.agent}/aa/additional-evidence",
        params={"runtime_data": "x", "encoding": "rot13"},
        timeout=60,
    )
    assert reply.status_code == 400
    assert "Traceback" not in reply.text
