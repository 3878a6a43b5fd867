"""``veritee initdata encode|decode|digest`` through the real ``veritee`` command group."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path

import pytest
from datadir import TRUSTEE
from typer.testing import CliRunner, Result

from veritee.cli import app

UPSTREAM = TRUSTEE / "integration-tests" / "tests" / "init-data-with-policy.toml"
KEY = "io.katacontainers.config.hypervisor.cc_init_data"
SMALL = 'version = "0.1.0"\nalgorithm = "sha512"\n[data]\n"cdh.toml" = "[kbc]"\n'


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def run(runner: CliRunner, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["initdata", *args], input=stdin)


def test_encode_then_decode_gives_the_file_back(runner: CliRunner) -> None:
    result = run(runner, "encode", str(UPSTREAM))
    assert result.exit_code == 0, result.output
    value = result.stdout.strip()
    assert gzip.decompress(base64.b64decode(value)) == UPSTREAM.read_bytes()
    decoded = run(runner, "decode", value)
    assert decoded.exit_code == 0, decoded.output
    assert decoded.stdout_bytes == UPSTREAM.read_bytes()  # byte for byte: no newline added
    annotated = run(runner, "encode", "--annotation", str(UPSTREAM))
    assert annotated.stdout == f"{KEY}={value}\n"
    piped = run(runner, "decode", "-", stdin=annotated.stdout)  # key=value from stdin
    assert piped.exit_code == 0, piped.output
    assert piped.stdout_bytes == UPSTREAM.read_bytes()


def test_digest_for_every_tee(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "initdata.toml"
    path.write_text(SMALL)
    full = hashlib.sha512(SMALL.encode()).hexdigest()
    result = run(runner, "digest", str(path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"sha512 {full}"
    assert lines[1].split() == ["tdx", "MRCONFIGID", "48", "bytes", full[:96]]
    assert lines[2].split() == ["snp", "HOST_DATA", "32", "bytes", full[:64]]
    assert lines[3].split() == ["sgx", "CONFIGID", "64", "bytes", full]
    assert len(lines) == 4


def test_digest_json_for_one_tee(runner: CliRunner) -> None:
    result = run(runner, "digest", str(UPSTREAM), "--tee", "tdx", "--json")
    assert result.exit_code == 0, result.output
    sha = hashlib.sha256(UPSTREAM.read_bytes()).hexdigest()
    assert json.loads(result.stdout) == {
        "algorithm": "sha256",
        "digest": sha,
        "tees": {"tdx": {"field": "MRCONFIGID", "value": sha + "00" * 16}},
    }


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["decode", "%%%"], None, "not standard base64"),
        (["decode", "-"], "QUJD\n", "not gzip data"),
        (["decode", base64.b64encode(gzip.compress(b'version = "9"\n')).decode()], None, "version"),
    ],
    ids=["base64", "gzip", "bad-document"],
)
def test_bad_annotations_exit_1(
    runner: CliRunner, args: list[str], stdin: str | None, message: str
) -> None:
    result = run(runner, *args, stdin=stdin)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert message in result.stderr


@pytest.mark.parametrize("command", ["encode", "digest"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'version = "0.1.0"\nalgorithm = "md5"\n', "algorithm must be one of"),
        (b'version = "0.2.0"\nalgorithm = "sha256"\n', "version must be '0.1.0'"),
        (b"\xff\xfe", "not UTF-8"),
    ],
    ids=["algorithm", "version", "utf-8"],
)
def test_bad_documents_exit_1(
    runner: CliRunner, tmp_path: Path, command: str, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    result = run(runner, command, str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert message in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["encode"],
        ["encode", "/nonexistent/initdata.toml"],
        ["digest", "UPSTREAM", "--tee", "cca"],
        ["decode"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, args: list[str]) -> None:
    result = run(runner, *[str(UPSTREAM) if a == "UPSTREAM" else a for a in args])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
