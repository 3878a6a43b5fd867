"""Build the verifier for a TEE from one settings object.

The CLI, and later the Attestation Service, describe where collateral comes
from once (:class:`VerifierSettings`); this module turns that into verifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from veritee.errors import InputError
from veritee.store.kv import SqliteStore
from veritee.verifier.base import Verifier
from veritee.verifier.collateral.amd import KdsVekSource
from veritee.verifier.collateral.cache import CollateralCache
from veritee.verifier.collateral.intel import FileCollateral, IntelCollateralSource, PcsCollateral
from veritee.verifier.intel import IntelVerifier
from veritee.verifier.snp import SnpVerifier, VekSource

TEES = ("tdx", "sgx", "snp")


@dataclass(frozen=True)
class VerifierSettings:
    """Where collateral comes from.  Every field is optional."""

    collateral_file: Path | None = None
    cert_chain: bytes | None = None
    pccs_url: str | None = None
    kds_url: str | None = None
    cache_path: Path | None = None
    offline: bool = False


def _cache(settings: VerifierSettings) -> CollateralCache | None:
    if settings.cache_path is None:
        return None
    return CollateralCache(SqliteStore(settings.cache_path))


def build_verifier(tee: str, settings: VerifierSettings) -> Verifier:
    if tee in ("tdx", "sgx"):
        source: IntelCollateralSource | None = None
        if settings.collateral_file is not None:
            source = FileCollateral(settings.collateral_file)
        elif settings.pccs_url is not None or settings.offline:
            source = PcsCollateral(
                settings.pccs_url or "", cache=_cache(settings), offline=settings.offline
            )
        return IntelVerifier("tdx" if tee == "tdx" else "sgx", collateral=source)
    if tee == "snp":
        vek_source: VekSource | None = None
        if settings.kds_url is not None or settings.offline:
            vek_source = KdsVekSource(
                settings.kds_url or "https://kdsintf.amd.com",
                cache=_cache(settings),
                offline=settings.offline,
            )
        return SnpVerifier(cert_chain=settings.cert_chain, vek_source=vek_source)
    raise InputError(f"unknown tee {tee!r}; expected one of {', '.join(TEES)}")
