"""Parser for the AMD SEV-SNP ATTESTATION_REPORT and the envelopes it travels in.

The report is 0x4A0 (1184) little-endian bytes; offsets are in
``shared/specs/verification.md`` §4.1.  Versions 2 to 5 are understood.  The
TCB_VERSION byte layout depends on the processor generation: v3+ reports name
it through their CPUID fields; v2 reports do not, so the caller may pass the
generation it learned elsewhere (the VCEK's productName) and otherwise gets the
Milan/Genoa layout, which is what every v2 report seen in the wild uses.

Envelopes accepted by :func:`parse_evidence`:

* the bare 1184-byte report, optionally followed by an SNP_GET_EXT_REPORT
  certificate table (GUID, offset, length entries; all-zero terminator);
* an Azure HCL report ("HCLA" header; the SNP report sits at offset 0x20);
* Trustee's ``snp`` evidence JSON, ``{"attestation_report": {...}, "cert_chain": [...]|null}``,
  from which the exact report bytes are rebuilt field by field (virtee/sev's serde form);
* Azure vTPM evidence JSON with the HCL report under ``report`` (a byte array) or
  ``hcl_report`` (base64url) and the VCEK under ``vcek`` (PEM or base64url DER).

Parsing checks structure only.  Every malformed input raises
:class:`~veritee.errors.ParseError`; signatures and bindings are the verifier's job.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import uuid
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography import x509

from veritee.errors import ParseError
from veritee.pem import load_certificates

REPORT_LEN: Final = 0x4A0
SIGNED_LEN: Final = 0x2A0
MIN_VERSION: Final = 2
MAX_VERSION: Final = 5
SIG_ALGO_ECDSA_P384_SHA384: Final = 1

Product = Literal["Milan", "Genoa", "Turin"]
PRODUCTS: Final[tuple[Product, ...]] = ("Milan", "Genoa", "Turin")

SIGNING_KEY_VCEK: Final = 0
SIGNING_KEY_VLEK: Final = 1
SIGNING_KEY_NONE: Final = 7

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


def product_from_cpuid(family: int, model: int) -> Product | None:
    """The processor generation for CPUID family/model, as Trustee and virtee/sev map them."""
    if family == 0x19:
        if model <= 0x0F:
            return "Milan"
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return "Genoa"
    if family == 0x1A and model <= 0x11:
        return "Turin"
    return None


@dataclass(frozen=True)
class TcbVersion:
    """One TCB_VERSION.  ``fmc`` is set exactly when the Turin layout was used."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def from_bytes(cls, raw: bytes, *, turin: bool) -> TcbVersion:
        if len(raw) != 8:
            raise ParseError(_WHAT, f"TCB_VERSION needs 8 bytes, got {len(raw)}")
        if turin:
            return cls(bootloader=raw[1], tee=raw[2], snp=raw[3], microcode=raw[7], fmc=raw[0])
        return cls(bootloader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7])

    def to_bytes(self) -> bytes:
        """Encode in the layout this value came from (Turin when ``fmc`` is set)."""
        if self.fmc is not None:
            return bytes([self.fmc, self.bootloader, self.tee, self.snp, 0, 0, 0, self.microcode])
        return bytes([self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode])

    def as_dict(self) -> dict[str, int]:
        """Keys ``bootloader``, ``tee``, ``snp``, ``microcode`` and, on Turin, ``fmc``."""
        out = {
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out


@dataclass(frozen=True)
class GuestPolicy:
    """The 64-bit guest POLICY."""

    value: int

    @property
    def abi_minor(self) -> int:
        return self.value & 0xFF

    @property
    def abi_major(self) -> int:
        return (self.value >> 8) & 0xFF

    @property
    def smt_allowed(self) -> bool:
        return bool(self.value >> 16 & 1)

    @property
    def migrate_ma(self) -> bool:
        return bool(self.value >> 18 & 1)

    @property
    def debug_allowed(self) -> bool:
        return bool(self.value >> 19 & 1)

    @property
    def single_socket(self) -> bool:
        return bool(self.value >> 20 & 1)


@dataclass(frozen=True)
class PlatformInfo:
    """The 64-bit PLATFORM_INFO."""

    value: int

    @property
    def smt_enabled(self) -> bool:
        return bool(self.value & 1)

    @property
    def tsme_enabled(self) -> bool:
        return bool(self.value >> 1 & 1)


@dataclass(frozen=True)
class FirmwareVersion:
    major: int
    minor: int
    build: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> FirmwareVersion:
        return cls(major=raw[2], minor=raw[1], build=raw[0])


@dataclass(frozen=True)
class AttestationReport:
    """A parsed ATTESTATION_REPORT.  ``raw`` is the exact 1184 bytes."""

    raw: bytes
    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    key_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid: tuple[int, int, int] | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_version: FirmwareVersion
    committed_version: FirmwareVersion
    launch_tcb: TcbVersion
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: bytes
    signature_s: bytes
    product: Product | None

    @property
    def signed_bytes(self) -> bytes:
        """Bytes 0x000..0x29F, which the VCEK/VLEK signs."""
        return self.raw[:SIGNED_LEN]

    @property
    def author_key_en(self) -> bool:
        return bool(self.key_info & 1)

    @property
    def mask_chip_key(self) -> bool:
        return bool(self.key_info >> 1 & 1)

    @property
    def signing_key(self) -> int:
        """SIGNING_KEY: 0 VCEK, 1 VLEK, 7 none."""
        return self.key_info >> 2 & 0b111


def parse_report(data: bytes, product: Product | None = None) -> AttestationReport:
    """Parse exactly 0x4A0 bytes.

    ``product`` only matters for v2 reports, which carry no CPUID: it picks the
    TCB layout ("Turin" or the Milan/Genoa one) and is recorded as the report's
    product.  For v3+ the CPUID fields decide and ``product`` is ignored.
    """
    if len(data) != REPORT_LEN:
        raise ParseError(
            _WHAT, f"expected {REPORT_LEN} bytes, got {len(data)}", min(len(data), REPORT_LEN)
        )
    raw = bytes(data)
    version, guest_svn, policy = struct.unpack_from("<IIQ", raw, 0)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ParseError(_WHAT, f"unsupported report version {version}", 0)
    cpuid: tuple[int, int, int] | None = None
    if version >= 3:
        cpuid = (raw[0x188], raw[0x189], raw[0x18A])
        product = product_from_cpuid(cpuid[0], cpuid[1])
        if product is None:
            raise ParseError(
                _WHAT,
                f"unsupported processor family 0x{cpuid[0]:02x} model 0x{cpuid[1]:02x}",
                0x188,
            )
    turin = product == "Turin"

    def tcb(off: int) -> TcbVersion:
        return TcbVersion.from_bytes(raw[off : off + 8], turin=turin)

    vmpl, sig_algo = struct.unpack_from("<II", raw, 0x30)
    (plat_info,) = struct.unpack_from("<Q", raw, 0x40)
    (key_info,) = struct.unpack_from("<I", raw, 0x48)
    launch_mit = current_mit = None
    if version >= 5:
        launch_mit, current_mit = struct.unpack_from("<QQ", raw, 0x1F8)
    return AttestationReport(
        raw=raw,
        version=version,
        guest_svn=guest_svn,
        policy=GuestPolicy(policy),
        family_id=raw[0x10:0x20],
        image_id=raw[0x20:0x30],
        vmpl=vmpl,
        signature_algo=sig_algo,
        current_tcb=tcb(0x38),
        platform_info=PlatformInfo(plat_info),
        key_info=key_info,
        report_data=raw[0x50:0x90],
        measurement=raw[0x90:0xC0],
        host_data=raw[0xC0:0xE0],
        id_key_digest=raw[0xE0:0x110],
        author_key_digest=raw[0x110:0x140],
        report_id=raw[0x140:0x160],
        report_id_ma=raw[0x160:0x180],
        reported_tcb=tcb(0x180),
        cpuid=cpuid,
        chip_id=raw[0x1A0:0x1E0],
        committed_tcb=tcb(0x1E0),
        current_version=FirmwareVersion.from_bytes(raw[0x1E8:0x1EB]),
        committed_version=FirmwareVersion.from_bytes(raw[0x1EC:0x1EF]),
        launch_tcb=tcb(0x1F0),
        launch_mit_vector=launch_mit,
        current_mit_vector=current_mit,
        signature_r=raw[0x2A0:0x2E8],
        signature_s=raw[0x2E8:0x330],
        product=product,
    )


# --------------------------------------------------------------------------- envelopes


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
    for name, off, size in (
        ("report_data", 0x50, 64),
        ("measurement", 0x90, 48),
        ("host_data", 0xC0, 32),
        ("id_key_digest", 0xE0, 48),
        ("author_key_digest", 0x110, 48),
        ("report_id", 0x140, 32),
        ("report_id_ma", 0x160, 32),
        ("chip_id", 0x1A0, 64),
    ):
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
