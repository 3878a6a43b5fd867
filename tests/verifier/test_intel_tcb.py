"""Intel TCB evaluation, cross-checked with dcap-qvl 0.7.0 on every real vector; synthetic cases.

The real vectors and their expected verdicts are listed in testdata/vectors/SOURCES.md.
The synthetic tcbInfo / QE identity texts below carry no signatures: ``evaluate_tcb``
takes text that dcap-qvl has already verified.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dcap_qvl
import pytest

from veritee.errors import ParseError, VerificationError
from veritee.verifier import intel_tcb
from veritee.verifier.intel_tcb import (
    ModuleIdentity,
    TcbEvaluation,
    TcbNotSupported,
    TcbStatusUnrecognized,
    evaluate_tcb,
)

# --------------------------------------------------------------------------------------
# Real vectors (SOURCES.md): quote, collateral, end of the "as of" window, expectation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    name: str
    quote: str
    collateral: str
    window_end: str

    def now(self) -> int:
        """The window end minus one second, as dcap-qvl's own tests do."""
        return int(dt.datetime.fromisoformat(self.window_end).timestamp()) - 1


T1 = Pair("T1", "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", "2025-07-19T10:00:35Z")
T2 = Pair(
    "T2",
    "dcap-qvl/tdx_quote_outdated",
    "dcap-qvl/tdx_quote_outdated_collateral.json",
    "2026-03-20T10:41:15Z",
)
T5 = Pair(
    "T5",
    "go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
    "go-tdx-guest/derived/collateral_50806f000000.json",
    "2023-07-08T07:24:59Z",
)
T6 = Pair(
    "T6",
    "trustee/tdx_quote_4.dat",
    "go-tdx-guest/derived/collateral_50806f000000.json",
    "2023-07-08T07:24:59Z",
)
T7 = Pair(
    "T7",
    "trustee/tdx_quote_5.dat",
    "dcap-qvl/tdx_quote_outdated_collateral.json",
    "2026-03-20T10:41:15Z",
)
T8A = Pair(
    "T8-tdx-quote.hex",
    "dcap-qvl/tdx-quote.hex",
    "dcap-qvl/tdx_quote_collateral.json",
    "2025-07-19T10:00:35Z",
)
T8B = Pair(
    "T8-quote-from-tappd.hex",
    "dcap-qvl/quote-from-tappd.hex",
    "dcap-qvl/tdx_quote_collateral.json",
    "2025-07-19T10:00:35Z",
)
S1 = Pair("S1", "dcap-qvl/sgx_quote", "dcap-qvl/sgx_quote_collateral.json", "2025-07-19T10:01:18Z")


def read_quote(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".hex":
        text = data.decode("ascii").strip()
        return bytes.fromhex(text.removeprefix("0x"))
    return data


def qe_report_offset(raw: bytes) -> int:
    """Where the QE report starts (verification.md §1.3)."""
    version = int.from_bytes(raw[0:2], "little")
    if version == 3:
        return 564
    if version == 4:
        return 770
    body_size = int.from_bytes(raw[50:54], "little")  # v5 body descriptor
    return 48 + 6 + body_size + 4 + 134


def quote_inputs(raw: bytes) -> dict[str, Any]:
    """evaluate_tcb's quote/PCK arguments, taken from dcap-qvl's parser and the raw QE report."""
    quote = dcap_qvl.parse_quote(raw)
    pck = quote.pck_extension()
    report = quote.report
    tee: Literal["tdx", "sgx"] = "tdx" if quote.is_tdx() else "sgx"
    qe_isvsvn = int.from_bytes(raw[qe_report_offset(raw) + 258 :][:2], "little")
    return {
        "tee": tee,
        "cpu_svn": bytes(pck.cpu_svn),
        "pce_svn": int(pck.pce_svn),
        "tee_tcb_svn": bytes(report.tee_tcb_svn) if tee == "tdx" else None,
        "tee_tcb_svn2": (
            bytes(report.tee_tcb_svn2) if isinstance(report, dcap_qvl.TdReport15) else None
        ),
        "qe_isvsvn": qe_isvsvn,
    }


@dataclass(frozen=True)
class Loaded:
    raw: bytes
    collateral_text: str
    collateral: dict[str, Any]
    now: int

    def evaluate(self) -> TcbEvaluation:
        return evaluate_tcb(
            tcb_info_json=self.collateral["tcb_info"],
            qe_identity_json=self.collateral["qe_identity"],
            **quote_inputs(self.raw),
        )

    def dcap_verify(self) -> Any:
        collateral = dcap_qvl.QuoteCollateralV3.from_json(self.collateral_text)
        return dcap_qvl.verify(self.raw, collateral, self.now)

    def dcap_claims(self) -> dict[str, Any]:
        collateral = dcap_qvl.QuoteCollateralV3.from_json(self.collateral_text)
        policy = dcap_qvl.QuotePolicy.claims_only(self.now)
        claims = dcap_qvl.QuoteVerifier().verify_with_policy(self.raw, collateral, self.now, policy)
        result: dict[str, Any] = json.loads(claims.to_json())
        return result


def load(vectors: Path, pair: Pair) -> Loaded:
    text = (vectors / pair.collateral).read_text()
    return Loaded(read_quote(vectors / pair.quote), text, json.loads(text), pair.now())


def assert_same_as_dcap_qvl(loaded: Loaded, ours: TcbEvaluation) -> None:
    verified = loaded.dcap_verify()
    assert ours.status == verified.status
    assert list(ours.advisory_ids) == list(verified.advisory_ids)
    report = json.loads(verified.to_json())
    assert ours.platform_status == report["platform_status"]["status"]
    assert ours.qe_status == report["qe_status"]["status"]

    claims = loaded.dcap_claims()
    assert ours.status == claims["tcb"]["status"]
    assert list(ours.advisory_ids) == claims["tcb"]["advisory_ids"]
    assert ours.tcb_eval_data_number == claims["tcb"]["eval_data_number"]
    platform_level = claims["platform"]["tcb_level"]
    assert ours.platform_status == platform_level["tcbStatus"]
    assert ours.tcb_date == platform_level["tcbDate"]
    assert claims["platform"]["current_tcb_level"] is None
    qe_level = claims["qe"]["tcb_level"]
    assert ours.qe_status == qe_level["tcbStatus"]
    assert ours.qe_isvsvn_level == qe_level["tcb"]["isvsvn"]


def test_t1_up_to_date_with_module_tdx_01(vectors: Path) -> None:
    loaded = load(vectors, T1)
    ours = loaded.evaluate()
    assert_same_as_dcap_qvl(loaded, ours)
    assert ours.status == "UpToDate"
    assert ours.advisory_ids == ()
    assert ours.module == ModuleIdentity(
        id="TDX_01",
        mrsigner="00" * 48,
        isvsvn=4,
        tcb_status="UpToDate",
        tcb_date="2024-03-13T00:00:00Z",
        advisory_ids=(),
    )
    assert ours.tcb_eval_data_number == 17


def test_s1_sgx_configuration_and_sw_hardening(vectors: Path) -> None:
    loaded = load(vectors, S1)
    ours = loaded.evaluate()
    assert_same_as_dcap_qvl(loaded, ours)
    assert ours.status == "ConfigurationAndSWHardeningNeeded"
    assert ours.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert ours.module is None


@pytest.mark.parametrize("pair", [T2, T5, T7, T8A, T8B], ids=lambda p: p.name)
def test_no_matching_level_like_dcap_qvl(vectors: Path, pair: Pair) -> None:
    loaded = load(vectors, pair)
    with pytest.raises(ValueError, match="No matching TCB level found"):
        loaded.dcap_verify()
    with pytest.raises(TcbNotSupported) as caught:
        loaded.evaluate()
    assert caught.value.step == "tcb_level"
    assert isinstance(caught.value, VerificationError)


def test_t6_debug_td_is_up_to_date(vectors: Path) -> None:
    loaded = load(vectors, T6)
    with pytest.raises(ValueError, match="Debug mode is enabled"):
        loaded.dcap_verify()
    report = dcap_qvl.parse_quote(loaded.raw).report
    assert report.td_attributes[0] & 0x01  # TUD.DEBUG: why dcap-qvl gives no status
    assert report.tee_tcb_svn[1] == 0

    ours = loaded.evaluate()
    assert ours.status == "UpToDate"
    assert ours.advisory_ids == ()
    assert ours.platform_status == "UpToDate"
    assert ours.tcb_date == "2023-02-15T00:00:00Z"
    assert ours.tcb_eval_data_number == 15
    assert ours.module == ModuleIdentity(
        id="TDX_00", mrsigner="00" * 48, isvsvn=None, tcb_status=None, tcb_date=None,
        advisory_ids=(),
    )  # fmt: skip


# dcap-qvl 0.7.0's own unit tests on this tcbInfo (verify.rs, test_tdx_tcb_*), as data.
OUTDATED_CPU_SVN = bytes([3, 3, 2, 2, 4, 1, 0, 5] + [0] * 8)


def outdated_svn(module_isvsvn: int, module_version: int) -> bytes:
    return bytes([module_isvsvn, module_version, 3] + [0] * 13)


@pytest.mark.parametrize(
    ("isvsvn", "status", "date", "advisories"),
    [
        (6, "UpToDate", "2024-11-13T00:00:00Z", ()),
        (4, "OutOfDate", "2024-03-13T00:00:00Z", ("INTEL-SA-01036", "INTEL-SA-01099")),
        (2, "OutOfDate", "2023-08-09T00:00:00Z", ("INTEL-SA-01036", "INTEL-SA-01099")),
    ],
)
def test_real_outdated_tcb_info_module_levels(
    vectors: Path, isvsvn: int, status: str, date: str, advisories: tuple[str, ...]
) -> None:
    collateral = load(vectors, T2).collateral
    ours = evaluate_tcb(
        tee="tdx",
        tcb_info_json=collateral["tcb_info"],
        qe_identity_json=collateral["qe_identity"],
        cpu_svn=OUTDATED_CPU_SVN,
        pce_svn=13,
        tee_tcb_svn=outdated_svn(isvsvn, 1),
        tee_tcb_svn2=None,
        qe_isvsvn=4,
    )
    assert (ours.status, ours.tcb_date, ours.advisory_ids) == (status, date, advisories)
    assert ours.module is not None
    assert ours.module.id == "TDX_01"
    assert ours.tcb_eval_data_number == 18


@pytest.mark.parametrize(
    ("svn", "step"),
    [
        (outdated_svn(6, 2), "tdx_module"),  # no TDX_02
        (outdated_svn(2, 3), "tdx_module"),  # TDX_03 starts at isvsvn 3
        (outdated_svn(1, 1), "tdx_module"),  # TDX_01 starts at isvsvn 2
        (outdated_svn(4, 0), "tcb_level"),  # [0] = 4 now compared with tdx[0] = 5
    ],
)
def test_real_outdated_tcb_info_unappraisable(vectors: Path, svn: bytes, step: str) -> None:
    collateral = load(vectors, T2).collateral
    with pytest.raises(TcbNotSupported) as caught:
        evaluate_tcb(
            tee="tdx",
            tcb_info_json=collateral["tcb_info"],
            qe_identity_json=collateral["qe_identity"],
            cpu_svn=OUTDATED_CPU_SVN,
            pce_svn=13,
            tee_tcb_svn=svn,
            tee_tcb_svn2=None,
            qe_isvsvn=4,
        )
    assert caught.value.step == step


# --------------------------------------------------------------------------------------
# Synthetic collateral
# --------------------------------------------------------------------------------------

DATE = "2024-03-13T00:00:00Z"
OLD_DATE = "2023-08-09T00:00:00Z"
CPU = bytes([2, 2, 2, 2, 3, 1, 0, 5] + [0] * 8)
SGX_COMPS = list(CPU)
TDX_COMPS = [5, 0, 2] + [0] * 13
PCESVN = 11


def comps(values: list[int]) -> list[dict[str, int]]:
    return [{"svn": v} for v in values]


def level(
    status: str = "UpToDate",
    *,
    sgx: list[int] | None = None,
    pcesvn: int = PCESVN,
    tdx: list[int] | None = None,
    date: str = DATE,
    advisories: list[str] | None = None,
    sgx_only: bool = False,
) -> dict[str, Any]:
    tcb: dict[str, Any] = {"sgxtcbcomponents": comps(SGX_COMPS if sgx is None else sgx)}
    if not sgx_only:
        tcb["tdxtcbcomponents"] = comps(TDX_COMPS if tdx is None else tdx)
    tcb["pcesvn"] = pcesvn
    out: dict[str, Any] = {"tcb": tcb, "tcbDate": date, "tcbStatus": status}
    if advisories is not None:
        out["advisoryIDs"] = advisories
    return out


def svn_level(
    isvsvn: int, status: str = "UpToDate", date: str = DATE, advisories: list[str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"tcb": {"isvsvn": isvsvn}, "tcbDate": date, "tcbStatus": status}
    if advisories is not None:
        out["advisoryIDs"] = advisories
    return out


def module(ident: str, levels: list[dict[str, Any]], mrsigner: str = "00" * 48) -> dict[str, Any]:
    return {
        "id": ident,
        "mrsigner": mrsigner,
        "attributes": "0000000000000000",
        "attributesMask": "FFFFFFFFFFFFFFFF",
        "tcbLevels": levels,
    }


def tcb_info(
    levels: list[dict[str, Any]],
    *,
    identities: list[dict[str, Any]] | None = None,
    tee_id: str = "TDX",
    with_tdx_module: bool = True,
    eval_number: int = 17,
) -> str:
    info: dict[str, Any] = {
        "id": tee_id,
        "version": 3,
        "issueDate": "2025-06-19T10:00:00Z",
        "nextUpdate": "2025-07-19T10:00:00Z",
        "fmspc": "B0C06F000000",
        "pceId": "0000",
        "tcbType": 0,
        "tcbEvaluationDataNumber": eval_number,
    }
    if tee_id == "TDX" and with_tdx_module:
        info["tdxModule"] = {
            "mrsigner": "00" * 48,
            "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF",
        }
    if identities is not None:
        info["tdxModuleIdentities"] = identities
    info["tcbLevels"] = levels
    return json.dumps(info, separators=(",", ":"))


def qe_identity(
    levels: list[dict[str, Any]] | None = None, *, qe_id: str = "TD_QE", eval_number: int = 17
) -> str:
    return json.dumps(
        {
            "id": qe_id,
            "version": 2,
            "issueDate": "2025-06-19T10:00:00Z",
            "nextUpdate": "2025-07-19T10:00:00Z",
            "tcbEvaluationDataNumber": eval_number,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": "DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5",
            "isvprodid": 2 if qe_id == "TD_QE" else 1,
            "tcbLevels": [svn_level(4)] if levels is None else levels,
        },
        separators=(",", ":"),
    )


def svn(*head: int) -> bytes:
    return bytes(list(head) + [0] * (16 - len(head)))


DEFAULT_MODULES = [module("TDX_01", [svn_level(4)])]


def tdx(
    info: str | None = None,
    qe: str | None = None,
    *,
    tee_tcb_svn: bytes = svn(5, 1, 2),
    tee_tcb_svn2: bytes | None = None,
    cpu_svn: bytes = CPU,
    pce_svn: int = PCESVN,
    qe_isvsvn: int = 4,
) -> TcbEvaluation:
    return evaluate_tcb(
        tee="tdx",
        tcb_info_json=tcb_info([level()], identities=DEFAULT_MODULES) if info is None else info,
        qe_identity_json=qe_identity() if qe is None else qe,
        cpu_svn=cpu_svn,
        pce_svn=pce_svn,
        tee_tcb_svn=tee_tcb_svn,
        tee_tcb_svn2=tee_tcb_svn2,
        qe_isvsvn=qe_isvsvn,
    )


def test_synthetic_up_to_date_baseline() -> None:
    result = tdx()
    assert result == TcbEvaluation(
        status="UpToDate",
        advisory_ids=(),
        tcb_date=DATE,
        platform_status="UpToDate",
        qe_status="UpToDate",
        qe_isvsvn_level=4,
        module=ModuleIdentity("TDX_01", "00" * 48, 4, "UpToDate", DATE, ()),
        tcb_eval_data_number=17,
    )


@pytest.mark.parametrize(
    ("platform", "qe", "expected"),
    [
        ("UpToDate", "OutOfDate", "OutOfDate"),
        ("SWHardeningNeeded", "OutOfDate", "OutOfDate"),
        ("ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("OutOfDate", "OutOfDate", "OutOfDate"),
        ("OutOfDateConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        # Only OutOfDate and Revoked QE statuses affect the result.
        ("UpToDate", "ConfigurationNeeded", "UpToDate"),
        ("UpToDate", "OutOfDateConfigurationNeeded", "UpToDate"),
        ("SWHardeningNeeded", "UpToDate", "SWHardeningNeeded"),
        ("UpToDate", "Revoked", "Revoked"),
        ("ConfigurationNeeded", "Revoked", "Revoked"),
    ],
)
def test_qe_convergence(platform: str, qe: str, expected: str) -> None:
    result = tdx(
        tcb_info([level(platform)], identities=DEFAULT_MODULES),
        qe_identity([svn_level(4, qe)]),
    )
    assert result.status == expected
    assert result.platform_status == platform
    assert result.qe_status == qe


def test_revoked_platform_level_is_returned_not_raised() -> None:
    result = tdx(
        tcb_info([level("Revoked", advisories=["INTEL-SA-1"])], identities=DEFAULT_MODULES)
    )
    assert result.status == "Revoked"
    assert result.advisory_ids == ("INTEL-SA-1",)


def test_revoked_module_level() -> None:
    info = tcb_info([level()], identities=[module("TDX_01", [svn_level(4, "Revoked")])])
    result = tdx(info)
    assert result.status == "Revoked"
    assert result.platform_status == "Revoked"
    assert result.module is not None
    assert result.module.tcb_status == "Revoked"


def test_advisories_merge_in_dcap_qvl_order() -> None:
    info = tcb_info(
        [level("SWHardeningNeeded", advisories=["INTEL-SA-A", "INTEL-SA-B"])],
        identities=[
            module("TDX_01", [svn_level(4, "OutOfDate", OLD_DATE, ["INTEL-SA-B", "INTEL-SA-C"])])
        ],
    )
    qe = qe_identity(
        [svn_level(4, "OutOfDate", advisories=["INTEL-SA-C", "INTEL-SA-D", "INTEL-SA-A"])]
    )
    result = tdx(info, qe)
    assert result.status == "OutOfDate"
    assert result.platform_status == "OutOfDate"  # converged with the module, as dcap-qvl
    assert result.advisory_ids == ("INTEL-SA-A", "INTEL-SA-B", "INTEL-SA-C", "INTEL-SA-D")
    assert result.tcb_date == OLD_DATE  # the module's earlier date wins
    assert result.module == ModuleIdentity(
        "TDX_01", "00" * 48, 4, "OutOfDate", OLD_DATE, ("INTEL-SA-B", "INTEL-SA-C")
    )


def test_sw_hardening_advisories_without_module() -> None:
    info = tcb_info([level("SWHardeningNeeded", advisories=["INTEL-SA-00615"])], identities=[])
    qe = qe_identity([svn_level(4, advisories=["INTEL-SA-00615", "INTEL-SA-00999"])])
    result = tdx(info, qe, tee_tcb_svn=svn(5, 0, 2))
    assert result.status == "SWHardeningNeeded"
    assert result.advisory_ids == ("INTEL-SA-00615", "INTEL-SA-00999")


def test_module_later_date_keeps_platform_date() -> None:
    info = tcb_info(
        [level(date=OLD_DATE)], identities=[module("TDX_01", [svn_level(4, date=DATE)])]
    )
    assert tdx(info).tcb_date == OLD_DATE


def test_module_identity_tdx_03_selected_case_insensitively() -> None:
    signer3 = "AB" * 48
    info = tcb_info(
        [level(tdx=[9, 9, 2] + [0] * 13)],
        identities=[
            module("TDX_01", [svn_level(4)]),
            module("tdx_03", [svn_level(7), svn_level(3, "OutOfDate", OLD_DATE)], signer3.lower()),
        ],
    )
    # [0] and [1] are judged by TDX_03 alone: 3 < tdx[0] = 9 still matches the level.
    result = tdx(info, tee_tcb_svn=svn(3, 3, 2))
    assert result.module == ModuleIdentity("TDX_03", signer3, 3, "OutOfDate", OLD_DATE, ())
    assert result.status == "OutOfDate"
    assert tdx(info, tee_tcb_svn=svn(8, 3, 2)).module == ModuleIdentity(
        "TDX_03", signer3, 7, "UpToDate", DATE, ()
    )


def test_module_identity_missing() -> None:
    with pytest.raises(TcbNotSupported, match="TDX_02") as caught:
        tdx(tee_tcb_svn=svn(5, 2, 2))
    assert caught.value.step == "tdx_module"


def test_module_identities_absent_altogether() -> None:
    info = tcb_info([level()])
    with pytest.raises(TcbNotSupported) as caught:
        tdx(info)
    assert caught.value.step == "tdx_module"


def test_module_svn_below_every_level() -> None:
    with pytest.raises(TcbNotSupported, match="below") as caught:
        tdx(tee_tcb_svn=svn(3, 1, 2))
    assert caught.value.step == "tdx_module"


def test_module_levels_in_json_order() -> None:
    info = tcb_info(
        [level()], identities=[module("TDX_01", [svn_level(2, "OutOfDate"), svn_level(4)])]
    )
    result = tdx(info, tee_tcb_svn=svn(4, 1, 2))
    assert result.status == "OutOfDate"
    assert result.module is not None
    assert result.module.isvsvn == 2


def test_module_version_zero_compares_index_0() -> None:
    info = tcb_info([level()], identities=[])  # tdx comps [5, 0, 2, ...]
    result = tdx(info, tee_tcb_svn=svn(5, 0, 2))
    assert result.status == "UpToDate"
    assert result.module == ModuleIdentity("TDX_00", "00" * 48, None, None, None, ())
    with pytest.raises(TcbNotSupported) as caught:
        tdx(info, tee_tcb_svn=svn(4, 0, 2))
    assert caught.value.step == "tcb_level"


def test_module_version_zero_with_lower_level_falls_through() -> None:
    info = tcb_info(
        [level(tdx=[5, 0, 2] + [0] * 13), level("OutOfDate", tdx=[3, 0, 2] + [0] * 13)],
        identities=[],
    )
    assert tdx(info, tee_tcb_svn=svn(4, 0, 2)).status == "OutOfDate"


def test_index_2_onwards_always_compared() -> None:
    with pytest.raises(TcbNotSupported):
        tdx(tee_tcb_svn=svn(5, 1, 1))


def test_levels_sorted_not_json_order() -> None:
    low = level("OutOfDate", pcesvn=5, advisories=["INTEL-SA-LOW"])
    high = level("UpToDate")
    info = tcb_info([low, high], identities=DEFAULT_MODULES)
    assert tdx(info).status == "UpToDate"
    assert tdx(info, pce_svn=10).status == "OutOfDate"


def test_tdx_components_break_ties() -> None:
    older = level("OutOfDate", tdx=[5, 0, 1] + [0] * 13)
    newer = level("UpToDate", tdx=[5, 0, 3] + [0] * 13)
    info = tcb_info([older, newer], identities=DEFAULT_MODULES)
    assert tdx(info, tee_tcb_svn=svn(5, 1, 3)).status == "UpToDate"
    assert tdx(info, tee_tcb_svn=svn(5, 1, 2)).status == "OutOfDate"


def test_cpusvn_bytes_decide() -> None:
    older = level("OutOfDate", sgx=[2, 2, 2, 2, 3, 1, 0, 3] + [0] * 8)
    info = tcb_info([level(), older], identities=DEFAULT_MODULES)
    low_byte_7 = bytes([2, 2, 2, 2, 3, 1, 0, 4] + [0] * 8)
    assert tdx(info, cpu_svn=low_byte_7).status == "OutOfDate"
    with pytest.raises(TcbNotSupported):
        tdx(info, cpu_svn=bytes([2, 2, 2, 2, 3, 1, 0, 2] + [0] * 8))


def test_qe_levels_in_json_order() -> None:
    assert tdx(qe=qe_identity([svn_level(1, "OutOfDate"), svn_level(4)])).qe_status == "OutOfDate"
    result = tdx(qe=qe_identity([svn_level(4), svn_level(1, "OutOfDate")]))
    assert (result.qe_status, result.qe_isvsvn_level) == ("UpToDate", 4)
    assert tdx(qe=qe_identity([svn_level(8), svn_level(3, "OutOfDate")])).qe_isvsvn_level == 3


def test_qe_below_minimum() -> None:
    with pytest.raises(TcbNotSupported, match="below minimum required 3") as caught:
        tdx(qe=qe_identity([svn_level(8), svn_level(3)]), qe_isvsvn=2)
    assert caught.value.step == "tcb_level"


@pytest.mark.parametrize(
    ("info", "qe", "step"),
    [
        (tcb_info([level("TDRelaunchAdvised")], identities=DEFAULT_MODULES), None, "tcb_level"),
        (None, qe_identity([svn_level(4, "SWHardeningNeeded")]), "tcb_level"),
        (
            tcb_info(
                [level()], identities=[module("TDX_01", [svn_level(4, "ConfigurationNeeded")])]
            ),
            None,
            "tdx_module",
        ),
    ],
)
def test_unrecognized_status_on_matched_level(info: str | None, qe: str | None, step: str) -> None:
    with pytest.raises(TcbStatusUnrecognized) as caught:
        tdx(info, qe)
    assert caught.value.step == step


def test_unrecognized_status_on_unmatched_level_is_ignored() -> None:
    info = tcb_info([level(), level("TDRelaunchAdvised", pcesvn=1)], identities=DEFAULT_MODULES)
    assert tdx(info).status == "UpToDate"


# TD 1.5 relaunch: TEE_TCB_SVN is the launch TCB, TEE_TCB_SVN2 the current one.
RELAUNCH_MODULES = [module("TDX_01", [svn_level(6), svn_level(2, "OutOfDate", OLD_DATE, ["SA-M"])])]


@pytest.mark.parametrize(
    ("platform", "current_module_svn", "qe", "expected"),
    [
        ("UpToDate", 6, "UpToDate", "TDRelaunchAdvised"),
        ("SWHardeningNeeded", 6, "UpToDate", "TDRelaunchAdvised"),
        ("ConfigurationNeeded", 6, "UpToDate", "TDRelaunchAdvisedConfigurationNeeded"),
        ("UpToDate", 2, "UpToDate", "OutOfDate"),  # current TCB out of date too
        ("UpToDate", 6, "OutOfDate", "OutOfDate"),  # QE out of date: both are
    ],
)
def test_td_relaunch(platform: str, current_module_svn: int, qe: str, expected: str) -> None:
    info = tcb_info([level(platform)], identities=RELAUNCH_MODULES)
    result = tdx(
        info,
        qe_identity([svn_level(4, qe)]),
        tee_tcb_svn=svn(2, 1, 2),
        tee_tcb_svn2=svn(current_module_svn, 1, 2),
    )
    assert result.status == expected
    assert result.advisory_ids == ("SA-M",)  # the launch TCB's; the current one adds none
    assert result.module is not None
    assert result.module.isvsvn == 2


def test_td_relaunch_not_without_svn2() -> None:
    info = tcb_info([level()], identities=RELAUNCH_MODULES)
    assert tdx(info, tee_tcb_svn=svn(2, 1, 2)).status == "OutOfDate"


def test_td15_up_to_date_stays() -> None:
    info = tcb_info([level()], identities=RELAUNCH_MODULES)
    assert tdx(info, tee_tcb_svn=svn(6, 1, 2), tee_tcb_svn2=svn(6, 1, 2)).status == "UpToDate"


def test_td15_current_tcb_must_be_appraisable() -> None:
    info = tcb_info([level()], identities=RELAUNCH_MODULES)
    with pytest.raises(TcbNotSupported, match="TEE_TCB_SVN2"):
        tdx(info, tee_tcb_svn=svn(6, 1, 2), tee_tcb_svn2=svn(6, 1, 1))


def test_td15_revoked_current_tcb() -> None:
    modules = [module("TDX_01", [svn_level(6, "Revoked"), svn_level(2, "OutOfDate")])]
    info = tcb_info([level()], identities=modules)
    result = tdx(info, tee_tcb_svn=svn(2, 1, 2), tee_tcb_svn2=svn(6, 1, 2))
    assert result.status == "Revoked"  # dcap-qvl rejects this as "Revoked" too


def test_sgx_evaluation() -> None:
    info = tcb_info(
        [
            level("ConfigurationNeeded", sgx_only=True, advisories=["INTEL-SA-00289"]),
            level("OutOfDate", sgx_only=True, pcesvn=5),
        ],
        tee_id="SGX",
        eval_number=16,
    )
    result = evaluate_tcb(
        tee="sgx",
        tcb_info_json=info,
        qe_identity_json=qe_identity([svn_level(8), svn_level(6, "OutOfDate")], qe_id="QE"),
        cpu_svn=CPU,
        pce_svn=PCESVN,
        tee_tcb_svn=None,
        tee_tcb_svn2=None,
        qe_isvsvn=7,
    )
    assert result.status == "OutOfDateConfigurationNeeded"
    assert result.module is None
    assert result.tcb_eval_data_number == 16
    assert result.advisory_ids == ("INTEL-SA-00289",)


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '{"id":"TDX"}',
        tcb_info([level()]).replace('"tcbStatus":"UpToDate"', '"tcbStatus":"Fine"'),
        tcb_info([level()]).replace('"pcesvn":11', '"pcesvn":11.0'),
        tcb_info([level()]).replace('"pcesvn":11', '"pcesvn":true'),
        tcb_info([level()]).replace('{"svn":5}', '{"svn":256}'),
        tcb_info([level()]).replace('"tcbType":0', '"tcbType":0,"tcbType":1'),
        tcb_info([level()]).replace('"tcbType":0', '"tcbType":NaN'),
        tcb_info([level()], identities=[{"id": "TDX_01"}]),
    ],
)
def test_malformed_tcb_info(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        tdx(text)
    assert caught.value.what == "tcb info"


def test_malformed_qe_identity() -> None:
    with pytest.raises(ParseError) as caught:
        tdx(qe='{"id":"TD_QE"}')
    assert caught.value.what == "qe identity"


@pytest.mark.parametrize(
    "bad_level",
    [level(sgx=[2] * 15), level(tdx=[5, 0, 2]), level(sgx_only=True)],
    ids=["15-sgx", "3-tdx", "no-tdx"],
)
def test_component_count_mismatch(bad_level: dict[str, Any]) -> None:
    with pytest.raises(ParseError, match="count mismatch"):
        tdx(tcb_info([bad_level], identities=DEFAULT_MODULES))


def test_missing_tdx_module() -> None:
    with pytest.raises(ParseError, match="tdxModule"):
        tdx(tcb_info([level()], identities=DEFAULT_MODULES, with_tdx_module=False))


def test_bad_module_mrsigner() -> None:
    info = tcb_info([level()], identities=[module("TDX_01", [svn_level(4)], mrsigner="00" * 32)])
    with pytest.raises(ParseError, match="mrsigner"):
        tdx(info)


def test_wrong_structures_for_tee() -> None:
    with pytest.raises(VerificationError) as caught:
        tdx(tcb_info([level(sgx_only=True)], tee_id="SGX"))
    assert caught.value.step == "tcb_info"
    with pytest.raises(VerificationError) as caught:
        tdx(qe=qe_identity(qe_id="QE"))
    assert caught.value.step == "qe_identity"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cpu_svn"):
        tdx(cpu_svn=bytes(15))
    with pytest.raises(ValueError, match="tee_tcb_svn"):
        tdx(tee_tcb_svn=bytes(8))
    with pytest.raises(ValueError, match="SGX"):
        evaluate_tcb(
            tee="sgx",
            tcb_info_json=tcb_info([level(sgx_only=True)], tee_id="SGX"),
            qe_identity_json=qe_identity(qe_id="QE"),
            cpu_svn=CPU,
            pce_svn=PCESVN,
            tee_tcb_svn=svn(5, 1, 2),
            tee_tcb_svn2=None,
            qe_isvsvn=4,
        )


def test_eval_data_number_is_the_minimum() -> None:
    info = tcb_info([level()], identities=DEFAULT_MODULES, eval_number=19)
    assert tdx(info, qe_identity(eval_number=18)).tcb_eval_data_number == 18


def test_public_surface() -> None:
    assert set(intel_tcb.__all__) >= {
        "ModuleIdentity",
        "TcbEvaluation",
        "TcbNotSupported",
        "TcbStatusUnrecognized",
        "evaluate_tcb",
    }
    assert issubclass(TcbNotSupported, VerificationError)
    assert issubclass(TcbStatusUnrecognized, VerificationError)
