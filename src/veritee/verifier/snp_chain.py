"""The SEV-SNP certificate chain: VCEK/VLEK → ASK/ASVK → trusted ARK, CRLs, and its memo.

:func:`verified_chain` checks the chain at a verification time and returns what the report
checks need from the VEK (its kind, key, hwID and TCB extensions).  A chip presents the same
VEK at every attestation, so a verified chain is remembered in :data:`CHAIN_MEMO` (see
:mod:`veritee.verifier.chain_memo`): keyed by the SHA-256 of the DER of the VEK and of every
certificate supplied with it, by the processor generation, by the trust anchors (the pinned AMD
ARKs or the exact ARKs configured) and by the CRLs, and served only inside the window in which
the ARK, ASK/ASVK and VEK are valid and the CRLs current.  A repeat report then costs its
parsing, its bindings and one ECDSA P-384 verify.

A CRL applies to the chain when its issuer is the ARK (revoking ASKs/ASVKs) or the ASK/ASVK
(revoking VEKs).  An applicable CRL must be signed by that certificate (RSASSA-PSS SHA-384, salt
48), and the newest one of each issuer must be current (thisUpdate ≤ at ≤ nextUpdate); a
certificate listed in any of them is revoked.  Every CRL failure is step ``crl``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from veritee.errors import ParseError, VerificationError
from veritee.verifier.chain_memo import ChainMemo, Validity, der_sha256
from veritee.verifier.snp_report import PRODUCTS, Product
from veritee.verifier.snp_roots import fingerprint, pinned_arks, pinned_roots

_AMD_OID = "1.3.6.1.4.1.3704.1."
OID_PRODUCT_NAME: Final = x509.ObjectIdentifier(_AMD_OID + "2")
OID_BL_SPL: Final = x509.ObjectIdentifier(_AMD_OID + "3.1")
OID_TEE_SPL: Final = x509.ObjectIdentifier(_AMD_OID + "3.2")
OID_SNP_SPL: Final = x509.ObjectIdentifier(_AMD_OID + "3.3")
OID_UCODE_SPL: Final = x509.ObjectIdentifier(_AMD_OID + "3.8")
OID_FMC_SPL: Final = x509.ObjectIdentifier(_AMD_OID + "3.9")
OID_HW_ID: Final = x509.ObjectIdentifier(_AMD_OID + "4")
OID_CSP_ID: Final = x509.ObjectIdentifier(_AMD_OID + "5")

TCB_OIDS: Final = (
    ("bootloader", OID_BL_SPL),
    ("tee", OID_TEE_SPL),
    ("snp", OID_SNP_SPL),
    ("microcode", OID_UCODE_SPL),
    ("fmc", OID_FMC_SPL),
)
_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
#: How many verified chains are remembered (one per chip and TCB, under one trust setting).
MEMO_SIZE: Final = 64


@dataclass(frozen=True)
class Trust:
    """What a chain is checked against: ``arks`` replaces the pinned AMD ARKs when set."""

    arks: tuple[x509.Certificate, ...] | None
    crls: tuple[x509.CertificateRevocationList, ...]
    key: tuple[object, ...]  # content digests of both, for the memo

    @classmethod
    def of(
        cls,
        arks: Sequence[x509.Certificate] | None,
        crls: Sequence[x509.CertificateRevocationList] = (),
    ) -> Trust:
        anchors = None if arks is None else tuple(der_sha256(a) for a in arks)
        crl_digests = tuple(hashlib.sha256(c.public_bytes(Encoding.DER)).digest() for c in crls)
        return cls(None if arks is None else tuple(arks), tuple(crls), (anchors, crl_digests))


@dataclass(frozen=True)
class VerifiedChain:
    """A chain that verified, and what the report checks need from its VEK."""

    vek_kind: str  # "vcek" | "vlek"
    product: Product | None
    key: ec.EllipticCurvePublicKey
    hw_id: bytes | None  # the raw hwID extension value
    tcb: tuple[tuple[str, object], ...]  # (field, the VEK's value or None), per TCB_OIDS
    pinned: bool  # anchored at one of AMD's own ARKs


CHAIN_MEMO: Final[ChainMemo[tuple[object, ...], VerifiedChain]] = ChainMemo(MEMO_SIZE)


def clear_chain_memo() -> None:
    """Forget every verified chain, as for chips never seen before."""
    CHAIN_MEMO.clear()


def verified_chain(
    vek: x509.Certificate,
    supplied: Sequence[x509.Certificate],
    product: Product | None,
    trust: Trust,
    when: dt.datetime,
    digest: Callable[[x509.Certificate], bytes] = der_sha256,
) -> VerifiedChain:
    """Check ``vek`` up to a trusted ARK at ``when`` (remembered; see the module docstring).
    ``digest`` gives a certificate's SHA-256(DER), for a caller that knows some already.
    Raises :class:`~veritee.errors.VerificationError` at step "ark", "ask", "vek" or "crl"."""
    key = (digest(vek), tuple(digest(c) for c in supplied), product, trust.key)
    found = CHAIN_MEMO.get(key, when)
    if found is not None:
        return found
    chain = build_chain(vek, supplied, product, trust.arks)
    ark, ask = check_chain(chain, when)
    crls = _check_crls(trust.crls, ark, ask, vek, when)
    vek_key = public_key(vek)
    assert isinstance(vek_key, ec.EllipticCurvePublicKey)  # checked by check_chain
    result = VerifiedChain(
        vek_kind=chain.vek_kind,
        product=product,
        key=vek_key,
        hw_id=ext(vek, OID_HW_ID),
        tcb=tuple((field, _tcb_value(vek, oid)) for field, oid in TCB_OIDS),
        pinned=der_sha256(ark) in _pinned_ark_digests(),
    )
    CHAIN_MEMO.put(key, result, Validity.of((ark, ask, vek), crls))
    return result


def _tcb_value(vek: x509.Certificate, oid: x509.ObjectIdentifier) -> object:
    raw = ext(vek, oid)
    return None if raw is None else asn1(core.Integer, raw)


@functools.cache
def _pinned_ark_digests() -> frozenset[bytes]:
    return frozenset(der_sha256(c) for c in pinned_arks())


# ------------------------------------------------------------------------ the chain


@dataclass(frozen=True)
class Chain:
    """The certificates one verification works with."""

    vek: x509.Certificate
    vek_kind: str  # "vcek" | "vlek"
    product: Product | None
    intermediates: tuple[x509.Certificate, ...]
    supplied_arks: tuple[x509.Certificate, ...]
    trusted_arks: tuple[x509.Certificate, ...]  # for this product
    known_arks: tuple[x509.Certificate, ...]  # for any product


def build_chain(
    vek: x509.Certificate,
    supplied: Sequence[x509.Certificate],
    product: Product | None,
    trusted_arks: Sequence[x509.Certificate] | None,
) -> Chain:
    kind = vek_kind(vek)
    others = [c for c in supplied if not is_ec(c)]
    arks = tuple(c for c in others if c.subject == c.issuer)
    intermediates = [c for c in others if c.subject != c.issuer]
    pinned = [pinned_roots()[product]] if product else list(pinned_roots().values())
    intermediates += [r.asvk if kind == "vlek" else r.ask for r in pinned]
    if trusted_arks is not None:
        trusted = known = tuple(trusted_arks)
    else:
        trusted = tuple(r.ark for r in pinned)
        known = tuple(r.ark for r in pinned_roots().values())
    return Chain(vek, kind, product, tuple(intermediates), arks, trusted, known)


def _signs(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    key = public_key(issuer)
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except (InvalidSignature, ValueError):
        return False
    return True


def check_chain(chain: Chain, when: dt.datetime) -> tuple[x509.Certificate, x509.Certificate]:
    """Check ARK → ASK/ASVK → VEK at ``when``; return the trusted ARK and the ASK/ASVK."""
    vek = chain.vek
    ask = next((c for c in chain.intermediates if c.subject == vek.issuer), chain.intermediates[0])
    known = {der_sha256(c) for c in chain.known_arks}
    for supplied in chain.supplied_arks:
        if der_sha256(supplied) not in known:
            raise VerificationError(
                "ark",
                f"ARK {cn(supplied)!r} (SHA-256 {fingerprint(supplied)}) is not a trusted "
                "AMD root; a test root must be configured explicitly (--trust-root)",
            )
    candidates = [c for c in chain.trusted_arks if c.subject == ask.issuer]
    if not candidates:
        raise VerificationError("ark", f"no trusted ARK named {cn_of(ask.issuer)!r}")
    # Test roots reuse AMD's names, so pick the trusted ARK whose key signed this ASK (with one
    # candidate there is nothing to pick: the ASK check below verifies that signature).
    ark = candidates[0]
    if len(candidates) > 1:
        ark = next((c for c in candidates if _signs(c, ask)), ark)
    _check_signed("ark", ark, ark, when)
    _check_signed("ask", ask, ark, when)
    _check_signed("vek", vek, ask, when)
    if chain.vek_kind not in ("vcek", "vlek"):
        raise VerificationError("vek", f"{cn(vek)!r} is neither a VCEK nor a VLEK")
    key = public_key(vek)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise VerificationError("vek", "the VEK's key is not ECDSA P-384")
    named = vek_product(vek)
    if (
        chain.product is not None
        and ext(vek, OID_PRODUCT_NAME) is not None
        and named != chain.product
    ):
        raise VerificationError(
            "vek",
            f"the VEK is for {named or 'an unknown product'}, the "
            f"report is from a {chain.product} processor",
        )
    return ark, ask


def _check_signed(
    step: str, cert: x509.Certificate, issuer: x509.Certificate, when: dt.datetime
) -> None:
    """RSASSA-PSS SHA-384 / MGF1-SHA-384 / salt 48 by ``issuer``, and validity at ``when``."""
    name = cn(cert)
    if cert.issuer != issuer.subject:
        raise VerificationError(
            step, f"{name!r} is issued by {cn_of(cert.issuer)!r}, not {cn(issuer)!r}"
        )
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise VerificationError(step, f"{name!r} is not signed with RSASSA-PSS")
    key = public_key(issuer)
    if not isinstance(key, rsa.RSAPublicKey):
        raise VerificationError(step, f"issuer {cn(issuer)!r} has no RSA key")
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except (InvalidSignature, ValueError) as exc:
        raise VerificationError(
            step, f"{name!r} is not signed by {cn(issuer)!r} with RSASSA-PSS SHA-384 salt 48"
        ) from exc
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise VerificationError(
            step,
            f"{name!r} is valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d}, not at "
            f"{when:%Y-%m-%dT%H:%M:%SZ}",
        )


# ------------------------------------------------------------------------------ CRLs


@functools.lru_cache(maxsize=32)
def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from DER or PEM, parsed once per content.  Raises
    :class:`~veritee.errors.ParseError` when it is neither."""
    try:
        if data.lstrip()[:5] == b"-----":
            return x509.load_pem_x509_crl(data.strip())
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise ParseError("amd crl", f"not a DER or PEM CRL: {exc}") from exc


def _check_crls(
    crls: Sequence[x509.CertificateRevocationList],
    ark: x509.Certificate,
    ask: x509.Certificate,
    vek: x509.Certificate,
    when: dt.datetime,
) -> list[x509.CertificateRevocationList]:
    """Check the CRLs of the ARK (over the ASK) and of the ASK (over the VEK); return the
    newest CRL of each issuer, whose currency bounds the verdict."""
    newest: list[x509.CertificateRevocationList] = []
    for issuer, cert in ((ark, ask), (ask, vek)):
        mine = [c for c in crls if c.issuer == issuer.subject]
        if not mine:
            continue
        for crl in mine:
            _check_crl_signature(crl, issuer)
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise VerificationError(
                    "crl",
                    f"{cn(cert)!r} (serial {cert.serial_number}) is revoked by the CRL of "
                    f"{cn(issuer)!r} issued {crl.last_update_utc:%Y-%m-%d}",
                )
        last = max(mine, key=lambda c: c.last_update_utc)
        ends = last.next_update_utc
        if not last.last_update_utc <= when <= (ends or when):
            until = f"{ends:%Y-%m-%d}" if ends else "open end"
            raise VerificationError(
                "crl",
                f"the newest CRL of {cn(issuer)!r} is current {last.last_update_utc:%Y-%m-%d} "
                f"to {until}, not at {when:%Y-%m-%dT%H:%M:%SZ}",
            )
        newest.append(last)
    return newest


def _check_crl_signature(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> None:
    key = public_key(issuer)
    ok = isinstance(key, rsa.RSAPublicKey) and crl.signature_algorithm_oid == (
        SignatureAlgorithmOID.RSASSA_PSS
    )
    if ok:
        assert isinstance(key, rsa.RSAPublicKey)
        try:
            key.verify(crl.signature, crl.tbs_certlist_bytes, _PSS, hashes.SHA384())
        except (InvalidSignature, ValueError):
            ok = False
    if not ok:
        raise VerificationError(
            "crl",
            f"a CRL naming {cn(issuer)!r} is not signed by it with RSASSA-PSS SHA-384 salt 48",
        )


# --------------------------------------------------------------------------- helpers


def public_key(cert: x509.Certificate) -> object:
    try:
        return cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None


def is_ec(cert: x509.Certificate) -> bool:
    return isinstance(public_key(cert), ec.EllipticCurvePublicKey)


def cn_of(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else name.rfc4514_string()
    return value if isinstance(value, str) else value.decode(errors="replace")


def cn(cert: x509.Certificate) -> str:
    return cn_of(cert.subject)


def ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    """The raw extnValue of an extension cryptography does not know, or None."""
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension) as exc:
        raise VerificationError("vek", f"{cn(cert)!r} has malformed extensions: {exc}") from exc
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def asn1(kind: type[core.Asn1Value], raw: bytes) -> object:
    """Decode one DER value with an asn1crypto type; None when it is malformed."""
    try:
        value: object = kind.load(raw, strict=True).native
    except (ValueError, TypeError):
        return None
    return value


@functools.lru_cache(maxsize=256)
def vek_kind(cert: x509.Certificate) -> str:
    """The kind of VEK, "vcek", "vlek" or "unknown": by its CN, else by its AMD extensions
    (remembered per certificate, by content)."""
    name = cn(cert)
    if name == "SEV-VCEK":
        return "vcek"
    if name == "SEV-VLEK":
        return "vlek"
    try:
        if ext(cert, OID_HW_ID) is not None:
            return "vcek"
        if ext(cert, OID_CSP_ID) is not None:
            return "vlek"
    except VerificationError:
        pass
    return "unknown"


@functools.lru_cache(maxsize=256)
def vek_product(cert: x509.Certificate) -> Product | None:
    """The generation named by the VEK's productName extension ("Milan-B0" → "Milan")."""
    try:
        raw = ext(cert, OID_PRODUCT_NAME)
    except VerificationError:
        return None
    name = None if raw is None else asn1(core.IA5String, raw)
    if not isinstance(name, str):
        return None
    base = name.split("-")[0]
    return next((p for p in PRODUCTS if p == base), None)


def product_by_issuer(vek: x509.Certificate) -> Product | None:
    """For v2 reports without productName: the generation whose pinned ASK/ASVK issued the VEK."""
    for product, roots in pinned_roots().items():
        if vek.issuer in (roots.ask.subject, roots.asvk.subject):
            return product
    return None
