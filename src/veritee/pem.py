"""Certificate loading that tolerates comment lines between PEM blocks."""

from __future__ import annotations

import re
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from veritee.errors import ParseError

_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.DOTALL)


def dump_certificates(*certs: x509.Certificate) -> bytes:
    """``certs`` as concatenated PEM blocks, in the order given."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Load every certificate in ``data``: PEM blocks (any text around them) or one DER cert.

    AMD's VCEK and VLEK certificates carry serial number 0, which ``cryptography``
    warns about; that warning is expected for them and is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Parsed a serial number which wasn't positive",
            category=CryptographyDeprecationWarning,
        )
        return _load(data)


def _load(data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN" not in data:
        try:
            cert = x509.load_der_x509_certificate(data)
        except x509.InvalidVersion as exc:
            raise ParseError("certificate", f"invalid X.509 version: {exc}") from exc
        except ValueError as exc:
            raise ParseError("certificate", f"not PEM and not DER: {exc}") from exc
        _check_decodes(cert, 0)
        return [cert]
    certs: list[x509.Certificate] = []
    for match in _BLOCK.finditer(data):
        block = b"-----BEGIN CERTIFICATE-----\n" + match.group(1) + b"\n-----END CERTIFICATE-----\n"
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except x509.InvalidVersion as exc:
            raise ParseError("certificate", f"invalid X.509 version: {exc}") from exc
        except ValueError as exc:
            raise ParseError(
                "certificate", f"PEM block {len(certs) + 1} is invalid: {exc}"
            ) from exc
    if not certs:
        raise ParseError("certificate", "no CERTIFICATE block found")
    for index, cert in enumerate(certs):
        _check_decodes(cert, index)
    return certs


def _check_decodes(cert: x509.Certificate, index: int) -> None:
    """Decode names and extensions now, so later use cannot fail with anything but ParseError."""
    try:
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
        _ = cert.extensions
    except (ValueError, KeyError, TypeError, x509.DuplicateExtension) as exc:
        raise ParseError("certificate", f"certificate {index + 1} does not decode: {exc}") from exc
