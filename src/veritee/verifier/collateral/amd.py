"""AMD SEV-SNP collateral from the Key Distribution Service (KDS), cached per certificate.

URLs (verification.md §4.3), with the SPL values formatted as two digits as
Trustee does (``blSPL=02``); KDS reads them as integers either way:

- ``/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`` (DER VCEK)
- Turin: ``hwid`` is the first 8 bytes of CHIP_ID and ``fmcSPL`` comes first
- ``/{vcek|vlek}/v1/{product}/cert_chain`` (PEM: ASK or ASVK, then ARK)
"""

from __future__ import annotations

import datetime as dt
import struct
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from veritee.errors import CollateralError, ParseError
from veritee.pem import load_certificates
from veritee.verifier.collateral.anchor import Anchor, anchor_of_chain
from veritee.verifier.collateral.cache import CollateralCache, Fetched, Obtained, obtain, window_of
from veritee.verifier.collateral.http import http_get
from veritee.verifier.snp_roots import pinned_arks

__all__ = [
    "KDS_URL",
    "KdsVekSource",
    "Signer",
    "VekRequest",
    "normalize_product",
    "vcek_path",
    "vek_request_from_report",
]

KDS_URL = "https://kdsintf.amd.com"
Signer = Literal["vcek", "vlek"]

_PRODUCTS = {
    "milan": "Milan",
    "genoa": "Genoa",
    "siena": "Genoa",
    "bergamo": "Genoa",
    "turin": "Turin",
}
# reported_tcb keys: Trustee/virtee names first, then the KDS parameter names.
_TCB_KEYS = {
    "fmc": ("fmc", "fmcSPL"),
    "bootloader": ("bootloader", "blSPL", "bl"),
    "tee": ("tee", "teeSPL"),
    "snp": ("snp", "snpSPL"),
    "microcode": ("microcode", "ucodeSPL", "ucode"),
}
_REPORT_SIZE = 0x4A0
_SIGNERS: dict[int, Signer] = {0: "vcek", 1: "vlek"}  # report SIGNING_KEY; 7 = unsigned


def normalize_product(product: str) -> str:
    """KDS product name (Milan, Genoa, Turin) for a name such as "milan" or "Milan-B0"."""
    name = _PRODUCTS.get(product.split("-", 1)[0].strip().lower())
    if name is None:
        raise ParseError(
            "snp product", f"unknown product {product!r}; expected Milan, Genoa or Turin"
        )
    return name


def vcek_path(product: str, chip_id: bytes, reported_tcb: Mapping[str, int]) -> str:
    """The KDS path and query of the VCEK for this chip at this TCB."""
    product = normalize_product(product)
    turin = product == "Turin"
    if len(chip_id) not in ((8, 64) if turin else (64,)):
        raise ParseError("snp chip id", f"expected 64 bytes, got {len(chip_id)}")
    hwid = chip_id[:8] if turin else chip_id
    if not any(hwid):
        raise CollateralError(
            f"{product} VCEK", "CHIP_ID is zero (MASK_CHIP_ID set): KDS cannot serve a VCEK"
        )
    names = (
        ("fmc", "bootloader", "tee", "snp", "microcode")
        if turin
        else ("bootloader", "tee", "snp", "microcode")
    )
    params = {
        "fmc": "fmcSPL",
        "bootloader": "blSPL",
        "tee": "teeSPL",
        "snp": "snpSPL",
        "microcode": "ucodeSPL",
    }
    query = "&".join(f"{params[n]}={_spl(reported_tcb, n):02d}" for n in names)
    return f"/vcek/v1/{product}/{hwid.hex()}?{query}"


def _spl(reported_tcb: Mapping[str, int], name: str) -> int:
    for alias in _TCB_KEYS[name]:
        if alias in reported_tcb:
            value = int(reported_tcb[alias])
            if not 0 <= value <= 0xFF:
                raise ParseError("snp reported tcb", f"{name} = {value} is not a byte")
            return value
    raise ParseError("snp reported tcb", f"missing {name!r}")


class KdsVekSource:
    """VCEKs and ASK/ARK chains from AMD KDS, each cached until its notAfter, under its ARK.

    Implements the SNP verifier's ``VekSource`` protocol (``vek_for``).  With
    ``offline`` only the cache is consulted.  A ``client`` passed in is used
    (its pool, proxies, timeouts) and left open; without one each request uses
    a short-lived client, so there is nothing to close.  ``trusted_arks``
    replaces the pinned AMD ARKs as the roots that served certificates must
    chain to (a VCEK through the ASK the same KDS serves); anything else is
    refused and never cached.
    """

    def __init__(
        self,
        base_url: str = KDS_URL,
        *,
        cache: CollateralCache | None = None,
        offline: bool = False,
        client: httpx.Client | None = None,
        trusted_arks: Sequence[x509.Certificate] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache = cache
        self.offline = offline
        self._client = client
        arks = pinned_arks() if trusted_arks is None else trusted_arks
        self._roots = tuple(dict.fromkeys(Anchor.of(ark) for ark in arks))

    def vek_for(self, product: str, chip_id: bytes, reported_tcb: Mapping[str, int]) -> bytes:
        """The DER VCEK for this chip at this reported TCB."""
        return self.fetch_vek(product, chip_id, reported_tcb).value

    def cert_chain(self, product: str, signer: Signer) -> bytes:
        """The PEM chain above a VCEK (ASK, ARK) or VLEK (ASVK, ARK), as KDS serves it."""
        return self.fetch_cert_chain(product, signer).value

    def fetch_vek(
        self,
        product: str,
        chip_id: bytes,
        reported_tcb: Mapping[str, int],
        *,
        at: dt.datetime | None = None,
    ) -> Obtained:
        """Like :meth:`vek_for`, also saying whether the VCEK came from the cache."""
        path = vcek_path(product, chip_id, reported_tcb)
        product = normalize_product(product)
        hwid, query = path.rsplit("/", 1)[1].split("?", 1)
        what = f"{product} VCEK for chip {hwid[:16]}… ({query})"
        when = _now(at)
        return obtain(
            self.cache,
            kind="amd-vcek",
            key=f"{product}/{hwid}?{query}",
            what=what,
            at=when,
            offline=self.offline,
            fetch=lambda: self._fetch_vek(path, product, what, when),
            roots=self._roots,
        )

    def fetch_cert_chain(
        self, product: str, signer: Signer, *, at: dt.datetime | None = None
    ) -> Obtained:
        """Like :meth:`cert_chain`, also saying whether it came from the cache."""
        product = normalize_product(product)
        if signer not in get_args(Signer):
            raise ParseError("snp signer", f"expected vcek or vlek, got {signer!r}")
        what = f"{product} {signer.upper()} cert chain"
        return obtain(
            self.cache,
            kind="amd-cert-chain",
            key=f"{signer}/{product}",
            what=what,
            at=_now(at),
            offline=self.offline,
            fetch=lambda: self._fetch_chain(f"/{signer}/v1/{product}/cert_chain", what),
            roots=self._roots,
        )

    def _fetch_vek(self, path: str, product: str, what: str, at: dt.datetime) -> Fetched:
        """The VCEK, tied to the ARK it chains to through the ASK this KDS serves."""
        reply = http_get(self._client, self.base_url + path, what=what)
        der = reply.body
        try:
            with warnings.catch_warnings():
                # VCEKs carry serial number 0, which cryptography warns about.
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                if der.lstrip().startswith(b"-----BEGIN"):
                    cert = x509.load_pem_x509_certificate(der)
                    der = cert.public_bytes(Encoding.DER)
                else:
                    cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise ParseError(what, f"{reply.url} did not return a certificate: {exc}") from exc
        above = load_certificates(self.fetch_cert_chain(product, "vcek", at=at).value)
        anchor = anchor_of_chain([cert, *above], what)
        valid_from, expires = window_of([cert])
        return Fetched(der, expires, valid_from, anchor, reply.url)

    def _fetch_chain(self, path: str, what: str) -> Fetched:
        reply = http_get(self._client, self.base_url + path, what=what)
        certs = load_certificates(reply.body)
        anchor = anchor_of_chain(certs, what)
        valid_from, expires = window_of(certs)
        return Fetched(reply.body, expires, valid_from, anchor, reply.url)


def _now(at: dt.datetime | None) -> dt.datetime:
    return at if at is not None else dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------- report fields


@dataclass(frozen=True)
class VekRequest:
    """What KDS needs to serve the key that signed one report."""

    product: str
    signer: Signer | None  # None: the report is unsigned (SIGNING_KEY = 7)
    chip_id: bytes
    reported_tcb: dict[str, int]
    product_guessed: bool  # a v2 report names no CPU; the caller's default was used


def vek_request_from_report(report: bytes, default_product: str = "Milan") -> VekRequest:
    """Product, signer, CHIP_ID and REPORTED_TCB of a raw 1184-byte SNP report.

    v3+ reports name their CPU family/model; v2 reports do not, and
    ``default_product`` is used for them.
    """
    if len(report) != _REPORT_SIZE:
        raise ParseError("snp report", f"expected {_REPORT_SIZE} bytes, got {len(report)}")
    version, key_info = struct.unpack_from("<I", report, 0)[0], report[0x48]
    product = _product_from_cpuid(report) if version >= 3 else None
    signer = _SIGNERS.get((key_info >> 2) & 0x7)
    name = normalize_product(product or default_product)
    tcb = report[0x180:0x188]
    if name == "Turin":
        fields = {"fmc": tcb[0], "bootloader": tcb[1], "tee": tcb[2], "snp": tcb[3]}
    else:
        fields = {"bootloader": tcb[0], "tee": tcb[1], "snp": tcb[6]}
    fields["microcode"] = tcb[7]
    return VekRequest(name, signer, bytes(report[0x1A0:0x1E0]), fields, product is None)


def _product_from_cpuid(report: bytes) -> str | None:
    family, model = report[0x188], report[0x189]
    if family == 0x19 and model <= 0x0F:
        return "Milan"
    if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return "Genoa"
    if family == 0x1A and model <= 0x11:
        return "Turin"
    return None
