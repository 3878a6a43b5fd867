"""Emulated Intel quotes: verified by IntelVerifier and dcap-qvl under the test root only."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import dcap_qvl
import pytest
from local_pcs import LocalServer, Reply

from veritee.emulator.intel_pki import QE_IDENTITY, IntelTestRoot
from veritee.emulator.intel_quote import (
    QE_AUTH_DATA,
    SgxFields,
    TdxFields,
    apply_settings,
    build_sgx_quote,
    build_tdx_quote,
    settable_fields,
)
from veritee.verifier.base import Verdict, VerifyOptions
from veritee.verifier.intel import IntelVerifier
from veritee.verifier.intel_quote import EnclaveReport, TdReport, parse_quote

Tee = Literal["tdx", "sgx"]


class RootCollateral:
    """The collateral source a verifier gets: the root's QuoteCollateralV3 JSON."""

    def __init__(self, root: IntelTestRoot) -> None:
        self.root = root

    def collateral_for(self, *, tee: Tee, **_: object) -> str:
        return self.root.collateral_json(tee)


@pytest.fixture(scope="session")
def root() -> IntelTestRoot:
    return IntelTestRoot.create()


REPORT_DATA = hashlib.sha512(b"nonce").digest()

# name -> (tee, builder, expected body offset, expected signature-data offset)
KINDS: dict[str, tuple[Tee, Callable[[IntelTestRoot], bytes], int, int]] = {
    "tdx-v4": (
        "tdx",
        lambda r: build_tdx_quote(r, TdxFields(report_data=REPORT_DATA)),
        48,
        636,
    ),
    "tdx-v5-td10": (
        "tdx",
        lambda r: build_tdx_quote(r, TdxFields(report_data=REPORT_DATA), version=5),
        54,
        642,
    ),
    "tdx-v5-td15": (
        "tdx",
        lambda r: build_tdx_quote(r, TdxFields(report_data=REPORT_DATA), version=5, td15=True),
        54,
        706,
    ),
    "sgx-v3": ("sgx", lambda r: build_sgx_quote(r, SgxFields(report_data=REPORT_DATA)), 48, 436),
}


def verify(
    root: IntelTestRoot,
    tee: Tee,
    quote: bytes,
    *,
    root_der: bytes | None = None,
    **options: object,
) -> Verdict:
    verifier = IntelVerifier(
        tee, collateral=RootCollateral(root), root_ca_der=root_der or root.root_der
    )
    return verifier.verify(quote, VerifyOptions(**options))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_verifies_up_to_date(root: IntelTestRoot, kind: str) -> None:
    tee, build, _, _ = KINDS[kind]
    verdict = verify(root, tee, build(root), report_data=REPORT_DATA)
    assert verdict.verified, verdict.error
    assert verdict.tcb_status == "UpToDate"
    assert verdict.advisory_ids == ()
    assert verdict.claims["report_data"] == REPORT_DATA.hex()


@pytest.mark.parametrize("kind", KINDS)
def test_dcap_qvl_accepts_under_the_test_root(root: IntelTestRoot, kind: str) -> None:
    tee, build, _, _ = KINDS[kind]
    quote = build(root)
    now = int(time.time())
    coll = dcap_qvl.QuoteCollateralV3.from_json(root.collateral_json(tee))
    report = dcap_qvl.verify_with_root_ca(quote, coll, root.root_der, now)
    assert report.status == "UpToDate"
    assert list(report.advisory_ids) == []
    dcap_qvl.QuoteVerifier(root.root_der).verify_with_policy(
        quote, coll, now, dcap_qvl.QuotePolicy.strict(now)
    )


@pytest.mark.parametrize("kind", KINDS)
def test_intel_root_rejects_emulated_quotes(root: IntelTestRoot, kind: str) -> None:
    tee, build, _, _ = KINDS[kind]
    verdict = IntelVerifier(tee, collateral=RootCollateral(root)).verify(
        build(root), VerifyOptions()
    )
    assert not verdict.verified
    assert verdict.step == "root_ca"
    with pytest.raises(ValueError, match="Verification failed"):
        dcap_qvl.verify(
            build(root),
            dcap_qvl.QuoteCollateralV3.from_json(root.collateral_json(tee)),
            int(time.time()),
        )


@pytest.mark.parametrize("kind", KINDS)
def test_layout_matches_real_quotes(root: IntelTestRoot, kind: str, vectors: Path) -> None:
    tee, build, body_offset, sig_offset = KINDS[kind]
    quote = build(root)
    ours = parse_quote(quote)
    assert (ours.body_offset, ours.sig_data_offset) == (body_offset, sig_offset)
    real = {
        "tdx-v4": "dcap-qvl/tdx_quote",
        "tdx-v5-td15": "trustee/tdx_quote_5.dat",
        "sgx-v3": "dcap-qvl/sgx_quote",
    }.get(kind)
    if real is not None:
        vector = parse_quote((vectors / real).read_bytes())
        assert (vector.body_offset, vector.sig_data_offset) == (body_offset, sig_offset)
        assert vector.header.vendor_id == ours.header.vendor_id
        assert vector.auth.qe_auth_data == ours.auth.qe_auth_data == QE_AUTH_DATA
    assert ours.header.version == (3 if tee == "sgx" else (5 if "v5" in kind else 4))
    assert ours.pck_chain_pem == root.pck_chain_pem
    assert quote[-1:] == b"\x00"  # PEM chain + NUL
    assert ours.report_data == REPORT_DATA
    qe = ours.auth.qe_report
    assert qe.mr_signer == QE_IDENTITY[tee].mrsigner
    assert qe.isv_prod_id == QE_IDENTITY[tee].isvprodid
    assert qe.isv_svn == root.platform.qe_isvsvn
    assert qe.attributes[0] == 0x11
    assert not qe.debug
    assert qe.report_data == (
        hashlib.sha256(ours.auth.attestation_key + QE_AUTH_DATA).digest() + bytes(32)
    )
    # dcap-qvl's parser reads the same fields.
    theirs = dcap_qvl.parse_quote(quote)
    assert theirs.header.version == ours.header.version
    assert str(theirs.fmspc()).upper() == root.platform.fmspc
    assert str(theirs.ca()).lower() == "platform"
    assert bytes(theirs.report.report_data) == REPORT_DATA
    if tee == "tdx":
        assert isinstance(ours.body, TdReport)
        assert bytes(theirs.report.tee_tcb_svn) == ours.body.tee_tcb_svn
        assert ours.body.tee_tcb_svn == root.platform.tee_tcb_svn
        assert (ours.body.tee_tcb_svn2 is not None) == ("td15" in kind)
    else:
        assert isinstance(ours.body, EnclaveReport)
        assert bytes(theirs.report.cpu_svn) == root.platform.cpu_svn
        assert not ours.body.debug


def test_each_quote_has_a_fresh_attestation_key(root: IntelTestRoot) -> None:
    keys = {parse_quote(build_tdx_quote(root, TdxFields())).auth.attestation_key for _ in range(3)}
    assert len(keys) == 3


# --- TCB status and revocation --------------------------------------------------------

STATUSES = [
    ("OutOfDate", ()),
    ("ConfigurationNeeded", ()),
    ("SWHardeningNeeded", ("INTEL-SA-00615", "INTEL-SA-00657")),
    ("ConfigurationAndSWHardeningNeeded", ("INTEL-SA-00289",)),
    ("OutOfDateConfigurationNeeded", ("INTEL-SA-00828",)),
]


@pytest.mark.parametrize(("status", "advisories"), STATUSES, ids=[s for s, _ in STATUSES])
@pytest.mark.parametrize("kind", ["tdx-v4", "tdx-v5-td15", "sgx-v3"])
def test_platform_status_is_reported(kind: str, status: str, advisories: tuple[str, ...]) -> None:
    root = IntelTestRoot.create(tcb_status=status, advisory_ids=advisories)
    tee, build, _, _ = KINDS[kind]
    verdict = verify(root, tee, build(root))
    assert verdict.verified, verdict.error
    assert verdict.tcb_status == status
    assert verdict.advisory_ids == advisories


@pytest.mark.parametrize("kind", ["tdx-v4", "sgx-v3"])
def test_revoked_tcb_is_rejected(kind: str) -> None:
    root = IntelTestRoot.create(tcb_status="Revoked")
    tee, build, _, _ = KINDS[kind]
    verdict = verify(root, tee, build(root))
    assert not verdict.verified
    assert verdict.step == "tcb_revoked"
    assert verdict.tcb_status == "Revoked"


@pytest.mark.parametrize("kind", ["tdx-v4", "sgx-v3"])
def test_revoked_pck_is_rejected(kind: str) -> None:
    root = IntelTestRoot.create(pck_revoked=True)
    tee, build, _, _ = KINDS[kind]
    verdict = verify(root, tee, build(root))
    assert not verdict.verified
    assert verdict.step == "revoked"
    assert "CertRevoked" in (verdict.error or "")


def test_debug_td_is_rejected_unless_allowed(root: IntelTestRoot) -> None:
    quote = build_tdx_quote(root, TdxFields(td_attributes=(0x10000001).to_bytes(8, "little")))
    verdict = verify(root, "tdx", quote)
    assert not verdict.verified
    assert verdict.step == "debug"
    assert verdict.tcb_status == "UpToDate"
    assert verify(root, "tdx", quote, allow_debug=True).verified


def test_debug_enclave_is_rejected(root: IntelTestRoot) -> None:
    attributes = (0x07).to_bytes(8, "little") + (0xE7).to_bytes(8, "little")
    verdict = verify(root, "sgx", build_sgx_quote(root, SgxFields(attributes=attributes)))
    assert not verdict.verified
    assert verdict.step == "debug"


def test_tampered_body_fails_the_quote_signature(root: IntelTestRoot) -> None:
    quote = bytearray(build_tdx_quote(root, TdxFields()))
    quote[200] ^= 1  # MRTD
    verdict = verify(root, "tdx", bytes(quote))
    assert verdict.step == "quote_signature"


def test_collateral_window_follows_now() -> None:
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    root = IntelTestRoot.create(now=created)
    quote = build_tdx_quote(root, TdxFields())
    assert verify(root, "tdx", quote, at=created + dt.timedelta(days=29)).verified
    late = verify(root, "tdx", quote, at=created + dt.timedelta(days=31))
    assert not late.verified
    assert late.step == "collateral_expiry"
    early = verify(root, "tdx", quote, at=created - dt.timedelta(hours=2))
    assert early.step == "collateral_expiry"


def test_report_data_and_init_data_bindings(root: IntelTestRoot) -> None:
    config = hashlib.sha384(b"initdata").digest()
    quote = build_tdx_quote(root, TdxFields(report_data=REPORT_DATA, mr_config_id=config))
    assert verify(root, "tdx", quote, report_data=REPORT_DATA, init_data=config).verified
    assert verify(root, "tdx", quote, report_data=b"other").step == "report_data"
    assert verify(root, "tdx", quote, init_data=b"other").step == "init_data"


def test_td15_needs_version_5(root: IntelTestRoot) -> None:
    with pytest.raises(ValueError, match="version 5"):
        build_tdx_quote(root, TdxFields(), version=4, td15=True)
    with pytest.raises(ValueError, match="mr_td must be 48 bytes"):
        build_tdx_quote(root, TdxFields(mr_td=b"\x01"))


# --- apply_settings -------------------------------------------------------------------


def test_apply_settings_tdx(root: IntelTestRoot) -> None:
    fields = TdxFields()
    rtmr = hashlib.sha384(b"rtmr").digest()
    apply_settings(fields, {"rtmr2": rtmr, "mr_owner": b"\x07" * 48, "report_data": REPORT_DATA})
    assert fields.rtmr2 == rtmr
    assert fields.mr_owner == b"\x07" * 48
    body = parse_quote(build_tdx_quote(root, fields)).body
    assert isinstance(body, TdReport)
    assert body.rtmrs[2] == rtmr
    assert body.mr_owner == b"\x07" * 48
    assert set(settable_fields(fields)) == {
        "report_data",
        "mr_td",
        "rtmr0",
        "rtmr1",
        "rtmr2",
        "rtmr3",
        "mr_config_id",
        "mr_owner",
        "mr_owner_config",
        "td_attributes",
        "xfam",
    }


def test_apply_settings_sgx_integers_are_little_endian(root: IntelTestRoot) -> None:
    fields = SgxFields()
    apply_settings(fields, {"isv_prod_id": b"\x34\x12", "isv_svn": b"\x02\x00"})
    assert (fields.isv_prod_id, fields.isv_svn) == (0x1234, 2)
    body = parse_quote(build_sgx_quote(root, fields)).body
    assert isinstance(body, EnclaveReport)
    assert (body.isv_prod_id, body.isv_svn) == (0x1234, 2)


def test_apply_settings_errors_name_the_field_and_size() -> None:
    fields = TdxFields()
    with pytest.raises(ValueError, match=r"report_data must be 64 bytes, got 3"):
        apply_settings(fields, {"report_data": b"abc"})
    with pytest.raises(ValueError, match=r"unknown TDX quote field 'mr_enclave'.*rtmr0"):
        apply_settings(fields, {"mr_enclave": bytes(32)})
    with pytest.raises(ValueError, match=r"unknown SGX quote field 'rtmr0'"):
        apply_settings(SgxFields(), {"rtmr0": bytes(48)})
    with pytest.raises(ValueError, match=r"isv_svn must be 2 bytes, got 4"):
        apply_settings(SgxFields(), {"isv_svn": bytes(4)})
    # nothing is applied when one setting is bad
    with pytest.raises(ValueError, match="xfam"):
        apply_settings(fields, {"mr_td": b"\x01" * 48, "xfam": b"\x01"})
    assert fields.mr_td == bytes(48)


# --- the raw material of an emulated PCCS ---------------------------------------------


@pytest.mark.parametrize("kind", ["tdx-v4", "sgx-v3"])
def test_pccs_bodies_work_through_dcap_qvl_get_collateral(root: IntelTestRoot, kind: str) -> None:
    """dcap-qvl re-serialises the tcbInfo/enclaveIdentity it fetches: compact JSON survives."""
    tee, build, _, _ = KINDS[kind]
    quote = build(root)
    server = LocalServer()

    def chain(pem: bytes) -> str:
        return urllib.parse.quote(pem.decode(), safe="")

    server.routes["/sgx/certification/v4/pckcrl"] = Reply(
        200, root.pck_crl_der, {"SGX-PCK-CRL-Issuer-Chain": chain(root.pck_crl_issuer_chain_pem)}
    )
    server.routes[f"/{tee}/certification/v4/tcb"] = Reply(
        200, root.pcs_tcb_body(tee), {"TCB-Info-Issuer-Chain": chain(root.tcb_issuer_chain_pem)}
    )
    server.routes[f"/{tee}/certification/v4/qe/identity"] = Reply(
        200,
        root.pcs_qe_identity_body(tee),
        {"SGX-Enclave-Identity-Issuer-Chain": chain(root.tcb_issuer_chain_pem)},
    )
    server.routes["/sgx/certification/v4/rootcacrl"] = Reply(200, root.root_crl_der.hex().encode())

    async def fetch() -> object:
        return await dcap_qvl.get_collateral(server.url, quote)

    server.start()
    try:
        collateral = asyncio.run(fetch())
    finally:
        server.stop()
    report = dcap_qvl.verify_with_root_ca(quote, collateral, root.root_der, int(time.time()))
    assert report.status == "UpToDate"
