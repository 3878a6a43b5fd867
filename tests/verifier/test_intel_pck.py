"""The PCK chain's SGX extension, read with asn1crypto, agrees with dcap-qvl's reading."""

from __future__ import annotations

from pathlib import Path

import dcap_qvl
import pytest

from veritee.encoding import read_evidence_file
from veritee.errors import ParseError
from veritee.verifier.intel_pck import parse_pck_chain
from veritee.verifier.intel_quote import parse_quote


@pytest.mark.parametrize(
    "name",
    [
        "dcap-qvl/tdx_quote",
        "dcap-qvl/sgx_quote",
        "trustee/occlum_quote.dat",
        "trustee/tdx_quote_6.dat",
        "go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
    ],
)
def test_agrees_with_dcap_qvl(vectors: Path, name: str) -> None:
    raw = read_evidence_file(vectors / name)
    ours = parse_pck_chain(parse_quote(raw).pck_chain_pem)
    theirs = dcap_qvl.parse_quote(raw)
    ext = theirs.pck_extension()
    assert ours.fmspc == theirs.fmspc().upper()
    assert ours.ca == theirs.ca()
    assert ours.cpu_svn == bytes(ext.cpu_svn)
    assert ours.pce_svn == ext.pce_svn
    assert ours.pce_id == bytes(ext.pce_id)
    assert ours.sgx_type == ext.sgx_type
    assert ours.ppid == bytes(ext.ppid)
    # Intel encodes CPUSVN byte i equal to TCB component i+1
    assert tuple(ours.cpu_svn) == ours.tcb_components


def test_t1_platform_flags(vectors: Path) -> None:
    info = parse_pck_chain(parse_quote((vectors / "dcap-qvl/tdx_quote").read_bytes()).pck_chain_pem)
    assert (info.dynamic_platform, info.cached_keys, info.smt_enabled) == (True, True, True)
    assert info.ca == "platform"
    processor = parse_pck_chain(
        parse_quote((vectors / "dcap-qvl/sgx_quote").read_bytes()).pck_chain_pem
    )
    assert processor.ca == "processor"
    assert processor.dynamic_platform is None


def test_chain_without_sgx_extension(vectors: Path) -> None:
    root_pem = (vectors / "go-tdx-guest/trusted_root.pem").read_bytes()
    with pytest.raises(ParseError, match="SGX extension"):
        parse_pck_chain(root_pem)
