"""The pinned AMD SEV-SNP trust anchors (ARK, ASK, ASVK per processor generation).

The PEM files ship in ``veritee/verifier/roots/amd_<product>.pem``.  Each
certificate's SHA-256(DER) is checked at load time against the table below,
copied from ``shared/specs/verification.md`` §4.4, so a modified file cannot
change what is trusted.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.errors import VeriteeError
from veritee.pem import load_certificates
from veritee.verifier.snp_report import PRODUCTS, Product

# SHA-256(DER) -> (product, role), verification.md §4.4.
PINNED_FINGERPRINTS: Final[Mapping[str, tuple[Product, str]]] = {
    "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd": ("Milan", "ARK"),
    "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b": ("Milan", "ASK"),
    "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5": ("Milan", "ASVK"),
    "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1": ("Genoa", "ARK"),
    "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521": ("Genoa", "ASK"),
    "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372": ("Genoa", "ASVK"),
    "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a": ("Turin", "ARK"),
    "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185": ("Turin", "ASK"),
    "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c": ("Turin", "ASVK"),
}


@dataclass(frozen=True)
class AmdRoots:
    """One generation's ARK and its two intermediates (ASK for VCEKs, ASVK for VLEKs)."""

    product: Product
    ark: x509.Certificate
    ask: x509.Certificate
    asvk: x509.Certificate


def fingerprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the certificate's DER."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@functools.cache
def pinned_roots() -> Mapping[Product, AmdRoots]:
    """Load and check the shipped AMD roots, once."""
    return {product: _load(product) for product in PRODUCTS}


def pinned_arks() -> tuple[x509.Certificate, ...]:
    return tuple(roots.ark for roots in pinned_roots().values())


def _load(product: Product) -> AmdRoots:
    name = f"amd_{product.lower()}.pem"
    data = resources.files("veritee.verifier").joinpath("roots", name).read_bytes()
    by_role: dict[str, x509.Certificate] = {}
    for cert in load_certificates(data):
        pinned = PINNED_FINGERPRINTS.get(fingerprint(cert))
        if pinned is None or pinned[0] != product or pinned[1] in by_role:
            raise VeriteeError(
                f"roots/{name}: certificate {cert.subject.rfc4514_string()} "
                "is not a pinned AMD root for this product"
            )
        by_role[pinned[1]] = cert
    if set(by_role) != {"ARK", "ASK", "ASVK"}:
        raise VeriteeError(f"roots/{name}: expected ARK, ASK and ASVK, found {sorted(by_role)}")
    return AmdRoots(product, by_role["ARK"], by_role["ASK"], by_role["ASVK"])
