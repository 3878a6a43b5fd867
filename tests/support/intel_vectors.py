"""The real Intel vector pairs of tests/data/SOURCES.md, with their windows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class IntelPair:
    name: str
    quote: str
    collateral: str
    window_end: str  # verify as of this minus one second, as dcap-qvl's tests do

    def as_of(self) -> dt.datetime:
        return utc(self.window_end) - dt.timedelta(seconds=1)

    def paths(self, vectors: Path) -> tuple[Path, Path]:
        return vectors / self.quote, vectors / self.collateral


T1 = IntelPair(
    "T1", "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", "2025-07-19T10:00:35Z"
)
S1 = IntelPair(
    "S1", "dcap-qvl/sgx_quote", "dcap-qvl/sgx_quote_collateral.json", "2025-07-19T10:01:18Z"
)
T2 = IntelPair(
    "T2",
    "dcap-qvl/tdx_quote_outdated",
    "dcap-qvl/tdx_quote_outdated_collateral.json",
    "2026-03-20T10:41:15Z",
)
T5 = IntelPair(
    "T5",
    "go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
    "go-tdx-guest/derived/collateral_50806f000000.json",
    "2023-07-08T07:24:59Z",
)
T6 = IntelPair(
    "T6",
    "trustee/tdx_quote_4.dat",
    "go-tdx-guest/derived/collateral_50806f000000.json",
    "2023-07-08T07:24:59Z",
)
T7 = IntelPair(
    "T7",
    "trustee/tdx_quote_5.dat",
    "dcap-qvl/tdx_quote_outdated_collateral.json",
    "2026-03-20T10:41:15Z",
)
T8A = IntelPair(
    "T8a", "dcap-qvl/tdx-quote.hex", "dcap-qvl/tdx_quote_collateral.json", "2025-07-19T10:00:35Z"
)
T8B = IntelPair(
    "T8b",
    "dcap-qvl/quote-from-tappd.hex",
    "dcap-qvl/tdx_quote_collateral.json",
    "2025-07-19T10:00:35Z",
)
ALL = (T1, S1, T2, T5, T6, T7, T8A, T8B)
