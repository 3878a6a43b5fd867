"""AMD KDS collateral from a real local server serving go-sev-guest's real certificates."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol

import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from live_server import serve_app
from local_pcs import A1_HWID, LocalServer, Reply, refused_url

from veritee.emulator.root import TestRoot
from veritee.emulator.server import create_app
from veritee.errors import CollateralError, CollateralMissing, ParseError
from veritee.store.kv import MemoryStore
from veritee.verifier.collateral.amd import (
    KdsVekSource,
    normalize_product,
    vcek_path,
    vek_request_from_report,
)
from veritee.verifier.collateral.cache import CollateralCache
from veritee.verifier.collateral.http import HttpStatusError
from veritee.verifier.snp_roots import fingerprint, pinned_arks, pinned_roots

A1_PATH = f"/vcek/v1/Milan/{A1_HWID}"
A1_QUERY = "blSPL=02&teeSPL=00&snpSPL=05&ucodeSPL=68"


class VekSource(Protocol):  # the SNP verifier's protocol, restated
    def vek_for(self, product: str, chip_id: bytes, reported_tcb: Mapping[str, int]) -> bytes: ...


def a1(vectors: Path) -> tuple[bytes, dict[str, int]]:
    request = vek_request_from_report((vectors / "go-sev-guest" / "attestation.bin").read_bytes())
    assert request.product == "Milan"
    assert request.product_guessed  # v2 report
    assert request.signer == "vcek"
    return request.chip_id, request.reported_tcb


def test_a1_report_fields(vectors: Path) -> None:
    chip_id, tcb = a1(vectors)
    assert chip_id.hex() == A1_HWID
    assert tcb == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}


def test_vek_for_a1_equals_the_real_vcek(kds: LocalServer, vectors: Path) -> None:
    """The VCEK, and the ASK/ARK chain above it that ties it to AMD's Milan ARK."""
    chip_id, tcb = a1(vectors)
    source: VekSource = KdsVekSource(kds.url, cache=CollateralCache(MemoryStore()))
    der = source.vek_for("Milan", chip_id, tcb)
    assert der == (vectors / "go-sev-guest" / "vcek.testcer").read_bytes()
    assert kds.requests == [f"{A1_PATH}?{A1_QUERY}", "/vcek/v1/Milan/cert_chain"]


def test_second_vek_for_is_served_from_the_cache(kds: LocalServer, vectors: Path) -> None:
    chip_id, tcb = a1(vectors)
    cache = CollateralCache(MemoryStore())
    source = KdsVekSource(kds.url, cache=cache)
    assert source.fetch_vek("Milan", chip_id, tcb).source == "network"
    assert source.fetch_vek("milan", chip_id, tcb).source == "cache"
    assert kds.total_hits() == 2  # the VCEK and its chain, once each
    chain, item = cache.entries()
    assert (chain.kind, item.kind) == ("amd-cert-chain", "amd-vcek")
    assert item.key == f"Milan/{A1_HWID}?{A1_QUERY}"
    assert item.expires_at == dt.datetime(2029, 9, 24, 0, 55, 28, tzinfo=dt.UTC)
    assert item.root == chain.root == fingerprint(pinned_roots()["Milan"].ark)


def test_expired_vcek_is_refetched(kds: LocalServer, vectors: Path) -> None:
    chip_id, tcb = a1(vectors)
    cache = CollateralCache(MemoryStore())
    after = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    source = KdsVekSource(kds.url, cache=cache)
    source.fetch_vek("Milan", chip_id, tcb)
    assert source.fetch_vek("Milan", chip_id, tcb, at=after).source == "network"
    assert kds.total_hits() == 3  # the chain is still valid in 2030: served from the cache


def test_vcek_from_an_emulated_kds_is_refused_under_amds_roots(test_root: TestRoot) -> None:
    """An emulated KDS serves a VCEK under its test ARK: a source trusting AMD's ARKs
    refuses it by the root it found, and caches nothing."""
    amd = test_root.amd
    cache = CollateralCache(MemoryStore(), test_roots=True)
    with serve_app(create_app(test_root)) as url:
        source = KdsVekSource(url, cache=cache)
        with pytest.raises(CollateralError) as caught:
            source.vek_for(amd.product, amd.chip_id, amd.reported_tcb)
        assert f"SHA-256 {fingerprint(amd.ark)}" in str(caught.value)
        assert "non-vendor (test) root" in str(caught.value)
        assert cache.entries() == []
        trusting = KdsVekSource(url, cache=cache, trusted_arks=(*pinned_arks(), amd.ark))
        assert trusting.vek_for(amd.product, amd.chip_id, amd.reported_tcb) == amd.kds_vcek_der()
    assert {item.root for item in cache.entries()} == {fingerprint(amd.ark)}


def test_default_cache_does_not_keep_emulated_kds_certificates(test_root: TestRoot) -> None:
    amd = test_root.amd
    cache = CollateralCache(MemoryStore())  # as the user's default cache is opened
    with serve_app(create_app(test_root)) as url:
        source = KdsVekSource(url, cache=cache, trusted_arks=(amd.ark,))
        got = source.fetch_vek(amd.product, amd.chip_id, amd.reported_tcb)
    assert (got.source, got.in_cache) == ("network", False)
    assert cache.entries() == []


@pytest.mark.parametrize(
    ("product", "signer", "file"),
    [
        ("Milan", "vcek", "ask_ark_milan.pem"),
        ("Genoa", "vcek", "ask_ark_genoa.pem"),
        ("Turin", "vcek", "ask_ark_turin_vcek.pem"),
        ("Milan", "vlek", "ask_ark_milan_vlek.pem"),
    ],
)
def test_cert_chain(
    kds: LocalServer,
    vectors: Path,
    product: str,
    signer: Literal["vcek", "vlek"],
    file: str,
) -> None:
    cache = CollateralCache(MemoryStore())
    source = KdsVekSource(kds.url, cache=cache)
    pem = source.cert_chain(product, signer)
    assert source.cert_chain(product.upper(), signer) == pem
    assert pem == (vectors / "go-sev-guest" / "trust" / file).read_bytes()
    assert kds.requests == [f"/{signer}/v1/{product}/cert_chain"]
    (item,) = cache.entries()
    assert item.key == f"{signer}/{product}"


def test_offline_with_an_empty_cache_names_the_vcek(vectors: Path) -> None:
    chip_id, tcb = a1(vectors)
    source = KdsVekSource(refused_url(), cache=CollateralCache(MemoryStore()), offline=True)
    with pytest.raises(CollateralMissing) as caught:
        source.vek_for("Milan", chip_id, tcb)
    assert caught.value.what == f"Milan VCEK for chip {A1_HWID[:16]}… ({A1_QUERY})"
    source = KdsVekSource(refused_url(), offline=True)
    with pytest.raises(CollateralMissing, match="Milan VCEK cert chain"):
        source.cert_chain("Milan", "vcek")


def test_offline_serves_what_was_prefetched(kds: LocalServer, vectors: Path) -> None:
    chip_id, tcb = a1(vectors)
    cache = CollateralCache(MemoryStore())
    source = KdsVekSource(kds.url, cache=cache)
    der = source.vek_for("Milan", chip_id, tcb)
    source = KdsVekSource(refused_url(), cache=cache, offline=True)
    assert source.vek_for("Milan", chip_id, tcb) == der


def test_unknown_chip_is_a_404_collateral_error(kds: LocalServer, vectors: Path) -> None:
    chip_id, tcb = a1(vectors)
    source = KdsVekSource(kds.url)
    with pytest.raises(HttpStatusError) as caught:
        source.vek_for("Milan", chip_id, dict(tcb, microcode=69))
    assert caught.value.status == 404
    assert f"{kds.url}{A1_PATH}?blSPL=02&teeSPL=00&snpSPL=05&ucodeSPL=69" in str(caught.value)


def test_server_error_and_refused_connection_are_collateral_errors(
    kds: LocalServer, vectors: Path
) -> None:
    chip_id, tcb = a1(vectors)
    kds.routes[A1_PATH] = Reply(500, b"")
    source = KdsVekSource(kds.url)
    with pytest.raises(CollateralError, match="HTTP 500"):
        source.vek_for("Milan", chip_id, tcb)
    source = KdsVekSource(refused_url())
    with pytest.raises(CollateralError, match="ConnectError"):
        source.cert_chain("Genoa", "vcek")


def test_non_certificate_body_is_a_parse_error(kds: LocalServer, vectors: Path) -> None:
    chip_id, tcb = a1(vectors)
    kds.routes[A1_PATH] = Reply(200, b"<html>rate limited</html>")
    source = KdsVekSource(kds.url)
    with pytest.raises(ParseError, match="not return a certificate"):
        source.vek_for("Milan", chip_id, tcb)


def test_turin_url_uses_8_byte_hwid_and_fmc_first(vectors: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        der = (vectors / "virtee-sev" / "vcek_turin.der").read_bytes()
        cert = x509.load_der_x509_certificate(der)
    ext = {e.oid.dotted_string: e.value for e in cert.extensions}

    def ext_int(arc: str) -> int:
        value = ext[f"1.3.6.1.4.1.3704.1.{arc}"]
        assert isinstance(value, x509.UnrecognizedExtension)
        return value.value[-1]  # DER INTEGER, small values

    hwid_ext = ext["1.3.6.1.4.1.3704.1.4"]
    assert isinstance(hwid_ext, x509.UnrecognizedExtension)
    hwid = hwid_ext.value[-8:]
    tcb = {
        "fmc": ext_int("3.9"),
        "bootloader": ext_int("3.1"),
        "tee": ext_int("3.2"),
        "snp": ext_int("3.3"),
        "microcode": ext_int("3.8"),
    }
    chip_id = hwid + bytes(56)
    path = vcek_path("Turin", chip_id, tcb)
    assert path == (
        f"/vcek/v1/Turin/{hwid.hex()}?fmcSPL={tcb['fmc']:02d}&blSPL={tcb['bootloader']:02d}"
        f"&teeSPL={tcb['tee']:02d}&snpSPL={tcb['snp']:02d}&ucodeSPL={tcb['microcode']:02d}"
    )
    assert vcek_path("Turin", hwid, tcb) == path  # an 8-byte hwID is accepted as is


def test_turin_report_tcb_layout() -> None:
    report = bytearray(0x4A0)
    report[0] = 3  # version
    report[0x188:0x18A] = bytes([0x1A, 0x02])  # Turin family/model
    report[0x180:0x188] = bytes([1, 2, 3, 4, 0, 0, 0, 0x55])
    report[0x1A0:0x1A8] = bytes(range(1, 9))
    request = vek_request_from_report(bytes(report))
    assert request.product == "Turin"
    assert not request.product_guessed
    want = {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 0x55}
    assert request.reported_tcb == want
    assert vcek_path(request.product, request.chip_id, request.reported_tcb) == (
        "/vcek/v1/Turin/0102030405060708?fmcSPL=01&blSPL=02&teeSPL=03&snpSPL=04&ucodeSPL=85"
    )


def test_tcb_key_aliases_and_errors(vectors: Path) -> None:
    chip_id, _ = a1(vectors)
    kds_names = {"blSPL": 2, "teeSPL": 0, "snpSPL": 5, "ucodeSPL": 68}
    assert vcek_path("Milan-B0", chip_id, kds_names) == f"{A1_PATH}?{A1_QUERY}"
    with pytest.raises(ParseError, match="missing 'microcode'"):
        vcek_path("Milan", chip_id, {"bootloader": 2, "tee": 0, "snp": 5})
    with pytest.raises(ParseError, match="not a byte"):
        vcek_path("Milan", chip_id, dict(kds_names, blSPL=256))
    with pytest.raises(ParseError, match="64 bytes"):
        vcek_path("Milan", chip_id[:8], kds_names)
    with pytest.raises(CollateralError, match="MASK_CHIP_ID"):
        vcek_path("Milan", bytes(64), kds_names)
    with pytest.raises(ParseError, match="unknown product"):
        normalize_product("Naples")
    assert normalize_product("siena") == "Genoa"
