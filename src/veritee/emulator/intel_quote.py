"""Real-format Intel DCAP quotes (TDX v4/v5, SGX v3) signed under an :class:`IntelTestRoot`.

Each quote is signed with a fresh P-256 attestation key.  The QE report
(Intel's TD_QE or QE MRSIGNER and ISVPRODID, ATTRIBUTES 0x11, ISVSVN =
``platform.qe_isvsvn``, REPORTDATA = SHA-256(attestation key ‖ QE auth data) ‖
0³²) is signed by the platform's PCK key, and the PCK chain (leaf ‖ PCK CA ‖
root, PEM + NUL) travels as certification data type 5, wrapped in type 6 for
v4/v5.  The layout is the one ``veritee.verifier.intel_quote`` parses
(``shared/specs/verification.md`` §1): body at 48 (v3/v4) or 54 (v5), signature
data at 436 (SGX), 636 (v4) or 706 (v5 TD 1.5).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec

from veritee.emulator.intel_pki import QE_IDENTITY, IntelTestRoot, Tee, raw_signature

__all__ = [
    "QE_AUTH_DATA",
    "SgxFields",
    "TdxFields",
    "apply_settings",
    "build_sgx_quote",
    "build_tdx_quote",
    "settable_fields",
]

INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
ATT_KEY_ECDSA_P256 = 2
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
BODY_TD10, BODY_TD15 = 2, 3
TD10_BODY_LEN, TD15_BODY_LEN, SGX_BODY_LEN = 584, 648, 384
CERT_DATA_PCK_CHAIN = 5
CERT_DATA_QE_REPORT = 6
# Intel's quoting enclaves fill the 32-byte QE authentication data with 0..31.
QE_AUTH_DATA = bytes(range(32))
# QE ATTRIBUTES: flags 0x11 (INIT | PROVISIONKEY; DEBUG clear) as Intel's identity expects,
# XFRM 0xE7.
QE_ATTRIBUTES = (0x11).to_bytes(8, "little") + (0xE7).to_bytes(8, "little")
_QE_MRENCLAVE: dict[Tee, bytes] = {
    "tdx": hashlib.sha256(b"veritee emulated TD quoting enclave").digest(),
    "sgx": hashlib.sha256(b"veritee emulated SGX quoting enclave").digest(),
}
DEFAULT_MR_SEAM = hashlib.sha384(b"veritee emulated TDX module").digest()


def _z48() -> bytes:
    return bytes(48)


def _z64() -> bytes:
    return bytes(64)


@dataclass
class TdxFields:
    """The TD report body fields of an emulated TDX quote (all raw bytes, little-endian ints).

    ``tee_tcb_svn`` ``None`` means the platform's; ``tee_tcb_svn2`` (TD 1.5) ``None``
    means the same as ``tee_tcb_svn``.  The defaults pass dcap-qvl's hard checks:
    TDATTRIBUTES has only SEPT_VE_DISABLE (bit 28) set.
    """

    report_data: bytes = field(default_factory=_z64)
    mr_td: bytes = field(default_factory=_z48)
    rtmr0: bytes = field(default_factory=_z48)
    rtmr1: bytes = field(default_factory=_z48)
    rtmr2: bytes = field(default_factory=_z48)
    rtmr3: bytes = field(default_factory=_z48)
    mr_config_id: bytes = field(default_factory=_z48)
    mr_owner: bytes = field(default_factory=_z48)
    mr_owner_config: bytes = field(default_factory=_z48)
    td_attributes: bytes = (0x10000000).to_bytes(8, "little")
    xfam: bytes = (0x602E7).to_bytes(8, "little")
    mr_seam: bytes = DEFAULT_MR_SEAM
    mrsigner_seam: bytes = field(default_factory=_z48)
    seam_attributes: bytes = bytes(8)
    tee_tcb_svn: bytes | None = None
    tee_tcb_svn2: bytes | None = None
    mr_servicetd: bytes = field(default_factory=_z48)

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)


def _default_sgx_attributes() -> bytes:
    # flags INIT | MODE64BIT (DEBUG clear), XFRM 0xE7
    return (0x05).to_bytes(8, "little") + (0xE7).to_bytes(8, "little")


@dataclass
class SgxFields:
    """The enclave report body fields of an emulated SGX quote.

    ``cpu_svn`` ``None`` means the platform's.  The default ATTRIBUTES have the
    DEBUG flag clear.
    """

    report_data: bytes = field(default_factory=_z64)
    mr_enclave: bytes = field(default_factory=lambda: bytes(32))
    mr_signer: bytes = field(default_factory=lambda: bytes(32))
    isv_prod_id: int = 0
    isv_svn: int = 0
    attributes: bytes = field(default_factory=_default_sgx_attributes)
    config_id: bytes = field(default_factory=_z64)
    cpu_svn: bytes | None = None
    misc_select: bytes = bytes(4)
    isv_ext_prod_id: bytes = bytes(16)
    config_svn: int = 0
    isv_family_id: bytes = bytes(16)


# --------------------------------------------------------------------------- --set FIELD=HEX

_TDX_SETTABLE: dict[str, int] = {
    "report_data": 64,
    "mr_td": 48,
    "rtmr0": 48,
    "rtmr1": 48,
    "rtmr2": 48,
    "rtmr3": 48,
    "mr_config_id": 48,
    "mr_owner": 48,
    "mr_owner_config": 48,
    "td_attributes": 8,
    "xfam": 8,
}
_SGX_SETTABLE: dict[str, int] = {
    "report_data": 64,
    "mr_enclave": 32,
    "mr_signer": 32,
    "isv_prod_id": 2,
    "isv_svn": 2,
    "attributes": 16,
    "config_id": 64,
}
_SGX_INTS = frozenset({"isv_prod_id", "isv_svn"})


def settable_fields(fields: TdxFields | SgxFields) -> dict[str, int]:
    """The field names :func:`apply_settings` accepts for ``fields``, with their sizes in bytes."""
    return dict(_TDX_SETTABLE if isinstance(fields, TdxFields) else _SGX_SETTABLE)


def apply_settings(fields: TdxFields | SgxFields, settings: Mapping[str, bytes]) -> None:
    """Set fields by name from raw bytes (the CLI's ``--set FIELD=HEX``).

    Integers (``isv_prod_id``, ``isv_svn``) are given as little-endian bytes.
    An unknown name or a value of the wrong size raises :class:`ValueError`
    naming the field and the expected size.  Nothing is changed unless every
    setting is valid.
    """
    allowed = settable_fields(fields)
    kind = "TDX" if isinstance(fields, TdxFields) else "SGX"
    updates: dict[str, bytes | int] = {}
    for name, value in settings.items():
        size = allowed.get(name)
        if size is None:
            raise ValueError(
                f"unknown {kind} quote field {name!r}; settable fields: {', '.join(allowed)}"
            )
        if len(value) != size:
            raise ValueError(f"{kind} field {name} must be {size} bytes, got {len(value)}")
        updates[name] = int.from_bytes(value, "little") if name in _SGX_INTS else bytes(value)
    for name, new in updates.items():
        setattr(fields, name, new)


# --------------------------------------------------------------------------- builders


def _check(name: str, value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
    return value


def _u16(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must be 0..65535, got {value}")
    return struct.pack("<H", value)


def _header(version: int, tee_type: int, reserved: bytes) -> bytes:
    user_data = os.urandom(16) + bytes(4)  # QE ID, then zeros (as real quotes)
    return (
        struct.pack("<HHI", version, ATT_KEY_ECDSA_P256, tee_type)
        + reserved
        + INTEL_QE_VENDOR_ID
        + user_data
    )


def _enclave_report(
    *,
    cpu_svn: bytes,
    misc_select: bytes,
    isv_ext_prod_id: bytes,
    attributes: bytes,
    mr_enclave: bytes,
    mr_signer: bytes,
    config_id: bytes,
    isv_prod_id: int,
    isv_svn: int,
    config_svn: int,
    isv_family_id: bytes,
    report_data: bytes,
) -> bytes:
    body = b"".join(
        (
            _check("cpu_svn", cpu_svn, 16),
            _check("misc_select", misc_select, 4),
            bytes(12),
            _check("isv_ext_prod_id", isv_ext_prod_id, 16),
            _check("attributes", attributes, 16),
            _check("mr_enclave", mr_enclave, 32),
            bytes(32),
            _check("mr_signer", mr_signer, 32),
            bytes(32),
            _check("config_id", config_id, 64),
            _u16(isv_prod_id, "isv_prod_id"),
            _u16(isv_svn, "isv_svn"),
            _u16(config_svn, "config_svn"),
            bytes(42),
            _check("isv_family_id", isv_family_id, 16),
            _check("report_data", report_data, 64),
        )
    )
    assert len(body) == SGX_BODY_LEN
    return body


def _td_body(root: IntelTestRoot, fields: TdxFields, td15: bool) -> bytes:
    svn = fields.tee_tcb_svn if fields.tee_tcb_svn is not None else root.platform.tee_tcb_svn
    parts = [
        _check("tee_tcb_svn", svn, 16),
        _check("mr_seam", fields.mr_seam, 48),
        _check("mrsigner_seam", fields.mrsigner_seam, 48),
        _check("seam_attributes", fields.seam_attributes, 8),
        _check("td_attributes", fields.td_attributes, 8),
        _check("xfam", fields.xfam, 8),
        _check("mr_td", fields.mr_td, 48),
        _check("mr_config_id", fields.mr_config_id, 48),
        _check("mr_owner", fields.mr_owner, 48),
        _check("mr_owner_config", fields.mr_owner_config, 48),
        *(_check(f"rtmr{i}", rtmr, 48) for i, rtmr in enumerate(fields.rtmrs)),
        _check("report_data", fields.report_data, 64),
    ]
    if td15:
        svn2 = fields.tee_tcb_svn2 if fields.tee_tcb_svn2 is not None else svn
        parts += [_check("tee_tcb_svn2", svn2, 16), _check("mr_servicetd", fields.mr_servicetd, 48)]
    body = b"".join(parts)
    assert len(body) == (TD15_BODY_LEN if td15 else TD10_BODY_LEN)
    return body


def _qe_report(root: IntelTestRoot, tee: Tee, attestation_key: bytes) -> bytes:
    qe = QE_IDENTITY[tee]
    report_data = hashlib.sha256(attestation_key + QE_AUTH_DATA).digest() + bytes(32)
    return _enclave_report(
        cpu_svn=root.platform.cpu_svn,
        misc_select=bytes(4),
        isv_ext_prod_id=bytes(16),
        attributes=QE_ATTRIBUTES,
        mr_enclave=_QE_MRENCLAVE[tee],
        mr_signer=qe.mrsigner,
        config_id=bytes(64),
        isv_prod_id=qe.isvprodid,
        isv_svn=root.platform.qe_isvsvn,
        config_svn=0,
        isv_family_id=bytes(16),
        report_data=report_data,
    )


def _sign_quote(root: IntelTestRoot, tee: Tee, signed: bytes, nested: bool) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    attestation_key = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
    qe_report = _qe_report(root, tee, attestation_key)
    chain = root.pck_chain_pem + b"\x00"
    qe_cert_data = (
        qe_report
        + raw_signature(root.pck_key, qe_report)
        + struct.pack("<H", len(QE_AUTH_DATA))
        + QE_AUTH_DATA
        + struct.pack("<HI", CERT_DATA_PCK_CHAIN, len(chain))
        + chain
    )
    if nested:
        qe_cert_data = struct.pack("<HI", CERT_DATA_QE_REPORT, len(qe_cert_data)) + qe_cert_data
    sig_data = raw_signature(key, signed) + attestation_key + qe_cert_data
    return signed + struct.pack("<I", len(sig_data)) + sig_data


def build_tdx_quote(
    root: IntelTestRoot, fields: TdxFields, *, version: Literal[4, 5] = 4, td15: bool = False
) -> bytes:
    """A TDX quote: v4 (TD 1.0 body) or v5 (TD 1.0 body type 2, or TD 1.5 body type 3)."""
    if version not in (4, 5):
        raise ValueError(f"TDX quote version must be 4 or 5, got {version}")
    if td15 and version != 5:
        raise ValueError("a TD 1.5 body needs a version 5 quote")
    body = _td_body(root, fields, td15)
    signed = _header(version, TEE_TYPE_TDX, bytes(4))
    if version == 5:
        signed += struct.pack("<HI", BODY_TD15 if td15 else BODY_TD10, len(body))
    return _sign_quote(root, "tdx", signed + body, nested=True)


def build_sgx_quote(root: IntelTestRoot, fields: SgxFields) -> bytes:
    """An SGX ECDSA quote, version 3, with the PCK chain as certification data type 5."""
    platform = root.platform
    reserved = struct.pack("<HH", platform.qe_isvsvn, platform.pce_svn)  # QE SVN, PCE SVN
    body = _enclave_report(
        cpu_svn=fields.cpu_svn if fields.cpu_svn is not None else platform.cpu_svn,
        misc_select=fields.misc_select,
        isv_ext_prod_id=fields.isv_ext_prod_id,
        attributes=fields.attributes,
        mr_enclave=fields.mr_enclave,
        mr_signer=fields.mr_signer,
        config_id=fields.config_id,
        isv_prod_id=fields.isv_prod_id,
        isv_svn=fields.isv_svn,
        config_svn=fields.config_svn,
        isv_family_id=fields.isv_family_id,
        report_data=fields.report_data,
    )
    return _sign_quote(root, "sgx", _header(3, TEE_TYPE_SGX, reserved) + body, nested=False)
