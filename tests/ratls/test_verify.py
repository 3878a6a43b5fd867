"""RatlsVerifier over emulated identities: every refusal names its step, then what verifies.

Expected values come from the emulator's own inputs (the test root, the ``--set`` fields
passed to it) and from ``shared/specs/ratls.md`` §1.3/§1.4 for the bindings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.emulator.root import TestRoot
from veritee.ratls import formats
from veritee.ratls.cert import (
    RatlsIdentity,
    extract_evidence,
    make_identity,
    plain_identity,
    spki_der,
)
from veritee.ratls.quoter import EmulatedQuoter
from veritee.ratls.verify import STEPS, RatlsError, RatlsVerifier
from veritee.verifier.registry import VerifierSettings

MRENCLAVE = bytes(range(32))
MRSIGNER = bytes(range(32, 64))


def _settings(root: TestRoot, tee: str = "sgx") -> VerifierSettings:
    chain = root.amd.cert_chain_pem("vcek") if tee == "snp" else None
    return VerifierSettings(trust_root=root.directory, cert_chain=chain)


def _verifier(root: TestRoot, tee: str = "sgx", **kwargs: object) -> RatlsVerifier:
    return RatlsVerifier(_settings(root, tee), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sgx(test_root: TestRoot) -> RatlsIdentity:
    settings = {"mr_enclave": MRENCLAVE, "mr_signer": MRSIGNER}
    return make_identity(EmulatedQuoter(test_root.directory, "sgx", settings))


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _resign(
    identity: RatlsIdentity,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    extension: tuple[x509.ObjectIdentifier, bytes] | None = None,
) -> bytes:
    """The identity's certificate rebuilt with another key and/or one extension's value
    replaced, and validly self-signed again (so only the evidence or binding is wrong)."""
    cert = identity.certificate
    signer = key or identity.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .serial_number(cert.serial_number)
        .public_key(signer.public_key())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        value = ext.value
        if extension is not None and ext.oid == extension[0]:
            value = x509.UnrecognizedExtension(extension[0], extension[1])
        builder = builder.add_extension(value, critical=ext.critical)
    return _der(builder.sign(signer, hashes.SHA256()))


# ------------------------------------------------------------------------- refusals


def test_error_steps_are_the_contracts() -> None:
    assert STEPS == ("certificate", "no_evidence", "format", "binding", "evidence", "policy")


def test_garbage_is_refused_at_certificate(test_root: TestRoot) -> None:
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(b"\x30\x03\x02\x01\x00")
    assert info.value.step == "certificate"


def test_plain_certificate_is_refused_at_no_evidence(test_root: TestRoot) -> None:
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(plain_identity().cert_der)
    assert info.value.step == "no_evidence"


def test_expired_certificate_is_refused_at_certificate(
    test_root: TestRoot, sgx: RatlsIdentity
) -> None:
    # make_identity: notAfter = now + 365 days (spec §1.5)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=366)
    with pytest.raises(RatlsError) as info:
        _verifier(test_root, at=later).verify_certificate(sgx.cert_der)
    assert info.value.step == "certificate"
    assert "expired" in info.value.detail


def test_not_yet_valid_certificate_is_refused_at_certificate(
    test_root: TestRoot, sgx: RatlsIdentity
) -> None:
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)  # notBefore = now - 1 h
    with pytest.raises(RatlsError) as info:
        _verifier(test_root, at=earlier).verify_certificate(sgx.cert_der)
    assert info.value.step == "certificate"


def test_bad_self_signature_is_refused_at_certificate(
    test_root: TestRoot, sgx: RatlsIdentity
) -> None:
    der = bytearray(sgx.cert_der)
    der[-1] ^= 0x01  # the last byte of the ECDSA signature
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(bytes(der))
    assert info.value.step == "certificate"


def test_emulated_quote_without_trust_root_is_refused_at_evidence(sgx: RatlsIdentity) -> None:
    with pytest.raises(RatlsError) as info:
        RatlsVerifier(VerifierSettings()).verify_certificate(sgx.cert_der)
    assert info.value.step == "evidence"
    assert "root_ca" in info.value.detail


def test_swapped_key_is_refused_at_binding(test_root: TestRoot, sgx: RatlsIdentity) -> None:
    # the evidence of one identity in a certificate of another key
    der = _resign(sgx, key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(der)
    assert info.value.step == "binding"
    assert "pubkey-hash" in info.value.detail


def test_legacy_swapped_key_is_refused_at_binding(test_root: TestRoot) -> None:
    legacy = make_identity(EmulatedQuoter(test_root.directory, "sgx"), fmt="legacy")
    der = _resign(legacy, key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(der)
    assert info.value.step == "binding"


def test_evidence_from_another_identity_is_refused_at_binding(
    test_root: TestRoot, sgx: RatlsIdentity
) -> None:
    other = make_identity(EmulatedQuoter(test_root.directory, "sgx"))
    value = other.certificate.extensions.get_extension_for_oid(formats.OID_DICE_EVIDENCE).value
    assert isinstance(value, x509.UnrecognizedExtension)
    der = _resign(sgx, extension=(formats.OID_DICE_EVIDENCE, value.value))
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(der)
    assert info.value.step == "binding"


def test_changed_claims_are_refused_at_binding(test_root: TestRoot) -> None:
    identity = make_identity(
        EmulatedQuoter(test_root.directory, "sgx"), claims={"key_0": b"value_0\x00"}
    )
    value = identity.certificate.extensions.get_extension_for_oid(formats.OID_DICE_EVIDENCE).value
    assert isinstance(value, x509.UnrecognizedExtension)
    dice = formats.decode_evidence(value.value)
    key_hash, _ = formats.decode_claims(dice.claims_buffer)
    forged = formats.encode_claims(key_hash, {"key_0": b"value_1\x00"})
    der = _resign(
        identity,
        extension=(
            formats.OID_DICE_EVIDENCE,
            formats.encode_tagged(dice.tag, dice.evidence, forged),
        ),
    )
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(der)
    assert info.value.step == "binding"
    assert "claims buffer" in info.value.detail


def test_tampered_quote_is_refused_at_evidence(test_root: TestRoot, sgx: RatlsIdentity) -> None:
    value = sgx.certificate.extensions.get_extension_for_oid(formats.OID_DICE_EVIDENCE).value
    assert isinstance(value, x509.UnrecognizedExtension)
    dice = formats.decode_evidence(value.value)
    quote = bytearray(dice.evidence)
    quote[48 + 64] ^= 0x01  # MRENCLAVE[0] (header 48 B, MRENCLAVE at body offset 64)
    tampered = formats.encode_tagged(dice.tag, bytes(quote), dice.claims_buffer)
    der = _resign(sgx, extension=(formats.OID_DICE_EVIDENCE, tampered))
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(der)
    assert info.value.step == "evidence"


#: A byte of the launch measurement: SGX MRENCLAVE (header 48 + 64), TDX MRTD (48 + 136),
#: SNP MEASUREMENT (report offset 0x90).
MEASUREMENT_OFFSET = {"sgx": 48 + 64, "tdx": 48 + 136, "snp": 0x90}


@pytest.mark.parametrize("tee", ["sgx", "tdx", "snp"])
@pytest.mark.parametrize("fmt", ["dice", "legacy"])
def test_tampered_evidence_of_each_tee_is_refused_at_evidence(
    test_root: TestRoot, tee: str, fmt: str
) -> None:
    identity = make_identity(EmulatedQuoter(test_root.directory, tee), fmt=fmt)  # type: ignore[arg-type]
    evidence = extract_evidence(identity.certificate)
    assert evidence is not None
    raw = bytearray(evidence.raw)
    raw[MEASUREMENT_OFFSET[tee]] ^= 0x01
    if fmt == "dice":
        assert evidence.tag is not None
        assert evidence.claims_buffer is not None
        value = formats.encode_tagged(evidence.tag, bytes(raw), evidence.claims_buffer)
    else:
        value = bytes(raw)
    der = _resign(identity, extension=(x509.ObjectIdentifier(evidence.oid), value))
    with pytest.raises(RatlsError) as info:
        _verifier(test_root, tee).verify_certificate(der)
    assert info.value.step == "evidence"


_CLAIMS = formats.encode_claims(formats.PubkeyHash(1, bytes(32)))


def _with_extension(oid: x509.ObjectIdentifier, value: bytes) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "RATS-TLS")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .serial_number(1)
        .public_key(key.public_key())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _der(cert)


@pytest.mark.parametrize(
    ("oid", "value", "kind"),
    [
        ("1.2.840.113741.1337.14", bytes(432), "sgx_la"),  # a local EREPORT (spec §1.2)
        ("1.2.840.113741.1337.22", b"sev", "sev"),
        ("1.2.840.113741.1337.24", b"csv", "csv"),
        ("2.23.133.5.4.9", formats.encode_tagged(60001, b"report", _CLAIMS), "intel_report"),
    ],
    ids=["sgx_la", "sev", "csv", "dice-60001"],
)
def test_evidence_veritee_cannot_verify_is_refused_at_evidence(
    test_root: TestRoot, oid: str, value: bytes, kind: str
) -> None:
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(_with_extension(x509.ObjectIdentifier(oid), value))
    assert info.value.step == "evidence"
    assert kind in info.value.detail


def test_a_quote_of_another_tee_under_a_legacy_oid_is_refused_at_format(
    test_root: TestRoot,
) -> None:
    quote = EmulatedQuoter(test_root.directory, "sgx").quote(b"")
    tdx_oid = x509.ObjectIdentifier("1.2.840.113741.1337.8")
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(_with_extension(tdx_oid, quote))
    assert info.value.step == "format"


def test_malformed_dice_extension_is_refused_at_format(
    test_root: TestRoot, sgx: RatlsIdentity
) -> None:
    der = _resign(sgx, extension=(formats.OID_DICE_EVIDENCE, b"\xd9\xea\x60\x82\x41"))
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(der)
    assert info.value.step == "format"


def test_debug_enclave_is_refused_unless_allowed(test_root: TestRoot) -> None:
    # SGX ATTRIBUTES.FLAGS bit 1 = DEBUG; xfrm 0x03 as the emulator's default
    attributes = bytes([0x07]) + bytes(7) + bytes([0x03]) + bytes(7)
    debug = make_identity(EmulatedQuoter(test_root.directory, "sgx", {"attributes": attributes}))
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(debug.cert_der)
    assert info.value.step == "evidence"
    assert "debug" in info.value.detail
    peer = _verifier(test_root, allow_debug=True).verify_certificate(debug.cert_der)
    assert peer.claims["debug"] is True


# ------------------------------------------------------------------------- verified


def test_emulated_sgx_dice_verifies(test_root: TestRoot, sgx: RatlsIdentity) -> None:
    peer = _verifier(test_root).verify_certificate(sgx.cert_der)
    assert (peer.tee, peer.fmt, peer.emulated) == ("sgx", "dice", True)
    assert peer.measurements == {
        "mrenclave": MRENCLAVE.hex(),
        "mrsigner": MRSIGNER.hex(),
        "isvprodid": "0000",
        "isvsvn": "0000",
    }
    # report data = SHA-256(claims buffer), zero-padded (spec §1.4 rule 2)
    value = sgx.certificate.extensions.get_extension_for_oid(formats.OID_DICE_EVIDENCE).value
    assert isinstance(value, x509.UnrecognizedExtension)
    claims = formats.decode_evidence(value.value).claims_buffer
    expected = hashlib.sha256(claims).digest() + bytes(32)
    assert peer.claims["report_data"] == expected.hex()


@pytest.mark.parametrize("tee", ["sgx", "tdx", "snp"])
@pytest.mark.parametrize("fmt", ["dice", "legacy"])
def test_emulated_identities_verify_under_the_test_root(
    test_root: TestRoot, tee: str, fmt: str
) -> None:
    identity = make_identity(EmulatedQuoter(test_root.directory, tee), fmt=fmt)  # type: ignore[arg-type]
    peer = _verifier(test_root, tee).verify_certificate(identity.cert_der)
    assert (peer.tee, peer.fmt, peer.emulated) == (tee, fmt, True)
    if fmt == "legacy":  # spec §1.3: report_data[0:32] = SHA-256(SPKI DER) for EC keys
        spki = spki_der(identity.key.public_key())
        assert peer.claims["report_data"] == (hashlib.sha256(spki).digest() + bytes(32)).hex()
    keys = {
        "sgx": {"mrenclave", "mrsigner", "isvprodid", "isvsvn"},
        "tdx": {"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"},
        "snp": {"measurement", "host_data"},
    }[tee]
    assert set(peer.measurements) == keys


@pytest.mark.parametrize("tee", ["sgx", "tdx", "snp"])
def test_emulated_identities_are_refused_without_trust_root(test_root: TestRoot, tee: str) -> None:
    identity = make_identity(EmulatedQuoter(test_root.directory, tee))
    chain = test_root.amd.cert_chain_pem("vcek") if tee == "snp" else None
    with pytest.raises(RatlsError) as info:
        RatlsVerifier(VerifierSettings(cert_chain=chain)).verify_certificate(identity.cert_der)
    assert info.value.step == "evidence"


def test_unexpected_failures_become_ratls_errors(
    test_root: TestRoot, sgx: RatlsIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_args: object) -> None:
        raise RuntimeError("verifier exploded")

    verifier = _verifier(test_root)
    monkeypatch.setattr(verifier, "_verifier", boom)
    with pytest.raises(RatlsError) as info:
        verifier.verify_certificate(sgx.cert_der)
    assert info.value.step == "evidence"
    assert "RuntimeError" in info.value.detail


def test_missing_trust_root_directory_is_a_ratls_error(sgx: RatlsIdentity, tmp_path: Path) -> None:
    with pytest.raises(RatlsError) as info:
        RatlsVerifier(VerifierSettings(trust_root=tmp_path)).verify_certificate(sgx.cert_der)
    assert info.value.step == "evidence"


def test_version_value_3_is_read_leniently(test_root: TestRoot, sgx: RatlsIdentity) -> None:
    """enclave-tls wrote X509_set_version(cert, 3), an out-of-range "v4" (spec §1.5), which
    cryptography refuses; the verifier reads certificates with asn1crypto and goes on."""
    from asn1crypto import x509 as asn1_x509

    cert = asn1_x509.Certificate.load(sgx.cert_der)
    tbs = cert["tbs_certificate"]
    tbs["version"] = 3
    tbs_der = tbs.dump(force=True)
    signature = sgx.key.sign(tbs_der, ec.ECDSA(hashes.SHA256()))
    der = asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": cert["signature_algorithm"],
            "signature_value": signature,
        }
    ).dump()
    with pytest.raises(x509.InvalidVersion):
        x509.load_der_x509_certificate(der)
    peer = _verifier(test_root).verify_certificate(der)
    assert peer.measurements["mrenclave"] == MRENCLAVE.hex()


def test_a_naive_time_is_taken_as_utc(test_root: TestRoot, sgx: RatlsIdentity) -> None:
    naive = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert _verifier(test_root, at=naive).verify_certificate(sgx.cert_der).tee == "sgx"


# ------------------------------------------------------------------------- endorsements


def _endorsed(root: TestRoot, tee: str, **changes: bytes) -> RatlsIdentity:
    """An identity carrying the test root's collateral as its endorsements extension."""
    endorsements = formats.endorsements_from_collateral(root.intel.collateral_json(tee))
    endorsements = dataclasses.replace(endorsements, **changes)  # type: ignore[arg-type]
    return make_identity(
        EmulatedQuoter(root.directory, tee),
        endorsements=formats.encode_endorsements(endorsements),
    )


def test_tampered_endorsements_fail_at_evidence(test_root: TestRoot) -> None:
    endorsements = formats.endorsements_from_collateral(test_root.intel.collateral_json("sgx"))
    body = json.loads(endorsements.tcb_info.rstrip(b"\x00"))
    signature = bytes.fromhex(body["signature"])
    body["signature"] = (bytes([signature[0] ^ 1]) + signature[1:]).hex()
    tampered = json.dumps(body, separators=(",", ":")).encode() + b"\x00"
    identity = _endorsed(test_root, "sgx", tcb_info=tampered)
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(identity.cert_der)
    assert info.value.step == "evidence"
    assert "tcb_info" in info.value.detail


def test_endorsements_that_are_not_dcap_collateral_fail_at_evidence(test_root: TestRoot) -> None:
    identity = _endorsed(test_root, "sgx", tcb_info=b"not json\x00")
    with pytest.raises(RatlsError) as info:
        _verifier(test_root).verify_certificate(identity.cert_der)
    assert info.value.step == "evidence"


def test_configured_collateral_wins_over_endorsements(test_root: TestRoot) -> None:
    identity = _endorsed(test_root, "sgx", tcb_info=b"not json\x00")
    settings = VerifierSettings(
        trust_root=test_root.directory,
        collateral_file=test_root.directory / "intel" / "collateral_sgx.json",
    )
    assert RatlsVerifier(settings).verify_certificate(identity.cert_der).tee == "sgx"


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_endorsements_are_the_collateral(test_root: TestRoot, tee: str) -> None:
    identity = _endorsed(test_root, tee)
    evidence = extract_evidence(identity.certificate)
    assert evidence is not None
    assert evidence.endorsements is not None
    # the round trip gives dcap-qvl the very collateral the test root signed
    want = json.loads(test_root.intel.collateral_json(tee))
    assert json.loads(formats.endorsements_collateral(evidence.endorsements)) == want
    assert _verifier(test_root, tee).verify_certificate(identity.cert_der).tee == tee
