"""Intel collateral from a real local PCCS/PCS serving go-tdx-guest's real PCS responses."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dcap_qvl
import httpx
import pytest
from local_pcs import LocalServer, Reply, refused_url, serve_pccs

from veritee.errors import CollateralError, CollateralMissing, InputError, ParseError
from veritee.store.kv import MemoryStore, SqliteStore
from veritee.verifier.collateral.anchor import Anchor
from veritee.verifier.collateral.cache import CollateralCache
from veritee.verifier.collateral.http import HttpStatusError
from veritee.verifier.collateral.intel import (
    FIELDS,
    FileCollateral,
    IntelCollateralSource,
    PcsCollateral,
    fmspc_and_ca_from_quote,
)
from veritee.verifier.intel_root import intel_root_ca

INTEL = Anchor.of_der(intel_root_ca())
AS_OF = dt.datetime(2023, 7, 8, 7, 24, 58, tzinfo=dt.UTC)  # window end minus 1 s (T5, T6)
FMSPC = "50806F000000"
QUOTES = [
    ("go-tdx-guest/tdx_prod_quote_SPR_E4.dat", "No matching TCB level found"),
    ("trustee/tdx_quote_4.dat", "Debug mode is enabled"),
]
PATHS = {
    "pckcrl": "/sgx/certification/v4/pckcrl",
    "root": "/sgx/certification/v4/rootcacrl",
    "tcb": "/tdx/certification/v4/tcb",
    "qe": "/tdx/certification/v4/qe/identity",
}


def derived(vectors: Path) -> str:
    return (vectors / "go-tdx-guest" / "derived" / "collateral_50806f000000.json").read_text()


def fetch(url: str, cache: CollateralCache | None = None, **kwargs: object) -> str:
    source = PcsCollateral(url, cache=cache, **kwargs)  # type: ignore[arg-type]
    return source.collateral_for(tee="tdx", fmspc=FMSPC, ca="platform", at=AS_OF)


def test_fetched_collateral_equals_the_assembled_file(pccs: LocalServer, vectors: Path) -> None:
    got = fetch(pccs.url)
    want = derived(vectors)
    assert list(json.loads(got)) == list(FIELDS)
    for name, value in json.loads(want).items():
        assert json.loads(got)[name] == value, name
    assert got == want  # same key order and separators: byte for byte


def test_requests_are_the_pccs_v4_paths(pccs: LocalServer) -> None:
    fetch(pccs.url)
    assert sorted(pccs.requests) == sorted(
        [
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
            "/sgx/certification/v4/rootcacrl",
            f"/tdx/certification/v4/tcb?fmspc={FMSPC}&update=standard",
            "/tdx/certification/v4/qe/identity?update=standard",
        ]
    )


@pytest.mark.parametrize(("quote", "message"), QUOTES)
def test_dcap_qvl_verifies_fetched_collateral_like_the_file(
    pccs: LocalServer, vectors: Path, quote: str, message: str
) -> None:
    raw = (vectors / quote).read_bytes()
    now = int(AS_OF.timestamp())
    outcomes = []
    for text in (fetch(pccs.url), derived(vectors)):
        collateral = dcap_qvl.QuoteCollateralV3.from_json(text)
        with pytest.raises(ValueError, match=message) as caught:
            dcap_qvl.verify(raw, collateral, now)
        outcomes.append(str(caught.value))
    assert outcomes[0] == outcomes[1]


def test_second_fetch_is_served_from_the_cache(pccs: LocalServer, tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "c.db") as store:
        first = fetch(pccs.url, CollateralCache(store))
    assert pccs.total_hits() == 4
    with SqliteStore(tmp_path / "c.db") as store:  # a new process would see the same
        second = fetch(pccs.url, CollateralCache(store))
    assert second == first
    assert pccs.total_hits() == 4


def test_expired_item_is_refetched_and_the_rest_is_not(pccs: LocalServer) -> None:
    cache = CollateralCache(MemoryStore())
    fetch(pccs.url, cache)
    # QE identity nextUpdate 07:24:59; the PCK CRL's is 07:27:52, tcbInfo 07-18, root CRL 2024.
    later = dt.datetime(2023, 7, 8, 7, 26, tzinfo=dt.UTC)
    source = PcsCollateral(pccs.url, cache=cache)
    source.collateral_for(tee="tdx", fmspc=FMSPC, ca="platform", at=later)
    assert pccs.hits[PATHS["qe"]] == 2
    assert pccs.hits[PATHS["pckcrl"]] == 1
    assert pccs.hits[PATHS["tcb"]] == 1
    assert pccs.hits[PATHS["root"]] == 1


def test_cache_entries_carry_each_items_own_expiry(pccs: LocalServer) -> None:
    cache = CollateralCache(MemoryStore())
    fetch(pccs.url, cache)
    expiry = {item.kind: item.expires_at for item in cache.entries()}
    assert expiry == {
        "intel-pck-crl": dt.datetime(2023, 7, 8, 7, 27, 52, tzinfo=dt.UTC),
        "intel-root-ca-crl": dt.datetime(2024, 4, 2, 10, 22, 51, tzinfo=dt.UTC),
        "intel-tcb-info": dt.datetime(2023, 7, 18, 8, 42, 58, tzinfo=dt.UTC),
        "intel-qe-identity": dt.datetime(2023, 7, 8, 7, 24, 59, tzinfo=dt.UTC),
    }


def test_tcb_info_is_served_only_inside_its_window(pccs: LocalServer) -> None:
    cache = CollateralCache(MemoryStore())
    fetch(pccs.url, cache)
    key = f"tdx/{FMSPC}/standard"
    assert cache.get("intel-tcb-info", key, at=AS_OF, root=INTEL) is not None
    before_issue = dt.datetime(2023, 6, 18, 8, 42, 57, tzinfo=dt.UTC)
    at_next_update = dt.datetime(2023, 7, 18, 8, 42, 58, tzinfo=dt.UTC)
    assert cache.get("intel-tcb-info", key, at=before_issue, root=INTEL) is None
    assert cache.get("intel-tcb-info", key, at=at_next_update, root=INTEL) is None


def test_offline_with_an_empty_cache_names_every_missing_item() -> None:
    cache = CollateralCache(MemoryStore())
    source = PcsCollateral(refused_url(), cache=cache, offline=True)
    with pytest.raises(CollateralMissing) as caught:
        source.collateral_for(tee="tdx", fmspc=FMSPC, ca="platform", at=AS_OF)
    assert caught.value.what == (
        f"PCK CRL (platform CA), Intel root CA CRL, tdx tcbInfo for FMSPC {FMSPC}, tdx QE identity"
    )
    assert "not in the cache" in str(caught.value)


def test_offline_names_exactly_the_one_missing_item(pccs: LocalServer) -> None:
    store = MemoryStore()
    fetch(pccs.url, CollateralCache(store))
    key = f"intel-tcb-info/{INTEL.fingerprint}/tdx/{FMSPC}/standard"
    assert store.delete("collateral", key)
    with pytest.raises(CollateralMissing) as caught:
        fetch(pccs.url, CollateralCache(store), offline=True)
    assert caught.value.what == f"tdx tcbInfo for FMSPC {FMSPC}"
    assert pccs.total_hits() == 4


def test_offline_with_everything_cached_makes_no_request(pccs: LocalServer) -> None:
    cache = CollateralCache(MemoryStore())
    online = fetch(pccs.url, cache)
    assert fetch(refused_url(), cache, offline=True) == online


def test_offline_says_when_the_cached_copy_expired(pccs: LocalServer) -> None:
    cache = CollateralCache(MemoryStore())
    fetch(pccs.url, cache)
    later = dt.datetime(2023, 7, 8, 7, 26, tzinfo=dt.UTC)
    source = PcsCollateral(pccs.url, cache=cache, offline=True)
    with pytest.raises(CollateralMissing) as caught:
        source.collateral_for(tee="tdx", fmspc=FMSPC, ca="platform", at=later)
    assert caught.value.what == "tdx QE identity"
    assert "expired at 2023-07-08T07:24:59Z" in str(caught.value)


def test_pcs_style_server_root_crl_fallback_and_v3_header(
    local_server: LocalServer, vectors: Path
) -> None:
    serve_pccs(local_server, vectors, pcs_style=True)
    got = fetch(local_server.url, root_ca_crl_url=local_server.url + "/IntelSGXRootCA.der")
    assert got == derived(vectors)
    assert local_server.hits["/sgx/certification/v4/rootcacrl"] == 1  # tried, 404
    assert local_server.hits["/IntelSGXRootCA.der"] == 1


def test_base_url_with_the_api_path_is_accepted(pccs: LocalServer, vectors: Path) -> None:
    assert fetch(pccs.url + "/sgx/certification/v4/") == derived(vectors)


def test_signed_text_is_taken_verbatim_from_a_spaced_body(pccs: LocalServer, vectors: Path) -> None:
    body = (vectors / "go-tdx-guest" / "sample_tcbInfo_response").read_bytes()
    spaced = body.replace(b'{"tcbInfo":', b'{ "tcbInfo" : ', 1).replace(
        b',"signature":', b' , "signature" : ', 1
    )
    tcb = pccs.routes[PATHS["tcb"]]
    assert callable(tcb)
    pccs.routes[PATHS["tcb"]] = lambda q: Reply(200, spaced, tcb(q).headers)
    assert fetch(pccs.url) == derived(vectors)


@pytest.mark.parametrize("status", [500, 404, 503])
def test_http_error_status_is_a_collateral_error(pccs: LocalServer, status: int) -> None:
    pccs.routes[PATHS["tcb"]] = Reply(status, b"boom", {"Error-Message": "no such FMSPC"})
    with pytest.raises(HttpStatusError) as caught:
        fetch(pccs.url)
    assert isinstance(caught.value, CollateralError)
    assert not isinstance(caught.value, CollateralMissing)
    assert caught.value.status == status
    assert caught.value.what == f"tdx tcbInfo for FMSPC {FMSPC}"
    message = str(caught.value)
    assert f"{pccs.url}/tdx/certification/v4/tcb?fmspc={FMSPC}&update=standard" in message
    assert f"HTTP {status}" in message
    assert "no such FMSPC" in message


def test_unknown_fmspc_is_a_404_collateral_error(pccs: LocalServer) -> None:
    source = PcsCollateral(pccs.url)
    with pytest.raises(CollateralError, match=r"tcb\?fmspc=00A06D080000.* HTTP 404"):
        source.collateral_for(tee="tdx", fmspc="00a06d080000", ca="platform", at=AS_OF)


def test_connection_refused_is_a_collateral_error() -> None:
    url = refused_url()
    with pytest.raises(CollateralError, match="ConnectError") as caught:
        fetch(url)
    assert url in str(caught.value)


def test_timeout_is_a_collateral_error(pccs: LocalServer) -> None:
    pccs.routes[PATHS["pckcrl"]] = Reply(200, b"", delay=1.0)
    with httpx.Client(timeout=0.2) as client:
        source = PcsCollateral(pccs.url, client=client)
        with pytest.raises(CollateralError, match="timed out"):
            source.collateral_for(tee="tdx", fmspc=FMSPC, ca="platform", at=AS_OF)


def test_credentials_in_the_url_stay_out_of_errors() -> None:
    url = refused_url().replace("http://", "http://user:hunter2@")
    with pytest.raises(CollateralError) as caught:
        fetch(url)
    assert "hunter2" not in str(caught.value)


def test_missing_issuer_chain_header_is_a_collateral_error(pccs: LocalServer) -> None:
    pccs.routes[PATHS["qe"]] = Reply(200, b'{"enclaveIdentity":{},"signature":""}')
    with pytest.raises(CollateralError, match="SGX-Enclave-Identity-Issuer-Chain"):
        fetch(pccs.url)


def test_malformed_body_is_a_parse_error(pccs: LocalServer, vectors: Path) -> None:
    tcb = pccs.routes[PATHS["tcb"]]
    assert callable(tcb)
    pccs.routes[PATHS["tcb"]] = lambda q: Reply(200, b"<html>oops</html>", tcb(q).headers)
    with pytest.raises(ParseError, match="not JSON"):
        fetch(pccs.url)


def test_tcb_info_for_another_fmspc_is_rejected(pccs: LocalServer, vectors: Path) -> None:
    tcb = pccs.routes[PATHS["tcb"]]
    assert callable(tcb)
    pccs.routes[PATHS["tcb"]] = lambda q: tcb({"fmspc": [FMSPC]})
    source = PcsCollateral(pccs.url)
    with pytest.raises(CollateralError, match="returned FMSPC '50806f000000'"):
        source.collateral_for(tee="tdx", fmspc="00A06D080000", ca="platform", at=AS_OF)


def test_invalid_fmspc_is_a_parse_error() -> None:
    source = PcsCollateral(refused_url())
    with pytest.raises(ParseError, match="12 hex"):
        source.collateral_for(tee="tdx", fmspc="50806F", ca="platform", at=AS_OF)


def test_fmspc_and_ca_from_quotes(vectors: Path) -> None:
    tdx = (vectors / "go-tdx-guest" / "tdx_prod_quote_SPR_E4.dat").read_bytes()
    sgx = (vectors / "dcap-qvl" / "sgx_quote").read_bytes()
    assert fmspc_and_ca_from_quote(tdx) == (FMSPC, "platform")
    assert fmspc_and_ca_from_quote(sgx) == ("00A067110000", "processor")
    with pytest.raises(ParseError, match="intel quote"):
        fmspc_and_ca_from_quote((vectors / "go-sev-guest" / "attestation.bin").read_bytes())


# --------------------------------------------------------------------------- FileCollateral


def test_file_collateral_returns_the_file(vectors: Path) -> None:
    path = vectors / "go-tdx-guest" / "derived" / "collateral_50806f000000.json"
    source: IntelCollateralSource = FileCollateral(path)
    got = source.collateral_for(tee="tdx", fmspc=FMSPC.lower(), ca="platform", at=AS_OF)
    assert got == derived(vectors)
    dcap_qvl.QuoteCollateralV3.from_json(got)


def test_file_collateral_bundle_picks_by_fmspc_and_accepts_dcap_qvl_output(
    vectors: Path, tmp_path: Path
) -> None:
    other = json.loads((vectors / "dcap-qvl" / "tdx_quote_collateral.json").read_text())
    pretty = dcap_qvl.QuoteCollateralV3.from_json(derived(vectors)).to_json()
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps([other, json.loads(pretty)]))
    source = FileCollateral(bundle)
    got = json.loads(source.collateral_for(tee="tdx", fmspc=FMSPC, ca="platform", at=AS_OF))
    assert got == json.loads(derived(vectors))
    text = source.collateral_for(tee="tdx", fmspc="B0C06F000000", ca="platform", at=AS_OF)
    got = json.loads(text)
    assert got == {name: other[name] for name in FIELDS}


def test_file_collateral_mismatch_is_named(vectors: Path) -> None:
    source = FileCollateral(vectors / "go-tdx-guest" / "derived" / "collateral_50806f000000.json")
    with pytest.raises(CollateralMissing) as caught:
        source.collateral_for(tee="sgx", fmspc=FMSPC, ca="platform", at=AS_OF)
    assert caught.value.what == f"sgx tcbInfo for FMSPC {FMSPC} (platform CA)"
    assert f"tdx {FMSPC} platform" in str(caught.value)
    with pytest.raises(CollateralMissing):
        source.collateral_for(tee="tdx", fmspc=FMSPC, ca="processor", at=AS_OF)


def test_file_collateral_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        FileCollateral(tmp_path / "absent.json").collateral_for(
            tee="tdx", fmspc=FMSPC, ca="platform", at=AS_OF
        )
    broken = tmp_path / "broken.json"
    broken.write_text('{"pck_crl": "00"}')
    with pytest.raises(ParseError, match="missing or non-string keys: pck_crl_issuer_chain"):
        FileCollateral(broken).collateral_for(tee="tdx", fmspc=FMSPC, ca="platform", at=AS_OF)
    broken.write_text("{not json")
    with pytest.raises(ParseError, match="not JSON"):
        FileCollateral(broken).collateral_for(tee="tdx", fmspc=FMSPC, ca="platform", at=AS_OF)


def test_file_collateral_sees_a_changed_file_at_its_next_look(
    vectors: Path, tmp_path: Path
) -> None:
    first = (vectors / "dcap-qvl" / "tdx_quote_collateral.json").read_text()
    second = (vectors / "go-tdx-guest" / "derived" / "collateral_50806f000000.json").read_text()
    path = tmp_path / "collateral.json"
    path.write_text(first)
    every_time = FileCollateral(path, recheck=0)
    rarely = FileCollateral(path, recheck=3600)
    for source in (every_time, rarely):
        source.collateral_for(tee="tdx", fmspc="B0C06F000000", ca="platform", at=AS_OF)
    path.write_text(second + " " * 64)  # another size, so the stamp differs whatever the mtime
    with pytest.raises(CollateralMissing):  # the new file has no entry for that FMSPC
        every_time.collateral_for(tee="tdx", fmspc="B0C06F000000", ca="platform", at=AS_OF)
    got = every_time.collateral_for(tee="tdx", fmspc=FMSPC, ca="platform", at=AS_OF)
    assert json.loads(got) == json.loads(derived(vectors))
    # until it looks again, the other still answers what it read from the first file
    assert rarely.collateral_for(tee="tdx", fmspc="B0C06F000000", ca="platform", at=AS_OF)
