"""The Intel quote parser on real quotes, and its errors on malformed ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from veritee.encoding import read_evidence_file
from veritee.errors import ParseError
from veritee.verifier.intel_quote import EnclaveReport, TdReport, parse_quote

# (file, version, tee, body type, signed length, QE report ISVSVN)
REAL = [
    ("dcap-qvl/tdx_quote", 4, "tdx", 2, 632, 6),
    ("dcap-qvl/sgx_quote", 3, "sgx", 1, 432, 10),
    ("dcap-qvl/tdx_quote_outdated", 5, "tdx", 3, 702, 7),
    ("dcap-qvl/tdx-quote.hex", 4, "tdx", 2, 632, 6),
    ("go-tdx-guest/tdx_prod_quote_SPR_E4.dat", 4, "tdx", 2, 632, 4),
    ("trustee/tdx_quote_4.dat", 4, "tdx", 2, 632, 4),
    ("trustee/tdx_quote_5.dat", 5, "tdx", 3, 702, 6),
    ("trustee/occlum_quote.dat", 3, "sgx", 1, 432, 8),
    ("trustee/az-tdx-vtpm/td-quote.bin", 4, "tdx", 2, 632, 5),
]


@pytest.mark.parametrize(("name", "version", "tee", "body_type", "signed", "qe_svn"), REAL)
def test_real_quotes_parse(
    vectors: Path, name: str, version: int, tee: str, body_type: int, signed: int, qe_svn: int
) -> None:
    quote = parse_quote(read_evidence_file(vectors / name))
    assert quote.header.version == version
    assert quote.tee == tee
    assert quote.body_type == body_type
    assert quote.signed_len == signed
    assert quote.auth.qe_report.isv_svn == qe_svn
    assert len(quote.auth.qe_auth_data) == 32
    assert quote.pck_chain_pem.count(b"BEGIN CERTIFICATE") == 3
    assert quote.header.vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"


def test_td15_body_has_servicetd(vectors: Path) -> None:
    body = parse_quote((vectors / "trustee/tdx_quote_5.dat").read_bytes()).body
    assert isinstance(body, TdReport)
    assert body.mr_servicetd is not None
    assert any(body.mr_servicetd)
    assert body.tee_tcb_svn2 is not None


def test_debug_bits(vectors: Path) -> None:
    debug_td = parse_quote((vectors / "trustee/tdx_quote_4.dat").read_bytes()).body
    normal_td = parse_quote((vectors / "dcap-qvl/tdx_quote").read_bytes()).body
    occlum = parse_quote((vectors / "trustee/occlum_quote.dat").read_bytes()).body
    assert isinstance(debug_td, TdReport)
    assert debug_td.debug
    assert isinstance(normal_td, TdReport)
    assert not normal_td.debug
    assert isinstance(occlum, EnclaveReport)
    assert occlum.debug


def test_sgx_identity_offsets(vectors: Path) -> None:
    raw = (vectors / "dcap-qvl/sgx_quote").read_bytes()
    body = parse_quote(raw).body
    assert isinstance(body, EnclaveReport)
    assert body.mr_enclave == raw[112:144]
    assert body.mr_signer == raw[176:208]
    assert body.isv_prod_id == int.from_bytes(raw[304:306], "little")
    assert body.report_data == raw[368:432]


@pytest.mark.parametrize("cut", [0, 10, 47, 48, 100, 631, 632, 635, 700, 764, 1000, 1258, 2000])
def test_truncated_quote_is_a_parse_error(vectors: Path, cut: int) -> None:
    raw = (vectors / "dcap-qvl/tdx_quote").read_bytes()
    with pytest.raises(ParseError, match="truncated"):
        parse_quote(raw[:cut])


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, 7, "unsupported quote version"),
        (2, 3, "attestation key type"),
        (4, 0x42, "unknown tee type"),
        (636 + 128, 5, "certification data type 5, expected 6"),
    ],
)
def test_bad_header_fields(vectors: Path, offset: int, value: int, message: str) -> None:
    raw = bytearray((vectors / "dcap-qvl/tdx_quote").read_bytes())
    raw[offset] = value
    with pytest.raises(ParseError, match=message):
        parse_quote(bytes(raw))


def test_v5_body_size_must_match_type(vectors: Path) -> None:
    raw = bytearray((vectors / "dcap-qvl/tdx_quote_outdated").read_bytes())
    raw[50] ^= 0x01
    with pytest.raises(ParseError, match="body size"):
        parse_quote(bytes(raw))


# The fast reader (fixed offsets) and the field-by-field one accept the same quotes and give
# the same result or the same error.
QUOTE_FILES = [
    "dcap-qvl/sgx_quote",
    "dcap-qvl/tdx_quote",
    "dcap-qvl/tdx_quote_outdated",
    "trustee/tdx_quote_5.dat",
]


def _outcome(parse: object, data: bytes) -> object:
    assert callable(parse)
    try:
        return parse(data)
    except ParseError as exc:
        return ("ParseError", str(exc))


@pytest.mark.parametrize("name", QUOTE_FILES)
def test_fast_reader_agrees_with_the_checked_one(vectors: Path, name: str) -> None:
    import random

    from veritee.verifier import intel_quote

    data = (vectors / name).read_bytes()
    quote = intel_quote._parse_checked(data)
    start = quote.sig_data_offset
    # every length/type field, and bytes around the body and signature data
    fields = [2, 4, 48, 50, start - 4, start + 128, start + 130, start + 128 + 6 + 384 + 64]
    cases = [data] + [data[:cut] for cut in range(0, len(data), 97)]
    for offset in fields:
        for value in (0, 1, 5, 6, 0xFF):
            mutated = bytearray(data)
            mutated[offset] = value
            cases += [bytes(mutated), bytes(mutated[:-1])]
    rng = random.Random(name)
    for _ in range(300):
        mutated = bytearray(data)
        mutated[rng.randrange(len(data))] = rng.randrange(256)
        cases.append(bytes(mutated))
    for case in cases:
        assert _outcome(parse_quote, case) == _outcome(intel_quote._parse_checked, case)
