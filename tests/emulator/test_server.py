"""The emulated PCCS and KDS over real HTTP: Intel's and AMD's paths, headers and 404s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from urllib.parse import unquote

import dcap_qvl
import httpx
import pytest
from live_server import serve_app

from veritee.emulator.evidence import EvidenceRequest, emulate
from veritee.emulator.root import TestRoot
from veritee.emulator.server import create_app
from veritee.pem import load_certificates


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestRoot, str]]:
    root = TestRoot.init(tmp_path_factory.mktemp("srv") / "root", product="Genoa")
    with serve_app(create_app(root)) as url:
        yield root, url


def test_intel_paths_and_issuer_chain_headers(service: tuple[TestRoot, str]) -> None:
    root, url = service
    fmspc = root.intel.platform.fmspc
    tcb = httpx.get(f"{url}/tdx/certification/v4/tcb", params={"fmspc": fmspc})
    assert tcb.status_code == 200
    assert tcb.content == root.intel.pcs_tcb_body("tdx")
    chain = load_certificates(unquote(tcb.headers["TCB-Info-Issuer-Chain"]).encode())
    assert "TCB Signing" in chain[0].subject.rfc4514_string()
    qe = httpx.get(f"{url}/sgx/certification/v4/qe/identity")
    assert b'"enclaveIdentity":' in qe.content
    assert "SGX-Enclave-Identity-Issuer-Chain" in qe.headers
    crl = httpx.get(
        f"{url}/sgx/certification/v4/pckcrl", params={"ca": "platform", "encoding": "der"}
    )
    assert crl.content == root.intel.pck_crl_der
    assert "SGX-PCK-CRL-Issuer-Chain" in crl.headers
    assert (
        bytes.fromhex(httpx.get(f"{url}/sgx/certification/v4/rootcacrl").text)
        == root.intel.root_crl_der
    )
    assert (
        httpx.get(f"{url}/tdx/certification/v4/tcb", params={"fmspc": "000000000000"}).status_code
        == 404
    )


def test_pckcert_by_platform_parameters(service: tuple[TestRoot, str]) -> None:
    root, url = service
    p = root.intel.platform
    params = {
        "encrypted_ppid": "00" * 384,
        "cpusvn": p.cpu_svn.hex(),
        "pcesvn": p.pce_svn.to_bytes(2, "little").hex(),
        "pceid": p.pce_id.hex(),
    }
    reply = httpx.get(f"{url}/sgx/certification/v4/pckcert", params=params)
    assert reply.status_code == 200
    assert reply.content == root.intel.pck_cert_pem
    assert reply.headers["SGX-FMSPC"] == p.fmspc.upper()
    assert reply.headers["SGX-TCBm"].lower() == params["cpusvn"] + params["pcesvn"]
    params["cpusvn"] = "ff" * 16
    assert httpx.get(f"{url}/sgx/certification/v4/pckcert", params=params).status_code == 404


def test_kds_paths(service: tuple[TestRoot, str]) -> None:
    root, url = service
    amd = root.amd
    tcb = amd.reported_tcb
    query = {
        "blSPL": tcb["bootloader"],
        "teeSPL": tcb["tee"],
        "snpSPL": tcb["snp"],
        "ucodeSPL": tcb["microcode"],
    }
    vcek = httpx.get(f"{url}/vcek/v1/Genoa/{amd.hw_id.hex()}", params=query)
    assert vcek.status_code == 200
    assert vcek.content == amd.kds_vcek_der()
    assert httpx.get(f"{url}/vcek/v1/Genoa/{'00' * 64}", params=query).status_code == 404
    assert (
        httpx.get(
            f"{url}/vcek/v1/Genoa/{amd.hw_id.hex()}", params={**query, "snpSPL": 99}
        ).status_code
        == 404
    )
    assert httpx.get(f"{url}/vcek/v1/Milan/cert_chain").status_code == 404
    for signer in ("vcek", "vlek"):
        chain = load_certificates(httpx.get(f"{url}/{signer}/v1/Genoa/cert_chain").content)
        assert [c.subject == c.issuer for c in chain] == [False, True]


def test_dcap_qvl_get_collateral_against_the_emulated_pccs(service: tuple[TestRoot, str]) -> None:
    root, url = service
    quote = emulate(root, EvidenceRequest(tee="tdx")).raw

    async def fetch() -> object:
        return await dcap_qvl.get_collateral(url, quote)

    collateral = asyncio.run(fetch())
    report = dcap_qvl.verify_with_root_ca(quote, collateral, root.intel.root_der, int(time.time()))
    assert report.status == "UpToDate"
