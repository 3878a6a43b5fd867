"""Intel TDX/SGX verification: every real vector's verdict, and a tamper matrix.

Negative cases first: nothing here may ever be accepted after a byte changes.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from intel_vectors import ALL, S1, T1, T2, T5, T6, T7, T8A, T8B, IntelPair

from veritee.errors import ParseError
from veritee.verifier.base import TCB_NOT_SUPPORTED, Verdict, VerifyOptions
from veritee.verifier.collateral.intel import FileCollateral
from veritee.verifier.intel import IntelVerifier


class TextCollateral:
    """A collateral source over an in-memory (possibly tampered) bundle."""

    def __init__(self, text: str) -> None:
        self.text = text

    def collateral_for(self, **_: object) -> str:
        return self.text


def _verify(
    vectors: Path,
    pair: IntelPair,
    *,
    quote: bytes | None = None,
    collateral: str | None = None,
    **opts: object,
) -> Verdict:
    qpath, cpath = pair.paths(vectors)
    from veritee.encoding import read_evidence_file

    raw = quote if quote is not None else read_evidence_file(qpath)
    source = TextCollateral(collateral) if collateral is not None else FileCollateral(cpath)
    tee = "sgx" if pair is S1 else "tdx"
    options = VerifyOptions(at=opts.pop("at", pair.as_of()), **opts)  # type: ignore[arg-type]
    return IntelVerifier(tee, collateral=source).verify(raw, options)


# --- tamper matrix (T1, TDX v4, and S1, SGX v3) -----------------------------------------

T1_REGIONS = [
    ("header user_data", 40, "quote_signature"),
    ("header qe_svn", 8, "quote_signature"),
    ("body mr_td", 200, "quote_signature"),
    ("body rtmr_3", 520, "quote_signature"),
    ("body report_data", 600, "quote_signature"),
    ("quote signature r", 640, "quote_signature"),
    ("quote signature s", 690, "quote_signature"),
    ("attestation key", 710, "qe_report_data"),
    ("QE report cpu_svn", 771, "qe_report_signature"),
    ("QE report mrsigner", 770 + 130, "qe_report_signature"),
    ("QE report data", 770 + 330, "qe_report_signature"),
    ("QE report signature", 1160, "qe_report_signature"),
    ("QE auth data", 1230, "qe_report_data"),
]


@pytest.mark.parametrize(("region", "offset", "step"), T1_REGIONS, ids=[r[0] for r in T1_REGIONS])
def test_tdx_tamper_fails_at_named_step(vectors: Path, region: str, offset: int, step: str) -> None:
    raw = bytearray((vectors / T1.quote).read_bytes())
    raw[offset] ^= 0x01
    verdict = _verify(vectors, T1, quote=bytes(raw))
    assert not verdict.verified, region
    assert verdict.step == step, verdict.error


SGX_REGIONS = [
    ("header", 30, "quote_signature"),
    ("mrenclave", 120, "quote_signature"),
    ("signature", 440, "quote_signature"),
    ("attestation key", 510, "qe_report_data"),
    ("QE report", 600, "qe_report_signature"),
    ("QE auth data", 1020, "qe_report_data"),
]


@pytest.mark.parametrize(("region", "offset", "step"), SGX_REGIONS, ids=[r[0] for r in SGX_REGIONS])
def test_sgx_tamper_fails_at_named_step(vectors: Path, region: str, offset: int, step: str) -> None:
    raw = bytearray((vectors / S1.quote).read_bytes())
    raw[offset] ^= 0x01
    verdict = _verify(vectors, S1, quote=bytes(raw))
    assert not verdict.verified
    assert verdict.step == step, verdict.error


def _pem_leaf_signature_offset(raw: bytes) -> int:
    """An offset inside the base64 of the PCK leaf's signature (its last line)."""
    end = raw.index(b"-----END CERTIFICATE-----")
    return end - 20


def test_certification_data_tamper_fails_pck_chain(vectors: Path) -> None:
    raw = bytearray((vectors / T1.quote).read_bytes())
    offset = _pem_leaf_signature_offset(bytes(raw))
    raw[offset] = ord("A") if raw[offset] != ord("A") else ord("B")
    verdict = _verify(vectors, T1, quote=bytes(raw))
    assert not verdict.verified
    assert verdict.step == "pck_chain", verdict.error


def _collateral(vectors: Path, pair: IntelPair) -> dict[str, str]:
    doc: dict[str, str] = json.loads(pair.paths(vectors)[1].read_text())
    return doc


def test_tcb_info_text_tamper(vectors: Path) -> None:
    coll = _collateral(vectors, T1)
    coll["tcb_info"] = coll["tcb_info"].replace(
        '"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18', 1
    )
    verdict = _verify(vectors, T1, collateral=json.dumps(coll))
    assert not verdict.verified
    assert verdict.step == "tcb_info_signature"


def test_qe_identity_text_tamper(vectors: Path) -> None:
    coll = _collateral(vectors, T1)
    coll["qe_identity"] = coll["qe_identity"].replace('"isvprodid":2', '"isvprodid":3', 1)
    assert coll["qe_identity"] != _collateral(vectors, T1)["qe_identity"]
    verdict = _verify(vectors, T1, collateral=json.dumps(coll))
    assert not verdict.verified
    assert verdict.step == "qe_identity_signature"


@pytest.mark.parametrize("field", ["pck_crl", "root_ca_crl"])
def test_crl_tamper(vectors: Path, field: str) -> None:
    coll = _collateral(vectors, T1)
    der = bytearray(bytes.fromhex(coll[field]))
    der[-10] ^= 0x01  # inside the CRL's signature
    coll[field] = der.hex()
    verdict = _verify(vectors, T1, collateral=json.dumps(coll))
    assert not verdict.verified
    assert verdict.step in ("crl", "root_ca_crl"), verdict.error


def test_time_past_collateral_window(vectors: Path) -> None:
    verdict = _verify(vectors, T1, at=T1.as_of() + dt.timedelta(seconds=2))
    assert not verdict.verified
    assert verdict.step == "collateral_expiry"


def test_time_before_collateral_issue(vectors: Path) -> None:
    verdict = _verify(vectors, T1, at=dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
    assert not verdict.verified
    assert verdict.step == "collateral_expiry"


def test_report_data_mismatch(vectors: Path) -> None:
    verdict = _verify(vectors, T1, report_data=b"\x01" * 64)
    assert not verdict.verified
    assert verdict.step == "report_data"


def test_init_data_mismatch(vectors: Path) -> None:
    verdict = _verify(vectors, T1, init_data=b"\x01" * 48)
    assert not verdict.verified
    assert verdict.step == "init_data"


def test_wrong_collateral_for_platform(vectors: Path) -> None:
    other = T2.paths(vectors)[1].read_text()
    verdict = _verify(vectors, T1, collateral=other, at=T2.as_of())
    assert not verdict.verified
    assert verdict.step in ("fmspc", "collateral_expiry", "pck_chain", "crl")


def test_sgx_quote_given_to_tdx_verifier_is_a_parse_error(vectors: Path) -> None:
    raw = (vectors / S1.quote).read_bytes()
    with pytest.raises(ParseError, match="SGX quote"):
        IntelVerifier("tdx", collateral=FileCollateral(T1.paths(vectors)[1])).verify(
            raw, VerifyOptions(at=T1.as_of())
        )


def test_no_collateral_is_named(vectors: Path) -> None:
    verdict = IntelVerifier("tdx", collateral=None).verify(
        (vectors / T1.quote).read_bytes(), VerifyOptions(at=T1.as_of())
    )
    assert not verdict.verified
    assert verdict.step == "collateral"


# --- the verdicts of SOURCES.md -----------------------------------------------------------


def test_t1_up_to_date_with_module_identity(vectors: Path) -> None:
    verdict = _verify(vectors, T1)
    assert verdict.verified, verdict.error
    assert verdict.tcb_status == "UpToDate"
    assert verdict.advisory_ids == ()
    module = verdict.claims["tdx_module"]
    assert module["id"] == "TDX_01"
    assert module["tcb_status"] == "UpToDate"
    assert verdict.claims["quote"]["header"]["tee_type"] == "81000000"
    assert verdict.claims["td_attributes"]["debug"] is False


def test_t1_report_data_binding_passes(vectors: Path) -> None:
    raw = (vectors / T1.quote).read_bytes()
    verdict = _verify(vectors, T1, report_data=raw[568:632])
    assert verdict.verified


def test_s1_configuration_and_sw_hardening(vectors: Path) -> None:
    verdict = _verify(vectors, S1)
    assert verdict.verified, verdict.error
    assert verdict.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert verdict.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert verdict.claims["body"]["attributes.flags"]
    assert verdict.claims["tcb_status"] == "ConfigurationAndSWHardeningNeeded"


@pytest.mark.parametrize("pair", [T2, T5, T7, T8A, T8B], ids=lambda p: p.name)
def test_tcb_not_supported(vectors: Path, pair: IntelPair) -> None:
    verdict = _verify(vectors, pair)
    assert not verdict.verified
    assert verdict.step == "tcb_level"
    assert verdict.tcb_status == TCB_NOT_SUPPORTED


def test_t6_debug_td_is_flagged_and_rejected_by_default(vectors: Path) -> None:
    verdict = _verify(vectors, T6)
    assert not verdict.verified
    assert verdict.step == "debug"
    assert verdict.tcb_status == "UpToDate"
    assert verdict.claims["td_attributes"]["debug"] is True


def test_t6_debug_td_verifies_when_debug_is_allowed(vectors: Path) -> None:
    verdict = _verify(vectors, T6, allow_debug=True)
    assert verdict.verified, verdict.error
    assert verdict.tcb_status == "UpToDate"
    assert verdict.claims["td_attributes"]["debug"] is True


def test_every_vector_pair_has_a_verdict(vectors: Path) -> None:
    verdicts = {pair.name: _verify(vectors, pair) for pair in ALL}
    accepted = sorted(name for name, v in verdicts.items() if v.verified)
    assert accepted == ["S1", "T1"]


def test_trustee_claim_keys_match_fixture(vectors: Path) -> None:
    expected = json.loads(
        (
            vectors.parent / "trustee/deps/verifier/test_data/parse_tdx_claims_expected.json"
        ).read_text()
    )
    verdict = _verify(vectors, T6, allow_debug=True)
    claims = verdict.claims
    assert claims["quote"] == expected["quote"]
    assert claims["td_attributes"] == expected["td_attributes"]
    assert claims["report_data"] == expected["report_data"]
    assert claims["init_data"] == expected["init_data"]
