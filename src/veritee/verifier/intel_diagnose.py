"""Name the failing step when dcap-qvl's chain check fails without saying why.

dcap-qvl alone decides whether a quote is accepted.  When it rejects a
certificate path with only "Failed to verify certificate chain", this module
re-reads the same certificates and CRLs with ``cryptography`` to tell the user
which of them is at fault.  It runs only on the failure path and can never turn
a rejection into an acceptance.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.errors import ParseError
from veritee.pem import load_certificates


def _signed_by(
    cert_or_crl: x509.Certificate | x509.CertificateRevocationList, issuer: x509.Certificate
) -> bool:
    try:
        key = issuer.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        if isinstance(cert_or_crl, x509.CertificateRevocationList):
            return cert_or_crl.is_signature_valid(key)
        cert_or_crl.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def diagnose_chain_failure(
    pck_chain_pem: bytes, pck_crl_der: bytes, root_crl_der: bytes, root_der: bytes, at: dt.datetime
) -> tuple[str, str]:
    """Return ``(step, reason)`` for a PCK path that dcap-qvl refused."""
    try:
        chain = load_certificates(pck_chain_pem)
        root = x509.load_der_x509_certificate(root_der)
        pck_crl = x509.load_der_x509_crl(pck_crl_der)
        root_crl = x509.load_der_x509_crl(root_crl_der)
    except (ParseError, ValueError) as exc:
        return "crl", f"a certificate or CRL does not parse: {exc}"
    leaf, inter = chain[0], chain[1] if len(chain) > 1 else None
    if inter is None:
        return "pck_chain", "the PCK chain has no intermediate CA"
    if not _signed_by(root_crl, root):
        return "crl", "the root CA CRL is not signed by the trusted root"
    if not _signed_by(pck_crl, inter):
        return "crl", "the PCK CRL is not signed by the PCK CA"
    if not _signed_by(inter, root) or not _signed_by(leaf, inter):
        return "pck_chain", "a PCK chain signature does not verify"
    for crl, name in ((pck_crl, "PCK CRL"), (root_crl, "root CA CRL")):
        if crl.next_update_utc is not None and at > crl.next_update_utc:
            return (
                "collateral_expiry",
                f"the {name} expired at {crl.next_update_utc:%Y-%m-%dT%H:%M:%SZ}",
            )
    for cert in (leaf, inter):
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            return (
                "collateral_expiry",
                f"'{cert.subject.rfc4514_string()}' is not valid at {at:%Y-%m-%dT%H:%M:%SZ}",
            )
    if pck_crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None:
        return "revoked", "the PCK certificate is revoked by the PCK CRL"
    if root_crl.get_revoked_certificate_by_serial_number(inter.serial_number) is not None:
        return "revoked", "the PCK CA certificate is revoked by the root CA CRL"
    return "pck_chain", "the PCK certificate chain does not verify"
