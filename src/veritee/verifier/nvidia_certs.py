"""NVIDIA's pinned roots, the GPU's device certificate chain, and the FWID of its leaf.

The PEM files ship in ``veritee/verifier/roots/``: ``nvidia_device_root.pem`` (the NVIDIA
Device Identity CA, anchor of every GPU's device certificates) and ``nvidia_rim_root.pem``
(NVIDIA's RIM signing root).  Each is checked against its SHA-256(DER) below at load time,
so a modified file cannot change what is trusted.

A device chain is PEM, leaf first (the certificate whose key signs the SPDM report), then the
intermediates, then the root.  Every failure of :func:`verify_device_chain` is a
:class:`~veritee.errors.VerificationError` at step ``cert_chain``; a FWID that is absent or
differs is step ``fwid``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from veritee.errors import VerificationError, VeriteeError
from veritee.pem import load_certificates
from veritee.verifier.chain_memo import LruMemo

DEVICE_ROOT_SHA256: Final = "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
RIM_ROOT_SHA256: Final = "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1"

#: TCG DICE TcbInfo; NVIDIA's FWID is the last 48 bytes of its value.
OID_TCG_DICE_TCB_INFO: Final = x509.ObjectIdentifier("2.23.133.5.4.1")
FWID_LEN: Final = 48


@functools.lru_cache(maxsize=1024)
def fingerprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the certificate's DER."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@functools.lru_cache(maxsize=256)
def load_chain(pem: bytes) -> tuple[x509.Certificate, ...]:
    """The certificates of a device chain, leaf first.  A GPU presents the same chain at every
    attestation, so parsed chains are remembered by their exact bytes (a ParseError is not)."""
    return tuple(load_certificates(pem))


def _pinned(name: str, sha256: str) -> x509.Certificate:
    data = resources.files("veritee.verifier").joinpath("roots", name).read_bytes()
    certs = load_certificates(data)
    if len(certs) != 1 or fingerprint(certs[0]) != sha256:
        raise VeriteeError(f"roots/{name} does not match its pinned fingerprint")
    return certs[0]


@functools.cache
def pinned_device_root() -> x509.Certificate:
    """The NVIDIA Device Identity CA."""
    return _pinned("nvidia_device_root.pem", DEVICE_ROOT_SHA256)


@functools.cache
def pinned_rim_root() -> x509.Certificate:
    """NVIDIA's RIM signing root."""
    return _pinned("nvidia_rim_root.pem", RIM_ROOT_SHA256)


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def verify_device_chain(
    certs: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: dt.datetime,
) -> x509.Certificate:
    """Check leaf → … → root: names link, each certificate is signed by the next, every issuer
    is a CA, all are valid at ``at``, and the last is one of ``roots`` (compared by DER).
    Returns the trusted root."""
    if len(certs) < 2:
        raise VerificationError(
            "cert_chain",
            f"the chain holds {len(certs)} certificate(s); it needs at least the signing "
            "certificate and the root",
        )
    root = certs[-1]
    trusted = {fingerprint(r) for r in roots}
    if fingerprint(root) not in trusted:
        raise VerificationError(
            "cert_chain",
            f"the chain ends at {common_name(root)!r} (SHA-256 {fingerprint(root)}), which is "
            "not a trusted NVIDIA device root; a test root must be configured explicitly",
        )
    for index, cert in enumerate(certs):
        issuer = certs[min(index + 1, len(certs) - 1)]
        _check_link(cert, issuer, index)
        if index > 0:
            _check_ca(cert)
        _check_validity(cert, at)
    return root


def _check_link(cert: x509.Certificate, issuer: x509.Certificate, index: int) -> None:
    name = common_name(cert)
    if cert.issuer != issuer.subject:
        raise VerificationError(
            "cert_chain",
            f"certificate {index} {name!r} is issued by "
            f"{cert.issuer.rfc4514_string()!r}, but the next certificate is "
            f"{issuer.subject.rfc4514_string()!r} (a certificate is missing or out of order)",
        )
    if not _signed_by(cert, issuer):
        raise VerificationError(
            "cert_chain", f"certificate {index} {name!r} is not signed by {common_name(issuer)!r}"
        )


# A GPU presents the same chain at every attestation: remember the signatures that verified,
# keyed by everything their validity depends on (signed bytes, signature, issuer key).  Names,
# CA flags and validity at the verification time are checked every time.
_VERIFIED: Final[LruMemo[tuple[bytes, bytes, bytes], bool]] = LruMemo(1024)


@functools.lru_cache(maxsize=1024)
def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    key = (cert.tbs_certificate_bytes, cert.signature, _spki(issuer))
    if _VERIFIED.get(key):
        return True
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    _VERIFIED.put(key, True)
    return True


def clear_chain_memo() -> None:
    """Forget the remembered chains, fingerprints, keys and chain signatures, as for a GPU never
    seen before (benchmarks measure the cold path with it)."""
    load_chain.cache_clear()
    fingerprint.cache_clear()
    _spki.cache_clear()
    _VERIFIED.clear()


def _check_ca(cert: x509.Certificate) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise VerificationError(
            "cert_chain", f"{common_name(cert)!r} issues a certificate but is not a CA"
        )


def _check_validity(cert: x509.Certificate, at: dt.datetime) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise VerificationError(
            "cert_chain",
            f"{common_name(cert)!r} is valid {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}, not at {at:%Y-%m-%dT%H:%M:%SZ}",
        )


def leaf_fwid(cert: x509.Certificate) -> bytes:
    """The FWID of a device certificate: the last 48 bytes of its TCG DICE TcbInfo extension.
    A certificate without one (an intermediate given as the leaf) fails at step ``fwid``."""
    try:
        ext = cert.extensions.get_extension_for_oid(OID_TCG_DICE_TCB_INFO)
    except x509.ExtensionNotFound:
        raise VerificationError(
            "fwid",
            f"the signing certificate {common_name(cert)!r} has no FWID "
            "(TCG DICE TcbInfo extension); is the device's own certificate missing?",
        ) from None
    value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if len(value) < FWID_LEN:
        raise VerificationError("fwid", "the signing certificate's TcbInfo is too short")
    return value[-FWID_LEN:]


def earliest_expiry(certs: Sequence[x509.Certificate]) -> str:
    """The earliest notAfter of the chain, ISO 8601 (NRAS's x-nvidia-cert-expiration-date)."""
    when = min(c.not_valid_after_utc for c in certs)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
