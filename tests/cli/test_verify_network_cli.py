"""`veritee verify --pccs/--kds` over real HTTP on loopback, then offline from the cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from intel_vectors import T6
from local_pcs import LocalServer, serve_kds, serve_pccs
from typer.testing import CliRunner

from veritee.cli import app

runner = CliRunner()
T6_AT = "2023-07-08T07:24:58Z"


@pytest.fixture
def server(vectors: Path) -> Iterator[LocalServer]:
    srv = LocalServer().start()
    serve_pccs(srv, vectors)
    serve_kds(srv, vectors)
    yield srv
    srv.stop()


def _verify(*args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["verify", *args, "--json"])
    return result.exit_code, json.loads(result.output)


def test_tdx_through_pccs_matches_the_file_then_works_offline(
    vectors: Path, server: LocalServer, tmp_path: Path
) -> None:
    cache = str(tmp_path / "c.db")
    quote = str(vectors / T6.quote)
    code, via_pccs = _verify(
        quote, "--pccs", server.url, "--cache", cache, "--at", T6_AT, "--allow-debug"
    )
    code_file, via_file = _verify(
        quote, "--collateral", str(vectors / T6.collateral), "--at", T6_AT, "--allow-debug"
    )
    assert code == code_file == 0
    assert via_pccs == via_file
    hits = server.total_hits()
    code, offline = _verify(quote, "--offline", "--cache", cache, "--at", T6_AT, "--allow-debug")
    assert code == 0
    assert offline == via_file
    assert server.total_hits() == hits


def test_offline_with_empty_cache_names_what_is_missing(vectors: Path, tmp_path: Path) -> None:
    code, doc = _verify(
        str(vectors / T6.quote), "--offline", "--cache", str(tmp_path / "e.db"), "--at", T6_AT
    )
    assert code == 1
    assert str(doc["error"]).startswith("collateral:")
    assert "50806F000000" in str(doc["error"])


def test_snp_vcek_through_kds(vectors: Path, server: LocalServer, tmp_path: Path) -> None:
    code, doc = _verify(
        str(vectors / "go-sev-guest/attestation.bin"),
        "--kds",
        server.url,
        "--cache",
        str(tmp_path / "k.db"),
        "--at",
        "2025-01-01T00:00:00Z",
        "--allow-debug",
    )
    assert code == 0, doc["error"]
    assert doc["tee"] == "snp"
    claims = doc["claims"]
    assert isinstance(claims, dict)
    assert claims["policy_debug_allowed"] is True
