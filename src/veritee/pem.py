"""Certificate loading that tolerates comment lines between PEM blocks."""

from __future__ import annotations

import re

from cryptography import x509

from veritee.errors import ParseError

_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.DOTALL
)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Load every certificate in ``data``: PEM blocks (any text around them) or one DER cert."""
    if b"-----BEGIN" not in data:
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError as exc:
            raise ParseError("certificate", f"not PEM and not DER: {exc}") from exc
    certs: list[x509.Certificate] = []
    for match in _BLOCK.finditer(data):
        block = b"-----BEGIN CERTIFICATE-----\n" + match.group(1) + b"\n-----END CERTIFICATE-----\n"
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise ParseError("certificate", f"PEM block {len(certs) + 1} is invalid: {exc}") from exc
    if not certs:
        raise ParseError("certificate", "no CERTIFICATE block found")
    return certs
