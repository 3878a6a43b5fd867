"""The state of one NVIDIA device's checks and the claims it turns into: Trustee's local
claims (``arch``, ``uuid``, ``measurements``, ``config``) and NRAS / nvtrust's ``x-nvidia-*``
claims, ``measres``, ``secboot``, ``dbgstat``, ``hwmodel``, ``ueid`` and ``emulated``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509

from veritee.verifier import nvidia_certs as certs
from veritee.verifier.base import JSON
from veritee.verifier.nvidia_spdm import SpdmReport

__all__ = ["KINDS", "DeviceState", "RimState", "trustee_claims"]

KINDS: Final = ("driver", "vbios")


@dataclass
class RimState:
    """What is known of one RIM (driver or VBIOS) so far."""

    fetched: bool = False
    schema: bool = False
    signature: bool = False
    version: str | None = None
    version_match: bool = False
    available: bool = False
    cert_status: str = "unknown"
    ocsp: str = "unknown"
    expiry: str | None = None
    warning: str | None = None


@dataclass
class DeviceState:
    """The state of one device's checks, turned into claims at the end."""

    arch: str
    uuid: str
    report: SpdmReport
    chain: tuple[x509.Certificate, ...]
    arch_ok: bool = False
    chain_ok: bool = False
    fwid_ok: bool = False
    signature_ok: bool = False
    nonce_ok: bool = False
    ocsp: str = "unknown"
    emulated: bool = False
    measres: str = "not-compared"
    no_conflict: bool | None = None
    mismatches: list[JSON] = field(default_factory=list)
    rims: dict[str, RimState] = field(default_factory=lambda: {k: RimState() for k in KINDS})

    def claims(self) -> JSON:
        report, chain = self.report, self.chain
        out: JSON = {
            "arch": self.arch,
            "uuid": self.uuid,
            "measurements": {str(b.index): b.value.hex() for b in report.blocks},
            "config": dict(report.opaque),
            "x-nvidia-device-type": "gpu",
            "x-nvidia-gpu-arch-check": self.arch_ok,
            "x-nvidia-gpu-driver-version": report.driver_version,
            "x-nvidia-gpu-vbios-version": report.vbios_version,
            "x-nvidia-gpu-attestation-report-parsed": True,
            "x-nvidia-gpu-attestation-report-cert-chain-validated": self.chain_ok,
            "x-nvidia-gpu-attestation-report-cert-chain": chain_claim(
                "valid" if self.chain_ok else "invalid", self.ocsp, chain
            ),
            "x-nvidia-gpu-attestation-report-cert-chain-fwid-match": self.fwid_ok,
            "x-nvidia-gpu-attestation-report-signature-verified": self.signature_ok,
            "x-nvidia-gpu-attestation-report-nonce-match": self.nonce_ok,
            "eat_nonce": report.nonce.hex(),
            "measres": self.measres,
            "hwmodel": certs.common_name(chain[1]) if len(chain) > 1 else None,
            "ueid": str(chain[0].serial_number) if chain else None,
        }
        for kind, rim in self.rims.items():
            prefix = f"x-nvidia-gpu-{kind}-rim-"
            out[prefix + "fetched"] = rim.fetched
            out[prefix + "schema-validated"] = rim.schema
            out[prefix + "signature-verified"] = rim.signature
            out[prefix + "cert-validated"] = rim.cert_status == "valid"
            out[prefix + "version-match"] = rim.version_match
            out[prefix + "measurements-available"] = rim.available
            out[prefix + "cert-chain"] = chain_claim(rim.cert_status, rim.ocsp, (), rim.expiry)
            if rim.version is not None:
                out[prefix + "version"] = rim.version
        if self.no_conflict is not None:
            out["x-nvidia-gpu-vbios-index-no-conflict"] = self.no_conflict
        if self.mismatches:
            out["x-nvidia-mismatch-measurement-records"] = self.mismatches
        if self.measres == "success":
            out["secboot"] = True
            out["dbgstat"] = "disabled"
        warnings = [r.warning for r in self.rims.values() if r.warning]
        if warnings:
            out["x-nvidia-attestation-warning"] = "; ".join(warnings)
        if self.emulated:
            out["emulated"] = True
        return out


def chain_claim(
    status: str, ocsp: str, chain: Sequence[x509.Certificate], expiry: str | None = None
) -> JSON:
    return {
        "x-nvidia-cert-status": status,
        "x-nvidia-cert-ocsp-status": ocsp,
        "x-nvidia-cert-expiration-date": expiry
        or (certs.earliest_expiry(chain) if chain else None),
    }


def trustee_claims(claims: JSON) -> JSON:
    """The subset of a device's claims that Trustee's local NVIDIA verifier emits."""
    return {key: claims[key] for key in ("arch", "uuid", "measurements", "config") if key in claims}
