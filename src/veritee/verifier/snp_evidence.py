"""The envelopes an AMD SEV-SNP report travels in.

Accepted by :func:`parse_evidence`:

* the bare 1184-byte report, optionally followed by an SNP_GET_EXT_REPORT
  certificate table (GUID, offset, length entries; all-zero terminator);
* an Azure HCL report ("HCLA" header; the SNP report sits at offset 0x20);
* Trustee's ``snp`` evidence JSON, ``{"attestation_report": {...}, "cert_chain": [...]|null}``,
  from which the exact report bytes are rebuilt field by field (virtee/sev's serde form);
* Azure vTPM evidence JSON with the HCL report under ``report`` (a byte array) or
  ``hcl_report`` (base64url) and the VCEK under ``vcek`` (PEM or base64url DER).

Every malformed input raises :class:`~veritee.errors.ParseError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import uuid
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509

from veritee.errors import ParseError
from veritee.pem import load_certificates
from veritee.verifier.snp_report import (
    BYTE_FIELDS,
    CHIP_ID_FIELD,
    MAX_VERSION,
    MIN_VERSION,
    REPORT_LEN,
    AttestationReport,
    Product,
    TcbVersion,
    parse_report,
    product_from_cpuid,
)

_WHAT = "snp report"
_JSON = "snp evidence json"
_HCL_MAGIC = b"HCLA"
_HCL_HEADER_LEN = 0x20
_HCL_REPORT_TYPE_OFF = 0x4C8  # u32 in the HCL data that follows the hardware report
_HCL_REPORT_TYPE_SNP = 2
_CERT_ENTRY_LEN = 24

# SNP_GET_EXT_REPORT certificate-table GUIDs (verification.md §4.1).
CERT_TABLE_GUIDS: Final[dict[uuid.UUID, str]] = {
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"): "VCEK",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "VLEK",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ASK",
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ARK",
}
_CERT_TYPES = frozenset(CERT_TABLE_GUIDS.values()) | {"ASVK"}


@dataclass(frozen=True)
class SnpEvidence:
    """A report plus whatever certificates travelled with it.

    ``source`` names the envelope: "report", "extended-report", "azure-hcl",
    "trustee-json" or "azure-json".
    """

    report: AttestationReport
    certificates: tuple[x509.Certificate, ...] = ()
    source: str = "report"


def parse_evidence(data: bytes) -> SnpEvidence:
    """Recognise the envelope and parse the report inside it."""
    if data.lstrip()[:1] == b"{":
        return _parse_json(data)
    report, certs, source = _parse_binary(data)
    return SnpEvidence(parse_report(report), certs, source)


def _parse_binary(data: bytes) -> tuple[bytes, tuple[x509.Certificate, ...], str]:
    if data[:4] == _HCL_MAGIC:
        return unwrap_hcl_report(data), (), "azure-hcl"
    if len(data) < REPORT_LEN:
        raise ParseError(_WHAT, f"expected {REPORT_LEN} bytes, got {len(data)}", len(data))
    tail = data[REPORT_LEN:]
    if not any(tail):
        return data[:REPORT_LEN], (), "report"
    return data[:REPORT_LEN], parse_cert_table(tail), "extended-report"


def unwrap_hcl_report(data: bytes) -> bytes:
    """The SNP report inside an Azure HCL report (at offset 0x20)."""
    if data[:4] != _HCL_MAGIC:
        raise ParseError("hcl report", "missing HCLA signature", 0)
    end = _HCL_HEADER_LEN + REPORT_LEN
    if len(data) < end:
        raise ParseError("hcl report", f"truncated: {len(data)} bytes, need {end}", len(data))
    if len(data) >= _HCL_REPORT_TYPE_OFF + 4:
        (kind,) = struct.unpack_from("<I", data, _HCL_REPORT_TYPE_OFF)
        if kind != _HCL_REPORT_TYPE_SNP:
            raise ParseError(
                "hcl report", f"report type {kind} is not SNP (2)", _HCL_REPORT_TYPE_OFF
            )
    return data[_HCL_HEADER_LEN:end]


def parse_cert_table(buf: bytes) -> tuple[x509.Certificate, ...]:
    """Certificates from an SNP_GET_EXT_REPORT table; offsets count from the table start."""
    certs: list[x509.Certificate] = []
    pos = 0
    while True:
        if pos + _CERT_ENTRY_LEN > len(buf):
            raise ParseError("snp cert table", "no all-zero terminator entry", REPORT_LEN + pos)
        entry = buf[pos : pos + _CERT_ENTRY_LEN]
        if not any(entry):
            return tuple(certs)
        guid = uuid.UUID(bytes=entry[:16])
        offset, length = struct.unpack_from("<II", entry, 16)
        if offset + length > len(buf) or length == 0:
            raise ParseError(
                "snp cert table", f"entry {guid} points outside the table", REPORT_LEN + pos
            )
        if guid in CERT_TABLE_GUIDS:
            certs.extend(load_certificates(buf[offset : offset + length]))
        pos += _CERT_ENTRY_LEN


def _parse_json(data: bytes) -> SnpEvidence:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ParseError(_JSON, f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ParseError(_JSON, "top level is not an object")
    if "attestation_report" in doc:
        raw, product = rebuild_report(doc["attestation_report"])
        certs = _trustee_cert_chain(doc.get("cert_chain"))
        return SnpEvidence(parse_report(raw, product), certs, "trustee-json")
    if "report" in doc or "hcl_report" in doc:
        return _parse_azure_json(doc)
    raise ParseError(_JSON, "neither 'attestation_report' nor an Azure 'report' member")


def _parse_azure_json(doc: dict[str, Any]) -> SnpEvidence:
    if "report" in doc:
        blob = _byte_array(doc["report"], "report", None)
    else:
        blob = _b64url(doc["hcl_report"], "hcl_report")
    report, certs, _ = _parse_binary(blob)
    vcek = doc.get("vcek")
    if vcek is not None:
        if not isinstance(vcek, str):
            raise ParseError(_JSON, "'vcek' is not a string")
        vek_bytes = vcek.encode() if "-----BEGIN" in vcek else _b64url(vcek, "vcek")
        certs = certs + tuple(load_certificates(vek_bytes))
    return SnpEvidence(parse_report(report), certs, "azure-json")


def _b64url(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise ParseError(_JSON, f"'{name}' is not a string")
    text = "".join(value.split()).rstrip("=")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ParseError(_JSON, f"'{name}' is not base64url: {exc}") from exc


def _trustee_cert_chain(chain: object) -> tuple[x509.Certificate, ...]:
    if chain is None:
        return ()
    if not isinstance(chain, list):
        raise ParseError(_JSON, "'cert_chain' is neither null nor an array")
    certs: list[x509.Certificate] = []
    for i, entry in enumerate(chain):
        if not isinstance(entry, dict):
            raise ParseError(_JSON, f"cert_chain[{i}] is not an object")
        kind = entry.get("cert_type")
        if isinstance(kind, str) and kind.upper() in _CERT_TYPES:
            certs.extend(
                load_certificates(_byte_array(entry.get("data"), f"cert_chain[{i}].data", None))
            )
    return tuple(certs)


# ------------------------------------------------ Trustee (virtee/sev serde) report form


def rebuild_report(obj: object) -> tuple[bytes, Product | None]:
    """Rebuild the exact 1184 report bytes from virtee/sev's serde form of the report.

    Reserved fields are not in the JSON and are zero, as firmware writes them.
    Returns the bytes and, for a v2 report encoded in the Turin TCB layout
    (``fmc`` present), "Turin" so that it parses back the same way.
    """
    r = _Fields(obj, "attestation_report")
    version = r.uint("version", 32)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ParseError(_JSON, f"attestation_report.version {version} is not 2..5")
    cpuid = (
        r.opt_uint("cpuid_fam_id", 8),
        r.opt_uint("cpuid_mod_id", 8),
        r.opt_uint("cpuid_step", 8),
    )
    tcbs = {
        name: r.tcb(name) for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb")
    }
    hint: Product | None = None
    if version >= 3:
        turin = product_from_cpuid(cpuid[0] or 0, cpuid[1] or 0) == "Turin"
    else:
        turin = any(t.fmc is not None for t in tcbs.values())
        hint = "Turin" if turin else None

    def enc(t: TcbVersion) -> bytes:
        if turin:
            return TcbVersion(t.bootloader, t.tee, t.snp, t.microcode, t.fmc or 0).to_bytes()
        return TcbVersion(t.bootloader, t.tee, t.snp, t.microcode).to_bytes()

    out = bytearray(REPORT_LEN)
    struct.pack_into("<IIQ", out, 0, version, r.uint("guest_svn", 32), r.uint("policy", 64))
    out[0x10:0x20] = r.bytes_("family_id", 16)
    out[0x20:0x30] = r.bytes_("image_id", 16)
    struct.pack_into("<II", out, 0x30, r.uint("vmpl", 32), r.uint("sig_algo", 32))
    out[0x38:0x40] = enc(tcbs["current_tcb"])
    struct.pack_into("<QI", out, 0x40, r.uint("plat_info", 64), r.uint("key_info", 32))
    for name, off, size in (*BYTE_FIELDS[2:], CHIP_ID_FIELD):
        out[off : off + size] = r.bytes_(name, size)
    out[0x180:0x188] = enc(tcbs["reported_tcb"])
    if version >= 3:
        out[0x188:0x18B] = bytes(c or 0 for c in cpuid)
    out[0x1E0:0x1E8] = enc(tcbs["committed_tcb"])
    out[0x1E8:0x1EB] = r.version_("current")
    out[0x1EC:0x1EF] = r.version_("committed")
    out[0x1F0:0x1F8] = enc(tcbs["launch_tcb"])
    if version >= 5:
        struct.pack_into(
            "<QQ",
            out,
            0x1F8,
            r.opt_uint("launch_mit_vector", 64) or 0,
            r.opt_uint("current_mit_vector", 64) or 0,
        )
    sig = _Fields(r.get("signature"), "attestation_report.signature")
    out[0x2A0:0x2E8] = sig.bytes_("r", 72)
    out[0x2E8:0x330] = sig.bytes_("s", 72)
    return bytes(out), hint


class _Fields:
    """Typed, strict access to one JSON object of the serde form."""

    def __init__(self, obj: object, path: str) -> None:
        if not isinstance(obj, dict):
            raise ParseError(_JSON, f"{path} is not an object")
        self.obj: dict[str, Any] = obj
        self.path = path

    def get(self, key: str) -> object:
        if key not in self.obj:
            raise ParseError(_JSON, f"{self.path}.{key} is missing")
        return self.obj[key]

    def uint(self, key: str, bits: int) -> int:
        return _uint(self.get(key), f"{self.path}.{key}", bits)

    def opt_uint(self, key: str, bits: int) -> int | None:
        value = self.obj.get(key)
        return None if value is None else _uint(value, f"{self.path}.{key}", bits)

    def bytes_(self, key: str, size: int) -> bytes:
        return _byte_array(self.get(key), f"{self.path}.{key}", size)

    def tcb(self, key: str) -> TcbVersion:
        t = _Fields(self.get(key), f"{self.path}.{key}")
        return TcbVersion(
            bootloader=t.uint("bootloader", 8),
            tee=t.uint("tee", 8),
            snp=t.uint("snp", 8),
            microcode=t.uint("microcode", 8),
            fmc=t.opt_uint("fmc", 8),
        )

    def version_(self, key: str) -> bytes:
        v = _Fields(self.get(key), f"{self.path}.{key}")
        return bytes([v.uint("build", 8), v.uint("minor", 8), v.uint("major", 8)])


def _uint(value: object, path: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ParseError(_JSON, f"{path} is not a {bits}-bit unsigned integer")
    return value


def _byte_array(value: object, path: str, size: int | None) -> bytes:
    if not isinstance(value, list):
        raise ParseError(_JSON, f"{path} is not an array of bytes")
    if size is not None and len(value) != size:
        raise ParseError(_JSON, f"{path} has {len(value)} bytes, expected {size}")
    return bytes(_uint(b, path, 8) for b in value)
