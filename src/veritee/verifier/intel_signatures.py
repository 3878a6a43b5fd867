"""The signatures of an Intel DCAP quote, checked offline up to a given root.

This is the part of quote verification that needs nothing but the quote: the PCK chain of
certification data type 5 up to a trusted root certificate, the QE report signed by the PCK
leaf, the QE report binding the attestation key, and the quote signed by that key.  It says
the quote was made by a genuine quoting enclave on a platform whose PCK chains to the root;
it says nothing of the platform's TCB status, revocation or the QE's identity, which need
Intel's collateral (:class:`~veritee.verifier.intel.IntelVerifier` does the full check).
It exists to show that real quotes which come without collateral (the RA-TLS sample
certificates) are genuine.

Each failure is a :class:`~veritee.errors.VerificationError` with one of these steps:
``parse``, ``cert_data``, ``pck_chain``, ``root_ca``, ``qe_report_signature``,
``qe_report_data``, ``quote_signature``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.errors import ParseError, VerificationError
from veritee.pem import load_certificates
from veritee.verifier import intel_claims
from veritee.verifier.intel_quote import CERT_DATA_PCK_CHAIN, Quote, parse_quote

__all__ = ["verify_quote_signatures"]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _raw_signature(raw: bytes) -> bytes:
    """DER for a raw 64-byte ECDSA P-256 ``r || s`` signature."""
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def _ec_key(cert: x509.Certificate, what: str) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError("pck_chain", f"the {what} has no EC key")
    return key


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _check_validity(cert: x509.Certificate, at: dt.datetime) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise VerificationError(
            "pck_chain",
            f"'{_name(cert)}' is valid {cert.not_valid_before_utc:%Y-%m-%d} .. "
            f"{cert.not_valid_after_utc:%Y-%m-%d}, not at {at:%Y-%m-%dT%H:%M:%SZ}",
        )


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_chain(
    chain: Sequence[x509.Certificate], roots: Sequence[bytes], at: dt.datetime
) -> bytes:
    """Verify leaf → ... → a trusted root; returns the root's DER."""
    trusted = [x509.load_der_x509_certificate(der) for der in roots]
    if not trusted:
        raise VerificationError("root_ca", "no trusted root given")
    for cert, issuer in itertools.pairwise(chain):
        if not _signed_by(cert, issuer):
            raise VerificationError(
                "pck_chain", f"'{_name(cert)}' is not signed by '{_name(issuer)}'"
            )
    for cert in chain:
        _check_validity(cert, at)
    top = chain[-1]
    top_der = top.public_bytes(Encoding.DER)
    for root, root_der in zip(trusted, roots, strict=True):
        if hmac.compare_digest(top_der, root_der):
            if not _signed_by(root, root):
                raise VerificationError("root_ca", f"the root '{_name(root)}' is not self-signed")
            return root_der
        if top.issuer == root.subject and _signed_by(top, root):
            _check_validity(root, at)
            return root_der
    raise VerificationError(
        "root_ca",
        f"the PCK chain ends in '{_name(top)}' (SHA-256 {hashlib.sha256(top_der).hexdigest()}), "
        "which is not one of the trusted roots",
    )


def verify_quote_signatures(
    raw_quote: bytes, roots: Sequence[bytes], at: dt.datetime
) -> dict[str, Any]:
    """Check a quote's signatures offline (see the module docstring) as of ``at``.

    ``roots`` are trusted root certificates (DER): Intel's pinned root
    (:func:`~veritee.verifier.intel_root.intel_root_ca`) or a test root.  Returns the quote's
    Trustee-style claims plus ``signatures``: the root's SHA-256, the PCK leaf's subject and
    the FMSPC.
    """
    try:
        quote = parse_quote(raw_quote)
    except ParseError as exc:
        raise VerificationError("parse", str(exc)) from exc
    at = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    auth = quote.auth
    if auth.cert_data_type != CERT_DATA_PCK_CHAIN:
        raise VerificationError("cert_data", f"certification data type {auth.cert_data_type}")
    try:
        chain = load_certificates(quote.pck_chain_pem)
    except ParseError as exc:
        raise VerificationError("pck_chain", str(exc)) from exc
    root_der = _check_chain(chain, roots, at)
    leaf = chain[0]
    try:
        _ec_key(leaf, "PCK leaf").verify(
            _raw_signature(auth.qe_report_signature), auth.qe_report.raw, _ECDSA_SHA256
        )
    except InvalidSignature as exc:
        raise VerificationError(
            "qe_report_signature", "the QE report is not signed by the PCK leaf"
        ) from exc
    binding = hashlib.sha256(auth.attestation_key + auth.qe_auth_data).digest() + bytes(32)
    if not hmac.compare_digest(binding, auth.qe_report.report_data):
        raise VerificationError(
            "qe_report_data",
            "the QE report's REPORTDATA is not SHA-256(attestation key || QE auth data)",
        )
    _check_quote_signature(quote)
    claims = (
        intel_claims.tdx_claims(quote) if quote.tee == "tdx" else intel_claims.sgx_claims(quote)
    )
    claims["signatures"] = {
        "root_ca_sha256": hashlib.sha256(root_der).hexdigest(),
        "pck_leaf": _name(leaf),
        "qe_mr_signer": auth.qe_report.mr_signer.hex(),
        "qe_isv_svn": auth.qe_report.isv_svn,
    }
    return claims


def _check_quote_signature(quote: Quote) -> None:
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + quote.auth.attestation_key
        )
        key.verify(
            _raw_signature(quote.auth.signature), quote.raw[: quote.signed_len], _ECDSA_SHA256
        )
    except ValueError as exc:
        raise VerificationError(
            "quote_signature", f"the attestation key is not a P-256 point: {exc}"
        ) from exc
    except InvalidSignature as exc:
        raise VerificationError(
            "quote_signature", "the quote is not signed by its attestation key"
        ) from exc
