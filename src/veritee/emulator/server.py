"""An emulated Intel PCCS (PCS v4 subset) and AMD KDS serving a test root's collateral.

Paths, query parameters and issuer-chain headers are Intel's and AMD's, so the
collateral service (and dcap-qvl's ``get_collateral``) use it unchanged:

* ``GET /sgx/certification/v4/pckcrl?ca=platform|processor[&encoding=der]``
* ``GET /{sgx,tdx}/certification/v4/tcb?fmspc=HEX[&update=…]``
* ``GET /{sgx,tdx}/certification/v4/qe/identity[?update=…]``
* ``GET /sgx/certification/v4/rootcacrl`` (hex, as PCCS serves it)
* ``GET /sgx/certification/v4/pckcert?encrypted_ppid=…&cpusvn=…&pcesvn=…&pceid=…``
* ``GET /vcek/v1/{product}/{hwid}?[fmcSPL=&]blSPL=&teeSPL=&snpSPL=&ucodeSPL=``
* ``GET /{vcek,vlek}/v1/{product}/cert_chain``

Unknown platforms get 404, as from the real services.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response

from veritee.emulator.root import TestRoot

_PEM = "application/x-pem-file"
_JSON = "application/json"


def _chain_header(pem: bytes) -> str:
    """Issuer-chain headers carry URL-encoded PEM, as Intel's do."""
    return quote(pem.decode("ascii"), safe="")


def create_app(root: TestRoot) -> FastAPI:
    """The emulated PCCS and KDS for one test root."""
    app = FastAPI(
        title="veritee emulated PCCS and KDS", openapi_url=None, docs_url=None, redoc_url=None
    )
    intel, amd = root.intel, root.amd

    @app.get("/sgx/certification/v4/pckcrl")
    def pck_crl(ca: str, encoding: str | None = None) -> Response:
        if ca.lower() != "platform":
            raise HTTPException(404, "no such CA")
        headers = {"SGX-PCK-CRL-Issuer-Chain": _chain_header(intel.pck_crl_issuer_chain_pem)}
        if encoding == "der":
            return Response(intel.pck_crl_der, media_type="application/pkix-crl", headers=headers)
        return Response(intel.pck_crl_der.hex(), media_type="text/plain", headers=headers)

    def tcb(tee: str, fmspc: str) -> Response:
        if fmspc.upper() != intel.platform.fmspc.upper():
            raise HTTPException(404, "unknown FMSPC")
        return Response(
            intel.pcs_tcb_body("tdx" if tee == "tdx" else "sgx"),
            media_type=_JSON,
            headers={"TCB-Info-Issuer-Chain": _chain_header(intel.tcb_issuer_chain_pem)},
        )

    def qe_identity(tee: str) -> Response:
        return Response(
            intel.pcs_qe_identity_body("tdx" if tee == "tdx" else "sgx"),
            media_type=_JSON,
            headers={
                "SGX-Enclave-Identity-Issuer-Chain": _chain_header(intel.tcb_issuer_chain_pem)
            },
        )

    @app.get("/tdx/certification/v4/tcb")
    def tdx_tcb(fmspc: str, update: str | None = None) -> Response:
        return tcb("tdx", fmspc)

    @app.get("/sgx/certification/v4/tcb")
    def sgx_tcb(fmspc: str, update: str | None = None) -> Response:
        return tcb("sgx", fmspc)

    @app.get("/tdx/certification/v4/qe/identity")
    def tdx_qe(update: str | None = None) -> Response:
        return qe_identity("tdx")

    @app.get("/sgx/certification/v4/qe/identity")
    def sgx_qe(update: str | None = None) -> Response:
        return qe_identity("sgx")

    @app.get("/sgx/certification/v4/rootcacrl")
    def root_crl() -> Response:
        return Response(intel.root_crl_der.hex(), media_type="text/plain")

    @app.get("/sgx/certification/v4/pckcert")
    def pck_cert(
        encrypted_ppid: str, cpusvn: str, pcesvn: str, pceid: str, qeid: str | None = None
    ) -> Response:
        platform = intel.platform
        if (
            pceid.lower() != platform.pce_id.hex()
            or cpusvn.lower() != platform.cpu_svn.hex()
            or pcesvn.lower() != platform.pce_svn.to_bytes(2, "little").hex()
        ):
            raise HTTPException(404, "no PCK certificate for this TCB")
        tcbm = (platform.cpu_svn + platform.pce_svn.to_bytes(2, "little")).hex().upper()
        return Response(
            intel.pck_cert_pem,
            media_type=_PEM,
            headers={
                "SGX-PCK-Certificate-Issuer-Chain": _chain_header(intel.pck_crl_issuer_chain_pem),
                "SGX-TCBm": tcbm,
                "SGX-FMSPC": platform.fmspc.upper(),
                "SGX-PCK-Certificate-CA-Type": "platform",
            },
        )

    @app.get("/vcek/v1/{product}/cert_chain")
    def vcek_chain(product: str) -> Response:
        _check_product(root, product)
        return Response(amd.kds_cert_chain_pem("vcek"), media_type=_PEM)

    @app.get("/vlek/v1/{product}/cert_chain")
    def vlek_chain(product: str) -> Response:
        _check_product(root, product)
        return Response(amd.kds_cert_chain_pem("vlek"), media_type=_PEM)

    @app.get("/vcek/v1/{product}/{hwid}")
    def vcek(
        product: str,
        hwid: str,
        bl_spl: Annotated[int, Query(alias="blSPL")],
        tee_spl: Annotated[int, Query(alias="teeSPL")],
        snp_spl: Annotated[int, Query(alias="snpSPL")],
        ucode_spl: Annotated[int, Query(alias="ucodeSPL")],
        fmc_spl: Annotated[int | None, Query(alias="fmcSPL")] = None,
    ) -> Response:
        _check_product(root, product)
        if hwid.lower() != amd.hw_id.hex():
            raise HTTPException(404, "unknown hwid")
        asked = {"bootloader": bl_spl, "tee": tee_spl, "snp": snp_spl, "microcode": ucode_spl}
        if fmc_spl is not None:
            asked["fmc"] = fmc_spl
        have = {k: v for k, v in amd.reported_tcb.items() if k in asked}
        if asked != have:
            raise HTTPException(404, "no VCEK for this TCB")
        return Response(amd.kds_vcek_der(), media_type="application/x-x509-ca-cert")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _check_product(root: TestRoot, product: str) -> None:
    if product.lower() != root.amd.product.lower():
        raise HTTPException(404, f"this emulated KDS serves {root.amd.product} only")
