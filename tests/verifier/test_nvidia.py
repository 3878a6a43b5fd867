"""NvidiaVerifier on the real Hopper vectors (tests/data/SOURCES.md, NVIDIA section), negative
cases first.  The report checks only: RIMs are in test_nvidia_rims.py.

Expected verdicts and their sources:
- nvtrust's ``hopperAttestationReport.txt`` + ``hopperCertChain.txt`` verify to NVIDIA's device
  root with nonce 931d8dd0… (nv-local-gpu-verifier's SOURCES entry) and fail with any other;
- Trustee's ``hopper_cert_chain_case2/3/4.txt`` fail: only the root, a missing intermediate, a
  missing signing certificate (Trustee's cert_chain.rs test cases);
- Trustee's CoCo CI report verifies with its 48-byte report data 87d8e24a…, regularized to the
  32-byte nonce (Trustee's mod.rs local_verifier_coco case);
- the claims contain Trustee's hopperAttestationReport-claims.txt exactly (its mod.rs test).

Test-only chains (an unknown root, a non-CA issuer, an expired certificate, a P-256 leaf) are
generated here with ``cryptography`` and sign a copy of the real report.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from datadir import VECTORS

from veritee.errors import ParseError
from veritee.verifier.base import DeviceVerifier, Verdict, Verifier, VerifyOptions
from veritee.verifier.nvidia import NvidiaVerifier
from veritee.verifier.nvidia_certs import (
    OID_TCG_DICE_TCB_INFO,
    fingerprint,
    pinned_device_root,
    pinned_rim_root,
)
from veritee.verifier.nvidia_claims import trustee_claims
from veritee.verifier.nvidia_spdm import parse_report

NV = VECTORS / "nvidia"
REPORT_HEX = (NV / "hopperAttestationReport.txt").read_text().strip()
REPORT = bytes.fromhex(REPORT_HEX)
CHAIN = (NV / "hopperCertChain.txt").read_bytes()
NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
COCO = (NV / "hopper_coco_report1.txt").read_bytes()
COCO_CHAIN = (NV / "hopper_coco_certs1.txt").read_bytes()
COCO_REPORT_DATA = bytes.fromhex(
    "87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fece279b616efefc2aae21da80cf5581250"
)
OPTS = VerifyOptions(report_data=NONCE)
UUID = "1111-2222-33333-444444-555555"


def _evidence(report_hex: str = REPORT_HEX, chain: bytes = CHAIN, arch: str = "HOPPER") -> bytes:
    device = {
        "arch": arch,
        "uuid": UUID,
        "evidence": report_hex,
        "certificate": base64.b64encode(chain).decode(),
    }
    return json.dumps({"device_evidence_list": [device]}).encode()


def _pems(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _rejected(verdict: Verdict, step: str) -> None:
    assert not verdict.verified
    assert verdict.step == step, verdict.error
    assert verdict.error
    assert "Traceback" not in verdict.error
    assert " object at " not in verdict.error


def _tampered_leaf_signature(chain: bytes) -> bytes:
    certs = x509.load_pem_x509_certificates(chain)
    der = bytearray(certs[0].public_bytes(Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA s value
    leaf = x509.load_der_x509_certificate(bytes(der))
    return _pems([leaf, *certs[1:]])


# --------------------------------------------------------------- a generated device PKI


class _Pki:
    """Root → intermediate → leaf with a FWID, P-384 unless told otherwise."""

    def __init__(
        self,
        fwid: bytes,
        *,
        ca_intermediate: bool = True,
        leaf_curve: ec.EllipticCurve | None = None,
        leaf_not_after: dt.datetime | None = None,
    ) -> None:
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.mid_key = ec.generate_private_key(ec.SECP384R1())
        self.leaf_key = ec.generate_private_key(leaf_curve or ec.SECP384R1())
        self.root = self._cert("Test Device Identity CA", self.root_key, None, True)
        self.mid = self._cert(
            "Test GH100 Identity", self.mid_key, self.root, ca_intermediate, signer=self.root_key
        )
        tcb_info = b"\x30\x35\xa6\x33\x30\x31\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x02\x04\x30"
        self.leaf = self._cert(
            "Test GSP FMC LF",
            self.leaf_key,
            self.mid,
            False,
            signer=self.mid_key,
            fwid_ext=tcb_info + fwid,
            not_after=leaf_not_after,
        )

    def _cert(
        self,
        cn: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Certificate | None,
        ca: bool,
        *,
        signer: ec.EllipticCurvePrivateKey | None = None,
        fwid_ext: bytes | None = None,
        not_after: dt.datetime | None = None,
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer.subject if issuer else name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(not_after or dt.datetime(9999, 12, 31, tzinfo=dt.UTC))
        )
        if ca:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        if fwid_ext is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(OID_TCG_DICE_TCB_INFO, fwid_ext), False
            )
        return builder.sign(signer or key, hashes.SHA384())

    def chain(self) -> bytes:
        return _pems([self.leaf, self.mid, self.root])

    def sign(self, report: bytes) -> bytes:
        """The report re-signed with the leaf key (raw r||s, 48 bytes each)."""
        signed = parse_report(report).signed
        der = self.leaf_key.sign(signed, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return signed + r.to_bytes(48, "big") + s.to_bytes(48, "big")


def _fwid() -> bytes:
    fwid = parse_report(REPORT).fwid
    assert fwid is not None
    return bytes.fromhex(fwid)


# ---------------------------------------------------------------------------- rejections


def test_one_tampered_byte_in_a_measurement_fails_the_spdm_signature() -> None:
    bad = bytearray(REPORT)
    bad[37 + 8 + 4 + 3 + 10] ^= 0x01  # inside the first block's value, a signed byte
    verdict = NvidiaVerifier(cert_chain=CHAIN).verify(bytes(bad), OPTS)
    _rejected(verdict, "spdm_signature")
    assert verdict.claims["x-nvidia-gpu-attestation-report-cert-chain-validated"] is True
    assert verdict.claims["x-nvidia-gpu-attestation-report-signature-verified"] is False


def test_one_tampered_byte_in_the_request_nonce_fails_the_spdm_signature() -> None:
    bad = bytearray(REPORT)
    bad[4] ^= 0x80
    _rejected(NvidiaVerifier(cert_chain=CHAIN).verify(bytes(bad), OPTS), "spdm_signature")


def test_one_tampered_byte_in_the_signature_fails_the_spdm_signature() -> None:
    bad = bytearray(REPORT)
    bad[-1] ^= 0x01
    _rejected(NvidiaVerifier(cert_chain=CHAIN).verify(bytes(bad), OPTS), "spdm_signature")


def test_one_tampered_byte_in_the_chain_fails_the_chain() -> None:
    chain = _tampered_leaf_signature(CHAIN)
    verdict = NvidiaVerifier(cert_chain=chain).verify(REPORT, OPTS)
    _rejected(verdict, "cert_chain")
    assert "not signed by 'GH100 A01 GSP BROM'" in (verdict.error or "")
    cert_claim = verdict.claims["x-nvidia-gpu-attestation-report-cert-chain"]
    assert cert_claim["x-nvidia-cert-status"] == "invalid"


def test_a_tampered_fwid_in_the_report_fails_at_fwid() -> None:
    report = parse_report(REPORT)
    assert report.fwid is not None
    at = REPORT.index(bytes.fromhex(report.fwid))
    bad = bytearray(REPORT)
    bad[at] ^= 0x01
    verdict = NvidiaVerifier(cert_chain=CHAIN).verify(bytes(bad), OPTS)
    _rejected(verdict, "fwid")
    assert verdict.claims["x-nvidia-gpu-attestation-report-cert-chain-fwid-match"] is False


def test_a_wrong_nonce_fails_at_report_data() -> None:
    wrong = bytes([NONCE[0] ^ 1]) + NONCE[1:]
    verdict = NvidiaVerifier(cert_chain=CHAIN).verify(REPORT, VerifyOptions(report_data=wrong))
    _rejected(verdict, "report_data")
    assert verdict.claims["x-nvidia-gpu-attestation-report-signature-verified"] is True
    assert verdict.claims["x-nvidia-gpu-attestation-report-nonce-match"] is False


def test_the_nvtrust_config_default_nonce_is_not_this_reports() -> None:
    other = bytes.fromhex("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
    verdict = NvidiaVerifier(cert_chain=CHAIN).verify(REPORT, VerifyOptions(report_data=other))
    _rejected(verdict, "report_data")


def test_a_chain_of_only_the_root_fails_the_chain() -> None:
    """Trustee's hopper_cert_chain_case2.txt."""
    chain = (NV / "hopper_cert_chain_case2.txt").read_bytes()
    verdict = NvidiaVerifier(cert_chain=chain).verify(REPORT, OPTS)
    _rejected(verdict, "cert_chain")
    assert "at least the signing certificate and the root" in (verdict.error or "")


def test_a_chain_lacking_its_intermediate_fails_the_chain() -> None:
    """Trustee's hopper_cert_chain_case3.txt: no Provisioner ICA between BROM and Identity."""
    chain = (NV / "hopper_cert_chain_case3.txt").read_bytes()
    verdict = NvidiaVerifier(cert_chain=chain).verify(REPORT, OPTS)
    _rejected(verdict, "cert_chain")
    assert "missing or out of order" in (verdict.error or "")


def test_a_chain_lacking_its_signing_certificate_fails_at_fwid() -> None:
    """Trustee's hopper_cert_chain_case4.txt: BROM first, so no FWID (Trustee's message too)."""
    chain = (NV / "hopper_cert_chain_case4.txt").read_bytes()
    verdict = NvidiaVerifier(cert_chain=chain).verify(REPORT, OPTS)
    _rejected(verdict, "fwid")
    assert "'GH100 A01 GSP BROM' has no FWID" in (verdict.error or "")


def test_a_chain_to_an_unconfigured_root_is_untrusted() -> None:
    pki = _Pki(_fwid())
    verdict = NvidiaVerifier(cert_chain=pki.chain()).verify(pki.sign(REPORT), OPTS)
    _rejected(verdict, "cert_chain")
    assert "not a trusted NVIDIA device root" in (verdict.error or "")
    assert fingerprint(pki.root) in (verdict.error or "")


def test_an_issuer_that_is_not_a_ca_fails_the_chain() -> None:
    pki = _Pki(_fwid(), ca_intermediate=False)
    verifier = NvidiaVerifier(cert_chain=pki.chain(), device_roots=[pki.root])
    verdict = verifier.verify(pki.sign(REPORT), OPTS)
    _rejected(verdict, "cert_chain")
    assert "is not a CA" in (verdict.error or "")


def test_a_certificate_outside_its_validity_fails_the_chain() -> None:
    pki = _Pki(_fwid(), leaf_not_after=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    verifier = NvidiaVerifier(cert_chain=pki.chain(), device_roots=[pki.root])
    options = VerifyOptions(report_data=NONCE, at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    verdict = verifier.verify(pki.sign(REPORT), options)
    _rejected(verdict, "cert_chain")
    assert "valid 2020-01-01 to 2024-01-01, not at 2025-01-01" in (verdict.error or "")
    early = VerifyOptions(report_data=NONCE, at=dt.datetime(2023, 1, 1, tzinfo=dt.UTC))
    assert verifier.verify(pki.sign(REPORT), early).verified


def test_a_leaf_key_that_is_not_p384_fails_the_spdm_signature() -> None:
    pki = _Pki(_fwid(), leaf_curve=ec.SECP256R1())
    der = pki.leaf_key.sign(parse_report(REPORT).signed, ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    report = parse_report(REPORT).signed + r.to_bytes(48, "big") + s.to_bytes(48, "big")
    verifier = NvidiaVerifier(cert_chain=pki.chain(), device_roots=[pki.root])
    _rejected(verifier.verify(report, OPTS), "spdm_signature")


def test_a_bare_report_without_a_chain_is_rejected_at_evidence() -> None:
    _rejected(NvidiaVerifier().verify(REPORT, OPTS), "evidence")


def test_architectures_other_than_hopper_are_not_verified_locally() -> None:
    verdict = NvidiaVerifier().verify(_evidence(arch="BLACKWELL"), OPTS)
    _rejected(verdict, "evidence")
    assert verdict.claims["x-nvidia-gpu-arch-check"] is False
    assert verdict.claims["arch"] == "Blackwell"


def test_malformed_reports_and_chains_are_parse_errors() -> None:
    with pytest.raises(ParseError):
        NvidiaVerifier(cert_chain=CHAIN).verify(REPORT[:100], OPTS)
    with pytest.raises(ParseError):
        NvidiaVerifier(
            cert_chain=b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ).verify(REPORT, OPTS)


def test_revoked_device_certificate_fails_at_ocsp() -> None:
    class Revoked:
        def status(self, chain: Sequence[x509.Certificate], *, at: dt.datetime) -> str:
            return "revoked"

    verdict = NvidiaVerifier(cert_chain=CHAIN, ocsp=Revoked()).verify(REPORT, OPTS)
    _rejected(verdict, "ocsp")
    assert (
        verdict.claims["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"]
        == "revoked"
    )


def test_one_bad_device_of_two_fails_verify_and_is_named() -> None:
    good = json.loads(_evidence())["device_evidence_list"][0]
    bad = dict(good, evidence=REPORT_HEX[:-2] + "00")
    evidence = json.dumps({"device_evidence_list": [good, bad]}).encode()
    verifier = NvidiaVerifier()
    verdict = verifier.verify(evidence, OPTS)
    _rejected(verdict, "spdm_signature")
    assert (verdict.error or "").startswith("device 1: ")
    assert [v.verified for v in verifier.verify_devices(evidence, OPTS)] == [True, False]


# ---------------------------------------------------------------------------- acceptance


def test_pinned_roots_are_nvidias() -> None:
    shipped = x509.load_pem_x509_certificate((NV / "verifier_device_root.pem").read_bytes())
    assert pinned_device_root() == shipped
    assert "NVIDIA CoRIM signing Root CA" in pinned_rim_root().subject.rfc4514_string()


def test_the_real_hopper_report_verifies_to_the_shipped_device_root() -> None:
    verifier = NvidiaVerifier(cert_chain=CHAIN)
    assert isinstance(verifier, DeviceVerifier)
    _: Verifier = verifier
    verdict = verifier.verify(REPORT, OPTS)
    assert verdict.verified, verdict.error
    c: dict[str, Any] = verdict.claims
    for check in (
        "x-nvidia-gpu-arch-check",
        "x-nvidia-gpu-attestation-report-parsed",
        "x-nvidia-gpu-attestation-report-cert-chain-validated",
        "x-nvidia-gpu-attestation-report-cert-chain-fwid-match",
        "x-nvidia-gpu-attestation-report-signature-verified",
        "x-nvidia-gpu-attestation-report-nonce-match",
    ):
        assert c[check] is True, check
    assert c["x-nvidia-gpu-driver-version"] == "550.90.07"
    assert c["x-nvidia-gpu-vbios-version"] == "96.00.9f.00.01"
    assert c["x-nvidia-gpu-attestation-report-cert-chain"] == {
        "x-nvidia-cert-status": "valid",
        "x-nvidia-cert-ocsp-status": "unknown",  # no OCSP asked: never "good"
        "x-nvidia-cert-expiration-date": "9999-12-31T23:59:59Z",
    }
    assert c["measres"] == "not-compared"
    assert c["x-nvidia-gpu-driver-rim-fetched"] is False
    assert "secboot" not in c
    assert "emulated" not in c
    assert c["hwmodel"] == "GH100 A01 GSP BROM"
    assert len(c["measurements"]) == 64


def test_the_claims_contain_trustees_local_claims_exactly() -> None:
    verdict = NvidiaVerifier().verify(_evidence(), OPTS)
    assert verdict.verified, verdict.error
    expected = json.loads((NV / "hopperAttestationReport-claims.txt").read_text())
    assert trustee_claims(verdict.claims) == expected
    assert {k: verdict.claims[k] for k in expected} == expected


def test_trustees_coco_report_verifies_with_its_48_byte_report_data() -> None:
    verifier = NvidiaVerifier()
    evidence = _evidence(COCO.decode().strip(), COCO_CHAIN)
    verdict = verifier.verify(evidence, VerifyOptions(report_data=COCO_REPORT_DATA))
    assert verdict.verified, verdict.error
    assert verdict.claims["x-nvidia-gpu-driver-version"] == "580.95.05"
    assert verifier.verify(evidence, VerifyOptions(report_data=NONCE)).step == "report_data"


def test_base64_evidence_and_lower_case_arch_verify() -> None:
    evidence = _evidence(base64.b64encode(REPORT).decode(), arch="hopper")
    assert NvidiaVerifier().verify(evidence, OPTS).verified


def test_a_configured_test_root_verifies_and_marks_the_claims_emulated() -> None:
    pki = _Pki(_fwid())
    verifier = NvidiaVerifier(cert_chain=pki.chain(), device_roots=[pinned_device_root(), pki.root])
    verdict = verifier.verify(pki.sign(REPORT), OPTS)
    assert verdict.verified, verdict.error
    assert verdict.claims["emulated"] is True
    # ... and the real report still verifies, unmarked, with the same verifier's roots.
    real = NvidiaVerifier(cert_chain=CHAIN, device_roots=[pinned_device_root(), pki.root])
    assert "emulated" not in real.verify(REPORT, OPTS).claims


def test_ocsp_status_is_reported_as_the_checker_says() -> None:
    seen: list[int] = []

    class Good:
        def status(self, chain: Sequence[x509.Certificate], *, at: dt.datetime) -> str:
            seen.append(len(chain))
            return "good"

    verdict = NvidiaVerifier(cert_chain=CHAIN, ocsp=Good()).verify(REPORT, OPTS)
    assert verdict.verified
    assert (
        verdict.claims["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"]
        == "good"
    )
    assert seen == [5]


def test_without_report_data_the_nonce_is_not_claimed_matched() -> None:
    verdict = NvidiaVerifier(cert_chain=CHAIN).verify(REPORT, VerifyOptions())
    assert verdict.verified
    assert verdict.claims["x-nvidia-gpu-attestation-report-nonce-match"] is False


def test_remembered_chain_signatures_never_accept_a_tampered_chain() -> None:
    verifier = NvidiaVerifier(cert_chain=CHAIN)
    assert verifier.verify(REPORT, OPTS).verified  # the real chain's signatures are remembered
    tampered = NvidiaVerifier(cert_chain=_tampered_leaf_signature(CHAIN))
    _rejected(tampered.verify(REPORT, OPTS), "cert_chain")
