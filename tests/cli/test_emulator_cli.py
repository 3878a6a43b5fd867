"""`veritee emulator init|evidence|serve` and `veritee verify --trust-root` end to end."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import serve_app
from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.root import TestRoot
from veritee.emulator.server import create_app
from veritee.verifier.ccel import replay_ccel
from veritee.verifier.intel_quote import TdReport, parse_quote

runner = CliRunner()


@pytest.fixture(scope="module")
def root_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli") / "root"
    result = runner.invoke(app, ["emulator", "init", str(directory)])
    assert result.exit_code == 0, result.output
    assert "--trust-root" in result.output
    return directory


def _evidence(root_dir: Path, out: Path, *args: str) -> Path:
    result = runner.invoke(
        app, ["emulator", "evidence", "--root", str(root_dir), "--out", str(out), *args]
    )
    assert result.exit_code == 0, result.output
    return out


def _verify(*args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["verify", *args, "--json"])
    return result.exit_code, json.loads(result.output)


CASES = [
    ("tdx-v4", ["--tee", "tdx"]),
    ("tdx-v5", ["--tee", "tdx", "--tdx-version", "5"]),
    ("tdx-v5-td15", ["--tee", "tdx", "--tdx-version", "5", "--td15"]),
    ("sgx", ["--tee", "sgx"]),
]


@pytest.mark.parametrize(("name", "args"), CASES, ids=[c[0] for c in CASES])
def test_intel_evidence_verifies_only_with_trust_root(
    root_dir: Path, tmp_path: Path, name: str, args: list[str]
) -> None:
    out = _evidence(root_dir, tmp_path / name, *args, "--report-data", "ab" * 32)
    assert {p.name for p in out.iterdir()} >= {"evidence.bin", "evidence.json", "collateral.json"}
    code, doc = _verify(
        str(out / "evidence.bin"),
        "--collateral",
        str(out / "collateral.json"),
        "--trust-root",
        str(root_dir),
        "--report-data",
        "ab" * 32,
    )
    assert code == 0, doc["error"]
    assert doc["tcb_status"] == "UpToDate"
    claims = doc["claims"]
    assert isinstance(claims, dict)
    assert claims["emulated"] is True
    code, doc = _verify(str(out / "evidence.bin"), "--collateral", str(out / "collateral.json"))
    assert code == 1
    error = str(doc["error"])
    assert error.startswith("root_ca:")
    assert "untrusted root" in error
    assert "Intel SGX Root CA" in error


@pytest.mark.parametrize("signer", ["vcek", "vlek"])
def test_snp_evidence_verifies_only_with_trust_root(
    root_dir: Path, tmp_path: Path, signer: str
) -> None:
    out = _evidence(
        root_dir,
        tmp_path / signer,
        "--tee",
        "snp",
        "--signer",
        signer,
        "--set",
        "host_data=" + "11" * 32,
    )
    code, doc = _verify(
        str(out / "evidence.bin"),
        "--cert-chain",
        str(out / "cert_chain.pem"),
        "--trust-root",
        str(root_dir),
        "--init-data",
        "11" * 32,
    )
    assert code == 0, doc["error"]
    assert doc["claims"]["emulated"] is True  # type: ignore[index]
    code, doc = _verify(str(out / "evidence.bin"), "--cert-chain", str(out / "cert_chain.pem"))
    assert code == 1
    assert str(doc["error"]).startswith("ark:")
    assert "ARK-Milan" in str(doc["error"])


def test_wire_json_verifies_like_the_binary(root_dir: Path, tmp_path: Path) -> None:
    for tee, extra in (("tdx", ["--collateral"]), ("snp", ["--cert-chain"])):
        out = _evidence(root_dir, tmp_path / tee, "--tee", tee)
        side = "collateral.json" if tee == "tdx" else "cert_chain.pem"
        code, doc = _verify(
            str(out / "evidence.json"), extra[0], str(out / side), "--trust-root", str(root_dir)
        )
        assert code == 0, doc["error"]
        assert doc["tee"] == tee


def test_tdx_event_log_replays_to_the_quote_rtmrs(root_dir: Path, tmp_path: Path) -> None:
    out = _evidence(root_dir, tmp_path / "tdx", "--tee", "tdx")
    wire = json.loads((out / "evidence.json").read_text())
    quote = parse_quote(base64.b64decode(wire["quote"]))
    assert isinstance(quote.body, TdReport)
    assert replay_ccel(base64.b64decode(wire["cc_eventlog"])) == quote.body.rtmrs
    assert any(quote.body.rtmrs)


def test_sample_evidence_needs_allow_sample(root_dir: Path, tmp_path: Path) -> None:
    out = _evidence(root_dir, tmp_path / "sample", "--tee", "sample", "--report-data", "0102")
    code, doc = _verify(str(out / "evidence.json"))
    assert code == 1
    assert str(doc["error"]).startswith("sample_disabled:")
    code, doc = _verify(str(out / "evidence.json"), "--allow-sample", "--report-data", "0102")
    assert code == 0
    assert doc["claims"]["emulated"] is True  # type: ignore[index]


def test_set_fields_land_in_the_claims(root_dir: Path, tmp_path: Path) -> None:
    out = _evidence(
        root_dir,
        tmp_path / "tdx",
        "--tee",
        "tdx",
        "--set",
        "mr_td=" + "42" * 48,
        "--set",
        "mr_config_id=" + "07" * 48,
    )
    code, doc = _verify(
        str(out / "evidence.bin"),
        "--collateral",
        str(out / "collateral.json"),
        "--trust-root",
        str(root_dir),
        "--init-data",
        "07" * 48,
    )
    assert code == 0, doc["error"]
    body = doc["claims"]["quote"]["body"]  # type: ignore[index]
    assert body["mr_td"] == "42" * 48


@pytest.mark.parametrize(
    "args",
    [
        ["--tee", "tpm"],
        ["--tee", "tdx", "--set", "mr_td=00"],
        ["--tee", "tdx", "--set", "nonsense=00"],
        ["--tee", "tdx", "--set", "mr_td"],
        ["--tee", "snp", "--snp-version", "4"],
        ["--tee", "tdx", "--report-data", "00" * 65],
    ],
)
def test_bad_evidence_requests_exit_2(root_dir: Path, tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(
        app, ["emulator", "evidence", "--root", str(root_dir), "--out", str(tmp_path / "x"), *args]
    )
    assert result.exit_code == 2


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["emulator", "init", str(tmp_path)])
    assert result.exit_code == 2
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_evidence_from_a_non_root_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "emulator",
            "evidence",
            "--root",
            str(tmp_path),
            "--tee",
            "tdx",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2


@pytest.fixture
def emulated_services(root_dir: Path) -> Iterator[str]:
    with serve_app(create_app(TestRoot.load(root_dir))) as url:
        yield url


@pytest.mark.parametrize(
    ("tee", "args"), [("tdx", []), ("tdx", ["--tdx-version", "5"]), ("sgx", []), ("snp", [])]
)
def test_same_verdicts_through_emulated_pccs_and_kds(
    root_dir: Path, tmp_path: Path, emulated_services: str, tee: str, args: list[str]
) -> None:
    out = _evidence(root_dir, tmp_path / tee, "--tee", tee, *args)
    side = (
        ["--collateral", str(out / "collateral.json")]
        if tee != "snp"
        else ["--cert-chain", str(out / "cert_chain.pem")]
    )
    code_file, by_file = _verify(str(out / "evidence.bin"), *side, "--trust-root", str(root_dir))
    cache = tmp_path / "empty-cache.db"
    assert not cache.exists()
    network = ["--kds", emulated_services] if tee == "snp" else ["--pccs", emulated_services]
    code_net, by_net = _verify(
        str(out / "evidence.bin"), *network, "--cache", str(cache), "--trust-root", str(root_dir)
    )
    assert code_file == code_net == 0, (by_file["error"], by_net["error"])
    assert by_file == by_net
    assert cache.exists()


def test_serve_command_runs_a_real_server(root_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "veritee",
            "emulator",
            "serve",
            "--root",
            str(root_dir),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(
                    f"http://127.0.0.1:{port}/sgx/certification/v4/rootcacrl", timeout=2
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert reply.status_code == 200
        bytes.fromhex(reply.text)
        assert (
            httpx.get(
                f"http://127.0.0.1:{port}/tdx/certification/v4/tcb",
                params={"fmspc": "FFFFFFFFFFFF"},
                timeout=5,
            ).status_code
            == 404
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_tampered_event_log_is_rejected_at_eventlog(root_dir: Path, tmp_path: Path) -> None:
    out = _evidence(root_dir, tmp_path / "tdx", "--tee", "tdx")
    wire = json.loads((out / "evidence.json").read_text())
    log = bytearray(base64.b64decode(wire["cc_eventlog"]))
    log[-60] ^= 0x01  # inside the last event's digest
    wire["cc_eventlog"] = base64.b64encode(bytes(log)).decode()
    (out / "evidence.json").write_text(json.dumps(wire))
    code, doc = _verify(
        str(out / "evidence.json"),
        "--collateral",
        str(out / "collateral.json"),
        "--trust-root",
        str(root_dir),
    )
    assert code == 1
    assert str(doc["error"]).startswith("eventlog:")


def test_event_log_claims_are_reported(root_dir: Path, tmp_path: Path) -> None:
    out = _evidence(root_dir, tmp_path / "tdx", "--tee", "tdx")
    code, doc = _verify(
        str(out / "evidence.json"),
        "--collateral",
        str(out / "collateral.json"),
        "--trust-root",
        str(root_dir),
    )
    assert code == 0
    logs = doc["claims"]["uefi_event_logs"]  # type: ignore[index]
    assert {e["type_name"] for e in logs} >= {"EV_SEPARATOR"}
