"""Parser for Intel DCAP quotes: SGX v3, TDX v4, and TDX v5 (TD 1.0 and TD 1.5 bodies).

Layouts follow Intel's DCAP quote library specification; offsets are in
``shared/specs/verification.md`` §1.  Parsing checks structure only: every
signature and every field's meaning is checked by the verifier.  All integers
are little-endian.  Bytes after the declared signature data (zero padding,
common in real quotes) are ignored, as Intel's QVL ignores them.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from veritee.binary import Reader
from veritee.errors import ParseError

HEADER_LEN = 48
SGX_BODY_LEN = 384
TD10_BODY_LEN = 584
TD15_BODY_LEN = 648
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
ATT_KEY_ECDSA_P256 = 2
CERT_DATA_PCK_CHAIN = 5
CERT_DATA_QE_REPORT = 6
# v5 body descriptor types
BODY_SGX, BODY_TD10, BODY_TD15 = 1, 2, 3
_BODY_LEN = {BODY_SGX: SGX_BODY_LEN, BODY_TD10: TD10_BODY_LEN, BODY_TD15: TD15_BODY_LEN}

TeeKind = Literal["tdx", "sgx"]


@dataclass(frozen=True)
class QuoteHeader:
    version: int
    att_key_type: int
    tee_type: int
    reserved: bytes  # bytes 8..12: qe_svn / pce_svn in v3
    vendor_id: bytes
    user_data: bytes
    raw: bytes

    @property
    def qe_svn(self) -> int:
        return int.from_bytes(self.reserved[0:2], "little")

    @property
    def pce_svn(self) -> int:
        return int.from_bytes(self.reserved[2:4], "little")


@dataclass(frozen=True)
class EnclaveReport:
    """SGX report body: the application enclave's body and the QE report."""

    cpu_svn: bytes
    misc_select: bytes
    reserved1: bytes
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    reserved2: bytes
    mr_signer: bytes
    reserved3: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    reserved4: bytes
    isv_family_id: bytes
    report_data: bytes
    raw: bytes

    @property
    def debug(self) -> bool:
        return bool(self.attributes[0] & 0x02)


@dataclass(frozen=True)
class TdReport:
    """TD report body: TD 1.0, or TD 1.5 when ``tee_tcb_svn2`` is present."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mrsigner_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    tee_tcb_svn2: bytes | None
    mr_servicetd: bytes | None
    raw: bytes

    @property
    def td_attributes_u64(self) -> int:
        return int.from_bytes(self.td_attributes, "little")

    @property
    def debug(self) -> bool:
        return bool(self.td_attributes_u64 & 1)


@dataclass(frozen=True)
class AuthData:
    """The ECDSA signature data that follows the body."""

    signature: bytes
    attestation_key: bytes
    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    cert_data_type: int
    cert_data: bytes


@dataclass(frozen=True)
class Quote:
    header: QuoteHeader
    body_type: int  # v5 descriptor type, or the type implied by the header
    body: EnclaveReport | TdReport
    auth: AuthData
    signed_len: int  # the quote signature covers raw[:signed_len]
    body_offset: int
    sig_data_offset: int
    raw: bytes

    @property
    def tee(self) -> TeeKind:
        return "tdx" if isinstance(self.body, TdReport) else "sgx"

    @property
    def report_data(self) -> bytes:
        return self.body.report_data

    @functools.cached_property
    def pck_chain_pem(self) -> bytes:
        """The PEM chain of certification data type 5, without its trailing NULs (one object
        per quote, so the caches keyed by it hash its bytes once)."""
        return self.auth.cert_data.rstrip(b"\x00")


# The fixed layouts of the two bodies, read in one call each when the buffer is long enough
# (the Reader below names the field a short buffer truncates).
_ENCLAVE_REPORT = struct.Struct("<16s4s12s16s16s32s32s32s32s64sHHH42s16s64s")
_TD10_REPORT = struct.Struct("<16s48s48s8s8s8s48s48s48s48s48s48s48s48s64s")
_TD15_TAIL = struct.Struct("<16s48s")
# The two constructors, called with the unpacked fields in layout order (the layouts above list
# the fields in the classes' order; the test against the field-by-field reader pins it).
_enclave_report: Callable[..., EnclaveReport] = EnclaveReport
_td_report: Callable[..., TdReport] = TdReport
assert _ENCLAVE_REPORT.size == SGX_BODY_LEN
assert _TD10_REPORT.size == TD10_BODY_LEN
assert _TD10_REPORT.size + _TD15_TAIL.size == TD15_BODY_LEN


def parse_enclave_report(data: bytes, what: str = "sgx report body") -> EnclaveReport:
    if len(data) >= SGX_BODY_LEN:
        return _enclave_report(*_ENCLAVE_REPORT.unpack_from(data), data[:SGX_BODY_LEN])
    r = Reader(data, what)
    report = EnclaveReport(
        cpu_svn=r.take(16, "cpu_svn"),
        misc_select=r.take(4, "misc_select"),
        reserved1=r.take(12, "reserved1"),
        isv_ext_prod_id=r.take(16, "isv_ext_prod_id"),
        attributes=r.take(16, "attributes"),
        mr_enclave=r.take(32, "mr_enclave"),
        reserved2=r.take(32, "reserved2"),
        mr_signer=r.take(32, "mr_signer"),
        reserved3=r.take(32, "reserved3"),
        config_id=r.take(64, "config_id"),
        isv_prod_id=r.u16("isv_prod_id"),
        isv_svn=r.u16("isv_svn"),
        config_svn=r.u16("config_svn"),
        reserved4=r.take(42, "reserved4"),
        isv_family_id=r.take(16, "isv_family_id"),
        report_data=r.take(64, "report_data"),
        raw=data[:SGX_BODY_LEN],
    )
    return report


def parse_td_report(data: bytes, td15: bool) -> TdReport:
    size = TD15_BODY_LEN if td15 else TD10_BODY_LEN
    if len(data) >= size:
        f = _TD10_REPORT.unpack_from(data)
        svn2, servicetd = _TD15_TAIL.unpack_from(data, TD10_BODY_LEN) if td15 else (None, None)
        rtmrs = (f[10], f[11], f[12], f[13])
        return _td_report(*f[:10], rtmrs, f[14], svn2, servicetd, data[:size])
    r = Reader(data, "td report body")
    fields = (
        r.take(16, "tee_tcb_svn"),
        r.take(48, "mr_seam"),
        r.take(48, "mrsigner_seam"),
        r.take(8, "seam_attributes"),
        r.take(8, "td_attributes"),
        r.take(8, "xfam"),
        r.take(48, "mr_td"),
        r.take(48, "mr_config_id"),
        r.take(48, "mr_owner"),
        r.take(48, "mr_owner_config"),
    )
    rtmrs = (r.take(48, "rtmr_0"), r.take(48, "rtmr_1"), r.take(48, "rtmr_2"), r.take(48, "rtmr_3"))
    report_data = r.take(64, "report_data")
    svn2 = r.take(16, "tee_tcb_svn2") if td15 else None
    servicetd = r.take(48, "mr_servicetd") if td15 else None
    return TdReport(
        *fields,
        rtmrs=rtmrs,
        report_data=report_data,
        tee_tcb_svn2=svn2,
        mr_servicetd=servicetd,
        raw=data[: r.pos],
    )


def parse_quote(raw: bytes) -> Quote:
    """Parse an SGX or TDX DCAP quote; raise :class:`ParseError` on malformed input."""
    return _parse_well_formed(raw) or _parse_checked(raw)


_HEADER = struct.Struct("<HHI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TYPE_SIZE = struct.Struct("<HI")


def _parse_well_formed(raw: bytes) -> Quote | None:
    """The quote, read at fixed offsets in a few calls; None at the first thing that is not
    as expected, for :func:`_parse_checked` to name it.  Both accept exactly the same quotes
    and give the same result."""
    size = len(raw)
    if size < HEADER_LEN:
        return None
    version, att_key_type, tee_type = _HEADER.unpack_from(raw, 0)
    sgx = tee_type == TEE_TYPE_SGX
    if version not in (3, 4, 5) or att_key_type != ATT_KEY_ECDSA_P256:
        return None
    if not sgx and tee_type != TEE_TYPE_TDX:
        return None
    pos = HEADER_LEN
    if version == 5:
        if size < pos + 6:
            return None
        body_type, body_size = _TYPE_SIZE.unpack_from(raw, pos)
        if _BODY_LEN.get(body_type) != body_size:
            return None
        pos += 6
    else:
        body_type = BODY_SGX if sgx else BODY_TD10
    if (body_type == BODY_SGX) != sgx or (version == 3 and not sgx):
        return None
    body_offset, body_end = pos, pos + _BODY_LEN[body_type]
    if size < body_end + 4:
        return None
    body: EnclaveReport | TdReport
    if sgx:
        body = parse_enclave_report(raw[body_offset:body_end])
    else:
        body = parse_td_report(raw[body_offset:body_end], td15=body_type == BODY_TD15)
    (sig_len,) = _U32.unpack_from(raw, body_end)
    start = body_end + 4
    end = start + sig_len
    pos = start + 128
    if end > size or pos > end:
        return None
    if version != 3:
        if pos + 6 > end:
            return None
        outer_type, outer_size = _TYPE_SIZE.unpack_from(raw, pos)
        pos += 6
        end = pos + outer_size
        if outer_type != CERT_DATA_QE_REPORT or end > start + sig_len:
            return None
    qe_end = pos + SGX_BODY_LEN
    if qe_end + 66 > end:
        return None
    (auth_len,) = _U16.unpack_from(raw, qe_end + 64)
    auth_end = qe_end + 66 + auth_len
    if auth_end + 6 > end:
        return None
    cert_type, cert_size = _TYPE_SIZE.unpack_from(raw, auth_end)
    if cert_type != CERT_DATA_PCK_CHAIN or auth_end + 6 + cert_size > end:
        return None
    header = QuoteHeader(
        version=version,
        att_key_type=att_key_type,
        tee_type=tee_type,
        reserved=raw[8:12],
        vendor_id=raw[12:28],
        user_data=raw[28:48],
        raw=raw[:HEADER_LEN],
    )
    auth = AuthData(
        signature=raw[start : start + 64],
        attestation_key=raw[start + 64 : start + 128],
        qe_report=parse_enclave_report(raw[pos:qe_end], "QE report"),
        qe_report_signature=raw[qe_end : qe_end + 64],
        qe_auth_data=raw[qe_end + 66 : auth_end],
        cert_data_type=cert_type,
        cert_data=raw[auth_end + 6 : auth_end + 6 + cert_size],
    )
    return Quote(
        header=header,
        body_type=body_type,
        body=body,
        auth=auth,
        signed_len=body_end,
        body_offset=body_offset,
        sig_data_offset=start,
        raw=raw,
    )


def _parse_checked(raw: bytes) -> Quote:
    """Field by field, naming the first field that is missing or wrong."""
    what = "intel quote"
    r = Reader(raw, what)
    hdr_raw = r.take(HEADER_LEN, "header")
    version, att_key_type, tee_type = struct.unpack_from("<HHI", hdr_raw, 0)
    header = QuoteHeader(
        version=version,
        att_key_type=att_key_type,
        tee_type=tee_type,
        reserved=hdr_raw[8:12],
        vendor_id=hdr_raw[12:28],
        user_data=hdr_raw[28:48],
        raw=hdr_raw,
    )
    if version not in (3, 4, 5):
        raise ParseError(what, f"unsupported quote version {version}", 0)
    if att_key_type != ATT_KEY_ECDSA_P256:
        raise ParseError(what, f"unsupported attestation key type {att_key_type}", 2)
    if tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX):
        raise ParseError(what, f"unknown tee type 0x{tee_type:08x}", 4)
    if version == 5:
        body_type = r.u16("body type")
        body_size = r.u32("body size")
        if body_type not in _BODY_LEN:
            raise ParseError(what, f"unknown v5 body type {body_type}", HEADER_LEN)
        if body_size != _BODY_LEN[body_type]:
            raise ParseError(
                what, f"v5 body size {body_size} does not match type {body_type}", HEADER_LEN + 2
            )
    else:
        body_type = BODY_TD10 if tee_type == TEE_TYPE_TDX else BODY_SGX
    if (body_type == BODY_SGX) != (tee_type == TEE_TYPE_SGX):
        raise ParseError(what, f"body type {body_type} does not match tee type", 4)
    if version == 3 and tee_type != TEE_TYPE_SGX:
        raise ParseError(what, "a version 3 quote must be SGX", 4)
    body_offset = r.pos
    body_raw = r.take(_BODY_LEN[body_type], "body")
    body: EnclaveReport | TdReport
    if body_type == BODY_SGX:
        body = parse_enclave_report(body_raw)
    else:
        body = parse_td_report(body_raw, td15=body_type == BODY_TD15)
    signed_len = r.pos
    sig_len = r.u32("signature data length")
    sig_data_offset = r.pos
    sig_data = r.take(sig_len, "signature data")
    auth = _parse_auth_data(sig_data, sig_data_offset, nested=version != 3)
    return Quote(
        header=header,
        body_type=body_type,
        body=body,
        auth=auth,
        signed_len=signed_len,
        body_offset=body_offset,
        sig_data_offset=sig_data_offset,
        raw=raw,
    )


def _parse_auth_data(data: bytes, base: int, nested: bool) -> AuthData:
    r = Reader(data, "intel quote signature data")
    signature = r.take(64, "quote signature")
    attestation_key = r.take(64, "attestation key")
    if nested:
        outer_type = r.u16("certification data type")
        outer_size = r.u32("certification data size")
        if outer_type != CERT_DATA_QE_REPORT:
            raise ParseError(
                "intel quote", f"certification data type {outer_type}, expected 6", base + r.pos - 6
            )
        r = Reader(
            r.take(outer_size, "QE report certification data"),
            "intel quote QE report certification data",
        )
    qe_report = parse_enclave_report(r.take(SGX_BODY_LEN, "QE report"), "QE report")
    qe_sig = r.take(64, "QE report signature")
    auth_len = r.u16("QE auth data size")
    qe_auth = r.take(auth_len, "QE auth data")
    cert_type = r.u16("PCK certification data type")
    cert_size = r.u32("PCK certification data size")
    cert_data = r.take(cert_size, "PCK certification data")
    if cert_type != CERT_DATA_PCK_CHAIN:
        raise ParseError(
            "intel quote",
            f"certification data type {cert_type} is not supported; only 5 "
            "(PCK certificate chain) carries the chain needed to verify offline",
        )
    return AuthData(
        signature=signature,
        attestation_key=attestation_key,
        qe_report=qe_report,
        qe_report_signature=qe_sig,
        qe_auth_data=qe_auth,
        cert_data_type=cert_type,
        cert_data=cert_data,
    )
