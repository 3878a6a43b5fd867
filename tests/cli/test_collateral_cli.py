"""``veritee collateral prefetch|show`` against a real local PCCS + KDS."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from live_server import serve_app
from local_pcs import LocalServer, refused_url, serve_kds, serve_pccs
from typer.testing import CliRunner

from veritee.cli.collateral import app
from veritee.emulator.evidence import EvidenceRequest, emulate
from veritee.emulator.root import TestRoot
from veritee.emulator.server import create_app
from veritee.paths import default_cache_path
from veritee.verifier.collateral.anchor import Anchor

AS_OF = "2023-07-08T07:24:58Z"
INTEL_ITEMS = [
    "PCK CRL (platform CA)",
    "Intel root CA CRL",
    "tdx tcbInfo for FMSPC 50806F000000",
    "tdx QE identity",
]


def cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(app, name="collateral")

    @root.callback()
    def main() -> None:
        """Root command (a group, so that 'collateral' is a subcommand)."""

    return root


@pytest.fixture
def server(vectors: Path) -> Iterator[LocalServer]:
    local = LocalServer().start()
    serve_pccs(local, vectors)
    serve_kds(local, vectors)
    yield local
    local.stop()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def prefetch(runner: CliRunner, server: LocalServer, cache: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        cli(),
        [
            "collateral",
            "prefetch",
            *args,
            "--pccs",
            server.url,
            "--kds",
            server.url,
            "--cache",
            str(cache),
            "--at",
            AS_OF,
        ],
    )
    return result.exit_code, result.output


def show_json(runner: CliRunner, cache: Path, at: str = AS_OF) -> list[dict[str, object]]:
    args = ["collateral", "show", "--json", "--cache", str(cache), "--at", at]
    result = runner.invoke(cli(), args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert isinstance(data, list)
    return data


def test_prefetch_tdx_quote_and_snp_report(
    runner: CliRunner, server: LocalServer, vectors: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "home" / "collateral.db"
    quote = vectors / "go-tdx-guest" / "tdx_prod_quote_SPR_E4.dat"
    report = vectors / "go-sev-guest" / "attestation.bin"
    code, output = prefetch(runner, server, cache, str(quote), str(report))
    assert code == 0, output
    assert "tdx quote, FMSPC 50806F000000, platform CA" in output
    assert "SNP report, Milan (assumed: v2 report), signer vcek" in output
    for item in [*INTEL_ITEMS, "Milan VCEK cert chain", "Milan VCEK for chip 3ac3fe21e13fb099…"]:
        line = next(line for line in output.splitlines() if line.startswith(item))
        assert "100%" in line or "fetched" in line, line
    assert output.count("fetched") == 6
    assert "6 of 6 items ready" in output
    assert server.total_hits() == 6

    # Again: everything comes from the cache, nothing from the network.
    code, output = prefetch(runner, server, cache, str(quote), str(report))
    assert code == 0, output
    assert output.count("cached") == 6
    assert server.total_hits() == 6

    items = show_json(runner, cache)
    assert sorted(str(i["kind"]) for i in items) == [
        "amd-cert-chain",
        "amd-vcek",
        "intel-pck-crl",
        "intel-qe-identity",
        "intel-root-ca-crl",
        "intel-tcb-info",
    ]
    assert {i["state"] for i in items} == {"valid"}
    by_kind = {i["kind"]: i for i in items}
    assert by_kind["intel-qe-identity"]["expires"] == "2023-07-08T07:24:59Z"
    assert by_kind["intel-tcb-info"]["key"] == "tdx/50806F000000/standard"
    later = {i["kind"]: i["state"] for i in show_json(runner, cache, "2023-07-08T07:26:00Z")}
    assert later["intel-qe-identity"] == "expired"
    assert later["intel-pck-crl"] == "valid"


def test_prefetch_by_fmspc_and_show_table(
    runner: CliRunner, server: LocalServer, tmp_path: Path
) -> None:
    cache = tmp_path / "c.db"
    code, output = prefetch(runner, server, cache, "--fmspc", "50806f000000")
    assert code == 0, output
    assert "4 of 4 items ready" in output
    result = runner.invoke(cli(), ["collateral", "show", "--cache", str(cache), "--at", AS_OF])
    assert result.exit_code == 0, result.output
    for header in ("kind", "key", "fetched", "expires", "state"):
        assert header in result.output
    assert "intel-tcb-info" in result.output
    assert "2023-07-18 08:42:58Z" in result.output
    assert result.output.count("valid") == 4
    result = runner.invoke(cli(), ["collateral", "show", "--cache", str(cache)])  # as of now
    assert result.output.count("expired") == 4


def test_prefetch_failure_exits_1_and_names_the_item(
    runner: CliRunner, server: LocalServer, tmp_path: Path
) -> None:
    code, output = prefetch(
        runner, server, tmp_path / "c.db", "--fmspc", "50806F000000", "--fmspc", "00A06D080000"
    )
    assert code == 1
    assert "failed" in output
    assert "tdx tcbInfo for FMSPC 00A06D080000: GET" in output
    assert "HTTP 404" in output
    assert "4 of 5 items ready" in output  # the shared CRLs and QE identity are listed once


def test_prefetch_bad_inputs(
    runner: CliRunner, server: LocalServer, vectors: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x01" * 100)
    code, output = prefetch(runner, server, tmp_path / "c.db", str(junk))
    assert code == 1
    assert "neither an Intel quote nor a 1184-byte SNP report" in output
    code, output = prefetch(runner, server, tmp_path / "c.db", str(tmp_path / "absent"))
    assert code == 1
    assert "cannot read" in output
    code, output = prefetch(runner, server, tmp_path / "c.db", "--fmspc", "XYZ")
    assert code == 1
    assert "12 hex digits" in output
    code, output = prefetch(runner, server, tmp_path / "c.db")
    assert code == 2
    assert "nothing to prefetch" in output
    assert server.total_hits() == 0


def test_prefetch_unreachable_server_is_reported(
    runner: CliRunner, vectors: Path, tmp_path: Path
) -> None:
    url = refused_url()
    result = runner.invoke(
        cli(),
        [
            "collateral",
            "prefetch",
            str(vectors / "go-sev-guest" / "attestation.bin"),
            "--kds",
            url,
            "--cache",
            str(tmp_path / "c.db"),
        ],
    )
    assert result.exit_code == 1
    assert f"GET {url}/vcek/v1/Milan/cert_chain failed: ConnectError" in result.output


def test_show_empty_and_default_path(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERITEE_HOME", str(tmp_path / "vh"))
    assert default_cache_path() == tmp_path / "vh" / "collateral.db"
    result = runner.invoke(cli(), ["collateral", "show"])
    assert result.exit_code == 0, result.output
    assert "no collateral cached" in result.output
    assert not (tmp_path / "vh").exists()  # show does not create the database
    result = runner.invoke(cli(), ["collateral", "show", "--json"])
    assert json.loads(result.output) == []
    monkeypatch.delenv("VERITEE_HOME")
    assert default_cache_path() == Path("~/.local/share/veritee/collateral.db").expanduser()


def test_bad_at_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli(), ["collateral", "show", "--at", "yesterday"])
    assert result.exit_code == 2
    assert "ISO 8601" in result.output


def test_prefetch_of_emulated_evidence_needs_its_test_root_and_an_explicit_cache(
    runner: CliRunner, test_root: TestRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collateral is fetched under the root the evidence chains to; test-root collateral is
    kept only in a cache named with --cache, never in the default one."""
    monkeypatch.setenv("VERITEE_HOME", str(tmp_path / "home"))
    quote = tmp_path / "quote.bin"
    quote.write_bytes(emulate(test_root, EvidenceRequest(tee="tdx", with_eventlog=False)).raw)
    explicit = tmp_path / "explicit.db"
    with serve_app(create_app(test_root)) as url:
        base = ["collateral", "prefetch", str(quote), "--pccs", url]
        untrusted = runner.invoke(cli(), base)
        assert untrusted.exit_code == 1
        assert "the PCK chain ends in an untrusted root" in untrusted.output
        trusted = [*base, "--trust-root", str(test_root.directory)]
        default = runner.invoke(cli(), trusted)
        assert default.exit_code == 1, default.output
        assert "fetched but not cached: it chains to a test root" in default.output
        assert "0 of 4 items ready" in default.output
        assert not default_cache_path().exists() or show_json(runner, default_cache_path()) == []
        kept = runner.invoke(cli(), [*trusted, "--cache", str(explicit)])
        assert kept.exit_code == 0, kept.output
        assert "under the test root" in kept.output
        assert "4 of 4 items ready" in kept.output
    test = Anchor.of(test_root.intel.root.cert).fingerprint
    assert {item["root"] for item in show_json(runner, explicit, at=_now())} == {test}
    table = runner.invoke(cli(), ["collateral", "show", "--cache", str(explicit)])
    assert f"test {test[:8]}" in table.output


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
