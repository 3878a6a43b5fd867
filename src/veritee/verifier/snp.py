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
``crl``                   with CRLs configured: the ASK/ASVK or VEK is revoked, or a CRL of the
                          chain is not signed by its issuer or not current
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

A verified chain is remembered by content and validity (:mod:`veritee.verifier.snp_chain`),
so a chip seen before costs its report's parsing, bindings and one ECDSA P-384 verify.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal, Protocol

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.errors import CollateralError, ParseError, VerificationError
from veritee.pem import load_certificates
from veritee.verifier.base import JSON, TCB_NOT_APPLICABLE, Verdict, VerifyOptions, pad, rejected
from veritee.verifier.chain_memo import der_sha256
from veritee.verifier.snp_chain import (
    Trust,
    VerifiedChain,
    asn1,
    is_ec,
    load_crl,
    product_by_issuer,
    vek_kind,
    vek_product,
    verified_chain,
)
from veritee.verifier.snp_evidence import parse_evidence
from veritee.verifier.snp_report import (
    SIG_ALGO_ECDSA_P384_SHA384,
    SIGNING_KEY_VCEK,
    SIGNING_KEY_VLEK,
    AttestationReport,
    Product,
    parse_report,
)

TEE: Final = "snp"

_ECDSA_SHA384: Final = ec.ECDSA(hashes.SHA384())
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


class SnpVerifier:
    """Verify SEV-SNP evidence (see the module docstring for the steps)."""

    tee = TEE

    def __init__(
        self,
        *,
        cert_chain: bytes | None = None,
        vek_source: VekSource | None = None,
        trusted_arks: Sequence[x509.Certificate] | None = None,
        crls: Sequence[bytes] = (),
    ) -> None:
        """``cert_chain``: PEM (comments allowed) or one DER certificate, holding the VCEK/VLEK
        and optionally the ASK/ASVK and ARK.  ``trusted_arks`` replaces the pinned AMD ARKs.
        ``crls``: AMD CRLs (DER or PEM), of the ARK (``/vcek/v1/{product}/crl``) or of an
        ASK/ASVK; a malformed one raises :class:`~veritee.errors.ParseError`.
        """
        self._certs = tuple(load_certificates(cert_chain)) if cert_chain is not None else ()
        self._veks = tuple(c for c in self._certs if is_ec(c))
        # What the memo and the VEK choice need of the configured certificates, worked out once
        # (keyed by id: this verifier keeps the certificates alive, so no other object has it).
        self._digests = {id(c): der_sha256(c) for c in self._certs}
        self._kinds = {id(c): vek_kind(c) for c in self._veks}
        self._vek_source = vek_source
        self._trust = Trust.of(trusted_arks, [load_crl(c) for c in crls])

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
        product = report.product or vek_product(vek) or product_by_issuer(vek)
        if product == "Turin" and report.product is None:
            report = parse_report(report.raw, product)  # the Turin TCB layout
        claims = snp_claims(report, product)
        try:
            chain = verified_chain(
                vek, supplied, product, self._trust, _utc(options.when()), self._digest
            )
            if not chain.pinned:
                claims["emulated"] = True
            _check_report(report, chain, options)
        except VerificationError as exc:
            return rejected(TEE, exc, claims=claims)
        return Verdict(tee=TEE, verified=True, tcb_status=TCB_NOT_APPLICABLE, claims=claims)

    def _digest(self, cert: x509.Certificate) -> bytes:
        return self._digests.get(id(cert)) or der_sha256(cert)

    # ------------------------------------------------------------------ collateral

    def _find_vek(
        self,
        report: AttestationReport,
        embedded: Sequence[x509.Certificate],
    ) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
        """The VEK and every other supplied certificate (caller's first, then the evidence's)."""
        supplied = self._certs + tuple(embedded)
        veks = self._veks if self._certs else tuple(c for c in embedded if is_ec(c))
        if not veks:
            veks = tuple(c for c in supplied if is_ec(c))
        if veks:
            wanted = "vlek" if report.signing_key == SIGNING_KEY_VLEK else "vcek"
            kinds = self._kinds
            best = next((c for c in veks if (kinds.get(id(c)) or vek_kind(c)) == wanted), veks[0])
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
            found = [c for c in certs if is_ec(c)]
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
    product = product or vek_product(vek) or product_by_issuer(vek)
    return verified_chain(vek, certificates, product, Trust.of(trusted_arks), _utc(when)).product


# --------------------------------------------------------------------- report checks


def _check_report(report: AttestationReport, chain: VerifiedChain, options: VerifyOptions) -> None:
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
        _check_chip_id(report, chain)
    _check_vek_tcb(report, chain)
    _check_signature(report, chain.key)
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


def _check_chip_id(report: AttestationReport, chain: VerifiedChain) -> None:
    size = 8 if chain.product == "Turin" else 64
    raw = chain.hw_id
    if raw is None:
        raise VerificationError("chip_id", "the VCEK has no hwID extension")
    hw_id = raw if len(raw) == size else asn1(core.OctetString, raw)
    if hw_id != report.chip_id[:size]:
        raise VerificationError("chip_id", "the VCEK's hwID differs from the report's CHIP_ID")


def _check_vek_tcb(report: AttestationReport, chain: VerifiedChain) -> None:
    reported = report.reported_tcb
    for field, cert_value in chain.tcb:
        value = getattr(reported, field)
        if value is None:  # fmc, outside Turin
            continue
        if cert_value != value:
            raise VerificationError(
                "vek_tcb",
                f"REPORTED_TCB {field} is {value}, the VEK was issued for {cert_value}",
            )


def _check_signature(report: AttestationReport, key: ec.EllipticCurvePublicKey) -> None:
    r = int.from_bytes(report.signature_r, "little")
    s = int.from_bytes(report.signature_s, "little")
    try:
        key.verify(encode_dss_signature(r, s), report.signed_bytes, _ECDSA_SHA384)
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


def _candidate_products(report: AttestationReport) -> Iterable[Product]:
    if report.product is not None:
        return (report.product,)
    if not any(report.chip_id[8:]):
        return ("Turin",)
    return ("Milan", "Genoa")
