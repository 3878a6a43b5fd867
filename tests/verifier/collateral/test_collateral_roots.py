"""Collateral is kept apart by the root it chains to: an emulated PCCS answering for a real
platform's FMSPC can never poison the verification of that platform's real quotes.

The real side is vector T1 (tests/data/SOURCES.md: dcap-qvl's TDX quote, FMSPC
B0C06F000000, UpToDate with its collateral as of 2025-07-19T10:00:34Z), served by a
real local PCCS from its real collateral.  The emulated side is a test root made
inside T1's window, whose emulated platform has the same FMSPC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import serve_app
from local_pcs import LocalServer, serve_pccs_bundle
from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.evidence import EvidenceRequest, emulate
from veritee.emulator.root import TestRoot
from veritee.emulator.server import create_app
from veritee.errors import CollateralError
from veritee.store.kv import SqliteStore
from veritee.verifier.base import VerifyOptions
from veritee.verifier.collateral.anchor import Anchor
from veritee.verifier.collateral.cache import CollateralCache
from veritee.verifier.collateral.intel import fmspc_and_ca_from_quote
from veritee.verifier.intel_root import intel_root_ca
from veritee.verifier.registry import VerifierSettings, build_verifier

AT = dt.datetime(2025, 7, 19, 10, 0, 34, tzinfo=dt.UTC)  # T1's window end minus 1 s
KINDS = {"intel-pck-crl", "intel-root-ca-crl", "intel-tcb-info", "intel-qe-identity"}


@pytest.fixture(scope="module")
def same_fmspc_root(tmp_path_factory: pytest.TempPathFactory) -> TestRoot:
    """A test root whose collateral is valid at T1's time, for T1's FMSPC."""
    directory = tmp_path_factory.mktemp("roots") / "root"
    return TestRoot.init(directory, now=dt.datetime(2025, 7, 10, tzinfo=dt.UTC))


@pytest.fixture
def real_pcs(vectors: Path) -> Iterator[LocalServer]:
    server = LocalServer().start()
    serve_pccs_bundle(server, vectors / "dcap-qvl" / "tdx_quote_collateral.json")
    yield server
    server.stop()


def roots_in(cache_path: Path) -> dict[str, set[str]]:
    """Kinds of the cached items, by the fingerprint of the root they are filed under."""
    found: dict[str, set[str]] = {}
    with SqliteStore(cache_path) as store:
        for item in CollateralCache(store).entries():
            found.setdefault(item.root, set()).add(item.kind)
    return found


def test_emulated_entries_for_a_real_fmspc_are_never_used_for_the_real_quote(
    same_fmspc_root: TestRoot, real_pcs: LocalServer, vectors: Path, tmp_path: Path
) -> None:
    root = same_fmspc_root
    real_quote = (vectors / "dcap-qvl" / "tdx_quote").read_bytes()
    emulated_quote = emulate(root, EvidenceRequest(tee="tdx", with_eventlog=False)).raw
    assert fmspc_and_ca_from_quote(real_quote)[0] == root.intel.platform.fmspc.upper()
    intel = Anchor.of_der(intel_root_ca()).fingerprint
    test = Anchor.of(root.intel.root.cert).fingerprint
    cache = tmp_path / "collateral.db"
    options = VerifyOptions(at=AT)

    with serve_app(create_app(root)) as emulated_pccs:
        settings = VerifierSettings(
            pccs_url=emulated_pccs, cache_path=cache, trust_root=root.directory
        )
        # 1. The emulated PCCS's collateral for FMSPC B0C06F000000 is fetched and cached.
        verdict = build_verifier("tdx", settings).verify(emulated_quote, options)
        assert verdict.verified, verdict.error
        assert roots_in(cache) == {test: KINDS}
        # Asked for the real quote, the emulated PCCS's answer is refused by its root.
        with pytest.raises(CollateralError) as caught:
            build_verifier("tdx", settings).verify(real_quote, options)
        message = str(caught.value)
        assert f"chains to {Anchor.of(root.intel.root.cert).describe()}" in message
        assert f"not to {Anchor.of_der(intel_root_ca()).describe()}" in message
        intel_name = "C=US,ST=CA,L=Santa Clara,O=Intel Corporation,CN=Intel SGX Root CA"
        assert f"a non-vendor (test) root '{intel_name}' (SHA-256 {test})" in message
        assert roots_in(cache) == {test: KINDS}

    # 2. With the real PCCS and the same cache, the real quote verifies: all four items
    # come from the network (none of the emulated entries for its FMSPC is used).
    settings = VerifierSettings(pccs_url=real_pcs.url, cache_path=cache, trust_root=root.directory)
    verdict = build_verifier("tdx", settings).verify(real_quote, options)
    assert verdict.verified, verdict.error
    assert verdict.tcb_status == "UpToDate"
    assert real_pcs.total_hits() == 4
    assert roots_in(cache) == {test: KINDS, intel: KINDS}

    # 3. Offline, each quote gets the collateral of its own root from the one cache.
    offline = VerifierSettings(offline=True, cache_path=cache, trust_root=root.directory)
    for quote in (real_quote, emulated_quote):
        verdict = build_verifier("tdx", offline).verify(quote, options)
        assert verdict.verified, verdict.error
    assert real_pcs.total_hits() == 4


def test_a_bundle_under_another_root_is_refused_by_name(
    same_fmspc_root: TestRoot, vectors: Path, tmp_path: Path
) -> None:
    """A collateral file made under the test root, given for the real quote."""
    root = same_fmspc_root
    bundle = tmp_path / "emulated.json"
    bundle.write_text(emulate(root, EvidenceRequest(tee="tdx")).collateral_json or "")
    settings = VerifierSettings(collateral_file=bundle, trust_root=root.directory)
    real_quote = (vectors / "dcap-qvl" / "tdx_quote").read_bytes()
    verdict = build_verifier("tdx", settings).verify(real_quote, VerifyOptions(at=AT))
    assert not verdict.verified
    assert verdict.step == "collateral"
    test = Anchor.of(root.intel.root.cert).fingerprint
    assert verdict.error is not None
    assert "pck_crl_issuer_chain ends in a non-vendor (test) root" in verdict.error
    assert f"SHA-256 {test}" in verdict.error


def test_the_default_cache_never_takes_test_root_collateral(
    same_fmspc_root: TestRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`veritee verify` against an emulated PCCS without --cache uses $VERITEE_HOME's cache:
    the emulated quote verifies, and nothing of the test root is kept there."""
    root = same_fmspc_root
    monkeypatch.setenv("VERITEE_HOME", str(tmp_path / "home"))
    quote = tmp_path / "quote.bin"
    quote.write_bytes(emulate(root, EvidenceRequest(tee="tdx", with_eventlog=False)).raw)
    runner = CliRunner()
    with serve_app(create_app(root)) as emulated_pccs:
        common = ["--pccs", emulated_pccs, "--trust-root", str(root.directory)]
        result = runner.invoke(app, ["verify", str(quote), *common, "--at", AT.isoformat()])
        assert result.exit_code == 0, result.output
        shown = runner.invoke(app, ["collateral", "show"])
        assert "no collateral cached" in shown.output
        explicit = tmp_path / "test-root-collateral.db"
        result = runner.invoke(
            app,
            ["verify", str(quote), *common, "--at", AT.isoformat(), "--cache", str(explicit)],
        )
        assert result.exit_code == 0, result.output
    assert roots_in(explicit) == {Anchor.of(root.intel.root.cert).fingerprint: KINDS}
