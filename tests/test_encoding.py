"""Evidence decoding: binary, hex (with or without 0x), base64 (standard or URL-safe)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from veritee.encoding import decode_evidence, read_evidence_file
from veritee.errors import InputError

QUOTE_START = bytes.fromhex("040002008100000000000000939a7233")


@pytest.mark.parametrize(
    "encode",
    [
        lambda b: b,
        lambda b: b.hex().encode(),
        lambda b: b"0x" + b.hex().encode(),
        lambda b: b.hex().upper().encode() + b"\n",
        lambda b: base64.b64encode(b),
        lambda b: base64.urlsafe_b64encode(b).rstrip(b"="),
        lambda b: base64.encodebytes(b),  # wrapped lines
    ],
)
def test_round_trip(vectors: Path, encode) -> None:  # type: ignore[no-untyped-def]
    raw = (vectors / "dcap-qvl/tdx_quote").read_bytes()
    assert decode_evidence(encode(raw)) == raw


def test_real_hex_vectors_decode(vectors: Path) -> None:
    with_prefix = read_evidence_file(vectors / "dcap-qvl/tdx-quote.hex")
    without = read_evidence_file(vectors / "dcap-qvl/quote-from-tappd.hex")
    assert with_prefix.startswith(QUOTE_START[:4])
    assert without.startswith(QUOTE_START[:4])


def test_empty_is_an_input_error() -> None:
    with pytest.raises(InputError, match="empty"):
        decode_evidence(b"  \n")


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_evidence_file(tmp_path / "nope")


def test_broken_base64_is_an_input_error() -> None:
    with pytest.raises(InputError, match="base64"):
        decode_evidence(b"QUJDRxyzA")  # 9 data characters: one too many for base64
