"""Build the verifier for a TEE from one settings object.

The CLI, and later the Attestation Service, describe where collateral comes
from once (:class:`VerifierSettings`); this module turns that into verifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from veritee.errors import InputError
from veritee.paths import default_cache_path
from veritee.store.kv import SqliteStore
from veritee.verifier.base import Verifier
from veritee.verifier.collateral.amd import KdsVekSource
from veritee.verifier.collateral.cache import CollateralCache
from veritee.verifier.collateral.intel import FileCollateral, IntelCollateralSource, PcsCollateral
from veritee.verifier.intel import IntelVerifier
from veritee.verifier.nvidia import NvidiaVerifier, OcspStatus, RimFetcher
from veritee.verifier.nvidia_certs import pinned_device_root, pinned_rim_root
from veritee.verifier.sample import SampleVerifier
from veritee.verifier.snp import SnpVerifier, VekSource
from veritee.verifier.snp_roots import pinned_arks
from veritee.verifier.trust_root import TestAnchors, load_test_anchors

TEES = ("tdx", "sgx", "snp", "sample", "nvidia")


@dataclass(frozen=True)
class VerifierSettings:
    """Where collateral comes from.  Every field is optional."""

    collateral_file: Path | None = None
    cert_chain: bytes | None = None
    pccs_url: str | None = None
    kds_url: str | None = None
    cache_path: Path | None = None
    offline: bool = False
    trust_root: Path | None = None
    allow_sample: bool = False
    #: NVIDIA: RIM documents to compare (``--rim``); when given, nothing is fetched.
    rims: tuple[bytes, ...] = ()
    #: NVIDIA: fetch RIMs by id from this RIM service (and ask OCSP), through the cache.
    rim_url: str | None = None
    ocsp_url: str | None = None
    require_rims: bool = False


def _cache(settings: VerifierSettings) -> CollateralCache | None:
    """The collateral cache; it takes test-root collateral unless it is the user's default
    cache, which only ever holds collateral under the vendors' roots."""
    if settings.cache_path is None:
        return None
    default = settings.cache_path.resolve() == default_cache_path().resolve()
    return CollateralCache(SqliteStore(settings.cache_path), test_roots=not default)


def _test_root_intermediates(root: Path) -> bytes | None:
    """A test root's ASK, ASVK and ARK, so evidence carrying only its VCEK/VLEK verifies."""
    parts = [root / "amd" / name for name in ("ask.pem", "asvk.pem", "ark.pem")]
    present = [p.read_bytes() for p in parts if p.exists()]
    return b"".join(present) or None


def _nvidia(settings: VerifierSettings, anchors: TestAnchors | None) -> NvidiaVerifier:
    """RIMs: the given documents; else a test root's ``nvidia/rims`` (and ``nvidia/ocsp``); else
    NVIDIA's services when a URL or offline mode is set; else none (measres "not-compared")."""
    device_roots = [pinned_device_root(), *(anchors.nvidia_device_roots if anchors else ())]
    rim_roots = [pinned_rim_root(), *(anchors.nvidia_rim_roots if anchors else ())]
    rim_source: RimFetcher | None = None
    ocsp: OcspStatus | None = None
    local = settings.trust_root / "nvidia" if settings.trust_root else None
    if not settings.rims and local is not None and (local / "rims").is_dir():
        from veritee.verifier.collateral.nvidia_ocsp import OcspChecker
        from veritee.verifier.collateral.nvidia_rims import RimSource

        rim_source = RimSource(directory=local / "rims")
        if (local / "ocsp").is_dir():
            ocsp = OcspChecker(directory=local / "ocsp")
    elif not settings.rims and (settings.rim_url or settings.ocsp_url or settings.offline):
        from veritee.verifier.collateral.nvidia_ocsp import OcspChecker
        from veritee.verifier.collateral.nvidia_rims import RimSource

        cache, offline = _cache(settings), settings.offline
        rim_source = RimSource(url=settings.rim_url, cache=cache, offline=offline)
        ocsp = OcspChecker(url=settings.ocsp_url, cache=cache, offline=offline)
    return NvidiaVerifier(
        device_roots=device_roots,
        rim_roots=rim_roots,
        cert_chain=settings.cert_chain,
        rims=settings.rims,
        rim_source=rim_source,
        ocsp=ocsp,
        require_rims=settings.require_rims,
    )


def build_verifier(tee: str, settings: VerifierSettings) -> Verifier:
    anchors = load_test_anchors(settings.trust_root) if settings.trust_root else None
    if tee in ("tdx", "sgx"):
        source: IntelCollateralSource | None = None
        if settings.collateral_file is not None:
            source = FileCollateral(settings.collateral_file)
        elif settings.pccs_url is None and not settings.offline and settings.trust_root:
            bundle = settings.trust_root / "intel" / f"collateral_{tee}.json"
            source = FileCollateral(bundle) if bundle.exists() else None
        elif settings.pccs_url is not None or settings.offline:
            source = PcsCollateral(
                settings.pccs_url or "", cache=_cache(settings), offline=settings.offline
            )
        extra = (anchors.intel_root_der,) if anchors and anchors.intel_root_der else ()
        return IntelVerifier("tdx" if tee == "tdx" else "sgx", collateral=source, extra_roots=extra)
    if tee == "snp":
        arks = (*pinned_arks(), *anchors.amd_arks) if anchors and anchors.amd_arks else None
        vek_source: VekSource | None = None
        if settings.kds_url is not None or settings.offline:
            vek_source = KdsVekSource(
                settings.kds_url or "https://kdsintf.amd.com",
                cache=_cache(settings),
                offline=settings.offline,
                trusted_arks=arks,
            )
        chain = settings.cert_chain
        if chain is None and settings.trust_root is not None:
            chain = _test_root_intermediates(settings.trust_root)
        return SnpVerifier(cert_chain=chain, vek_source=vek_source, trusted_arks=arks)
    if tee == "sample":
        return SampleVerifier(enabled=settings.allow_sample)
    if tee == "nvidia":
        return _nvidia(settings, anchors)
    raise InputError(f"unknown tee {tee!r}; expected one of {', '.join(TEES)}")
