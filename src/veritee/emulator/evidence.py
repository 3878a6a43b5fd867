"""Produce one piece of emulated evidence in the wire forms Trustee's verifiers take."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from veritee.emulator.eventlog import boot_log
from veritee.emulator.intel_quote import (
    SgxFields,
    TdxFields,
    apply_settings,
    build_sgx_quote,
    build_tdx_quote,
)
from veritee.emulator.root import TestRoot
from veritee.emulator.snp import SnpFields, build_snp_report, trustee_evidence
from veritee.emulator.snp import apply_settings as apply_snp_settings

EmulatedTee = Literal["tdx", "sgx", "snp", "sample"]
EMULATED_TEES: tuple[EmulatedTee, ...] = ("tdx", "sgx", "snp", "sample")
#: Emulated devices (Trustee's additional-evidence verifiers): an NVIDIA H100.
EmulatedDevice = Literal["nvidia"]
EMULATED_DEVICES: tuple[EmulatedDevice, ...] = ("nvidia",)
_RTMR_FIELDS = ("rtmr0", "rtmr1", "rtmr2", "rtmr3")


@dataclass(frozen=True)
class EmulatedEvidence:
    """``raw``: the quote or report; ``wire``: Trustee's evidence JSON for the tee.
    ``rims``: for the GPU, its driver and VBIOS RIMs by file name (when asked for)."""

    tee: EmulatedTee | EmulatedDevice
    raw: bytes
    wire: dict[str, Any]
    collateral_json: str | None = None
    cert_chain_pem: bytes | None = None
    eventlog: bytes | None = None
    rims: Mapping[str, bytes] | None = None

    def wire_bytes(self) -> bytes:
        return json.dumps(self.wire, separators=(",", ":")).encode()


@dataclass(frozen=True)
class EvidenceRequest:
    """For ``nvidia``: the SPDM nonce is the first 32 bytes of ``report_data`` (zero-padded),
    ``settings`` are GPU fields (``measurement.N``, …), ``with_rims`` adds signed RIMs whose
    golden values are the GPU's measurements except ``rim_tamper`` (block index -> value)."""

    tee: EmulatedTee | EmulatedDevice
    report_data: bytes = b""
    settings: Mapping[str, bytes] | None = None
    tdx_version: Literal[4, 5] = 4
    td15: bool = False
    snp_version: Literal[3, 5] = 5
    signer: Literal["vcek", "vlek"] = "vcek"
    with_eventlog: bool = True
    driver_version: str | None = None
    vbios_version: str | None = None
    with_rims: bool = False
    rim_tamper: Mapping[int, bytes] | None = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def emulate(root: TestRoot, request: EvidenceRequest) -> EmulatedEvidence:
    """Build evidence for ``request.tee`` under ``root``; ValueError names a bad setting."""
    settings = dict(request.settings or {})
    if len(request.report_data) > 64:
        raise ValueError("report data is at most 64 bytes")
    report_data = request.report_data.ljust(64, b"\x00")
    if request.tee == "nvidia":
        return _nvidia(root, request, settings)
    if request.tee == "tdx":
        return _tdx(root, request, report_data, settings)
    if request.tee == "sgx":
        sgx = SgxFields(report_data=report_data)
        apply_settings(sgx, settings)
        quote = build_sgx_quote(root.intel, sgx)
        return EmulatedEvidence(
            "sgx", quote, {"quote": _b64(quote)}, collateral_json=root.intel.collateral_json("sgx")
        )
    if request.tee == "snp":
        snp = SnpFields(version=request.snp_version, report_data=report_data, signer=request.signer)
        apply_snp_settings(snp, settings)
        report = build_snp_report(root.amd, snp)
        return EmulatedEvidence(
            "snp",
            report,
            trustee_evidence(report, root.amd, signer=request.signer),
            cert_chain_pem=root.amd.cert_chain_pem(request.signer),
        )
    if settings:
        raise ValueError("the sample TEE has no settable fields")
    wire = {"svn": "1", "report_data": _b64(request.report_data)}
    return EmulatedEvidence("sample", json.dumps(wire).encode(), wire)


def _tdx(
    root: TestRoot, request: EvidenceRequest, report_data: bytes, settings: dict[str, bytes]
) -> EmulatedEvidence:
    fields = TdxFields(report_data=report_data)
    log = None
    if request.with_eventlog:
        events = boot_log(
            kernel=b"veritee emulated kernel",
            cmdline="console=hvc0 root=/dev/vda1 rw",
            initrd=b"veritee emulated initrd",
        )
        for name, value in zip(_RTMR_FIELDS, events.rtmrs(), strict=True):
            setattr(fields, name, value)
        log = events.to_bytes()
    apply_settings(fields, settings)
    quote = build_tdx_quote(root.intel, fields, version=request.tdx_version, td15=request.td15)
    wire = {"cc_eventlog": _b64(log) if log is not None else None, "quote": _b64(quote)}
    return EmulatedEvidence(
        "tdx", quote, wire, collateral_json=root.intel.collateral_json("tdx"), eventlog=log
    )


def _nvidia(
    root: TestRoot, request: EvidenceRequest, settings: dict[str, bytes]
) -> EmulatedEvidence:
    from veritee.emulator import nvidia  # signxml and lxml: only when a GPU is emulated

    pki = root.gpu()
    fields = nvidia.GpuFields(nonce=request.report_data[:32].ljust(32, b"\x00"))
    if request.driver_version is not None:
        fields.driver_version = request.driver_version
    if request.vbios_version is not None:
        fields.vbios_version = request.vbios_version
    nvidia.apply_gpu_settings(fields, settings)
    report = nvidia.build_gpu_report(pki, fields)
    chain = pki.device_chain_pem()
    rims = None
    if request.with_rims:
        driver, vbios = nvidia.build_rims(pki, fields, tamper=request.rim_tamper)
        rims = {
            nvidia.rim_file_name("driver", fields): driver,
            nvidia.rim_file_name("vbios", fields): vbios,
        }
    wire = nvidia.gpu_evidence_json(report, chain)
    return EmulatedEvidence("nvidia", report, wire, cert_chain_pem=chain, rims=rims)
