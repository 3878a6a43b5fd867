"""`veritee verify`: exit codes, the JSON contract and the rich summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from intel_vectors import S1, T1, T2, T6
from typer.testing import CliRunner

from veritee.cli import app

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["verify", *args])
    return result.exit_code, result.output


def test_t1_json_contract(vectors: Path) -> None:
    code, out = _run(
        str(vectors / T1.quote),
        "--collateral",
        str(vectors / T1.collateral),
        "--at",
        "2025-07-19T10:00:34Z",
        "--json",
    )
    doc = json.loads(out)
    assert code == 0
    assert set(doc) == {"verified", "tee", "tcb_status", "advisory_ids", "error", "claims"}
    assert doc["verified"] is True
    assert doc["tee"] == "tdx"
    assert doc["tcb_status"] == "UpToDate"
    assert doc["error"] is None
    assert doc["claims"]["quote"]["header"]["vendor_id"] == "939a7233f79c4ca9940a0db3957f0607"


def test_s1_rich_table(vectors: Path) -> None:
    code, out = _run(
        str(vectors / S1.quote),
        "--collateral",
        str(vectors / S1.collateral),
        "--at",
        "2025-07-19T10:01:17Z",
    )
    assert code == 0
    assert "verified" in out
    assert "ConfigurationAndSWHardeningNeeded" in out
    assert "INTEL-SA-00615" in out
    assert "MRENCLAVE" in out


def test_rejection_names_the_step(vectors: Path) -> None:
    code, out = _run(
        str(vectors / T2.quote),
        "--collateral",
        str(vectors / T2.collateral),
        "--at",
        "2026-03-20T10:41:14Z",
        "--json",
    )
    doc = json.loads(out)
    assert code == 1
    assert doc["verified"] is False
    assert doc["error"].startswith("tcb_level:")
    assert doc["tcb_status"] == "TcbNotSupported"


def test_debug_td_flagged(vectors: Path) -> None:
    args = [
        str(vectors / T6.quote),
        "--collateral",
        str(vectors / T6.collateral),
        "--at",
        "2023-07-08T07:24:58Z",
        "--json",
    ]
    code, out = _run(*args)
    assert code == 1
    doc = json.loads(out)
    assert doc["error"].startswith("debug:")
    assert doc["claims"]["td_attributes"]["debug"] is True
    code, out = _run(*args, "--allow-debug")
    assert code == 0
    assert json.loads(out)["tcb_status"] == "UpToDate"


def test_report_data_mismatch_fails(vectors: Path) -> None:
    code, out = _run(
        str(vectors / T1.quote),
        "--collateral",
        str(vectors / T1.collateral),
        "--at",
        "2025-07-19T10:00:34Z",
        "--report-data",
        "00" * 64,
        "--json",
    )
    assert code == 1
    assert json.loads(out)["error"].startswith("report_data:")


def test_report_data_match_passes(vectors: Path) -> None:
    raw = (vectors / T1.quote).read_bytes()
    code, _ = _run(
        str(vectors / T1.quote),
        "--collateral",
        str(vectors / T1.collateral),
        "--at",
        "2025-07-19T10:00:34Z",
        "--report-data",
        raw[568:632].hex(),
    )
    assert code == 0


def test_hex_evidence_and_truncated_quote(vectors: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.bin"
    cut.write_bytes((vectors / T1.quote).read_bytes()[:700])
    code, out = _run(
        str(cut), "--tee", "tdx", "--collateral", str(vectors / T1.collateral), "--json"
    )
    assert code == 1
    assert json.loads(out)["error"].startswith("parse:")


@pytest.mark.parametrize(
    "args",
    [
        ["does-not-exist.bin"],
        ["--tee", "tpm", "x"],
        ["--at", "yesterday", "x"],
        ["--report-data", "zz", "x"],
    ],
)
def test_usage_errors_exit_2(args: list[str], vectors: Path) -> None:
    args = [str(vectors / T1.quote) if a == "x" else a for a in args]
    code, _ = _run(*args)
    assert code == 2


def test_unknown_evidence_exits_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 100)
    code, out = _run(str(junk), "--json")
    assert code == 2
    assert json.loads(out)["error"].startswith("input:")


def test_console_script_runs(vectors: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "veritee",
            "verify",
            str(vectors / T1.quote),
            "--collateral",
            str(vectors / T1.collateral),
            "--at",
            "2025-07-19T10:00:34Z",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verified"] is True
