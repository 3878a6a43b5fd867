"""Emulated AMD SEV-SNP attestation reports, signed under an :class:`AmdTestRoot`.

:func:`build_snp_report` lays out a real-format 0x4A0-byte ATTESTATION_REPORT
(``shared/specs/verification.md`` §4.1) and signs bytes 0x000..0x29F with the
root's VCEK or VLEK key (ECDSA P-384 SHA-384, R and S as 72-byte little-endian
integers).  As on real hardware: reserved fields are zero; SIGNATURE_ALGO is 1;
SIGNING_KEY (bits 4:2 of 0x48) is 0 for the VCEK and 1 for the VLEK; CHIP_ID is
zero in VLEK-signed reports (as in the real trustee ``test-vlek-report.bin``,
whose MASK_CHIP_KEY bit is clear) and when ``mask_chip_id`` is set; REPORT_ID_MA
is all 0xFF (no migration agent); CPUID_FAM/MOD/STEP are those of the root's
generation and select the TCB_VERSION layout (Turin's differs).

:func:`trustee_evidence` wraps a report in Trustee's ``snp`` evidence JSON
(virtee/sev's serde form, ``guest-components.md`` §2.3), from which
:func:`veritee.verifier.snp_evidence.rebuild_report` restores the exact bytes.
:func:`apply_settings` implements the CLI's ``--set FIELD=HEX``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.emulator.amd_pki import AmdProduct, AmdTestRoot, Signer
from veritee.guest.attesters.snp_serde import attestation_report_json
from veritee.verifier.snp_report import (
    BYTE_FIELDS,
    REPORT_LEN,
    SIG_ALGO_ECDSA_P384_SHA384,
    SIGNED_LEN,
    SIGNING_KEY_VCEK,
    SIGNING_KEY_VLEK,
    TcbVersion,
    parse_report,
)

#: CPUID family, model and stepping written into v3+ reports, per generation.
CPUID: Final[Mapping[AmdProduct, tuple[int, int, int]]] = {
    "Milan": (0x19, 0x01, 0x01),
    "Genoa": (0x19, 0x11, 0x01),
    "Turin": (0x1A, 0x02, 0x01),
}
#: POLICY bits: 17 is reserved and must be 1, 16 allows SMT, 19 allows debugging.
POLICY_RESERVED_BIT: Final = 1 << 17
POLICY_SMT: Final = 1 << 16
POLICY_DEBUG: Final = 1 << 19
#: The default POLICY: bit 17 (must be 1) and bit 16 (SMT allowed); debug clear.
DEFAULT_POLICY: Final = POLICY_RESERVED_BIT | POLICY_SMT
#: PLATFORM_INFO default: SMT_EN and TSME_EN.
DEFAULT_PLATFORM_INFO: Final = 0x3
#: SEV firmware version (major, minor, build) reported by default.
DEFAULT_FIRMWARE: Final = (1, 55, 29)

TcbSpec = Mapping[str, int] | bytes


def _random_report_id() -> bytes:
    return os.urandom(32)


@dataclass
class SnpFields:
    """The guest-visible contents of one emulated report.

    Byte fields must have exactly their size.  ``reported_tcb`` is a mapping
    (keys as in :attr:`AmdTestRoot.reported_tcb`), 8 raw TCB_VERSION bytes in the
    layout of the root's generation (what ``--set reported_tcb=HEX`` gives), or
    None for the root's own TCB, which the VCEK/VLEK certifies; any other value
    makes the report fail verification at step ``vek_tcb``.  ``current_tcb``,
    ``committed_tcb`` and ``launch_tcb`` default to the reported TCB.  The MIT
    vectors exist only in v5 reports and must stay 0 for v3.
    """

    version: Literal[3, 5] = 5
    guest_svn: int = 0
    policy: int = DEFAULT_POLICY
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    vmpl: int = 0
    report_data: bytes = bytes(64)
    measurement: bytes = bytes(48)
    host_data: bytes = bytes(32)
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    author_key_en: bool = False
    report_id: bytes = field(default_factory=_random_report_id)
    report_id_ma: bytes = b"\xff" * 32
    reported_tcb: TcbSpec | None = None
    current_tcb: TcbSpec | None = None
    committed_tcb: TcbSpec | None = None
    launch_tcb: TcbSpec | None = None
    platform_info: int = DEFAULT_PLATFORM_INFO
    current_version: tuple[int, int, int] = DEFAULT_FIRMWARE
    committed_version: tuple[int, int, int] = DEFAULT_FIRMWARE
    launch_mit_vector: int = 0
    current_mit_vector: int = 0
    signer: Signer = "vcek"
    mask_chip_id: bool = False


def build_snp_report(root: AmdTestRoot, fields: SnpFields) -> bytes:
    """The 1184-byte report, signed by ``root``'s VCEK or VLEK key (``fields.signer``).

    Raises :class:`ValueError` naming the field for a value of the wrong size or range.
    """
    if fields.version not in (3, 5):
        raise ValueError(f"version must be 3 or 5, got {fields.version!r}")
    if fields.signer not in ("vcek", "vlek"):
        raise ValueError(f"signer must be 'vcek' or 'vlek', got {fields.signer!r}")
    turin = root.product == "Turin"
    reported = _tcb_bytes("reported_tcb", fields.reported_tcb, root, turin)

    def tcb(name: str, value: TcbSpec | None) -> bytes:
        return reported if value is None else _tcb_bytes(name, value, root, turin)

    if fields.version < 5 and (fields.launch_mit_vector or fields.current_mit_vector):
        raise ValueError("launch_mit_vector and current_mit_vector exist only in v5 reports")
    signing_key = SIGNING_KEY_VCEK if fields.signer == "vcek" else SIGNING_KEY_VLEK
    key_info = int(fields.author_key_en) | int(fields.mask_chip_id) << 1 | signing_key << 2

    out = bytearray(REPORT_LEN)
    struct.pack_into(
        "<IIQ",
        out,
        0,
        fields.version,
        _uint("guest_svn", fields.guest_svn, 32),
        _uint("policy", fields.policy, 64),
    )
    struct.pack_into("<II", out, 0x30, _uint("vmpl", fields.vmpl, 32), SIG_ALGO_ECDSA_P384_SHA384)
    out[0x38:0x40] = tcb("current_tcb", fields.current_tcb)
    struct.pack_into("<QI", out, 0x40, _uint("platform_info", fields.platform_info, 64), key_info)
    for name, off, size in BYTE_FIELDS:
        out[off : off + size] = _sized(name, getattr(fields, name), size)
    out[0x180:0x188] = reported
    out[0x188:0x18B] = bytes(CPUID[root.product])
    if fields.signer == "vcek" and not fields.mask_chip_id:
        out[0x1A0:0x1E0] = root.chip_id
    out[0x1E0:0x1E8] = tcb("committed_tcb", fields.committed_tcb)
    out[0x1E8:0x1EB] = _firmware("current_version", fields.current_version)
    out[0x1EC:0x1EF] = _firmware("committed_version", fields.committed_version)
    out[0x1F0:0x1F8] = tcb("launch_tcb", fields.launch_tcb)
    if fields.version >= 5:
        struct.pack_into(
            "<QQ",
            out,
            0x1F8,
            _uint("launch_mit_vector", fields.launch_mit_vector, 64),
            _uint("current_mit_vector", fields.current_mit_vector, 64),
        )
    der = root.vek_key(fields.signer).sign(bytes(out[:SIGNED_LEN]), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    out[0x2A0:0x2E8] = r.to_bytes(72, "little")
    out[0x2E8:0x330] = s.to_bytes(72, "little")
    return bytes(out)


def trustee_evidence(
    report: bytes, root: AmdTestRoot | None, signer: Signer | None = None
) -> dict[str, Any]:
    """Trustee's ``snp`` evidence: ``{"attestation_report": …, "cert_chain": …}``.

    The report is in virtee/sev's serde form, converted as the guest's attester
    converts it (:mod:`veritee.guest.attesters.snp_serde`).  ``cert_chain`` is None
    without a root, else one entry holding the VCEK or VLEK DER: ``signer``
    picks it, and by default follows the report's SIGNING_KEY.  Serialise with
    ``json.dumps(…, separators=(",", ":"))`` for the attester's compact bytes.
    Raises :class:`~veritee.guest.attesters.base.AttesterError` if ``report`` does
    not parse.
    """
    attestation_report = attestation_report_json(report)
    r = parse_report(report)
    cert_chain: list[dict[str, Any]] | None = None
    if root is not None:
        if signer is None:
            signer = "vlek" if r.signing_key == SIGNING_KEY_VLEK else "vcek"
        der = root.vek(signer).public_bytes(Encoding.DER)
        cert_chain = [{"cert_type": signer.upper(), "data": list(der)}]
    return {"attestation_report": attestation_report, "cert_chain": cert_chain}


#: ``--set`` field names and the exact number of bytes each takes.
SETTINGS: Final[Mapping[str, int]] = {
    "report_data": 64,
    "measurement": 48,
    "host_data": 32,
    "family_id": 16,
    "image_id": 16,
    "policy": 8,
    "reported_tcb": 8,
    "vmpl": 4,
    "guest_svn": 4,
}
_INT_SETTINGS: Final = frozenset({"policy", "vmpl", "guest_svn"})


def apply_settings(fields: SnpFields, settings: Mapping[str, bytes]) -> None:
    """Apply ``--set FIELD=HEX`` values (already hex-decoded) to ``fields``.

    Integers (``policy``, ``vmpl``, ``guest_svn``) are little-endian, as in the
    report; ``reported_tcb`` is the 8-byte TCB_VERSION in the layout of the
    root's generation.  All settings are checked before any is applied; an
    unknown name or a wrong size raises :class:`ValueError` naming the field
    and the expected size.
    """
    for name, value in settings.items():
        size = SETTINGS.get(name)
        if size is None:
            raise ValueError(
                f"unknown report field {name!r}; known fields: {', '.join(sorted(SETTINGS))}"
            )
        if len(value) != size:
            raise ValueError(f"{name} needs exactly {size} bytes, got {len(value)}")
    for name, value in settings.items():
        if name in _INT_SETTINGS:
            setattr(fields, name, int.from_bytes(value, "little"))
        else:
            setattr(fields, name, bytes(value))


# ------------------------------------------------------------------------ helpers


def _uint(name: str, value: int, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must be a {bits}-bit unsigned integer, got {value!r}")
    return value


def _sized(name: str, value: bytes, size: int) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        got = f"{len(value)} bytes" if isinstance(value, bytes | bytearray) else repr(value)
        raise ValueError(f"{name} needs exactly {size} bytes, got {got}")
    return bytes(value)


def _firmware(name: str, version: tuple[int, int, int]) -> bytes:
    if len(version) != 3 or any(_uint(name, v, 8) != v for v in version):
        raise ValueError(f"{name} must be (major, minor, build)")
    major, minor, build = version
    return bytes([build, minor, major])


def _tcb_bytes(name: str, value: TcbSpec | None, root: AmdTestRoot, turin: bool) -> bytes:
    """Encode a TCB in the generation's layout; raw bytes must have reserved bytes zero."""
    if value is None:
        value = root.reported_tcb
    if isinstance(value, bytes | bytearray):
        raw = _sized(name, bytes(value), 8)
        if TcbVersion.from_bytes(raw, turin=turin).to_bytes() != raw:
            raise ValueError(
                f"{name}: the reserved bytes of a {root.product} TCB_VERSION must be 0"
            )
        return raw
    wanted = {"bootloader", "tee", "snp", "microcode"} | ({"fmc"} if turin else set())
    if set(value) != wanted:
        raise ValueError(
            f"{name} for {root.product} needs exactly the keys {', '.join(sorted(wanted))}"
        )
    for key, v in value.items():
        _uint(f"{name}[{key!r}]", v, 8)
    return TcbVersion(
        bootloader=value["bootloader"],
        tee=value["tee"],
        snp=value["snp"],
        microcode=value["microcode"],
        fmc=value["fmc"] if turin else None,
    ).to_bytes()
