"""Trustee-compatible claims for TDX and SGX quotes.

Key names and encodings follow Trustee's ``deps/verifier`` (tdx and sgx
modules): nested JSON, every byte field as lower-case hex, integers that
Trustee emits as raw little-endian bytes kept as hex too.  The DCAP
"supplemental" keys come from dcap-qvl's verified claims.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from veritee.verifier.intel_quote import EnclaveReport, Quote, TdReport

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


def _date(epoch: int | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _flag(value: object) -> bool | None:
    if value is None:
        return None
    return str(value).lower() == "true"


def supplemental_claims(qvl: JSON) -> JSON:
    """Map dcap-qvl's ``QuoteClaims`` JSON onto Trustee's DCAP supplemental keys."""
    platform = qvl.get("platform", {})
    pck = platform.get("pck", {})
    level = platform.get("tcb_level", {})
    tcb = qvl.get("tcb", {})
    out: JSON = {
        "tcb_status": tcb.get("status"),
        "tcb_date": level.get("tcbDate"),
        "advisory_ids": list(tcb.get("advisory_ids", [])),
        "collateral_expiration_status": "0",
        "earliest_expiration_date": _date(qvl.get("earliest_expiration_date")),
        "earliest_issue_date": _date(qvl.get("earliest_issue_date")),
        "latest_issue_date": _date(qvl.get("latest_issue_date")),
        "pck_crl_num": platform.get("pck_crl_num"),
        "root_ca_crl_num": platform.get("root_ca_crl_num"),
        "root_key_id": bytes(platform.get("root_key_id", [])).hex(),
        "tcb_eval_num": tcb.get("eval_data_number"),
        "sgx_type": _SGX_TYPES.get(pck.get("sgx_type", -1), "Unknown"),
        "fmspc": bytes(pck.get("fmspc", [])).hex(),
        "pce_id": bytes(pck.get("pce_id", [])).hex(),
    }
    for key, src in (("is_cached_keys", "cached_keys"), ("is_dynamic_platform", "dynamic_platform"),
                     ("is_smt_enabled", "smt_enabled")):
        flag = _flag(pck.get(src))
        if flag is not None:
            out[key] = flag
    if pck.get("platform_instance_id"):
        out["platform_instance_id"] = bytes(pck["platform_instance_id"]).hex()
    if pck.get("platform_provider_id"):
        out["platform_provider_id"] = bytes(pck["platform_provider_id"]).hex()
    current = platform.get("current_tcb_level")
    if current:
        out["tcb_status_current"] = current.get("tcbStatus")
        out["tcb_date_current"] = current.get("tcbDate")
        out["advisory_ids_current"] = list(current.get("advisoryIDs", []))
    return out
