"""NVIDIA GPU verifier (Hopper): SPDM report → device chain → NVIDIA Device Identity CA,
then the driver and VBIOS RIMs.

Checks run in this order for each device; a failure stops there and names its step:

====================  ======================================================================
``evidence``          an architecture other than Hopper (only Hopper is verified locally), or
                      a bare report given without a certificate chain
``cert_chain``        fewer than two certificates, a root that is not a trusted device root, a
                      missing or misplaced certificate, a bad signature, an issuer that is not a
                      CA, a certificate not valid at ``options.when()``
``fwid``              the signing certificate has no FWID, or it differs from the report's
``spdm_signature``    ECDSA P-384 / SHA-384 over request + response fails with the leaf key
``report_data``       the request nonce differs from ``options.report_data`` regularized to 32
                      bytes (truncated or zero-padded, as Trustee does)
``ocsp``              a certificate (device chain or RIM signer chain) is revoked
``rim_schema``        a RIM does not parse as an NVIDIA SWID tag, or two of one kind are given
``rim_signature``     ``rim_chain`` / ``rim_expired`` too: a RIM's XML-DSig, its signer chain to
                      a RIM root, or its validity at ``options.when()``
``rim_missing``       ``require_rims`` and the driver or VBIOS RIM cannot be had
``rim_conflict``      the driver and VBIOS RIMs both have an active measurement at one index
``rim_version``       a RIM is for another driver or VBIOS version than the report
``rim_measurements``  the versions match but a measurement differs from every golden value
====================  ======================================================================

When a RIM's version differs, the measurements are compared all the same and the verdict is
``rim_version``, whose message names the versions on both sides and every mismatched index:
the version is the first thing that is wrong, and the indexes say how far apart the two are.
Both RIM steps come after every check of the report itself, so the claims of a verdict that
fails there still say the report verified (the Attestation Service leaves such a GPU to policy).

Without any RIM (none given, no RIM source) the report's own checks decide and ``measres`` is
``"not-compared"``.  OCSP is asked only when an :class:`OcspStatus` is configured; otherwise
every ``x-nvidia-cert-ocsp-status`` is ``"unknown"``, never ``"good"``.

Claims (:mod:`veritee.verifier.nvidia_claims`): Trustee's local claims exactly (``arch``,
``uuid``, ``measurements``, ``config``), plus the NRAS / nvtrust ``x-nvidia-*`` claims,
``measres``, ``hwmodel``, ``ueid`` and, when the chain ends at a test root, ``emulated``.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Sequence
from typing import Final, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.errors import CollateralError, ParseError, VerificationError
from veritee.verifier import nvidia_certs as certs
from veritee.verifier.base import TCB_NOT_APPLICABLE, Verdict, VerifyOptions, pad, rejected
from veritee.verifier.nvidia_claims import KINDS, DeviceState
from veritee.verifier.nvidia_spdm import NONCE_LEN, GpuDevice, SpdmReport, parse_gpu_evidence
from veritee.verifier.nvidia_spdm import parse_report as parse_spdm_report

TEE: Final = "nvidia"
#: nvdec0_status 0x55 ("U"): NVDEC0 is disabled and measurement 35 is not compared (nvtrust).
NVDEC0_DISABLED: Final = "U"

__all__ = ["NvidiaVerifier", "OcspStatus", "RimFetcher", "parse_gpu_evidence"]


class RimFetcher(Protocol):
    """Where RIMs come from by id (helper ``veritee.verifier.collateral.nvidia_rims.RimSource``)."""

    def rim(self, rim_id: str, *, at: dt.datetime | None = None) -> bytes: ...


class OcspStatus(Protocol):
    """Revocation status of a chain: "good", "revoked" or "unknown"
    (``veritee.verifier.collateral.nvidia_ocsp.OcspChecker``)."""

    def status(self, chain: Sequence[x509.Certificate], *, at: dt.datetime) -> str: ...


class NvidiaVerifier:
    """Verify NVIDIA GPU evidence (see the module docstring for the steps)."""

    tee = TEE

    def __init__(
        self,
        *,
        device_roots: Sequence[x509.Certificate] | None = None,
        rim_roots: Sequence[x509.Certificate] | None = None,
        cert_chain: bytes | None = None,
        rims: Sequence[bytes] = (),
        rim_source: RimFetcher | None = None,
        ocsp: OcspStatus | None = None,
        require_rims: bool = False,
    ) -> None:
        """``device_roots`` / ``rim_roots``: the trusted roots (default: NVIDIA's pinned ones;
        pass pinned + test roots to accept emulated GPUs).  ``cert_chain``: the PEM chain of a
        bare report.  ``rims``: driver and VBIOS RIM documents, used before ``rim_source``."""
        self._device_roots = (
            tuple(device_roots) if device_roots is not None else (certs.pinned_device_root(),)
        )
        self._rim_roots = tuple(rim_roots) if rim_roots is not None else (certs.pinned_rim_root(),)
        self._cert_chain = cert_chain
        self._rims = tuple(rims)
        self._rim_source = rim_source
        self._ocsp = ocsp
        self._require_rims = require_rims

    def verify(self, evidence: bytes, options: VerifyOptions) -> Verdict:
        """All devices must verify: the first rejected device's verdict, else device 0's."""
        verdicts = self.verify_devices(evidence, options)
        for n, verdict in enumerate(verdicts):
            if not verdict.verified and len(verdicts) > 1:
                error = VerificationError(verdict.step or "verify", f"device {n}: {verdict.error}")
                return rejected(TEE, error, claims=verdict.claims)
            if not verdict.verified:
                return verdict
        return verdicts[0]

    def verify_devices(self, evidence: bytes, options: VerifyOptions) -> list[Verdict]:
        """One verdict per device, in the evidence's order."""
        return [self._verify(d, options) for d in parse_gpu_evidence(evidence, self._cert_chain)]

    def _verify(self, device: GpuDevice, options: VerifyOptions) -> Verdict:
        report = parse_spdm_report(device.report)
        chain = certs.load_chain(device.chain) if device.chain else ()
        state = DeviceState(device.arch, device.uuid, report, chain)
        try:
            self._check_report(state, options)
            self._check_rims(state, options.when())
        except VerificationError as exc:
            return rejected(TEE, exc, tcb_status=TCB_NOT_APPLICABLE, claims=state.claims())
        return Verdict(tee=TEE, verified=True, tcb_status=TCB_NOT_APPLICABLE, claims=state.claims())

    def _check_report(self, state: DeviceState, options: VerifyOptions) -> None:
        report, chain = state.report, state.chain
        if state.arch != "Hopper":
            raise VerificationError(
                "evidence", f"{state.arch} devices are not verified locally (only Hopper)"
            )
        state.arch_ok = True
        if not chain:
            raise VerificationError(
                "evidence", "no certificate chain: give the device's PEM chain (--cert-chain)"
            )
        root = certs.verify_device_chain(chain, self._device_roots, options.when())
        state.chain_ok = True
        state.emulated = certs.fingerprint(root) != certs.DEVICE_ROOT_SHA256
        fwid = certs.leaf_fwid(chain[0]).hex()
        if report.fwid is None:
            raise VerificationError("fwid", "the report's opaque data carries no FWID")
        if fwid != report.fwid.lower():
            raise VerificationError(
                "fwid",
                f"the signing certificate's FWID {fwid} differs from the report's {report.fwid}",
            )
        state.fwid_ok = True
        _check_signature(report, chain[0])
        state.signature_ok = True
        if options.report_data is not None:
            if not hmac.compare_digest(pad(options.report_data, NONCE_LEN), report.nonce):
                raise VerificationError(
                    "report_data", "the SPDM request nonce differs from the expected report data"
                )
            state.nonce_ok = True
        if self._ocsp is not None:
            state.ocsp = self._ocsp.status(chain, at=options.when())
            if state.ocsp == "revoked":
                raise VerificationError("ocsp", "a certificate of the device chain is revoked")

    # ------------------------------------------------------------------------- RIMs

    def _check_rims(self, state: DeviceState, when: dt.datetime) -> None:
        documents = self._rim_documents(state, when) if self._rims or self._rim_source else {}
        missing = [k for k in KINDS if k not in documents]
        if missing and self._require_rims:
            raise VerificationError(
                "rim_missing", f"no {' or '.join(missing)} RIM (give --rim or a RIM source)"
            )
        if not documents:
            return  # nothing to compare: measres stays "not-compared"
        from veritee.verifier import nvidia_rim, nvidia_rim_signature

        verified: dict[str, nvidia_rim.Rim] = {}
        for kind, data in documents.items():
            rim = state.rims[kind]
            rim.fetched = rim.schema = True
            try:
                verified[kind] = found = nvidia_rim_signature.verify_rim(
                    data, roots=self._rim_roots, at=when
                )
            except VerificationError as exc:
                rim.cert_status = {"rim_expired": "expired", "rim_chain": "invalid"}.get(
                    exc.step, "unknown"
                )
                raise VerificationError(exc.step, f"{kind} RIM: {exc.detail}") from None
            rim.signature, rim.cert_status = True, "valid"
            rim.expiry = certs.earliest_expiry(found.signer_chain) if found.signer_chain else None
            rim.available = bool(found.measurements)
            rim.version = found.version
            reported = getattr(state.report, f"{kind}_version")
            rim.version_match = found.version.lower() == reported.lower()
            if self._ocsp is not None and found.signer_chain:
                rim.ocsp = self._ocsp.status(found.signer_chain, at=when)
                if rim.ocsp == "revoked":
                    raise VerificationError("ocsp", f"the {kind} RIM's signer is revoked")
        if missing:
            return
        driver, vbios = verified["driver"], verified["vbios"]
        state.no_conflict = False
        mismatches = nvidia_rim.compare_measurements(
            state.report.measurements,
            driver,
            vbios,
            nvdec0_disabled=state.report.opaque.get("nvdec0_status") == NVDEC0_DISABLED,
        )
        state.no_conflict = True
        state.measres = "fail" if mismatches else "success"
        state.mismatches = [
            {
                "index": m.report_index,
                "rim": m.rim,
                "goldenValues": list(m.expected),
                "runtimeValue": m.actual,
            }
            for m in mismatches
        ]
        indexes = sorted({m.report_index for m in mismatches})
        differ = (
            f"measurements differ at index(es) {', '.join(map(str, indexes))}"
            if indexes
            else "every measurement matches"
        )
        wrong = [k for k in KINDS if not state.rims[k].version_match]
        if wrong:
            sides = "; ".join(
                f"the {k} RIM is for {state.rims[k].version}, the report's {k} is "
                f"{getattr(state.report, f'{k}_version')}"
                for k in wrong
            )
            raise VerificationError("rim_version", f"{sides}; {differ}")
        if mismatches:
            raise VerificationError("rim_measurements", f"{differ} from the RIMs' golden values")

    def _rim_documents(self, state: DeviceState, when: dt.datetime) -> dict[str, bytes]:
        """The driver and VBIOS RIM documents: given ones first, then the RIM source by id."""
        from veritee.verifier import nvidia_rim

        documents: dict[str, bytes] = {}
        for data in self._rims:
            try:
                kind = nvidia_rim.parse_rim(data).kind
            except ParseError as exc:
                raise VerificationError("rim_schema", f"a RIM does not parse: {exc}") from None
            if kind in documents:
                raise VerificationError("rim_schema", f"two {kind} RIMs were given")
            documents[kind] = data
        if self._rim_source is None:
            return documents
        for kind in KINDS:
            if kind in documents:
                continue
            try:
                rim_id = _rim_id(state.report, kind)
            except ParseError as exc:  # the report lacks a part of the RIM's id
                if self._require_rims:
                    raise VerificationError("rim_missing", f"no {kind} RIM id: {exc}") from None
                state.rims[kind].warning = f"{kind} RIM not fetched: {exc}"
                continue
            try:
                documents[kind] = self._rim_source.rim(rim_id, at=when)
            except CollateralError as exc:
                if self._require_rims:
                    raise
                state.rims[kind].warning = f"{kind} RIM {rim_id} not fetched: {exc.detail}"
        return documents


def _rim_id(report: SpdmReport, kind: str) -> str:
    from veritee.verifier import nvidia_rim

    config = report.opaque
    if kind == "driver":
        return nvidia_rim.rim_id("driver", driver_version=report.driver_version)
    return nvidia_rim.rim_id(
        "vbios",
        project=str(config.get("project", "")),
        project_sku=str(config.get("project_sku", "")),
        chip_sku=str(config.get("chip_sku", "")),
        vbios_version=report.vbios_version,
    )


def _check_signature(report: SpdmReport, leaf: x509.Certificate) -> None:
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise VerificationError("spdm_signature", "the signing certificate's key is not P-384")
    half = len(report.signature) // 2
    r = int.from_bytes(report.signature[:half], "big")
    s = int.from_bytes(report.signature[half:], "big")
    try:
        key.verify(encode_dss_signature(r, s), report.signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise VerificationError(
            "spdm_signature",
            "the report's ECDSA P-384 signature does not verify with the signing certificate",
        ) from None
