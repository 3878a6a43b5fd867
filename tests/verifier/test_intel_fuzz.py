"""Property tests: malformed Intel quotes raise only the project's ParseError.

The verifier, given any mutation of a real quote, returns a rejected verdict or
raises ParseError, and never accepts a changed signed byte.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from datadir import VECTORS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from intel_vectors import S1, T1

from veritee.errors import ParseError
from veritee.verifier.base import VerifyOptions
from veritee.verifier.collateral.intel import FileCollateral
from veritee.verifier.intel import IntelVerifier
from veritee.verifier.intel_quote import parse_quote

T1_RAW = (VECTORS / T1.quote).read_bytes()
S1_RAW = (VECTORS / S1.quote).read_bytes()
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(st.binary(max_size=6000))
def test_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_quote(data)


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    raw = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del raw[pos : pos + draw(st.integers(1, 64))]
        else:
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(raw)


@FUZZ
@given(st.data())
def test_mutated_quotes_parse_or_fail_cleanly(data: st.DataObject) -> None:
    raw = data.draw(mutated(T1_RAW if data.draw(st.booleans()) else S1_RAW))
    with contextlib.suppress(ParseError):
        parse_quote(raw)


@pytest.fixture(scope="module")
def t1_verifier(vectors: Path) -> IntelVerifier:
    return IntelVerifier("tdx", collateral=FileCollateral(vectors / T1.collateral))


@FUZZ
@given(raw=mutated(T1_RAW))
def test_mutated_t1_never_verifies_when_signed_bytes_change(
    t1_verifier: IntelVerifier, raw: bytes
) -> None:
    try:
        verdict = t1_verifier.verify(raw, VerifyOptions(at=T1.as_of()))
    except ParseError:
        return
    quote = parse_quote(raw)
    unchanged = (
        raw[: quote.signed_len] == T1_RAW[: quote.signed_len]
        and raw[quote.sig_data_offset : quote.sig_data_offset + 1400]
        == T1_RAW[quote.sig_data_offset : quote.sig_data_offset + 1400]
    )
    if verdict.verified:
        assert unchanged, "a changed quote was accepted"
    else:
        assert verdict.step
