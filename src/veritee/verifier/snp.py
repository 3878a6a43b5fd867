"""AMD SEV-SNP verifier: report → VCEK/VLEK → ASK/ASVK → pinned ARK.

Checks run in this order; a failure stops there and names its step:

========================  ===================================================================
``collateral``            no VCEK/VLEK: none supplied, none in the evidence, no :class:`VekSource`
``ark``                   a supplied ARK is not one of the trusted ARKs (compared by DER), or the
                          ARK's self-signature (RSASSA-PSS SHA-384, MGF1-SHA-384, salt 48) or
                          validity fails
``ask``                   the ASK/ASVK is not signed by the ARK (same PSS parameters) or not valid
``vek``                   the VCEK/VLEK is not signed by the ASK/ASVK, is not a P-384 key, is not
                          valid at ``options.when()``, or names another processor generation
``signing_key``           the report's SIGNING_KEY (0 VCEK, 1 VLEK) does not match the certificate,
                          or SIGNATURE_ALGO is not 1 (ECDSA P-384 SHA-384)
``chip_id``               the VCEK's hwID differs from CHIP_ID (64 bytes; the first 8 on Turin)
``vek_tcb``               the VEK's blSPL/teeSPL/snpSPL/ucodeSPL (and fmcSPL on Turin) differ from
                          REPORTED_TCB
``report_signature``      ECDSA P-384 SHA-384 over bytes 0x000..0x29F fails
``report_data``           ``options.report_data`` differs from REPORT_DATA (zero-padded to 64)
``init_data``             ``options.init_data`` differs from HOST_DATA (zero-padded to 32)
``debug``                 POLICY.DEBUG is set and ``options.allow_debug`` is false
========================  ===================================================================

The two binding checks (``chip_id``, ``vek_tcb``) deliberately run before the
report signature, so a tampered CHIP_ID or REPORTED_TCB is named as such.  VMPL
is reported in the claims, never rejected.

AMD publishes no TCB status service comparable to Intel's, so a verified report
has ``tcb_status`` "NotApplicable" (never "UpToDate", which a naive policy would
trust): the VEK binding only proves the TCB it reports is the one its VCEK was
issued for.  Minimum-TCB rules belong in policy, over the ``reported_tcb_*``
claims.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from veritee.errors import CollateralError, ParseError, VerificationError
from veritee.pem import load_certificates
from veritee.verifier.base import JSON, TCB_NOT_APPLICABLE, Verdict, VerifyOptions, pad, rejected
from veritee.verifier.snp_evidence import parse_evidence
from veritee.verifier.snp_report import (
    PRODUCTS,
    SIG_ALGO_ECDSA_P384_SHA384,
    SIGNING_KEY_VCEK,
    SIGNING_KEY_VLEK,
    AttestationReport,
    Product,
    parse_report,
)
from veritee.verifier.snp_roots import fingerprint, pinned_arks, pinned_roots

TEE: Final = "snp"

_AMD_OID = "1.3.6.1.4.1.3704.1."
OID_PRODUCT_NAME: Final = x509.ObjectIdentifier(_AMD_OID + "2")
OID_BL_SPL: Final = x509.ObjectIdentifier(_AMD_OID + "3.1")
OID_TEE_SPL: Final = x509.ObjectIdentifier(_AMD_OID + "3.2")
OID_SNP_SPL: Final = x509.ObjectIdentifier(_AMD_OID + "3.3")
OID_UCODE_SPL: Final = x509.ObjectIdentifier(_AMD_OID + "3.8")
OID_FMC_SPL: Final = x509.ObjectIdentifier(_AMD_OID + "3.9")
OID_HW_ID: Final = x509.ObjectIdentifier(_AMD_OID + "4")
OID_CSP_ID: Final = x509.ObjectIdentifier(_AMD_OID + "5")

_TCB_OIDS: Final = (
    ("bootloader", OID_BL_SPL),
    ("tee", OID_TEE_SPL),
    ("snp", OID_SNP_SPL),
    ("microcode", OID_UCODE_SPL),
    ("fmc", OID_FMC_SPL),
)
_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_KEY_NAMES: Final = {SIGNING_KEY_VCEK: "vcek", SIGNING_KEY_VLEK: "vlek", 7: "none"}


class VekSource(Protocol):
    """Where a VCEK comes from when the evidence and the caller supply none (e.g. AMD KDS).

    ``product`` is "Milan", "Genoa" or "Turin"; ``chip_id`` is the report's full
    64-byte CHIP_ID (KDS wants only the first 8 bytes on Turin); ``reported_tcb``
    has keys "bootloader", "tee", "snp", "microcode" and, on Turin, "fmc".
    Returns the VCEK as DER or PEM; raises
    :class:`~veritee.errors.CollateralError` when it cannot be had.
    ``cert_chain`` returns the ASK (or ASVK) and ARK above it, as KDS serves them;
    the ARK is still checked against the trusted ARKs.
    """

    def vek_for(self, product: str, chip_id: bytes, reported_tcb: Mapping[str, int]) -> bytes: ...

    def cert_chain(self, product: str, signer: Literal["vcek", "vlek"]) -> bytes: ...


@dataclass(frozen=True)
class _Chain:
    """The certificates one verification works with."""

    vek: x509.Certificate
    vek_kind: str  # "vcek" | "vlek"
    product: Product | None
    intermediates: tuple[x509.Certificate, ...]
    supplied_arks: tuple[x509.Certificate, ...]
    trusted_arks: tuple[x509.Certificate, ...]  # for this product
    known_arks: tuple[x509.Certificate, ...]  # for any product


class SnpVerifier:
    """Verify SEV-SNP evidence (see the module docstring for the steps)."""

    tee = TEE

    def __init__(
        self,
        *,
        cert_chain: bytes | None = None,
        vek_source: VekSource | None = None,
        trusted_arks: Sequence[x509.Certificate] | None = None,
    ) -> None:
        """``cert_chain``: PEM (comments allowed) or one DER certificate, holding the VCEK/VLEK
        and optionally the ASK/ASVK and ARK.  ``trusted_arks`` replaces the pinned AMD ARKs.
        """
        self._certs = tuple(load_certificates(cert_chain)) if cert_chain is not None else ()
        self._vek_source = vek_source
        self._trusted_arks = tuple(trusted_arks) if trusted_arks is not None else None

    def verify(self, evidence: bytes, options: VerifyOptions) -> Verdict:
        """Verify one piece of evidence.

        Raises :class:`~veritee.errors.ParseError` for evidence that does not
        parse, and lets a :class:`VekSource`'s
        :class:`~veritee.errors.CollateralError` through; every failed check is a
        rejected :class:`Verdict` carrying the report's claims.
        """
        parsed = parse_evidence(evidence)
        report = parsed.report
        try:
            vek, supplied = self._find_vek(report, parsed.certificates)
        except VerificationError as exc:
            return rejected(TEE, exc, claims=snp_claims(report))
        product = report.product or _vek_product(vek) or _product_by_issuer(vek)
        chain = _build_chain(vek, supplied, product, self._trusted_arks)
        if chain.product is not None and report.product is None:
            report = parse_report(report.raw, chain.product)
        claims = snp_claims(report, chain.product)
        try:
            ark = _check_chain(chain, _utc(options.when()))
            if _der(ark) not in _pinned_ark_ders():
                claims["emulated"] = True
            _check_report(report, chain, options)
        except VerificationError as exc:
            return rejected(TEE, exc, claims=claims)
        return Verdict(tee=TEE, verified=True, tcb_status=TCB_NOT_APPLICABLE, claims=claims)

    # ------------------------------------------------------------------ collateral

    def _find_vek(
        self,
        report: AttestationReport,
        embedded: Sequence[x509.Certificate],
    ) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
        """The VEK and every other supplied certificate (caller's first, then the evidence's)."""
        supplied = self._certs + tuple(embedded)
        veks = [c for c in (self._certs or tuple(embedded)) if _is_ec(c)]
        if not veks:
            veks = [c for c in supplied if _is_ec(c)]
        if veks:
            wanted = "vlek" if report.signing_key == SIGNING_KEY_VLEK else "vcek"
            best = next((c for c in veks if _vek_kind(c) == wanted), veks[0])
            return best, supplied
        vek, above = self._fetch_vek(report)
        return vek, supplied + above

    def _fetch_vek(
        self, report: AttestationReport
    ) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
        """The VCEK from the VEK source, and the ASK/ARK it serves above it."""
        if self._vek_source is None:
            raise VerificationError(
                "collateral",
                "no VCEK/VLEK: pass a certificate chain or configure a VEK source (AMD KDS)",
            )
        if report.signing_key != SIGNING_KEY_VCEK:
            raise VerificationError(
                "collateral", "the report is not VCEK-signed and no VLEK certificate was supplied"
            )
        if not any(report.chip_id):
            raise VerificationError(
                "collateral", "CHIP_ID is masked, so the VCEK cannot be looked up; supply it"
            )
        last: CollateralError | None = None
        for product in _candidate_products(report):
            try:
                data = self._vek_source.vek_for(
                    product, report.chip_id, report.reported_tcb.as_dict()
                )
            except CollateralError as exc:
                last = exc
                continue
            try:
                certs = load_certificates(data)
            except ParseError as exc:
                raise VerificationError(
                    "collateral", f"VEK source returned no certificate: {exc}"
                ) from exc
            found = [c for c in certs if _is_ec(c)]
            if not found:
                raise VerificationError("collateral", "VEK source returned no EC certificate")
            return found[0], self._chain_above(product)
        assert last is not None
        raise last

    def _chain_above(self, product: str) -> tuple[x509.Certificate, ...]:
        """The ASK and ARK the VEK source serves, if it can.

        AMD's own ASKs are pinned, so for real hardware this adds nothing that
        is needed; a test root's ASK can only come from here.  Whatever comes
        back is still checked against the trusted ARKs.
        """
        assert self._vek_source is not None
        try:
            return tuple(load_certificates(self._vek_source.cert_chain(product, "vcek")))
        except (CollateralError, ParseError):
            return ()


def verify_vek_chain(
    vek: x509.Certificate,
    certificates: Sequence[x509.Certificate] = (),
    *,
    when: dt.datetime,
    product: Product | None = None,
    trusted_arks: Sequence[x509.Certificate] | None = None,
) -> Product | None:
    """Check that ``vek`` (a VCEK or VLEK) chains to a trusted ARK at ``when``.

    ``certificates`` may hold the ASK/ASVK and ARK; missing ones come from the
    pinned roots of ``product`` (or of every generation when it is None, in which
    case the VEK's productName or issuer decides).  ``trusted_arks`` replaces the
    pinned ARKs.  Returns the processor generation, if known; raises
    :class:`~veritee.errors.VerificationError` at step "ark", "ask" or "vek".
    """
    chain = _build_chain(
        vek, certificates, product or _vek_product(vek) or _product_by_issuer(vek), trusted_arks
    )
    _check_chain(chain, _utc(when))
    return chain.product


def _build_chain(
    vek: x509.Certificate,
    supplied: Sequence[x509.Certificate],
    product: Product | None,
    trusted_arks: Sequence[x509.Certificate] | None,
) -> _Chain:
    kind = _vek_kind(vek)
    others = [c for c in supplied if not _is_ec(c)]
    arks = tuple(c for c in others if c.subject == c.issuer)
    intermediates = [c for c in others if c.subject != c.issuer]
    pinned = [pinned_roots()[product]] if product else list(pinned_roots().values())
    intermediates += [r.asvk if kind == "vlek" else r.ask for r in pinned]
    if trusted_arks is not None:
        trusted = known = tuple(trusted_arks)
    else:
        trusted = tuple(r.ark for r in pinned)
        known = tuple(r.ark for r in pinned_roots().values())
    return _Chain(vek, kind, product, tuple(intermediates), arks, trusted, known)


# ---------------------------------------------------------------------- chain checks


@functools.cache
def _pinned_ark_ders() -> frozenset[bytes]:
    return frozenset(_der(c) for c in pinned_arks())


def _signs(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    key = _public_key(issuer)
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except (InvalidSignature, ValueError):
        return False
    return True


def _check_chain(chain: _Chain, when: dt.datetime) -> x509.Certificate:
    """Check ARK → ASK/ASVK → VEK at ``when``; return the trusted ARK that anchors it."""
    vek = chain.vek
    ask = next((c for c in chain.intermediates if c.subject == vek.issuer), chain.intermediates[0])
    known_der = {_der(c) for c in chain.known_arks}
    for supplied in chain.supplied_arks:
        if _der(supplied) not in known_der:
            raise VerificationError(
                "ark",
                f"ARK {_cn(supplied)!r} (SHA-256 {fingerprint(supplied)}) is not a trusted "
                "AMD root; a test root must be configured explicitly (--trust-root)",
            )
    candidates = [c for c in chain.trusted_arks if c.subject == ask.issuer]
    if not candidates:
        raise VerificationError("ark", f"no trusted ARK named {_cn_of(ask.issuer)!r}")
    # Test roots reuse AMD's names, so pick the trusted ARK whose key signed this ASK.
    ark = next((c for c in candidates if _signs(c, ask)), candidates[0])
    _check_signed("ark", ark, ark, when)
    _check_signed("ask", ask, ark, when)
    _check_signed("vek", vek, ask, when)
    if chain.vek_kind not in ("vcek", "vlek"):
        raise VerificationError("vek", f"{_cn(vek)!r} is neither a VCEK nor a VLEK")
    key = _public_key(vek)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise VerificationError("vek", "the VEK's key is not ECDSA P-384")
    named = _vek_product(vek)
    if (
        chain.product is not None
        and _ext(vek, OID_PRODUCT_NAME) is not None
        and named != chain.product
    ):
        raise VerificationError(
            "vek",
            f"the VEK is for {named or 'an unknown product'}, the "
            f"report is from a {chain.product} processor",
        )
    return ark


def _check_signed(
    step: str, cert: x509.Certificate, issuer: x509.Certificate, when: dt.datetime
) -> None:
    """RSASSA-PSS SHA-384 / MGF1-SHA-384 / salt 48 by ``issuer``, and validity at ``when``."""
    name = _cn(cert)
    if cert.issuer != issuer.subject:
        raise VerificationError(
            step, f"{name!r} is issued by {_cn_of(cert.issuer)!r}, not {_cn(issuer)!r}"
        )
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise VerificationError(step, f"{name!r} is not signed with RSASSA-PSS")
    key = _public_key(issuer)
    if not isinstance(key, rsa.RSAPublicKey):
        raise VerificationError(step, f"issuer {_cn(issuer)!r} has no RSA key")
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except (InvalidSignature, ValueError) as exc:
        raise VerificationError(
            step, f"{name!r} is not signed by {_cn(issuer)!r} with RSASSA-PSS SHA-384 salt 48"
        ) from exc
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise VerificationError(
            step,
            f"{name!r} is valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d}, not at "
            f"{when:%Y-%m-%dT%H:%M:%SZ}",
        )


# --------------------------------------------------------------------- report checks


def _check_report(report: AttestationReport, chain: _Chain, options: VerifyOptions) -> None:
    key_name = _KEY_NAMES.get(report.signing_key, "reserved")
    if key_name != chain.vek_kind:
        raise VerificationError(
            "signing_key",
            f"report SIGNING_KEY is {key_name}, the certificate is a {chain.vek_kind.upper()}",
        )
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise VerificationError(
            "signing_key", f"SIGNATURE_ALGO {report.signature_algo} is not 1 (ECDSA P-384 SHA-384)"
        )
    if chain.vek_kind == "vcek":
        _check_chip_id(report, chain.vek, chain.product)
    _check_vek_tcb(report, chain.vek)
    _check_signature(report, chain.vek)
    if options.report_data is not None and not hmac.compare_digest(
        pad(options.report_data, 64), report.report_data
    ):
        raise VerificationError("report_data", "REPORT_DATA differs from the expected value")
    if options.init_data is not None and not hmac.compare_digest(
        pad(options.init_data, 32), report.host_data
    ):
        raise VerificationError("init_data", "HOST_DATA differs from the expected init-data digest")
    if report.policy.debug_allowed and not options.allow_debug:
        raise VerificationError("debug", "POLICY.DEBUG is set: the guest can be debugged")


def _check_chip_id(
    report: AttestationReport, vek: x509.Certificate, product: Product | None
) -> None:
    size = 8 if product == "Turin" else 64
    raw = _ext(vek, OID_HW_ID)
    if raw is None:
        raise VerificationError("chip_id", "the VCEK has no hwID extension")
    hw_id = raw if len(raw) == size else _asn1(core.OctetString, raw)
    if hw_id != report.chip_id[:size]:
        raise VerificationError("chip_id", "the VCEK's hwID differs from the report's CHIP_ID")


def _check_vek_tcb(report: AttestationReport, vek: x509.Certificate) -> None:
    reported = report.reported_tcb.as_dict()
    for field, oid in _TCB_OIDS:
        if field not in reported:
            continue
        raw = _ext(vek, oid)
        cert_value = None if raw is None else _asn1(core.Integer, raw)
        if cert_value != reported[field]:
            raise VerificationError(
                "vek_tcb",
                f"REPORTED_TCB {field} is {reported[field]}, the VEK was issued for {cert_value}",
            )


def _check_signature(report: AttestationReport, vek: x509.Certificate) -> None:
    r = int.from_bytes(report.signature_r, "little")
    s = int.from_bytes(report.signature_s, "little")
    key = _public_key(vek)
    assert isinstance(key, ec.EllipticCurvePublicKey)  # checked at step "vek"
    try:
        key.verify(encode_dss_signature(r, s), report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError) as exc:
        raise VerificationError(
            "report_signature", "the report signature does not verify with the VEK"
        ) from exc


# -------------------------------------------------------------------------- claims


def snp_claims(report: AttestationReport, product: Product | None = None) -> JSON:
    """Trustee's ``snp`` claims (same keys, types and hex encoding) plus veritee's extras."""
    policy, tcb = report.policy, report.reported_tcb
    return {
        "policy_abi_major": policy.abi_major,
        "policy_abi_minor": policy.abi_minor,
        "policy_smt_allowed": policy.smt_allowed,
        "policy_migrate_ma": policy.migrate_ma,
        "policy_debug_allowed": policy.debug_allowed,
        "policy_single_socket": policy.single_socket,
        "reported_tcb_bootloader": tcb.bootloader,
        "reported_tcb_tee": tcb.tee,
        "reported_tcb_snp": tcb.snp,
        "reported_tcb_microcode": tcb.microcode,
        "platform_tsme_enabled": report.platform_info.tsme_enabled,
        "platform_smt_enabled": report.platform_info.smt_enabled,
        "measurement": report.measurement.hex(),
        "report_data": report.report_data.hex(),
        "init_data": report.host_data.hex(),
        "chip_id": report.chip_id.hex(),
        # veritee's own
        "vmpl": report.vmpl,
        "report_version": report.version,
        "signing_key": _KEY_NAMES.get(report.signing_key, "reserved"),
        "product": report.product or product,
        "guest_svn": report.guest_svn,
        "host_data": report.host_data.hex(),
    }


# ------------------------------------------------------------------------- helpers


def _utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _public_key(cert: x509.Certificate) -> object:
    try:
        return cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None


def _is_ec(cert: x509.Certificate) -> bool:
    return isinstance(_public_key(cert), ec.EllipticCurvePublicKey)


def _cn_of(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else name.rfc4514_string()
    return value if isinstance(value, str) else value.decode(errors="replace")


def _cn(cert: x509.Certificate) -> str:
    return _cn_of(cert.subject)


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    """The raw extnValue of an extension cryptography does not know, or None."""
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension) as exc:
        raise VerificationError("vek", f"{_cn(cert)!r} has malformed extensions: {exc}") from exc
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _asn1(kind: Any, raw: bytes) -> object:
    """Decode one DER value with an asn1crypto type; None when it is malformed."""
    try:
        value: object = kind.load(raw, strict=True).native
    except (ValueError, TypeError):
        return None
    return value


def _vek_kind(cert: x509.Certificate) -> str:
    cn = _cn(cert)
    if cn == "SEV-VCEK":
        return "vcek"
    if cn == "SEV-VLEK":
        return "vlek"
    try:
        if _ext(cert, OID_HW_ID) is not None:
            return "vcek"
        if _ext(cert, OID_CSP_ID) is not None:
            return "vlek"
    except VerificationError:
        pass
    return "unknown"


def _vek_product(cert: x509.Certificate) -> Product | None:
    """The generation named by the VEK's productName extension ("Milan-B0" → "Milan")."""
    try:
        raw = _ext(cert, OID_PRODUCT_NAME)
    except VerificationError:
        return None
    name = None if raw is None else _asn1(core.IA5String, raw)
    if not isinstance(name, str):
        return None
    base = name.split("-")[0]
    return next((p for p in PRODUCTS if p == base), None)


def _product_by_issuer(vek: x509.Certificate) -> Product | None:
    """For v2 reports without productName: the generation whose pinned ASK/ASVK issued the VEK."""
    for product, roots in pinned_roots().items():
        if vek.issuer in (roots.ask.subject, roots.asvk.subject):
            return product
    return None


def _candidate_products(report: AttestationReport) -> Iterable[Product]:
    if report.product is not None:
        return (report.product,)
    if not any(report.chip_id[8:]):
        return ("Turin",)
    return ("Milan", "Genoa")
