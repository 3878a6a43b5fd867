"""One test root for a whole test session, and helpers to write emulated evidence."""

from __future__ import annotations

from pathlib import Path

from veritee.emulator.evidence import EmulatedEvidence, EvidenceRequest, emulate
from veritee.emulator.root import TestRoot


def write_evidence(root: TestRoot, request: EvidenceRequest, out: Path) -> EmulatedEvidence:
    """Emulate and write the files `veritee emulator evidence` writes."""
    made = emulate(root, request)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evidence.bin").write_bytes(made.raw)
    (out / "evidence.json").write_bytes(made.wire_bytes())
    if made.collateral_json is not None:
        (out / "collateral.json").write_text(made.collateral_json)
    if made.cert_chain_pem is not None:
        (out / "cert_chain.pem").write_bytes(made.cert_chain_pem)
    return made
