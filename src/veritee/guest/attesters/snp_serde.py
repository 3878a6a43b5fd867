"""An SEV-SNP report and certificate table in the ``snp`` evidence JSON of guest-components.

The report is virtee/sev's serde form of ``AttestationReport`` (fields in struct
order, byte arrays as lists of ints, reserved fields left out; guest-components §2.3),
from which :func:`veritee.verifier.snp_evidence.rebuild_report` restores the exact
bytes.  The certificate table of SNP_GET_EXT_REPORT (16-byte GUID, u32 offset,
u32 length per entry, an all-zero entry last; offsets count from the table start)
becomes ``cert_chain``: one ``{"cert_type", "data"}`` per entry, or None when empty.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

from veritee.errors import ParseError
from veritee.guest.attesters.base import AttesterError
from veritee.verifier.snp_evidence import CERT_TABLE_GUIDS
from veritee.verifier.snp_report import TcbVersion, parse_report

__all__ = ["attestation_report_json", "cert_chain_json", "snp_evidence"]

_ENTRY = struct.Struct("<16sII")


def snp_evidence(report: bytes, cert_table: bytes | None) -> dict[str, Any]:
    """``{"attestation_report": …, "cert_chain": …}`` for a raw report and its table."""
    return {
        "attestation_report": attestation_report_json(report),
        "cert_chain": cert_chain_json(cert_table) if cert_table else None,
    }


def attestation_report_json(report: bytes) -> dict[str, Any]:
    """virtee/sev's serde form of a raw report.  Raises :class:`AttesterError` if the
    bytes are not a report."""
    try:
        r = parse_report(report)
    except ParseError as exc:
        raise AttesterError(f"the TEE returned a malformed SNP report: {exc}") from exc
    turin = r.product == "Turin"

    def tcb(t: TcbVersion) -> dict[str, int | None]:
        return {
            "fmc": t.fmc if turin else None,
            "bootloader": t.bootloader,
            "tee": t.tee,
            "snp": t.snp,
            "microcode": t.microcode,
        }

    def fw(off: int) -> dict[str, int]:
        return {"major": r.raw[off + 2], "minor": r.raw[off + 1], "build": r.raw[off]}

    cpuid = r.cpuid
    return {
        "version": r.version,
        "guest_svn": r.guest_svn,
        "policy": r.policy.value,
        "family_id": list(r.family_id),
        "image_id": list(r.image_id),
        "vmpl": r.vmpl,
        "sig_algo": r.signature_algo,
        "current_tcb": tcb(r.current_tcb),
        "plat_info": r.platform_info.value,
        "key_info": r.key_info,
        "report_data": list(r.report_data),
        "measurement": list(r.measurement),
        "host_data": list(r.host_data),
        "id_key_digest": list(r.id_key_digest),
        "author_key_digest": list(r.author_key_digest),
        "report_id": list(r.report_id),
        "report_id_ma": list(r.report_id_ma),
        "reported_tcb": tcb(r.reported_tcb),
        "cpuid_fam_id": None if cpuid is None else cpuid[0],
        "cpuid_mod_id": None if cpuid is None else cpuid[1],
        "cpuid_step": None if cpuid is None else cpuid[2],
        "chip_id": list(r.chip_id),
        "committed_tcb": tcb(r.committed_tcb),
        "current": fw(0x1E8),
        "committed": fw(0x1EC),
        "launch_tcb": tcb(r.launch_tcb),
        "launch_mit_vector": r.launch_mit_vector,
        "current_mit_vector": r.current_mit_vector,
        "signature": {"r": list(r.signature_r), "s": list(r.signature_s)},
    }


def cert_chain_json(table: bytes) -> list[dict[str, Any]] | None:
    """The ``cert_chain`` of a certificate table: known GUIDs by name (``VCEK``, ``VLEK``,
    ``ASK``, ``ARK``), others as ``{"OTHER": "<uuid>"}``; None for an empty table."""
    chain: list[dict[str, Any]] = []
    for pos in range(0, len(table) - _ENTRY.size + 1, _ENTRY.size):
        guid_bytes, offset, length = _ENTRY.unpack_from(table, pos)
        if not any(table[pos : pos + _ENTRY.size]):
            return chain or None
        guid = uuid.UUID(bytes=guid_bytes)
        if length == 0 or offset + length > len(table):
            raise AttesterError(
                f"SNP certificate table entry {guid} points outside the table "
                f"(offset {offset}, length {length}, table {len(table)} bytes)"
            )
        name = CERT_TABLE_GUIDS.get(guid)
        chain.append(
            {
                "cert_type": name if name is not None else {"OTHER": str(guid)},
                "data": list(table[offset : offset + length]),
            }
        )
    raise AttesterError("SNP certificate table has no all-zero terminator entry")
