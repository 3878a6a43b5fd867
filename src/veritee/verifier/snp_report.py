"""Parser for the AMD SEV-SNP ATTESTATION_REPORT (the 0x4A0-byte hardware structure).

The report is 0x4A0 (1184) little-endian bytes; offsets are in
``shared/specs/verification.md`` §4.1.  Versions 2 to 5 are understood.  The
TCB_VERSION byte layout depends on the processor generation: v3+ reports name
it through their CPUID fields; v2 reports do not, so the caller may pass the
generation it learned elsewhere (the VCEK's productName) and otherwise gets the
Milan/Genoa layout, which is what every v2 report seen in the wild uses.
The envelopes a report travels in are parsed by :mod:`veritee.verifier.snp_evidence`.

Parsing checks structure only.  Every malformed input raises
:class:`~veritee.errors.ParseError`; signatures and bindings are the verifier's job.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Literal

from veritee.errors import ParseError

REPORT_LEN: Final = 0x4A0
SIGNED_LEN: Final = 0x2A0
MIN_VERSION: Final = 2
MAX_VERSION: Final = 5
SIG_ALGO_ECDSA_P384_SHA384: Final = 1

Product = Literal["Milan", "Genoa", "Turin"]
PRODUCTS: Final[tuple[Product, ...]] = ("Milan", "Genoa", "Turin")

# The plain byte fields of the report: (name, offset, size), in layout order.
BYTE_FIELDS: Final = (
    ("family_id", 0x10, 16),
    ("image_id", 0x20, 16),
    ("report_data", 0x50, 64),
    ("measurement", 0x90, 48),
    ("host_data", 0xC0, 32),
    ("id_key_digest", 0xE0, 48),
    ("author_key_digest", 0x110, 48),
    ("report_id", 0x140, 32),
    ("report_id_ma", 0x160, 32),
)
CHIP_ID_FIELD: Final = ("chip_id", 0x1A0, 64)

SIGNING_KEY_VCEK: Final = 0
SIGNING_KEY_VLEK: Final = 1
SIGNING_KEY_NONE: Final = 7

_WHAT = "snp report"


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
