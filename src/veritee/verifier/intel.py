"""Intel TDX and SGX verification on dcap-qvl.

dcap-qvl checks, as of one time: the quote signature by the attestation key,
the QE report signature by the PCK leaf, the QE report data binding, the PCK
chain to the trusted root, both CRLs, the TCB info and QE identity signatures
and windows, and the TCB level.  It alone decides acceptance.  This module
adds what dcap-qvl leaves to its caller: the report-data and init-data
bindings, the debug decision as a policy knob, the TDX module identity,
Trustee's claim names, and a precise name for each failing step.

Work that depends only on the platform (its PCK chain) or on the collateral
bundle is cached, since every quote of a platform repeats it; the quote's own
signatures are checked every time.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any, Literal

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from veritee.errors import ParseError, VerificationError
from veritee.verifier import intel_claims
from veritee.verifier.base import (
    JSON,
    TCB_NOT_SUPPORTED,
    Verdict,
    VerifyOptions,
    pad,
    rejected,
)
from veritee.verifier.ccel import parse_ccel, replay
from veritee.verifier.collateral.intel import IntelCollateralSource
from veritee.verifier.intel_collateral_facts import CollateralFacts, collateral_facts
from veritee.verifier.intel_diagnose import diagnose_chain_failure
from veritee.verifier.intel_pck import PckInfo, parse_pck_chain
from veritee.verifier.intel_quote import Quote, TdReport, parse_quote
from veritee.verifier.intel_root import intel_root_ca
from veritee.verifier.intel_tcb import TcbEvaluation, evaluate_tcb

TeeKind = Literal["tdx", "sgx"]


# dcap-qvl's messages, mapped to the step that failed.  First match wins, so
# the more specific phrases come first.
_STEPS: tuple[tuple[str, str], ...] = (
    ("Failed to parse root CA CRL", "crl"),
    ("InvalidCrlSignatureForPublicKey", "crl"),
    ("Failed to load root ca", "root_ca"),
    ("CrlExpired", "collateral_expiry"),
    ("CertExpired", "collateral_expiry"),
    ("CertNotValidYet", "collateral_expiry"),
    ("expired", "collateral_expiry"),
    ("issue date is in the future", "collateral_expiry"),
    ("CertRevoked", "revoked"),
    ("TCB status is invalid: Revoked", "tcb_revoked"),
    ("Signature is invalid for tcb_info", "tcb_info_signature"),
    ("tcb_info", "tcb_info"),
    ("TcbInfo", "tcb_info"),
    ("TCB Info", "tcb_info"),
    ("non-TDX TCB info", "tcb_info"),
    ("non-SGX TCB info", "tcb_info"),
    ("Signature is invalid for qe_identity", "qe_identity_signature"),
    ("QE Identity", "qe_identity"),
    ("QeIdentity", "qe_identity"),
    ("QE ISVSVN", "qe_identity"),
    ("QE report validation failed", "qe_identity"),
    ("Signature is invalid for qe_report", "qe_report_signature"),
    ("QE report hash mismatch", "qe_report_data"),
    ("ISV enclave report signature is invalid", "quote_signature"),
    ("Fmspc mismatch", "fmspc"),
    ("No matching TCB level found", "tcb_level"),
    ("TDX module", "tdx_module"),
    ("Debug mode is enabled", "debug"),
    ("TD profiling is enabled", "debug"),
    ("Invalid MR service TD", "td_attributes"),
    ("TD attributes", "td_attributes"),
    ("SEPT_VE_DISABLE", "td_attributes"),
    ("TD migration", "td_attributes"),
    ("SERVTD_EXT", "td_attributes"),
    ("certificate chain", "pck_chain"),
    ("PCK", "pck_chain"),
    ("UnknownIssuer", "pck_chain"),
    ("BadSignature", "pck_chain"),
    ("CRL", "crl"),
    ("Unknown QE vendor ID", "qe_vendor"),
    ("quote", "parse"),
)


def classify_qvl_error(message: str) -> str:
    """Name the verification step behind one of dcap-qvl's error messages."""
    for phrase, step in _STEPS:
        if phrase in message:
            return step
    return "dcap_qvl"


def _qvl_message(exc: Exception) -> str:
    return str(exc).removeprefix("Verification failed: ")


def unwrap_evidence(evidence: bytes) -> bytes:
    """Accept a raw quote or Trustee's ``{"quote": "<base64>", ...}`` evidence JSON."""
    return _unwrap(evidence)[0]


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)


def _unwrap(evidence: bytes) -> tuple[bytes, bytes | None]:
    """The quote, and the CC event log (``cc_eventlog``) when Trustee's JSON carries one."""
    if not evidence.lstrip().startswith(b"{"):
        return evidence, None
    try:
        doc = json.loads(evidence)
        quote = _b64(doc["quote"])
        ccel = doc.get("cc_eventlog")
        return quote, (_b64(ccel) if isinstance(ccel, str) and ccel else None)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise ParseError("intel evidence json", f"no base64 'quote' member: {exc}") from exc


def _event_log_claims(ccel: bytes, body: TdReport) -> JSON:
    """Parse and replay a CC event log; its RTMRs must equal the quote's."""
    try:
        entries = parse_ccel(ccel)
    except ParseError as exc:
        raise VerificationError("eventlog", str(exc)) from exc
    for entry in entries:
        # An AAEL entry's digest covers its whole tagged event: a policy must never see
        # event text other than what was extended, even though replay uses only digests.
        if entry["details"].get("unicode_name") == "AAEL" and not entry["digest_matches_event"]:
            raise VerificationError(
                "eventlog",
                f"AAEL entry {entry['index']}: its event data does not hash to its digest",
            )
    replayed = replay(entries)
    for index, (got, want) in enumerate(zip(replayed, body.rtmrs, strict=True)):
        if not hmac.compare_digest(got, want):
            raise VerificationError(
                "eventlog",
                f"replaying the CC event log gives RTMR{index} {got.hex()[:16]}…, "
                f"the quote has {want.hex()[:16]}…",
            )
    return {"uefi_event_logs": entries}


@functools.lru_cache(maxsize=256)
def _chain_root(pck_chain_pem: bytes) -> bytes | None:
    """The DER of the self-issued root at the end of a PCK chain, if the chain carries one."""
    for cert in parse_pck_chain(pck_chain_pem).chain:
        if cert.subject == cert.issuer:
            return cert.public_bytes(serialization.Encoding.DER)
    return None


def trusted_pck_root(pck_chain_pem: bytes, roots: Sequence[bytes]) -> bytes:
    """Which of ``roots`` (DER) a quote's PCK chain ends in; a chain that carries no root
    gets the first.  Any other root is a :class:`VerificationError` at step ``root_ca``."""
    carried = _chain_root(pck_chain_pem)
    if carried is None:
        return roots[0]
    for trusted in roots:
        if hmac.compare_digest(carried, trusted):
            return trusted
    raise VerificationError(
        "root_ca",
        f"the PCK chain ends in an untrusted root {_describe_root(carried)}; "
        "a test root must be configured explicitly (--trust-root)",
    )


def _describe_root(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return f"'{cert.subject.rfc4514_string()}' (SHA-256 {hashlib.sha256(der).hexdigest()})"


@functools.lru_cache(maxsize=256)
def _platform(pck_chain_pem: bytes, roots: tuple[bytes, ...]) -> tuple[PckInfo, bytes]:
    """The PCK facts of a chain, and which of ``roots`` it ends in (a platform quotes with the
    same chain every time; failures are not remembered)."""
    try:
        pck = parse_pck_chain(pck_chain_pem)
    except ParseError as exc:
        raise VerificationError("pck_chain", str(exc)) from exc
    return pck, trusted_pck_root(pck_chain_pem, roots)


@functools.lru_cache(maxsize=256)
def _collateral_object(collateral_text: str) -> Any:
    return dcap_qvl.QuoteCollateralV3.from_json(collateral_text)


@functools.lru_cache(maxsize=1024)
def _evaluate(
    tee: TeeKind,
    tcb_info: str,
    qe_identity: str,
    cpu_svn: bytes,
    pce_svn: int,
    tee_tcb_svn: bytes | None,
    tee_tcb_svn2: bytes | None,
    qe_isvsvn: int,
) -> TcbEvaluation:
    try:
        return evaluate_tcb(
            tee=tee,
            tcb_info_json=tcb_info,
            qe_identity_json=qe_identity,
            cpu_svn=cpu_svn,
            pce_svn=pce_svn,
            tee_tcb_svn=tee_tcb_svn,
            tee_tcb_svn2=tee_tcb_svn2,
            qe_isvsvn=qe_isvsvn,
        )
    except ParseError as exc:
        raise VerificationError("tcb_info", str(exc)) from exc


class IntelVerifier:
    """Verifies TDX (v4/v5) or SGX (v3) quotes to a pinned root with dcap-qvl."""

    def __init__(
        self,
        tee: TeeKind,
        *,
        collateral: IntelCollateralSource | None,
        root_ca_der: bytes | None = None,
        extra_roots: Sequence[bytes] = (),
    ) -> None:
        """``root_ca_der`` replaces the pinned Intel SGX Root CA; ``extra_roots`` are
        trusted beside it (test roots from the emulator, configured explicitly).
        Evidence that chains to any root other than Intel's is marked emulated."""
        self.tee = tee
        self._collateral = collateral
        self._root = root_ca_der if root_ca_der is not None else intel_root_ca()
        self._roots = (self._root, *extra_roots)

    def verify(self, evidence: bytes, options: VerifyOptions) -> Verdict:
        raw, ccel = _unwrap(evidence)
        quote = parse_quote(raw)
        if quote.tee != self.tee:
            raise ParseError(f"{self.tee} quote", f"this is an {quote.tee.upper()} quote")
        claims = (
            intel_claims.tdx_claims(quote) if self.tee == "tdx" else intel_claims.sgx_claims(quote)
        )
        log_error: VerificationError | None = None
        if ccel is not None and isinstance(quote.body, TdReport):
            try:
                claims.update(_event_log_claims(ccel, quote.body))
            except VerificationError as exc:
                log_error = exc  # reported once the quote itself is known to be genuine
        try:
            pck, root = self._platform(quote)
            text = self._collateral_text(pck, root, options)
            coll = _collateral_object(text)
            facts = collateral_facts(text, quote.pck_chain_pem, root)
        except VerificationError as exc:
            return rejected(self.tee, exc, claims=claims)
        except (ParseError, ValueError) as exc:
            return rejected(
                self.tee,
                VerificationError("collateral", f"malformed collateral: {exc}"),
                claims=claims,
            )
        if root != intel_root_ca():
            claims["emulated"] = True
        try:
            report = dcap_qvl.verify_with_root_ca(raw, coll, root, options.unix_time())
        except ValueError as exc:
            return self._qvl_failure(
                quote, pck, root, text, facts, claims, _qvl_message(exc), options, log_error
            )
        try:
            evaluation = self._evaluate(quote, pck, facts)
        except VerificationError as exc:
            return rejected(self.tee, exc, claims=claims)
        status, advisories = str(report.status), tuple(report.advisory_ids)
        claims.update(
            intel_claims.supplemental_claims(
                pck, facts, evaluation, status=status, advisory_ids=advisories
            )
        )
        return self._bindings(quote, claims, status, advisories, options, log_error)

    def _platform(self, quote: Quote) -> tuple[PckInfo, bytes]:
        """The platform's PCK facts, and which trusted root its chain ends in."""
        return _platform(quote.pck_chain_pem, self._roots)

    def _collateral_text(self, pck: PckInfo, root: bytes, options: VerifyOptions) -> str:
        if self._collateral is None:
            raise VerificationError(
                "collateral", "no Intel collateral given (use --collateral FILE or --pccs URL)"
            )
        return self._collateral.collateral_for(
            tee=self.tee, fmspc=pck.fmspc, ca=pck.ca, at=options.when(), root=root
        )

    def _evaluate(self, quote: Quote, pck: PckInfo, facts: CollateralFacts) -> TcbEvaluation:
        body = quote.body
        td = body if isinstance(body, TdReport) else None
        return _evaluate(
            self.tee,
            facts.tcb_info_text,
            facts.qe_identity_text,
            pck.cpu_svn,
            pck.pce_svn,
            td.tee_tcb_svn if td else None,
            td.tee_tcb_svn2 if td else None,
            quote.auth.qe_report.isv_svn,
        )

    def _qvl_failure(
        self,
        quote: Quote,
        pck: PckInfo,
        root: bytes,
        text: str,
        facts: CollateralFacts,
        claims: JSON,
        message: str,
        options: VerifyOptions,
        log_error: VerificationError | None = None,
    ) -> Verdict:
        step = classify_qvl_error(message)
        if step == "pck_chain" and "Failed to verify certificate chain" in message:
            coll = json.loads(text)
            step, reason = diagnose_chain_failure(
                quote.pck_chain_pem,
                bytes.fromhex(coll["pck_crl"]),
                bytes.fromhex(coll["root_ca_crl"]),
                root,
                options.when(),
            )
            message = f"{message}: {reason}"
        if step == "tcb_level":
            return rejected(
                self.tee,
                VerificationError(step, message),
                tcb_status=TCB_NOT_SUPPORTED,
                claims=claims,
            )
        if step not in ("debug", "tcb_revoked"):
            return rejected(self.tee, VerificationError(step, message), claims=claims)
        # dcap-qvl reached its last checks: every signature, chain, CRL and the TCB
        # level passed.  Evaluate the (now verified) TCB info to report the status.
        try:
            evaluation = self._evaluate(quote, pck, facts)
        except VerificationError as exc:
            return rejected(self.tee, exc, claims=claims)
        claims.update(
            intel_claims.supplemental_claims(
                pck,
                facts,
                evaluation,
                status=evaluation.status,
                advisory_ids=evaluation.advisory_ids,
            )
        )
        if step == "debug" and options.allow_debug:
            return self._bindings(
                quote, claims, evaluation.status, evaluation.advisory_ids, options, log_error
            )
        if step == "debug":
            who = "TD" if self.tee == "tdx" else "enclave"
            message = (
                f"{message}: the {who} runs in debug mode, so the host can read its "
                "memory (accept it with --allow-debug)"
            )
        return rejected(
            self.tee,
            VerificationError(step, message),
            tcb_status=evaluation.status,
            advisory_ids=evaluation.advisory_ids,
            claims=claims,
        )

    def _bindings(
        self,
        quote: Quote,
        claims: JSON,
        status: str,
        advisories: tuple[str, ...],
        options: VerifyOptions,
        log_error: VerificationError | None = None,
    ) -> Verdict:
        body = quote.body
        if log_error is not None:
            return rejected(
                self.tee, log_error, tcb_status=status, advisory_ids=advisories, claims=claims
            )
        if options.report_data is not None and not hmac.compare_digest(
            pad(options.report_data, 64), body.report_data
        ):
            return rejected(
                self.tee,
                VerificationError(
                    "report_data", "the quote's REPORTDATA does not match the expected report data"
                ),
                tcb_status=status,
                advisory_ids=advisories,
                claims=claims,
            )
        if options.init_data is not None:
            field, size, name = (
                (body.mr_config_id, 48, "MRCONFIGID")
                if isinstance(body, TdReport)
                else (body.config_id, 64, "CONFIGID")
            )
            if not hmac.compare_digest(pad(options.init_data, size), field):
                return rejected(
                    self.tee,
                    VerificationError(
                        "init_data", f"the quote's {name} does not match the expected init data"
                    ),
                    tcb_status=status,
                    advisory_ids=advisories,
                    claims=claims,
                )
        return Verdict(
            tee=self.tee, verified=True, tcb_status=status, advisory_ids=advisories, claims=claims
        )


__all__ = [
    "IntelVerifier",
    "classify_qvl_error",
    "intel_root_ca",
    "trusted_pck_root",
    "unwrap_evidence",
]
