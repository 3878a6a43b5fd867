"""`veritee demo` runs the seeds' flows and says so; its exit code reflects the outcome."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.root import TestRoot


def test_demo_runs_the_seed_flows(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "PolicyDeny" in result.output
    assert "insecureAcceptAnything" in result.output
    assert "all flows behaved as the seeds show" in result.output
    assert (tmp_path / "state" / "admin.token").exists()
    # Use case 1 (seed 000) with the real docker-registry and skopeo (.ci/run installs them):
    # the AS's verifier line, three pulls recorded in the AAEL, two refusals for their reasons.
    assert "Tdx Verifier/endorsement check passed." in result.output
    assert result.output.count("AAEL PullImage OK") == 3
    assert "refused as expected (SignatureRejected)" in result.output
    assert "refused as expected (LayerKeyError)" in result.output
    assert "PolicyDeny" in result.output.split("3. an encrypted image")[1]
    # Seed 002, confidential AI: the AS verifies the emulated H100 beside the TDX guest, the
    # EAR has cpu0 and gpu0, the model key is released; a GPU measured differently from its
    # RIM (block 3) makes gpu0 contraindicated and the key is refused.
    gpu = " ".join(result.output.split("confidential AI")[1].split())
    assert "Nvidia Verifier/endorsement check passed." in gpu
    assert "released: model decryption key" in gpu
    good, tampered = gpu.split("measurement 3 changed")
    assert "gpu0 │ affirming" in good
    assert "gpu0 │ contraindicated" in tampered
    assert "measurements differ at index(es) 3 from the RIMs" in tampered
    assert "refused as expected: PolicyDeny" in tampered
    again = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path)])  # reuses the state
    assert again.exit_code == 0, again.output


def test_demo_leaves_the_users_state_alone(tmp_path: Path) -> None:
    """Without --data-dir the demo works in a temporary directory: nothing lands in the
    user's home (the default collateral cache and data live in ~/.local/share/veritee)."""
    env = {k: v for k, v in os.environ.items() if k != "VERITEE_HOME"}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "veritee", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all flows behaved as the seeds show" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_demo_on_a_test_root_made_before_gpu_support(tmp_path: Path) -> None:
    """An older demo directory (its test root without nvidia/) still runs; the GPU part says
    why it is skipped and how to get it."""
    TestRoot.init(tmp_path / "test-root")
    shutil.rmtree(tmp_path / "test-root" / "nvidia")
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "skipped: the test root in" in said
    assert "was made before GPU support" in said
    assert "gpu0" not in said
