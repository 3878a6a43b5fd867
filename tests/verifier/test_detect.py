"""TEE detection from evidence bytes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from veritee.encoding import read_evidence_file
from veritee.errors import InputError
from veritee.verifier.detect import detect_tee


@pytest.mark.parametrize(
    ("name", "tee"),
    [
        ("dcap-qvl/tdx_quote", "tdx"),
        ("dcap-qvl/tdx_quote_outdated", "tdx"),
        ("dcap-qvl/tdx-quote.hex", "tdx"),
        ("dcap-qvl/sgx_quote", "sgx"),
        ("trustee/occlum_quote.dat", "sgx"),
        ("go-sev-guest/attestation.bin", "snp"),
        ("virtee-sev/report_milan.hex", "snp"),
        ("trustee/snp/test-vlek-report.bin", "snp"),
        ("trustee/az-snp-vtpm/hcl-report.bin", "snp"),
        ("trustee/az-snp-vtpm/evidence-genoa.json", "snp"),
    ],
)
def test_detects_real_vectors(vectors: Path, name: str, tee: str) -> None:
    assert detect_tee(read_evidence_file(vectors / name)) == tee


def test_detects_trustee_tdx_evidence_json(vectors: Path) -> None:
    raw = (vectors / "dcap-qvl/tdx_quote").read_bytes()
    doc = json.dumps({"quote": base64.b64encode(raw).decode()}).encode()
    assert detect_tee(doc) == "tdx"


@pytest.mark.parametrize(
    "data", [b"\x00" * 2000, b"hello world, not evidence", b"{}", b"[1,2]", b"{not json"]
)
def test_unknown_evidence_is_an_input_error(data: bytes) -> None:
    with pytest.raises(InputError):
        detect_tee(data)
