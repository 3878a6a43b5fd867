"""Tell which TEE produced a piece of evidence, from its bytes alone."""

from __future__ import annotations

import json
import struct

from veritee.errors import InputError
from veritee.verifier.intel import unwrap_evidence

SNP_REPORT_LEN = 0x4A0
_HCL_MAGIC = b"HCLA"


def detect_tee(evidence: bytes) -> str:
    """Return "tdx", "sgx", "snp" or "sample"; raise :class:`InputError` when it is none of them."""
    if evidence.lstrip().startswith(b"{"):
        return _detect_json(evidence)
    if evidence.startswith(_HCL_MAGIC):
        return "snp"
    if len(evidence) >= 8:
        version, key_type, tee_type = struct.unpack_from("<HHI", evidence, 0)
        if version in (3, 4, 5) and key_type == 2:
            if tee_type == 0x81:
                return "tdx"
            if tee_type == 0 and version == 3:
                return "sgx"
        (snp_version,) = struct.unpack_from("<I", evidence, 0)
        if 2 <= snp_version <= 5 and len(evidence) >= SNP_REPORT_LEN:
            return "snp"
    raise InputError("cannot tell the TEE type of this evidence; pass --tee tdx|sgx|snp")


def _detect_json(evidence: bytes) -> str:
    try:
        doc = json.loads(evidence)
    except ValueError as exc:
        raise InputError(f"evidence looks like JSON but does not parse: {exc}") from exc
    if not isinstance(doc, dict):
        raise InputError("evidence JSON is not an object")
    if "attestation_report" in doc or ("report" in doc and "vcek" in doc):
        return "snp"
    if isinstance(doc.get("svn"), str):
        return "sample"
    if "quote" in doc and isinstance(doc["quote"], str):
        return detect_tee(unwrap_evidence(evidence))
    raise InputError("evidence JSON is not a known TEE evidence shape; pass --tee")
