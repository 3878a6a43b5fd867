"""NVIDIA RIM signatures: a RIM's enveloped XML-DSig and its signer chain up to a trusted RIM
root, checked as of a given time (:func:`verify_rim`).

:func:`chain_to_root` is also what the RIM collateral source uses to find the root a served
RIM chains to.  The document model and parsing are in :mod:`veritee.verifier.nvidia_rim`; the
RIM returned by :func:`verify_rim` is read from the signed content, not the document as given.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from signxml.exceptions import SignXMLException
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from veritee.errors import VerificationError
from veritee.verifier.nvidia_rim import SWID_NS, Rim, _parse_xml, _rim_from

__all__ = ["chain_to_root", "verify_rim"]


def verify_rim(data: bytes, *, roots: Sequence[x509.Certificate], at: dt.datetime) -> Rim:
    """Parse ``data``, check its signer chain to one of ``roots`` as of ``at`` and its
    XML-DSig, and return the RIM as read from the signed content.

    Steps: ``rim_chain`` (a broken chain, an issuer that is not a CA, or a chain that ends at no
    root in ``roots``), ``rim_expired`` (a certificate not valid at ``at``; the message says
    when it expired), ``rim_signature`` (signxml rejects the signature or a reference digest).
    A document that does not parse is a :class:`ParseError`."""
    when = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    root = _parse_xml(data)
    chain = _rim_from(root, None, None).signer_chain  # a broken document is a ParseError
    full = chain_to_root(chain, roots)
    _check_validity(full, when)
    config = SignatureConfiguration(location="./", expect_references=1, verification_time=when)
    try:
        result = XMLVerifier().verify(root, x509_cert=chain[0], expect_config=config)
    except (SignXMLException, InvalidSignature, ValueError) as exc:
        raise VerificationError(
            "rim_signature", f"the XML signature does not verify: {exc}"
        ) from None
    if not isinstance(result, VerifyResult):  # pragma: no cover - expect_references=1
        raise VerificationError("rim_signature", "expected one signed reference")
    signed = result.signed_xml
    if signed is None or signed.tag != f"{{{SWID_NS}}}SoftwareIdentity":
        raise VerificationError("rim_signature", "the signature does not cover the whole tag")
    return _rim_from(signed, chain, None)


def chain_to_root(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> tuple[x509.Certificate, ...]:
    """``chain`` (leaf first) linked up to one of ``roots``: its last certificate is a root
    (same DER) or was issued by one.  Every link is checked; failures are ``rim_chain``."""
    if not chain:
        raise VerificationError("rim_chain", "the RIM carries no signer certificate")
    ders = {r.public_bytes(Encoding.DER): r for r in roots}
    last = chain[-1]
    if last.public_bytes(Encoding.DER) in ders:
        full = tuple(chain)
    else:
        issuer = next((r for r in roots if _issued_by(last, r)), None)
        if issuer is None:
            raise VerificationError(
                "rim_chain",
                f"the signer chain ends at '{_cn(last)}' (issuer '{_cn_of(last.issuer)}'), "
                "which is not a trusted RIM root",
            )
        full = (*chain, issuer)
    for cert, issuer in itertools.pairwise(full):
        if not _issued_by(cert, issuer):
            raise VerificationError(
                "rim_chain", f"'{_cn(cert)}' is not signed by the next certificate '{_cn(issuer)}'"
            )
        if not _is_ca(issuer):
            raise VerificationError("rim_chain", f"'{_cn(issuer)}' is not a CA certificate")
    return full


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_validity(chain: Sequence[x509.Certificate], at: dt.datetime) -> None:
    for cert in chain:
        if at > cert.not_valid_after_utc:
            raise VerificationError(
                "rim_expired",
                f"the RIM signing certificate '{_cn(cert)}' expired at "
                f"{_iso(cert.not_valid_after_utc)} (checked at {_iso(at)})",
            )
        if at < cert.not_valid_before_utc:
            raise VerificationError(
                "rim_expired",
                f"the RIM signing certificate '{_cn(cert)}' is not valid before "
                f"{_iso(cert.not_valid_before_utc)} (checked at {_iso(at)})",
            )


def _cn(cert: x509.Certificate) -> str:
    return _cn_of(cert.subject)


def _cn_of(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
