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
_RTMR_FIELDS = ("rtmr0", "rtmr1", "rtmr2", "rtmr3")


@dataclass(frozen=True)
class EmulatedEvidence:
    """``raw``: the quote or report; ``wire``: Trustee's evidence JSON for the tee."""

    tee: EmulatedTee
    raw: bytes
    wire: dict[str, Any]
    collateral_json: str | None = None
    cert_chain_pem: bytes | None = None
    eventlog: bytes | None = None

    def wire_bytes(self) -> bytes:
        return json.dumps(self.wire, separators=(",", ":")).encode()


@dataclass(frozen=True)
class EvidenceRequest:
    tee: EmulatedTee
    report_data: bytes = b""
    settings: Mapping[str, bytes] | None = None
    tdx_version: Literal[4, 5] = 4
    td15: bool = False
    snp_version: Literal[3, 5] = 5
    signer: Literal["vcek", "vlek"] = "vcek"
    with_eventlog: bool = True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def emulate(root: TestRoot, request: EvidenceRequest) -> EmulatedEvidence:
    """Build evidence for ``request.tee`` under ``root``; ValueError names a bad setting."""
    settings = dict(request.settings or {})
    if len(request.report_data) > 64:
        raise ValueError("report data is at most 64 bytes")
    report_data = request.report_data.ljust(64, b"\x00")
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
