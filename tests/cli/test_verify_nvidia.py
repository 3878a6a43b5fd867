"""`veritee verify --tee nvidia`: exit codes and the JSON contract on the real Hopper report.

Vectors and expected verdicts: tests/data/SOURCES.md, NVIDIA section (nvtrust's report verifies
with nonce 931d8dd0…; Trustee's chain case 3 lacks its intermediate).
"""

from __future__ import annotations

import json
from pathlib import Path

from datadir import VECTORS
from typer.testing import CliRunner

from veritee.cli import app

runner = CliRunner()
NV = VECTORS / "nvidia"
REPORT = NV / "hopperAttestationReport.txt"
CHAIN = NV / "hopperCertChain.txt"
NONCE = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["verify", *args])
    return result.exit_code, result.output


def _json(*args: str) -> tuple[int, dict[str, object]]:
    code, out = _run(*args, "--json")
    doc = json.loads(out)
    assert isinstance(doc, dict)
    return code, doc


def test_wrong_nonce_exits_1_naming_report_data() -> None:
    wrong = "00" + NONCE[2:]
    code, doc = _json(
        str(REPORT), "--tee", "nvidia", "--cert-chain", str(CHAIN), "--report-data", wrong
    )
    assert code == 1
    assert doc["verified"] is False
    assert str(doc["error"]).startswith("report_data: ")


def test_chain_lacking_its_intermediate_exits_1_naming_cert_chain() -> None:
    chain = NV / "hopper_cert_chain_case3.txt"
    code, doc = _json(
        str(REPORT), "--tee", "nvidia", "--cert-chain", str(chain), "--report-data", NONCE
    )
    assert code == 1
    assert str(doc["error"]).startswith("cert_chain: ")


def test_tampered_report_exits_1_naming_the_signature(tmp_path: Path) -> None:
    raw = bytearray(bytes.fromhex(REPORT.read_text().strip()))
    raw[60] ^= 0x01  # inside measurement block 1's value
    bad = tmp_path / "report.bin"
    bad.write_bytes(bytes(raw))
    code, doc = _json(
        str(bad), "--tee", "nvidia", "--cert-chain", str(CHAIN), "--report-data", NONCE
    )
    assert code == 1
    assert str(doc["error"]).startswith("spdm_signature: ")


def test_truncated_report_exits_1_as_a_parse_error_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "report.hex"
    bad.write_text(REPORT.read_text().strip()[:200])
    code, out = _run(str(bad), "--tee", "nvidia", "--cert-chain", str(CHAIN), "--json")
    doc = json.loads(out)
    assert code == 1
    assert str(doc["error"]).startswith("parse: nvidia report: truncated")
    assert "Traceback" not in out


def test_missing_rim_file_is_a_usage_error() -> None:
    code, _ = _run(
        str(REPORT),
        "--tee",
        "nvidia",
        "--cert-chain",
        str(CHAIN),
        "--rim",
        "/nonexistent/rim.swidtag",
    )
    assert code == 2


def test_real_report_verifies_and_says_no_rim_was_compared() -> None:
    code, doc = _json(
        str(REPORT), "--tee", "nvidia", "--cert-chain", str(CHAIN), "--report-data", NONCE
    )
    assert code == 0
    assert set(doc) == {"verified", "tee", "tcb_status", "advisory_ids", "error", "claims"}
    assert doc["verified"] is True
    assert doc["tee"] == "nvidia"
    assert doc["error"] is None
    claims = doc["claims"]
    assert isinstance(claims, dict)
    assert claims["measres"] == "not-compared"
    assert claims["x-nvidia-gpu-driver-rim-fetched"] is False
    assert claims["x-nvidia-gpu-driver-version"] == "550.90.07"
    assert claims["x-nvidia-gpu-vbios-version"] == "96.00.9f.00.01"
    assert len(claims["measurements"]) == 64


def test_real_report_summary_table() -> None:
    code, out = _run(
        str(REPORT), "--tee", "nvidia", "--cert-chain", str(CHAIN), "--report-data", NONCE
    )
    assert code == 0
    assert "nvidia: verified" in out
    assert "not compared (no RIM given)" in out
    assert "550.90.07" in out
