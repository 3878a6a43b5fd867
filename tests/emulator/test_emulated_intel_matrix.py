"""The verifiers' tamper matrix and property tests, over emulated Intel evidence of every type."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.emulator.intel_pki import IntelTestRoot
from veritee.emulator.intel_quote import SgxFields, TdxFields, build_sgx_quote, build_tdx_quote
from veritee.verifier.base import Verdict, VerifyOptions
from veritee.verifier.intel import IntelVerifier
from veritee.verifier.intel_quote import EnclaveReport, TdReport, parse_quote


class Bundle:
    def __init__(self, text: str) -> None:
        self.text = text

    def collateral_for(self, **_: Any) -> str:
        return self.text


@pytest.fixture(scope="module")
def intel_root() -> IntelTestRoot:
    return IntelTestRoot.create()


KINDS = {
    "tdx-v4": ("tdx", lambda r: build_tdx_quote(r, TdxFields())),
    "tdx-v5": ("tdx", lambda r: build_tdx_quote(r, TdxFields(), version=5)),
    "tdx-v5-td15": ("tdx", lambda r: build_tdx_quote(r, TdxFields(), version=5, td15=True)),
    "sgx-v3": ("sgx", lambda r: build_sgx_quote(r, SgxFields())),
}


def _verify(root: IntelTestRoot, tee: str, raw: bytes, collateral: str | None = None) -> Verdict:
    verifier = IntelVerifier(
        tee,
        collateral=Bundle(collateral or root.collateral_json(tee)),  # type: ignore[arg-type]
        root_ca_der=root.root_der,
    )
    return verifier.verify(raw, VerifyOptions())


def _regions(raw: bytes) -> dict[str, tuple[int, str]]:
    q = parse_quote(raw)
    s = q.sig_data_offset
    qe = s + (128 if q.header.version == 3 else 134)
    leaf_end = raw.index(b"-----END CERTIFICATE-----")
    return {
        "header user data": (40, "quote_signature"),
        "header QE vendor id": (20, "qe_vendor"),
        "body": (q.body_offset + 100, "quote_signature"),
        "report data": (q.signed_len - 10, "quote_signature"),
        "quote signature": (s + 10, "quote_signature"),
        "attestation key": (s + 70, "qe_report_data"),
        "QE report": (qe + 10, "qe_report_signature"),
        "QE report signature": (qe + 384 + 10, "qe_report_signature"),
        "QE auth data": (qe + 384 + 64 + 2 + 5, "qe_report_data"),
        "certification data": (leaf_end - 20, "pck_chain"),
    }


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_untampered_verifies(intel_root: IntelTestRoot, kind: str) -> None:
    tee, make = KINDS[kind]
    verdict = _verify(intel_root, tee, make(intel_root))
    assert verdict.verified, verdict.error
    assert verdict.claims["emulated"] is True


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tamper_matrix(intel_root: IntelTestRoot, kind: str) -> None:
    tee, make = KINDS[kind]
    raw = make(intel_root)
    for region, (offset, step) in _regions(raw).items():
        changed = bytearray(raw)
        changed[offset] = (
            (changed[offset] ^ 0x01)
            if region != "certification data"
            else (ord("A") if changed[offset] != ord("A") else ord("B"))
        )
        verdict = _verify(intel_root, tee, bytes(changed))
        assert not verdict.verified, region
        assert verdict.step == step, (region, verdict.error)


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_collateral_tamper(intel_root: IntelTestRoot, tee: str) -> None:
    raw = KINDS["tdx-v4" if tee == "tdx" else "sgx-v3"][1](intel_root)
    coll = json.loads(intel_root.collateral_json(tee))
    for field, step in (
        ("tcb_info", "tcb_info_signature"),
        ("qe_identity", "qe_identity_signature"),
        ("pck_crl", "crl"),
        ("root_ca_crl", "crl"),
    ):
        changed = dict(coll)
        if field in ("tcb_info", "qe_identity"):
            changed[field] = (
                coll[field].replace('"version":', '"version": ', 1)
                if field == "qe_identity"
                else coll[field].replace('"tcbType":0', '"tcbType":1', 1)
            )
        else:
            der = bytearray(bytes.fromhex(coll[field]))
            der[-5] ^= 0x01
            changed[field] = der.hex()
        assert changed[field] != coll[field]
        verdict = _verify(intel_root, tee, raw, json.dumps(changed))
        assert not verdict.verified, field
        assert verdict.step == step, (field, verdict.error)


PROPS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPS
@given(
    report_data=st.binary(min_size=64, max_size=64),
    mr_td=st.binary(min_size=48, max_size=48),
    rtmrs=st.lists(st.binary(min_size=48, max_size=48), min_size=4, max_size=4),
    mr_config_id=st.binary(min_size=48, max_size=48),
    v5=st.booleans(),
    td15=st.booleans(),
)
def test_tdx_fields_round_trip(
    intel_root: IntelTestRoot,
    report_data: bytes,
    mr_td: bytes,
    rtmrs: list[bytes],
    mr_config_id: bytes,
    v5: bool,
    td15: bool,
) -> None:
    fields = TdxFields(
        report_data=report_data,
        mr_td=mr_td,
        rtmr0=rtmrs[0],
        rtmr1=rtmrs[1],
        rtmr2=rtmrs[2],
        rtmr3=rtmrs[3],
        mr_config_id=mr_config_id,
    )
    raw = build_tdx_quote(intel_root, fields, version=5 if v5 else 4, td15=v5 and td15)
    body = parse_quote(raw).body
    assert isinstance(body, TdReport)
    assert (body.report_data, body.mr_td, body.rtmrs, body.mr_config_id) == (
        report_data,
        mr_td,
        tuple(rtmrs),
        mr_config_id,
    )
    verdict = _verify(intel_root, "tdx", raw)
    assert verdict.verified, verdict.error
    assert verdict.claims["quote"]["body"]["mr_td"] == mr_td.hex()


@PROPS
@given(
    report_data=st.binary(min_size=64, max_size=64),
    mr_enclave=st.binary(min_size=32, max_size=32),
    mr_signer=st.binary(min_size=32, max_size=32),
    isv_prod_id=st.integers(0, 0xFFFF),
    isv_svn=st.integers(0, 0xFFFF),
)
def test_sgx_fields_round_trip(
    intel_root: IntelTestRoot,
    report_data: bytes,
    mr_enclave: bytes,
    mr_signer: bytes,
    isv_prod_id: int,
    isv_svn: int,
) -> None:
    fields = SgxFields(
        report_data=report_data,
        mr_enclave=mr_enclave,
        mr_signer=mr_signer,
        isv_prod_id=isv_prod_id,
        isv_svn=isv_svn,
    )
    raw = build_sgx_quote(intel_root, fields)
    body = parse_quote(raw).body
    assert isinstance(body, EnclaveReport)
    assert (body.report_data, body.mr_enclave, body.mr_signer, body.isv_prod_id, body.isv_svn) == (
        report_data,
        mr_enclave,
        mr_signer,
        isv_prod_id,
        isv_svn,
    )
    verdict = _verify(intel_root, "sgx", raw)
    assert verdict.verified, verdict.error
