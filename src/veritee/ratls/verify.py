"""Verify a peer's RA-TLS certificate: certificate → evidence found → binding → evidence
verified by veritee's own verifiers → policy.

Each stage that fails raises :class:`RatlsError` naming it:

===============  ==========================================================================
``certificate``  not a certificate; not self-issued; its self-signature fails; outside its
                 validity at the verification time
``no_evidence``  no evidence extension (a plain TLS certificate)
``format``       an evidence extension that is malformed (CBOR, claims, quote structure)
``binding``      the evidence does not bind the certificate's key: DICE — ``pubkey-hash``
                 differs from the hash of the SPKI, or report_data[0:32] is not SHA-256 of
                 the claims buffer; legacy — report_data[0:32] is not SHA-256 of the SPKI DER
                 (or, for RSA, of the PKCS#1 RSAPublicKey DER); report_data[32:64] not zero.
                 Gramine's legacy quote binds the SPKI too; an Intel SGX SDK quote without
                 its DICE twin is held to the same rule (its older binding is undetermined)
``evidence``     the TEE verifier rejects the quote/report (its step is in the detail:
                 signature, collateral, root_ca for a test root not configured, debug, ...),
                 or the evidence is of a kind veritee cannot verify (SGX local report, EPID)
``policy``       the policy refuses the peer, or cannot be evaluated
===============  ==========================================================================

A test root counts only when ``VerifierSettings.trust_root`` names it: otherwise an emulated
quote fails at ``evidence`` (its PCK chain ends in an untrusted root).  Intel quotes are
verified in full, collateral included: from the settings' source, else from the certificate's
endorsements extension, else they fail at ``evidence`` naming the collateral step (the real
sample certificates carry none; :mod:`veritee.verifier.intel_signatures` checks their
signatures offline).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from veritee.errors import ParseError, VeriteeError
from veritee.ratls.cert import Evidence, PeerCertificate, extract_evidence, read_certificate
from veritee.ratls.formats import Endorsements, endorsements_collateral
from veritee.verifier.base import Verifier, VerifyOptions
from veritee.verifier.intel import IntelVerifier
from veritee.verifier.registry import VerifierSettings, build_verifier
from veritee.verifier.trust_root import load_test_anchors

if TYPE_CHECKING:
    from veritee.ratls.policy import RatlsPolicy

__all__ = ["STEPS", "RatlsError", "RatlsPeer", "RatlsVerifier", "check_binding", "measurements"]

STEPS: Final = ("certificate", "no_evidence", "format", "binding", "evidence", "policy")
VERIFIABLE_TEES: Final = ("sgx", "tdx", "snp")
_HASHES: Final[dict[str, hashes.HashAlgorithm]] = {
    # SHA-1: the enclave-tls wolfSSL sample; a self-signature proves nothing here (the quote
    # binds the key, the handshake proves its possession), so it is not refused for its hash.
    "sha1": hashes.SHA1(),  # noqa: S303
    "sha224": hashes.SHA224(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class RatlsError(VeriteeError):
    """A peer certificate refused; ``step`` is one of :data:`STEPS`."""

    def __init__(self, step: str, detail: str) -> None:
        self.step = step
        self.detail = detail
        super().__init__(f"RA-TLS {step}: {detail}")


@dataclass(frozen=True)
class RatlsPeer:
    """A verified peer: its TEE, certificate format, claims and flat measurements."""

    tee: str
    fmt: str
    claims: dict[str, Any]
    measurements: dict[str, str]
    emulated: bool


def measurements(tee: str, claims: dict[str, Any]) -> dict[str, str]:
    """The flat hex view of a verifier's claims.  sgx: ``mrenclave``, ``mrsigner``,
    ``isvprodid``, ``isvsvn`` (the last two as the claims give them: little-endian u16 hex);
    tdx: ``mrtd``, ``rtmr0``..``rtmr3``; snp: ``measurement``, ``host_data``."""
    if tee == "sgx":
        body = claims["body"]
        return {
            "mrenclave": body["mr_enclave"],
            "mrsigner": body["mr_signer"],
            "isvprodid": body["isv_prod_id"],
            "isvsvn": body["isv_svn"],
        }
    if tee == "tdx":
        body = claims["quote"]["body"]
        out = {"mrtd": body["mr_td"]}
        out.update({f"rtmr{i}": body[f"rtmr_{i}"] for i in range(4)})
        return out
    if tee == "snp":
        return {"measurement": claims["measurement"], "host_data": claims["host_data"]}
    raise ValueError(f"no measurements for tee {tee!r}")


class RatlsVerifier:
    """Verifies RA-TLS certificates with veritee's verifiers.

    ``at`` fixes the verification time (certificate validity and the TEE verifier's
    collateral); ``None`` means the time of each call.  ``allow_debug`` accepts debug
    enclaves/TDs/guests.
    """

    def __init__(
        self,
        settings: VerifierSettings,
        policy: RatlsPolicy | None = None,
        *,
        at: dt.datetime | None = None,
        allow_debug: bool = False,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.at = at
        self.allow_debug = allow_debug
        self._verifiers: dict[str, Verifier] = {}
        self._intel_roots: tuple[bytes, ...] | None = None

    def verify_certificate(self, der: bytes) -> RatlsPeer:
        """Verify one peer certificate (DER); raises :class:`RatlsError` and nothing else."""
        step = "certificate"
        try:
            when = self.at if self.at is not None else dt.datetime.now(dt.UTC)
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            peer = read_certificate(der)
            key = _check_certificate(peer, when)
            step = "format"
            evidence = extract_evidence(peer)
            if evidence is None:
                raise RatlsError(
                    "no_evidence",
                    "the certificate carries no RA-TLS evidence extension "
                    "(neither 2.23.133.5.4.9 nor a legacy OID)",
                )
            if evidence.tee not in VERIFIABLE_TEES:
                raise RatlsError(
                    "evidence",
                    f"{evidence.fmt} evidence of kind {evidence.tee} cannot be verified "
                    "(veritee verifies SGX and TDX DCAP quotes and SEV-SNP reports)",
                )
            report_data = _report_data(evidence)
            step = "binding"
            expected = _check_binding(evidence, peer, key, report_data)
            step = "evidence"
            claims = self._verify_evidence(evidence, expected, when)
            result = RatlsPeer(
                tee=evidence.tee,
                fmt=evidence.fmt,
                claims=claims,
                measurements=measurements(evidence.tee, claims),
                emulated=bool(claims.get("emulated", False)),
            )
            step = "policy"
            if self.policy is not None:
                self.policy.check(result)
            return result
        except RatlsError:
            raise
        except ParseError as exc:
            raise RatlsError("format" if step in ("format", "binding") else step, str(exc)) from exc
        except Exception as exc:  # the contract: no other exception type escapes
            raise RatlsError(step, f"{type(exc).__name__}: {exc}") from exc

    def _verifier(self, tee: str, endorsements: Endorsements | None = None) -> Verifier:
        """The verifier for ``tee``; for a quote whose certificate carries endorsements
        (DCAP collateral, as rats-tls ``--endorsements`` sends), one that uses them, unless
        the settings name a collateral source of their own (file, PCCS, offline cache)."""
        settings = self.settings
        if (
            endorsements is not None
            and tee in ("sgx", "tdx")
            and settings.collateral_file is None
            and settings.pccs_url is None
            and not settings.offline
        ):
            return IntelVerifier(
                "tdx" if tee == "tdx" else "sgx",
                collateral=_Endorsed(endorsements_collateral(endorsements)),
                extra_roots=self._test_intel_roots(),
            )
        verifier = self._verifiers.get(tee)
        if verifier is None:
            verifier = build_verifier(tee, self.settings)
            self._verifiers[tee] = verifier
        return verifier

    def _test_intel_roots(self) -> tuple[bytes, ...]:
        if self._intel_roots is None:
            root = self.settings.trust_root
            anchors = load_test_anchors(root) if root is not None else None
            self._intel_roots = (
                (anchors.intel_root_der,) if anchors and anchors.intel_root_der else ()
            )
        return self._intel_roots

    def _verify_evidence(
        self, evidence: Evidence, expected: bytes, when: dt.datetime
    ) -> dict[str, Any]:
        options = VerifyOptions(at=when, report_data=expected, allow_debug=self.allow_debug)
        try:
            verifier = self._verifier(evidence.tee, evidence.endorsements)
            verdict = verifier.verify(evidence.raw, options)
        except VeriteeError as exc:  # ParseError, CollateralError, InputError (a bad trust root)
            raise RatlsError("evidence", f"{evidence.tee}: {exc}") from exc
        if not verdict.verified:
            raise RatlsError("evidence", f"{evidence.tee} {verdict.step}: {verdict.error}")
        return dict(verdict.claims)


# ------------------------------------------------------------------------------ stages


class _Endorsed:
    """An Intel collateral source that is one certificate's endorsements; the verifier checks
    their signatures, windows and FMSPC like any collateral."""

    def __init__(self, collateral: str) -> None:
        self._collateral = collateral

    def collateral_for(
        self,
        *,
        tee: Literal["tdx", "sgx"],
        fmspc: str,
        ca: Literal["platform", "processor"],
        at: dt.datetime,
        root: bytes | None = None,
    ) -> str:
        return self._collateral


PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def _check_certificate(peer: PeerCertificate, when: dt.datetime) -> PublicKey:
    """Self-issued, self-signed, valid at ``when``; returns the certificate's key."""
    if not peer.self_issued:
        raise RatlsError("certificate", "the certificate is not self-issued (issuer != subject)")
    try:
        key = serialization.load_der_public_key(peer.spki)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise RatlsError("certificate", f"unusable public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise RatlsError("certificate", f"unsupported key type {type(key).__name__}")
    hash_type = _HASHES.get(peer.hash_algo)
    if hash_type is None:
        raise RatlsError("certificate", f"unsupported signature hash {peer.hash_algo}")
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and peer.signature_algo == "ecdsa":
            key.verify(peer.signature, peer.tbs, ec.ECDSA(hash_type))
        elif isinstance(key, rsa.RSAPublicKey) and peer.signature_algo == "rsassa_pkcs1v15":
            key.verify(peer.signature, peer.tbs, padding.PKCS1v15(), hash_type)
        else:
            raise RatlsError(
                "certificate",
                f"signature algorithm {peer.signature_algo} does not fit a "
                f"{type(key).__name__} key",
            )
    except InvalidSignature as exc:
        raise RatlsError("certificate", "the certificate's self-signature does not verify") from exc
    if when < peer.not_before:
        raise RatlsError(
            "certificate",
            f"not valid before {peer.not_before:%Y-%m-%dT%H:%M:%SZ} (now {when:%Y-%m-%dT%H:%M:%SZ};"
            " check the clocks)",
        )
    if when > peer.not_after:
        raise RatlsError(
            "certificate",
            f"expired at {peer.not_after:%Y-%m-%dT%H:%M:%SZ} (now {when:%Y-%m-%dT%H:%M:%SZ})",
        )
    return key


def check_binding(evidence: Evidence, peer: PeerCertificate) -> bytes:
    """Check that ``evidence`` binds ``peer``'s key (the ``binding`` stage alone, no signature
    checked); returns the expected 64-byte report data.  RatlsError at ``format``/``binding``."""
    try:
        key = serialization.load_der_public_key(peer.spki)
        report_data = _report_data(evidence)
    except (ParseError, ValueError, UnsupportedAlgorithm) as exc:
        raise RatlsError("format", str(exc)) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise RatlsError("binding", f"unsupported key type {type(key).__name__}")
    return _check_binding(evidence, peer, key, report_data)


def _report_data(evidence: Evidence) -> bytes:
    """The 64-byte report data of the quote/report (structure only; signatures come later)."""
    if evidence.tee == "snp":
        from veritee.verifier.snp_report import parse_report

        return parse_report(evidence.raw).report_data
    from veritee.verifier.intel_quote import parse_quote

    quote = parse_quote(evidence.raw)
    if quote.tee != evidence.tee:
        raise ParseError("intel quote", f"an {quote.tee.upper()} quote under a {evidence.tee} OID")
    return quote.report_data


def _check_binding(
    evidence: Evidence, peer: PeerCertificate, key: PublicKey, report_data: bytes
) -> bytes:
    """Check the key binding; returns the expected 64-byte report data."""
    if evidence.fmt == "dice":
        assert evidence.pubkey_hash is not None
        assert evidence.claims_buffer is not None
        if not evidence.pubkey_hash.matches(peer.spki):
            raise RatlsError(
                "binding",
                f"the pubkey-hash claim (hash-alg-id {evidence.pubkey_hash.alg_id}) is not the "
                "hash of the certificate's SubjectPublicKeyInfo",
            )
        digest = hashlib.sha256(evidence.claims_buffer).digest()
        what = "SHA-256 of the claims buffer"
        accepted = [digest]
    else:
        digest = hashlib.sha256(peer.spki).digest()
        what = "SHA-256 of the SubjectPublicKeyInfo"
        accepted = [digest]
        if isinstance(key, rsa.RSAPublicKey):
            pkcs1 = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
            accepted.append(hashlib.sha256(pkcs1).digest())
            what += " or of the PKCS#1 RSAPublicKey"
    match = next((d for d in accepted if hmac.compare_digest(d, report_data[:32])), None)
    if match is None:
        raise RatlsError(
            "binding", f"report_data[0:32] is not the {what}: the evidence is not for this key"
        )
    if any(report_data[32:64]):
        raise RatlsError("binding", "report_data[32:64] is not zero")
    return match + bytes(32)
