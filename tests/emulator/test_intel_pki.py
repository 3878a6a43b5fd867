"""The generated Intel root: chain profile, SGX extension, CRLs, signed JSON, persistence."""

from __future__ import annotations

import datetime as dt
import json
import stat
import time
from pathlib import Path

import dcap_qvl
import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from veritee.emulator.intel_pki import (
    SGX_EXTENSION_OID,
    IntelPlatform,
    IntelTestRoot,
    Tee,
    sgx_extension_der,
)
from veritee.emulator.intel_quote import TdxFields, build_tdx_quote
from veritee.errors import InputError, ParseError
from veritee.pem import load_certificates
from veritee.verifier.collateral.intel import FIELDS
from veritee.verifier.intel_pck import parse_pck_chain

TEES: tuple[Tee, ...] = ("tdx", "sgx")
NOW = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.UTC)
INTEL_DN_ORDER = [
    NameOID.COMMON_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.COUNTRY_NAME,
]


@pytest.fixture(scope="session")
def root() -> IntelTestRoot:
    return IntelTestRoot.create(now=NOW)


def _oids(name: x509.Name) -> list[x509.ObjectIdentifier]:
    return [rdn.oid for rdn in name]


def _cn(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _verify_raw(cert: x509.Certificate, data: bytes, signature_hex: str) -> None:
    raw = bytes.fromhex(signature_hex)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, data, ec.ECDSA(hashes.SHA256()))


# --- certificates ---------------------------------------------------------------------


def test_chain_names_and_order_match_intel(root: IntelTestRoot, vectors: Path) -> None:
    leaf, ca, anchor = load_certificates(root.pck_chain_pem)
    assert [_cn(c.subject) for c in (leaf, ca, anchor)] == [
        "Intel SGX PCK Certificate",
        "Intel SGX PCK Platform CA",
        "Intel SGX Root CA",
    ]
    assert leaf.issuer == ca.subject
    assert ca.issuer == anchor.subject == anchor.issuer
    (tcb,) = load_certificates(root.tcb_issuer_chain_pem)[:1]
    assert _cn(tcb.subject) == "Intel SGX TCB Signing"
    assert tcb.issuer == anchor.subject
    # The DER order of Intel's real names (a real quote's chain).
    real = parse_pck_chain(_pem_chain((vectors / "dcap-qvl" / "tdx_quote").read_bytes())).chain
    for cert in (leaf, ca, anchor, tcb):
        assert _oids(cert.subject) == INTEL_DN_ORDER
    assert [_oids(c.subject) for c in real] == [INTEL_DN_ORDER] * 3
    assert [a.value for a in anchor.subject][1:] == [a.value for a in real[2].subject][1:]


def _pem_chain(quote: bytes) -> bytes:
    start = quote.index(b"-----BEGIN CERTIFICATE-----")
    end = quote.rindex(b"-----END CERTIFICATE-----") + len(b"-----END CERTIFICATE-----")
    return quote[start:end]


def test_certificate_profile(root: IntelTestRoot) -> None:
    leaf, ca, anchor = load_certificates(root.pck_chain_pem)
    tcb = load_certificates(root.tcb_issuer_chain_pem)[0]
    for cert in (leaf, ca, anchor, tcb):
        assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
        public = cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.name == "secp256r1"
        assert cert.not_valid_before_utc == NOW - dt.timedelta(days=365)
        assert cert.not_valid_after_utc == NOW + dt.timedelta(days=3650)
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE)
    for cert, path_len in ((anchor, 1), (ca, 0)):
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical
        assert bc.value.ca
        assert bc.value.path_length == path_len
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical
        assert ku.value.key_cert_sign
        assert ku.value.crl_sign
        assert not ku.value.digital_signature
    for cert in (leaf, tcb):
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical
        assert ku.value.digital_signature
        assert ku.value.content_commitment
        assert not ku.value.key_cert_sign
    anchor.verify_directly_issued_by(anchor)
    ca.verify_directly_issued_by(anchor)
    leaf.verify_directly_issued_by(ca)
    tcb.verify_directly_issued_by(anchor)
    assert x509.load_der_x509_certificate(root.root_der) == anchor
    assert x509.load_pem_x509_certificate(root.root_pem) == anchor
    assert x509.load_pem_x509_certificate(root.pck_cert_pem) == leaf


def test_sgx_extension_reads_back(root: IntelTestRoot) -> None:
    platform = root.platform
    info = parse_pck_chain(root.pck_chain_pem)
    assert info.ca == "platform"
    assert info.fmspc == platform.fmspc == "B0C06F000000"
    assert info.cpu_svn == platform.cpu_svn == bytes([3, 3, 2, 2, 4, 1, 0, 5] + [0] * 8)
    assert info.tcb_components == tuple(platform.cpu_svn)  # INTEGERs equal CPUSVN bytes
    assert info.pce_svn == platform.pce_svn == 11
    assert info.pce_id == platform.pce_id == b"\x00\x00"
    assert info.ppid == platform.ppid
    assert len(info.ppid) == 16
    assert info.platform_instance_id == platform.platform_instance_id
    assert info.sgx_type == 0
    assert (info.dynamic_platform, info.cached_keys, info.smt_enabled) == (False, False, False)
    ext = info.leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    assert not ext.critical
    # dcap-qvl reads the same extension.
    parsed = dcap_qvl.parse_pck_extension_from_pem(root.pck_cert_pem)
    assert parsed is not None


def _pairs(seq: core.Asn1Value) -> dict[str, core.Asn1Value]:
    return {seq[i][0].dotted: seq[i][1] for i in range(len(seq))}


def test_sgx_extension_is_der_with_enumerated_type() -> None:
    platform = IntelPlatform(pce_svn=300)
    der = sgx_extension_der(platform, sgx_type=1)
    value = core.load(der)
    assert value.dump(force=True) == der  # canonical DER
    fields = _pairs(value)
    assert fields[SGX_EXTENSION_OID + ".5"].tag == 10  # ENUMERATED
    assert fields[SGX_EXTENSION_OID + ".5"].contents == b"\x01"
    tcb = _pairs(fields[SGX_EXTENSION_OID + ".2"])
    assert tcb[SGX_EXTENSION_OID + ".2.17"].native == 300
    assert tcb[SGX_EXTENSION_OID + ".2.17"].contents == b"\x01\x2c"
    assert len(tcb) == 18


def test_platform_validation() -> None:
    with pytest.raises(ValueError, match="fmspc"):
        IntelPlatform(fmspc="B0C06F")
    with pytest.raises(ValueError, match="cpu_svn must be 16 bytes"):
        IntelPlatform(cpu_svn=b"\x01")
    with pytest.raises(ValueError, match="pce_svn"):
        IntelPlatform(pce_svn=1 << 16)


# --- CRLs -----------------------------------------------------------------------------


def test_crls(root: IntelTestRoot) -> None:
    _leaf, ca, anchor = load_certificates(root.pck_chain_pem)
    for der, issuer in ((root.root_crl_der, anchor), (root.pck_crl_der, ca)):
        crl = x509.load_der_x509_crl(der)
        assert crl.issuer == issuer.subject
        public = issuer.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert crl.is_signature_valid(public)
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
        crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        with pytest.raises(x509.ExtensionNotFound):
            crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        assert crl.last_update_utc == NOW - dt.timedelta(hours=1)
        assert crl.next_update_utc == NOW + dt.timedelta(days=30)
        assert len(crl) == 0


def test_revoked_pck_is_listed() -> None:
    revoked = IntelTestRoot.create(pck_revoked=True, now=NOW)
    leaf = load_certificates(revoked.pck_chain_pem)[0]
    crl = x509.load_der_x509_crl(revoked.pck_crl_der)
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    assert len(x509.load_der_x509_crl(revoked.root_crl_der)) == 0


# --- signed JSON ----------------------------------------------------------------------

TCB_KEYS = {
    "tdx": [
        "id",
        "version",
        "issueDate",
        "nextUpdate",
        "fmspc",
        "pceId",
        "tcbType",
        "tcbEvaluationDataNumber",
        "tdxModule",
        "tdxModuleIdentities",
        "tcbLevels",
    ],
    "sgx": [
        "id",
        "version",
        "issueDate",
        "nextUpdate",
        "fmspc",
        "pceId",
        "tcbType",
        "tcbEvaluationDataNumber",
        "tcbLevels",
    ],
}
QE_KEYS = [
    "id",
    "version",
    "issueDate",
    "nextUpdate",
    "tcbEvaluationDataNumber",
    "miscselect",
    "miscselectMask",
    "attributes",
    "attributesMask",
    "mrsigner",
    "isvprodid",
    "tcbLevels",
]


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_signed_json_is_compact_intel_ordered_and_signed(root: IntelTestRoot, tee: Tee) -> None:
    tcb_cert = load_certificates(root.tcb_issuer_chain_pem)[0]
    coll = json.loads(root.collateral_json(tee))
    assert list(coll) == list(FIELDS)
    for text, signature, keys in (
        (coll["tcb_info"], coll["tcb_info_signature"], TCB_KEYS[tee]),
        (coll["qe_identity"], coll["qe_identity_signature"], QE_KEYS),
    ):
        doc = json.loads(text)
        assert list(doc) == keys
        # serde_json / rapidjson re-serialise to the same bytes (the PCCS path).
        assert json.dumps(doc, separators=(",", ":")) == text
        _verify_raw(tcb_cert, text.encode(), signature)
        assert doc["issueDate"] == "2026-11-23T11:00:00Z"
        assert doc["nextUpdate"] == "2026-12-23T12:00:00Z"
    tcb_info = json.loads(coll["tcb_info"])
    assert tcb_info["id"] == tee.upper()
    assert tcb_info["version"] == 3
    assert tcb_info["fmspc"] == "B0C06F000000"
    assert tcb_info["pceId"] == "0000"
    (level,) = tcb_info["tcbLevels"]
    assert level["tcbStatus"] == "UpToDate"
    assert "advisoryIDs" not in level
    assert [c["svn"] for c in level["tcb"]["sgxtcbcomponents"]] == list(root.platform.cpu_svn)
    qe = json.loads(coll["qe_identity"])
    assert qe["id"] == ("TD_QE" if tee == "tdx" else "QE")
    assert qe["version"] == 2
    assert qe["tcbLevels"][0]["tcb"]["isvsvn"] == root.platform.qe_isvsvn
    if tee == "tdx":
        assert [c["svn"] for c in level["tcb"]["tdxtcbcomponents"]][:3] == [5, 0, 2]
        ids = [m["id"] for m in tcb_info["tdxModuleIdentities"]]
        assert ids == ["TDX_03", "TDX_01"]
        assert len(tcb_info["tdxModule"]["mrsigner"]) == 96
    # the PCS bodies carry the same text and signature
    body = root.pcs_tcb_body(tee)
    assert (
        body
        == (
            '{"tcbInfo":' + coll["tcb_info"] + ',"signature":"' + coll["tcb_info_signature"] + '"}'
        ).encode()
    )
    qe_body = json.loads(root.pcs_qe_identity_body(tee))
    assert qe_body["signature"] == coll["qe_identity_signature"]
    assert coll["tcb_info_issuer_chain"] == root.tcb_issuer_chain_pem.decode()
    assert coll["pck_crl_issuer_chain"] == root.pck_crl_issuer_chain_pem.decode()
    assert bytes.fromhex(coll["pck_crl"]) == root.pck_crl_der
    assert bytes.fromhex(coll["root_ca_crl"]) == root.root_crl_der


def test_non_current_status_sits_below_an_up_to_date_level() -> None:
    root = IntelTestRoot.create(
        tcb_status="SWHardeningNeeded", advisory_ids=["INTEL-SA-00615"], now=NOW
    )
    for tee in TEES:
        levels = json.loads(root.tcb_info(tee).text)["tcbLevels"]
        assert [lv["tcbStatus"] for lv in levels] == ["UpToDate", "SWHardeningNeeded"]
        assert [lv["tcb"]["pcesvn"] for lv in levels] == [13, 11]
        assert levels[1]["advisoryIDs"] == ["INTEL-SA-00615"]
        assert "advisoryIDs" not in levels[0]


def test_unknown_status_and_tee_are_rejected(root: IntelTestRoot) -> None:
    with pytest.raises(ValueError, match="TDRelaunchAdvised"):
        IntelTestRoot.create(tcb_status="TDRelaunchAdvised")
    with pytest.raises(ValueError, match="tee must be"):
        root.collateral_json("snp")  # type: ignore[arg-type]


def test_create_is_fast() -> None:
    start = time.perf_counter()
    for _ in range(5):
        IntelTestRoot.create()
    assert (time.perf_counter() - start) / 5 < 0.2


# --- persistence ----------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    original = IntelTestRoot.create(tcb_status="OutOfDate", advisory_ids=["INTEL-SA-00828"])
    original.save(tmp_path)
    for name in ("root.key.pem", "pck_platform_ca.key.pem", "pck.key.pem", "tcb_signing.key.pem"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert (tmp_path / "root.pem").read_bytes() == original.root_pem
    assert (tmp_path / "root.der").read_bytes() == original.root_der
    assert json.loads((tmp_path / "platform.json").read_text())["fmspc"] == "B0C06F000000"
    loaded = IntelTestRoot.load(tmp_path)
    assert loaded.root_der == original.root_der
    assert loaded.pck_chain_pem == original.pck_chain_pem
    assert loaded.platform == original.platform
    assert loaded.tcb_status == "OutOfDate"
    assert loaded.advisory_ids == ("INTEL-SA-00828",)
    for tee in TEES:
        assert loaded.collateral_json(tee) == original.collateral_json(tee)
        assert (tmp_path / f"collateral_{tee}.json").read_text().strip() == (
            original.collateral_json(tee)
        )
    # The loaded root still signs quotes that verify.
    quote = build_tdx_quote(loaded, TdxFields())
    coll = dcap_qvl.QuoteCollateralV3.from_json(loaded.collateral_json("tdx"))
    report = dcap_qvl.verify_with_root_ca(quote, coll, loaded.root_der, int(time.time()))
    assert report.status == "OutOfDate"
    assert list(report.advisory_ids) == ["INTEL-SA-00828"]


def test_load_rejects_a_key_that_does_not_match(tmp_path: Path) -> None:
    IntelTestRoot.create().save(tmp_path)
    other = tmp_path / "other"
    IntelTestRoot.create().save(other)
    (tmp_path / "pck.key.pem").write_bytes((other / "pck.key.pem").read_bytes())
    with pytest.raises(ParseError, match=r"pck\.key\.pem does not match pck\.pem"):
        IntelTestRoot.load(tmp_path)


def test_load_rejects_tampered_collateral(tmp_path: Path) -> None:
    IntelTestRoot.create().save(tmp_path)
    path = tmp_path / "tcb_info_tdx.json"
    path.write_bytes(path.read_bytes().replace(b'"UpToDate"', b'"OutOfDate"', 1))
    with pytest.raises(ParseError, match="signature does not verify"):
        IntelTestRoot.load(tmp_path)


def test_load_reports_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"root\.key\.pem"):
        IntelTestRoot.load(tmp_path)
