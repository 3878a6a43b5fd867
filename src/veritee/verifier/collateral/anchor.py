"""The root of trust a collateral item chains to.

Collateral is only meaningful under the root that signed it: a tcbInfo signed
under an emulator's test root says nothing about a real Intel platform with the
same FMSPC, and a VCEK from an emulated KDS says nothing about a real chip.  So
every fetched item is tied to the root its issuer chain ends in (an
:class:`Anchor`), the cache keeps items apart by that root, and a verifier is
only ever handed items under the root it trusts for the evidence at hand.

Test roots reuse the vendors' names, so an anchor is identified by the SHA-256
of the root certificate, never by its subject.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.errors import CollateralError
from veritee.verifier.intel_root import intel_root_ca
from veritee.verifier.nvidia_certs import pinned_device_root, pinned_rim_root
from veritee.verifier.snp_roots import pinned_arks

__all__ = ["Anchor", "anchor_of_chain", "vendor_fingerprints"]


@functools.cache
def vendor_fingerprints() -> frozenset[str]:
    """SHA-256 fingerprints of the pinned vendor roots: Intel's SGX Root CA, AMD's ARKs and
    NVIDIA's device identity and RIM signing roots."""
    certs = [*pinned_arks(), pinned_device_root(), pinned_rim_root()]
    ders = [intel_root_ca(), *(cert.public_bytes(Encoding.DER) for cert in certs)]
    return frozenset(hashlib.sha256(der).hexdigest() for der in ders)


@dataclass(frozen=True)
class Anchor:
    """A root certificate, by fingerprint; ``vendor`` is true for a pinned vendor root."""

    fingerprint: str
    name: str

    @classmethod
    def of(cls, cert: x509.Certificate) -> Anchor:
        der = cert.public_bytes(Encoding.DER)
        return cls(hashlib.sha256(der).hexdigest(), cert.subject.rfc4514_string())

    @classmethod
    def of_der(cls, der: bytes) -> Anchor:
        return cls.of(x509.load_der_x509_certificate(der))

    @property
    def vendor(self) -> bool:
        return self.fingerprint in vendor_fingerprints()

    def describe(self) -> str:
        kind = "the vendor root" if self.vendor else "a non-vendor (test) root"
        return f"{kind} '{self.name}' (SHA-256 {self.fingerprint})"


def anchor_of_chain(certs: Sequence[x509.Certificate], what: str) -> Anchor:
    """The root that ``certs`` (leaf first, root last, as Intel's and AMD's chains come)
    ends in, after checking that each certificate is signed by the next and the root by
    itself.  A chain that does not link up is a :class:`CollateralError` naming ``what``."""
    if not certs:
        raise CollateralError(what, "no issuer certificates came with it")
    for cert, issuer in itertools.pairwise(certs):
        _check_issued(cert, issuer, what)
    root = certs[-1]
    if root.subject != root.issuer:
        raise CollateralError(
            what, f"its issuer chain ends in '{root.subject.rfc4514_string()}', not in a root"
        )
    _check_issued(root, root, what)
    return Anchor.of(root)


def _check_issued(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise CollateralError(
            what,
            f"its issuer chain is broken: '{cert.subject.rfc4514_string()}' is not signed by "
            f"'{issuer.subject.rfc4514_string()}'",
        ) from exc
