"""Trustee-compatible claims for TDX and SGX quotes.

Key names and encodings follow Trustee's ``deps/verifier`` (tdx and sgx
modules): nested JSON, every byte field as lower-case hex, integers that
Trustee emits as raw little-endian bytes kept as hex too.  The DCAP
"supplemental" keys come from dcap-qvl's verified claims.
"""

from __future__ import annotations

from typing import Any

from veritee.verifier.intel_collateral_facts import CollateralFacts
from veritee.verifier.intel_pck import PckInfo
from veritee.verifier.intel_quote import EnclaveReport, Quote, TdReport
from veritee.verifier.intel_tcb import TcbEvaluation

JSON = dict[str, Any]
_SGX_TYPES = {0: "Standard", 1: "Scalable", 2: "ScalableWithIntegrity"}
# TDATTRIBUTES bits Trustee names (its TdAttributesFlags), lower-cased.
_TD_FLAGS = {
    "debug": 0,
    "septve_disable": 28,
    "protection_keys": 30,
    "key_locker": 31,
    "perfmon": 63,
}


def _u16(value: int) -> str:
    return value.to_bytes(2, "little").hex()


def _u32(value: int) -> str:
    return value.to_bytes(4, "little").hex()


def td_attribute_flags(td_attributes: bytes) -> dict[str, bool]:
    bits = int.from_bytes(td_attributes, "little")
    return {name: bool(bits >> bit & 1) for name, bit in _TD_FLAGS.items()}


# (claim, offset, size) of the TD report body's byte fields, in claim order: the claims are
# slices of one hex string of the body.
_TD_FIELDS = (
    ("tcb_svn", 0, 16),
    ("mr_seam", 16, 48),
    ("mrsigner_seam", 64, 48),
    ("seam_attributes", 112, 8),
    ("td_attributes", 120, 8),
    ("xfam", 128, 8),
    ("mr_td", 136, 48),
    ("mr_config_id", 184, 48),
    ("mr_owner", 232, 48),
    ("mr_owner_config", 280, 48),
    ("rtmr_0", 328, 48),
    ("rtmr_1", 376, 48),
    ("rtmr_2", 424, 48),
    ("rtmr_3", 472, 48),
    ("report_data", 520, 64),
)
_TD15_FIELDS = (("tee_tcb_svn2", 584, 16), ("mr_servicetd", 600, 48))


def tdx_claims(quote: Quote) -> JSON:
    body = quote.body
    assert isinstance(body, TdReport)
    h = quote.header
    header = {
        "version": _u16(h.version),
        "att_key_type": _u16(h.att_key_type),
        "tee_type": _u32(h.tee_type),
        "reserved": h.reserved.hex(),
        "vendor_id": h.vendor_id.hex(),
        "user_data": h.user_data.hex(),
    }
    text = body.raw.hex()
    fields: JSON = {name: text[2 * off : 2 * (off + size)] for name, off, size in _TD_FIELDS}
    if body.tee_tcb_svn2 is not None and body.mr_servicetd is not None:
        fields.update((name, text[2 * off : 2 * (off + size)]) for name, off, size in _TD15_FIELDS)
    quote_map: JSON = {"header": header, "body": fields}
    if h.version == 5:
        quote_map["type"] = _u16(quote.body_type)
        quote_map["size"] = _u32(len(body.raw))
    return {
        "quote": quote_map,
        "td_attributes": td_attribute_flags(body.td_attributes),
        "report_data": fields["report_data"],
        "init_data": fields["mr_config_id"],
    }


def sgx_claims(quote: Quote) -> JSON:
    body = quote.body
    assert isinstance(body, EnclaveReport)
    h = quote.header
    header = {
        "version": _u16(h.version),
        "att_key_type": _u16(h.att_key_type),
        "att_key_data_0": _u32(h.tee_type),
        "qe_svn": h.reserved[0:2].hex(),
        "pce_svn": h.reserved[2:4].hex(),
        "vendor_id": h.vendor_id.hex(),
        "user_data": h.user_data.hex(),
    }
    fields = {
        "cpu_svn": body.cpu_svn.hex(),
        "misc_select": body.misc_select.hex(),
        "reserved1": body.reserved1.hex(),
        "isv_ext_prod_id": body.isv_ext_prod_id.hex(),
        "attributes.flags": body.attributes[0:8].hex(),
        "attributes.xfrm": body.attributes[8:16].hex(),
        "mr_enclave": body.mr_enclave.hex(),
        "reserved2": body.reserved2.hex(),
        "mr_signer": body.mr_signer.hex(),
        "reserved3": body.reserved3.hex(),
        "config_id": body.config_id.hex(),
        "isv_prod_id": _u16(body.isv_prod_id),
        "isv_svn": _u16(body.isv_svn),
        "config_svn": _u16(body.config_svn),
        "reserved4": body.reserved4.hex(),
        "isv_family_id": body.isv_family_id.hex(),
        "report_data": body.report_data.hex(),
    }
    return {
        "header": header,
        "body": fields,
        "debug": body.debug,
        "report_data": body.report_data.hex(),
        "init_data": body.config_id.hex(),
    }


def supplemental_claims(
    pck: PckInfo,
    facts: CollateralFacts,
    evaluation: TcbEvaluation,
    *,
    status: str,
    advisory_ids: tuple[str, ...],
) -> JSON:
    """Trustee's DCAP supplemental keys, from the verified platform and collateral."""
    out: JSON = {
        "tcb_status": status,
        "tcb_date": evaluation.tcb_date,
        "advisory_ids": list(advisory_ids),
        "collateral_expiration_status": "0",
        "earliest_expiration_date": facts.earliest_expiration_date,
        "earliest_issue_date": facts.earliest_issue_date,
        "latest_issue_date": facts.latest_issue_date,
        "pck_crl_num": facts.pck_crl_num,
        "root_ca_crl_num": facts.root_ca_crl_num,
        "root_key_id": facts.root_key_id,
        "tcb_eval_num": evaluation.tcb_eval_data_number,
        "sgx_type": _SGX_TYPES.get(pck.sgx_type, "Unknown"),
        "fmspc": pck.fmspc.lower(),
        "pce_id": pck.pce_id.hex(),
    }
    for key, flag in (
        ("is_cached_keys", pck.cached_keys),
        ("is_dynamic_platform", pck.dynamic_platform),
        ("is_smt_enabled", pck.smt_enabled),
    ):
        if flag is not None:
            out[key] = flag
    if pck.platform_instance_id is not None:
        out["platform_instance_id"] = pck.platform_instance_id.hex()
    module = evaluation.module
    if module is not None:
        out["tdx_module"] = {
            "id": module.id,
            "mrsigner": module.mrsigner,
            "isvsvn": module.isvsvn,
            "tcb_status": module.tcb_status,
            "tcb_date": module.tcb_date,
            "advisory_ids": list(module.advisory_ids),
        }
    return out
