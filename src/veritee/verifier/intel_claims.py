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
    fields: JSON = {
        "tcb_svn": body.tee_tcb_svn.hex(),
        "mr_seam": body.mr_seam.hex(),
        "mrsigner_seam": body.mrsigner_seam.hex(),
        "seam_attributes": body.seam_attributes.hex(),
        "td_attributes": body.td_attributes.hex(),
        "xfam": body.xfam.hex(),
        "mr_td": body.mr_td.hex(),
        "mr_config_id": body.mr_config_id.hex(),
        "mr_owner": body.mr_owner.hex(),
        "mr_owner_config": body.mr_owner_config.hex(),
        **{f"rtmr_{i}": rtmr.hex() for i, rtmr in enumerate(body.rtmrs)},
        "report_data": body.report_data.hex(),
    }
    if body.tee_tcb_svn2 is not None and body.mr_servicetd is not None:
        fields["tee_tcb_svn2"] = body.tee_tcb_svn2.hex()
        fields["mr_servicetd"] = body.mr_servicetd.hex()
    quote_map: JSON = {"header": header, "body": fields}
    if h.version == 5:
        quote_map["type"] = _u16(quote.body_type)
        quote_map["size"] = _u32(len(body.raw))
    return {
        "quote": quote_map,
        "td_attributes": td_attribute_flags(body.td_attributes),
        "report_data": body.report_data.hex(),
        "init_data": body.mr_config_id.hex(),
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
