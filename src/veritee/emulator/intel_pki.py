"""A generated Intel SGX/TDX root of trust: certificates, CRLs and signed TCB collateral.

:class:`IntelTestRoot` builds everything Intel's provisioning infrastructure
would hand a verifier, in Intel's formats, under a fresh P-256 test root:

- "Intel SGX Root CA" (self-signed, CA pathLen 1), which signs the
  "Intel SGX PCK Platform CA" (CA pathLen 0) and the "Intel SGX TCB Signing"
  certificate; the PCK CA signs the platform's "Intel SGX PCK Certificate",
  which carries the SGX extension (OID 1.2.840.113741.1.13.1, built with
  asn1crypto);
- the root CA CRL and the PCK CRL (CRLNumber 1, AKI, no IssuingDistributionPoint;
  the PCK CRL lists the PCK certificate when the platform is revoked);
- TCB info v3 for "TDX" and "SGX" and QE identities v2 "TD_QE" and "QE", each
  compact JSON in Intel's key order, signed as the hex of the raw r‖s ECDSA
  signature over the exact text.

Every choice follows ``shared/specs/emulator-dcap-qvl.md`` (what dcap-qvl 0.7.0
and Intel's QVL require of a chain; the parameter set of its §6).  Certificates
are valid from ``now - 365 d`` to ``now + 3650 d``; CRLs, TCB info and QE
identities from ``now - 1 h`` to ``now + 30 d``, so a generated root is good for
a month.  Nothing here is trusted by any verifier unless its root is passed
explicitly (``root_ca_der``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

from veritee.errors import InputError, ParseError
from veritee.paths import write_private
from veritee.pem import dump_certificates
from veritee.verifier.collateral.intel import FIELDS

__all__ = [
    "QE_IDENTITY",
    "SGX_EXTENSION_OID",
    "TCB_STATUSES",
    "IntelPlatform",
    "IntelTestRoot",
    "KeyAndCert",
    "QeIdentityProfile",
    "SignedJson",
    "TcbStatus",
    "Tee",
    "fingerprint",
    "raw_signature",
    "sgx_extension_der",
]

Tee = Literal["tdx", "sgx"]
TcbStatus = Literal[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
]
TCB_STATUSES: tuple[str, ...] = get_args(TcbStatus)

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"

CERT_BEFORE = dt.timedelta(days=365)
CERT_AFTER = dt.timedelta(days=3650)
COLLATERAL_BEFORE = dt.timedelta(hours=1)
COLLATERAL_AFTER = dt.timedelta(days=30)
TCB_EVALUATION_DATA_NUMBER = 17
# tcbDate of the newest level, and of the older level an emulated platform matches
# when its status is not UpToDate (Intel's dates for evaluation data number 17).
_TCB_DATE_CURRENT = "2024-03-13T00:00:00Z"
_TCB_DATE_OLDER = "2023-08-09T00:00:00Z"

_TDX_ID = "TDX_%02X"
# Intel's real TDX module identities (tcbInfo evaluation data 17): major version -> isvsvn.
_TDX_MODULE_ISVSVN = {3: 3, 1: 4}


@dataclass(frozen=True)
class QeIdentityProfile:
    """Intel's identity of its quoting enclave for one TEE (real values from PCS)."""

    id: str
    mrsigner: bytes
    isvprodid: int
    miscselect: bytes = bytes(4)
    miscselect_mask: bytes = b"\xff" * 4
    attributes: bytes = bytes.fromhex("11000000000000000000000000000000")
    attributes_mask: bytes = bytes.fromhex("FBFFFFFFFFFFFFFF0000000000000000")


QE_IDENTITY: dict[Tee, QeIdentityProfile] = {
    "tdx": QeIdentityProfile(
        "TD_QE",
        bytes.fromhex("DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5"),
        2,
    ),
    "sgx": QeIdentityProfile(
        "QE",
        bytes.fromhex("8C4F5775D796503E96137F77C68A829A0056AC8DED70140B081B094490C57BFF"),
        1,
    ),
}

# Intel's categories for the first SGX TCB components of a TDX platform (PCS data).
_SGX_COMPONENT_INFO: dict[int, dict[str, str]] = {
    0: {"category": "BIOS", "type": "Early Microcode Update"},
    1: {"category": "OS/VMM", "type": "SGX Late Microcode Update"},
    2: {"category": "OS/VMM", "type": "TXT SINIT"},
    3: {"category": "BIOS"},
    4: {"category": "BIOS"},
    5: {"category": "BIOS"},
    7: {"category": "OS/VMM", "type": "SEAMLDR ACM"},
}
_TDX_COMPONENT_INFO: dict[int, dict[str, str]] = {
    0: {"category": "OS/VMM", "type": "TDX Module"},
    1: {"category": "OS/VMM", "type": "TDX Module"},
    2: {"category": "OS/VMM", "type": "TDX Late Microcode Update"},
}

DEFAULT_CPU_SVN = bytes([3, 3, 2, 2, 4, 1, 0, 5] + [0] * 8)
DEFAULT_TEE_TCB_SVN = bytes([5, 1, 2] + [0] * 13)


def _random16() -> bytes:
    return os.urandom(16)


@dataclass(frozen=True)
class IntelPlatform:
    """What the emulated platform's PCK certificate and quotes say about it.

    ``cpu_svn`` byte *i* is also SGX TCB component *i + 1* of the PCK extension
    (Intel's encoding).  ``tee_tcb_svn`` is the TDX TEE_TCB_SVN: [module SVN,
    module major version, late microcode SVN, 0 ...].  ``qe_isvsvn`` is the
    quoting enclave's ISVSVN.
    """

    fmspc: str = "B0C06F000000"
    pce_id: bytes = b"\x00\x00"
    cpu_svn: bytes = DEFAULT_CPU_SVN
    pce_svn: int = 11
    ppid: bytes = field(default_factory=_random16)
    tee_tcb_svn: bytes = DEFAULT_TEE_TCB_SVN
    qe_isvsvn: int = 4
    platform_instance_id: bytes = field(default_factory=_random16)

    def __post_init__(self) -> None:
        try:
            fmspc = bytes.fromhex(self.fmspc)
        except ValueError:
            fmspc = b""
        if len(fmspc) != 6:
            raise ValueError(f"fmspc must be 12 hex digits, got {self.fmspc!r}")
        for name, size in (
            ("pce_id", 2),
            ("cpu_svn", 16),
            ("ppid", 16),
            ("tee_tcb_svn", 16),
            ("platform_instance_id", 16),
        ):
            value = getattr(self, name)
            if len(value) != size:
                raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
        if not 0 <= self.pce_svn <= 0x7FFF:
            raise ValueError(f"pce_svn must be 0..32767, got {self.pce_svn}")
        if not 0 <= self.qe_isvsvn <= 0xFFFF:
            raise ValueError(f"qe_isvsvn must be 0..65535, got {self.qe_isvsvn}")

    def to_json(self) -> dict[str, Any]:
        return {
            "fmspc": self.fmspc.upper(),
            "pce_id": self.pce_id.hex(),
            "cpu_svn": self.cpu_svn.hex(),
            "pce_svn": self.pce_svn,
            "ppid": self.ppid.hex(),
            "tee_tcb_svn": self.tee_tcb_svn.hex(),
            "qe_isvsvn": self.qe_isvsvn,
            "platform_instance_id": self.platform_instance_id.hex(),
        }

    @classmethod
    def from_json(cls, doc: Any) -> IntelPlatform:
        try:
            return cls(
                fmspc=str(doc["fmspc"]),
                pce_id=bytes.fromhex(doc["pce_id"]),
                cpu_svn=bytes.fromhex(doc["cpu_svn"]),
                pce_svn=int(doc["pce_svn"]),
                ppid=bytes.fromhex(doc["ppid"]),
                tee_tcb_svn=bytes.fromhex(doc["tee_tcb_svn"]),
                qe_isvsvn=int(doc["qe_isvsvn"]),
                platform_instance_id=bytes.fromhex(doc["platform_instance_id"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ParseError("emulated platform.json", f"malformed: {exc}") from exc


# --------------------------------------------------------------------------- ASN.1


class _Entry(core.Sequence):  # type: ignore[misc]
    _fields = [("oid", core.ObjectIdentifier), ("value", core.Any)]  # noqa: RUF012


class _Entries(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _Entry


class _SgxType(core.Enumerated):  # type: ignore[misc]
    _map = {0: "standard", 1: "scalable", 2: "scalable_with_integrity"}  # noqa: RUF012


def _entry(suffix: str, value: Any) -> Any:
    return _Entry({"oid": f"{SGX_EXTENSION_OID}.{suffix}", "value": value})


def sgx_extension_der(platform: IntelPlatform, sgx_type: int = 0) -> bytes:
    """The DER value of the PCK certificate's SGX extension, as Intel encodes it."""
    tcb = [_entry(f"2.{i + 1}", core.Integer(platform.cpu_svn[i])) for i in range(16)]
    tcb.append(_entry("2.17", core.Integer(platform.pce_svn)))
    tcb.append(_entry("2.18", core.OctetString(platform.cpu_svn)))
    config = _Entries([_entry(f"7.{i}", core.Boolean(False)) for i in (1, 2, 3)])
    entries = _Entries(
        [
            _entry("1", core.OctetString(platform.ppid)),
            _entry("2", _Entries(tcb)),
            _entry("3", core.OctetString(platform.pce_id)),
            _entry("4", core.OctetString(bytes.fromhex(platform.fmspc))),
            _entry("5", _SgxType(sgx_type)),
            _entry("6", core.OctetString(platform.platform_instance_id)),
            _entry("7", config),
        ]
    )
    der: bytes = entries.dump()
    return der


# --------------------------------------------------------------------------- helpers


def _intel_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Intel Corporation"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256/SHA-256 over ``data`` as 64 bytes r‖s (big-endian), as Intel encodes it."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _utc(now: dt.datetime | None) -> dt.datetime:
    when = dt.datetime.now(dt.UTC) if now is None else now
    when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    return when.replace(microsecond=0)


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class KeyAndCert:
    """A private key and the certificate for it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    *,
    subject: str,
    issuer: KeyAndCert | None,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    ca_path_len: int | None,
    extra: Sequence[x509.ExtensionType] = (),
) -> x509.Certificate:
    name = _intel_name(subject)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CERT_BEFORE)
        .not_valid_after(now + CERT_AFTER)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if ca_path_len is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=ca_path_len), critical=True
        ).add_extension(_key_usage(ca=True), critical=True)
    else:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=False
        ).add_extension(_key_usage(ca=False), critical=True)
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(signer, hashes.SHA256())


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _crl(
    issuer: KeyAndCert, now: dt.datetime, revoked: Sequence[int] = ()
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(now - COLLATERAL_BEFORE)
        .next_update(now + COLLATERAL_AFTER)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - COLLATERAL_BEFORE)
            .build()
        )
    return builder.sign(issuer.key, hashes.SHA256())


# --------------------------------------------------------------------------- signed JSON


@dataclass(frozen=True)
class SignedJson:
    """One PCS document: the exact signed text and the hex r‖s signature over it."""

    member: str  # "tcbInfo" or "enclaveIdentity"
    text: str
    signature: str

    def body(self) -> bytes:
        """The PCS response body, ``{"<member>":<text>,"signature":"<hex>"}``, compact."""
        return f'{{"{self.member}":{self.text},"signature":"{self.signature}"}}'.encode()

    @classmethod
    def from_body(cls, member: str, body: bytes, what: str) -> SignedJson:
        text = body.decode("utf-8", errors="replace").strip()
        head = f'{{"{member}":'
        tail = ',"signature":"'
        cut = text.rfind(tail)
        if not text.startswith(head) or cut < 0 or not text.endswith('"}'):
            raise ParseError(what, f'expected {{"{member}":...,"signature":"..."}}')
        return cls(member, text[len(head) : cut], text[cut + len(tail) : -2])


def _sign_json(member: str, doc: Any, key: ec.EllipticCurvePrivateKey) -> SignedJson:
    text = _compact(doc)
    return SignedJson(member, text, raw_signature(key, text.encode()).hex())


def _components(svns: bytes, info: dict[int, dict[str, str]]) -> list[dict[str, Any]]:
    return [{"svn": svn, **info.get(i, {})} for i, svn in enumerate(svns)]


def _level(
    tee: Tee,
    cpu_svn: bytes,
    pce_svn: int,
    tdx_svn: bytes,
    date: str,
    status: str,
    advisories: Sequence[str],
) -> dict[str, Any]:
    tcb: dict[str, Any] = {
        "sgxtcbcomponents": _components(cpu_svn, _SGX_COMPONENT_INFO if tee == "tdx" else {}),
        "pcesvn": pce_svn,
    }
    if tee == "tdx":
        tcb["tdxtcbcomponents"] = _components(tdx_svn, _TDX_COMPONENT_INFO)
    level: dict[str, Any] = {"tcb": tcb, "tcbDate": date, "tcbStatus": status}
    if advisories:
        level["advisoryIDs"] = list(advisories)
    return level


def _tcb_info(
    tee: Tee,
    platform: IntelPlatform,
    now: dt.datetime,
    status: str,
    advisories: Sequence[str],
) -> dict[str, Any]:
    svn = platform.tee_tcb_svn
    # The level's TDX components: Intel lists 0 for the module major version.
    tdx_svn = bytes([svn[0], 0, *svn[2:]])
    levels: list[dict[str, Any]] = []
    if status == "UpToDate":
        levels.append(
            _level(
                tee,
                platform.cpu_svn,
                platform.pce_svn,
                tdx_svn,
                _TCB_DATE_CURRENT,
                status,
                advisories,
            )
        )
    else:
        # A newer UpToDate level this platform does not reach (a higher PCESVN),
        # above the level it matches, as in Intel's data.
        levels.append(
            _level(
                tee,
                platform.cpu_svn,
                platform.pce_svn + 2,
                tdx_svn,
                _TCB_DATE_CURRENT,
                "UpToDate",
                (),
            )
        )
        levels.append(
            _level(
                tee,
                platform.cpu_svn,
                platform.pce_svn,
                tdx_svn,
                _TCB_DATE_OLDER,
                status,
                advisories,
            )
        )
    doc: dict[str, Any] = {
        "id": "TDX" if tee == "tdx" else "SGX",
        "version": 3,
        "issueDate": _iso(now - COLLATERAL_BEFORE),
        "nextUpdate": _iso(now + COLLATERAL_AFTER),
        "fmspc": platform.fmspc.upper(),
        "pceId": platform.pce_id.hex().upper(),
        "tcbType": 0,
        "tcbEvaluationDataNumber": TCB_EVALUATION_DATA_NUMBER,
    }
    if tee == "tdx":
        zero_signer = "00" * 48
        doc["tdxModule"] = {
            "mrsigner": zero_signer,
            "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF",
        }
        isvsvns = dict(_TDX_MODULE_ISVSVN)
        if svn[1] > 0:
            isvsvns[svn[1]] = min(isvsvns.get(svn[1], svn[0]), svn[0])
        doc["tdxModuleIdentities"] = [
            {
                "id": _TDX_ID % major,
                "mrsigner": zero_signer,
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
                "tcbLevels": [
                    {
                        "tcb": {"isvsvn": isvsvns[major]},
                        "tcbDate": _TCB_DATE_CURRENT,
                        "tcbStatus": "UpToDate",
                    }
                ],
            }
            for major in sorted(isvsvns, reverse=True)
        ]
    doc["tcbLevels"] = levels
    return doc


def _qe_identity(tee: Tee, platform: IntelPlatform, now: dt.datetime) -> dict[str, Any]:
    qe = QE_IDENTITY[tee]
    return {
        "id": qe.id,
        "version": 2,
        "issueDate": _iso(now - COLLATERAL_BEFORE),
        "nextUpdate": _iso(now + COLLATERAL_AFTER),
        "tcbEvaluationDataNumber": TCB_EVALUATION_DATA_NUMBER,
        "miscselect": qe.miscselect.hex().upper(),
        "miscselectMask": qe.miscselect_mask.hex().upper(),
        "attributes": qe.attributes.hex().upper(),
        "attributesMask": qe.attributes_mask.hex().upper(),
        "mrsigner": qe.mrsigner.hex().upper(),
        "isvprodid": qe.isvprodid,
        "tcbLevels": [
            {
                "tcb": {"isvsvn": platform.qe_isvsvn},
                "tcbDate": _TCB_DATE_CURRENT,
                "tcbStatus": "UpToDate",
            }
        ],
    }


# --------------------------------------------------------------------------- the root

_TEES: tuple[Tee, ...] = ("tdx", "sgx")
_KEY_FILES = {
    "root": "root.key.pem",
    "pck_ca": "pck_platform_ca.key.pem",
    "pck": "pck.key.pem",
    "tcb": "tcb_signing.key.pem",
}
_CERT_FILES = {
    "root": "root.pem",
    "pck_ca": "pck_platform_ca.pem",
    "pck": "pck.pem",
    "tcb": "tcb_signing.pem",
}
ROOT_DER_FILE = "root.der"
ROOT_CRL_FILE = "root_ca_crl.der"
PCK_CRL_FILE = "pck_crl.der"
PLATFORM_FILE = "platform.json"


def _tcb_file(tee: Tee) -> str:
    return f"tcb_info_{tee}.json"


def _qe_file(tee: Tee) -> str:
    return f"qe_identity_{tee}.json"


def _collateral_file(tee: Tee) -> str:
    return f"collateral_{tee}.json"


@dataclass(frozen=True, eq=False)
class IntelTestRoot:
    """A generated Intel root of trust and one emulated platform under it.

    Build one with :meth:`create`; persist it with :meth:`save` / :meth:`load`.
    """

    platform: IntelPlatform
    root: KeyAndCert
    pck_ca: KeyAndCert
    pck: KeyAndCert
    tcb_signer: KeyAndCert
    root_crl: x509.CertificateRevocationList
    pck_crl: x509.CertificateRevocationList
    tcb_infos: dict[Tee, SignedJson]
    qe_identities: dict[Tee, SignedJson]
    tcb_status: str = "UpToDate"
    advisory_ids: tuple[str, ...] = ()
    pck_revoked: bool = False

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        *,
        tcb_status: str = "UpToDate",
        advisory_ids: Sequence[str] = (),
        pck_revoked: bool = False,
        now: dt.datetime | None = None,
        platform: IntelPlatform | None = None,
    ) -> IntelTestRoot:
        """Generate a root, its chain, CRLs and signed TCB collateral.

        ``tcb_status`` is the status of the TCB level the platform matches (for
        TDX and SGX alike) and ``advisory_ids`` that level's advisories; with
        ``pck_revoked`` the PCK CRL lists the platform's PCK certificate.
        """
        if tcb_status not in TCB_STATUSES:
            raise ValueError(
                f"tcb_status must be one of {', '.join(TCB_STATUSES)}, got {tcb_status!r}"
            )
        when = _utc(now)
        plat = platform if platform is not None else IntelPlatform()
        root_key, pck_ca_key, pck_key, tcb_key = (_new_key() for _ in range(4))
        root_cert = _cert(
            subject="Intel SGX Root CA",
            issuer=None,
            key=root_key,
            signer=root_key,
            now=when,
            ca_path_len=1,
        )
        root = KeyAndCert(root_key, root_cert)
        pck_ca = KeyAndCert(
            pck_ca_key,
            _cert(
                subject="Intel SGX PCK Platform CA",
                issuer=root,
                key=pck_ca_key,
                signer=root_key,
                now=when,
                ca_path_len=0,
            ),
        )
        pck = KeyAndCert(
            pck_key,
            _cert(
                subject="Intel SGX PCK Certificate",
                issuer=pck_ca,
                key=pck_key,
                signer=pck_ca_key,
                now=when,
                ca_path_len=None,
                extra=[
                    x509.UnrecognizedExtension(
                        x509.ObjectIdentifier(SGX_EXTENSION_OID), sgx_extension_der(plat)
                    )
                ],
            ),
        )
        tcb_signer = KeyAndCert(
            tcb_key,
            _cert(
                subject="Intel SGX TCB Signing",
                issuer=root,
                key=tcb_key,
                signer=root_key,
                now=when,
                ca_path_len=None,
            ),
        )
        advisories = tuple(advisory_ids)
        return cls(
            platform=plat,
            root=root,
            pck_ca=pck_ca,
            pck=pck,
            tcb_signer=tcb_signer,
            root_crl=_crl(root, when),
            pck_crl=_crl(pck_ca, when, [pck.cert.serial_number] if pck_revoked else []),
            tcb_infos={
                tee: _sign_json(
                    "tcbInfo", _tcb_info(tee, plat, when, tcb_status, advisories), tcb_key
                )
                for tee in _TEES
            },
            qe_identities={
                tee: _sign_json("enclaveIdentity", _qe_identity(tee, plat, when), tcb_key)
                for tee in _TEES
            },
            tcb_status=tcb_status,
            advisory_ids=advisories,
            pck_revoked=pck_revoked,
        )

    # ------------------------------------------------------------------ material

    @property
    def root_der(self) -> bytes:
        return self.root.cert.public_bytes(serialization.Encoding.DER)

    @property
    def root_pem(self) -> bytes:
        return dump_certificates(self.root.cert)

    @property
    def pck_key(self) -> ec.EllipticCurvePrivateKey:
        return self.pck.key

    @property
    def pck_cert_pem(self) -> bytes:
        return dump_certificates(self.pck.cert)

    @property
    def pck_chain_pem(self) -> bytes:
        """PCK leaf ‖ PCK Platform CA ‖ root, PEM: the chain a quote carries."""
        return (
            dump_certificates(self.pck.cert)
            + dump_certificates(self.pck_ca.cert)
            + dump_certificates(self.root.cert)
        )

    @property
    def tcb_issuer_chain_pem(self) -> bytes:
        """TCB Signing ‖ root: TCB info and QE identity issuer chain."""
        return dump_certificates(self.tcb_signer.cert, self.root.cert)

    @property
    def pck_crl_issuer_chain_pem(self) -> bytes:
        return dump_certificates(self.pck_ca.cert, self.root.cert)

    @property
    def pck_crl_der(self) -> bytes:
        return self.pck_crl.public_bytes(serialization.Encoding.DER)

    @property
    def root_crl_der(self) -> bytes:
        return self.root_crl.public_bytes(serialization.Encoding.DER)

    def tcb_info(self, tee: Tee) -> SignedJson:
        return self.tcb_infos[_tee(tee)]

    def qe_identity(self, tee: Tee) -> SignedJson:
        return self.qe_identities[_tee(tee)]

    def pcs_tcb_body(self, tee: Tee) -> bytes:
        """The PCS ``/{tdx,sgx}/certification/v4/tcb`` body: ``{"tcbInfo":…,"signature":…}``."""
        return self.tcb_info(tee).body()

    def pcs_qe_identity_body(self, tee: Tee) -> bytes:
        """The PCS ``/{tdx,sgx}/certification/v4/qe/identity`` body."""
        return self.qe_identity(tee).body()

    def collateral(self, tee: Tee) -> dict[str, str]:
        """dcap-qvl ``QuoteCollateralV3`` fields for ``tee``."""
        tcb, qe = self.tcb_info(tee), self.qe_identity(tee)
        chain = self.tcb_issuer_chain_pem.decode()
        entry = {
            "pck_crl_issuer_chain": self.pck_crl_issuer_chain_pem.decode(),
            "root_ca_crl": self.root_crl_der.hex(),
            "pck_crl": self.pck_crl_der.hex(),
            "tcb_info_issuer_chain": chain,
            "tcb_info": tcb.text,
            "tcb_info_signature": tcb.signature,
            "qe_identity_issuer_chain": chain,
            "qe_identity": qe.text,
            "qe_identity_signature": qe.signature,
        }
        return {name: entry[name] for name in FIELDS}

    def collateral_json(self, tee: Tee) -> str:
        """dcap-qvl ``QuoteCollateralV3`` JSON text for ``tee`` ("tdx" or "sgx")."""
        return json.dumps(self.collateral(tee))

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        """Write the root to ``directory`` (created if needed).

        Layout: ``root.pem`` / ``root.der`` (the test "Intel SGX Root CA", the
        anchor a verifier is given), ``pck_platform_ca.pem``, ``pck.pem``,
        ``tcb_signing.pem``; their keys ``*.key.pem`` (PKCS#8, mode 0600);
        ``root_ca_crl.der``, ``pck_crl.der``; ``tcb_info_{tdx,sgx}.json`` and
        ``qe_identity_{tdx,sgx}.json`` (PCS response bodies);
        ``collateral_{tdx,sgx}.json`` (QuoteCollateralV3, for ``--collateral``);
        ``platform.json`` (the platform, plus the TCB status it was made with).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for role, name in _KEY_FILES.items():
            write_private(directory / name, _key_pem(self._ca(role).key))
        for role, name in _CERT_FILES.items():
            (directory / name).write_bytes(dump_certificates(self._ca(role).cert))
        (directory / ROOT_DER_FILE).write_bytes(self.root_der)
        (directory / ROOT_CRL_FILE).write_bytes(self.root_crl_der)
        (directory / PCK_CRL_FILE).write_bytes(self.pck_crl_der)
        for tee in _TEES:
            (directory / _tcb_file(tee)).write_bytes(self.pcs_tcb_body(tee))
            (directory / _qe_file(tee)).write_bytes(self.pcs_qe_identity_body(tee))
            (directory / _collateral_file(tee)).write_text(self.collateral_json(tee) + "\n")
        doc = {
            **self.platform.to_json(),
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "pck_revoked": self.pck_revoked,
        }
        (directory / PLATFORM_FILE).write_text(json.dumps(doc, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> IntelTestRoot:
        """Read a root written by :meth:`save`; check each key matches its certificate."""
        directory = Path(directory)
        cas: dict[str, KeyAndCert] = {}
        for role in _KEY_FILES:
            key_path, cert_path = directory / _KEY_FILES[role], directory / _CERT_FILES[role]
            try:
                key = serialization.load_pem_private_key(_read(key_path), password=None)
                cert = x509.load_pem_x509_certificate(_read(cert_path))
            except (ValueError, TypeError) as exc:
                raise ParseError(f"emulated Intel root {role}", str(exc)) from exc
            if not isinstance(key, ec.EllipticCurvePrivateKey) or not _same_key(key, cert):
                raise ParseError(
                    f"emulated Intel root {role}",
                    f"{key_path.name} does not match {cert_path.name}",
                )
            cas[role] = KeyAndCert(key, cert)
        try:
            root_crl = x509.load_der_x509_crl(_read(directory / ROOT_CRL_FILE))
            pck_crl = x509.load_der_x509_crl(_read(directory / PCK_CRL_FILE))
        except ValueError as exc:
            raise ParseError("emulated Intel root CRL", str(exc)) from exc
        try:
            doc = json.loads(_read(directory / PLATFORM_FILE))
        except ValueError as exc:
            raise ParseError("emulated platform.json", f"not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ParseError("emulated platform.json", "expected a JSON object")
        tcb_infos = {
            tee: SignedJson.from_body("tcbInfo", _read(directory / _tcb_file(tee)), _tcb_file(tee))
            for tee in _TEES
        }
        qe_identities = {
            tee: SignedJson.from_body(
                "enclaveIdentity", _read(directory / _qe_file(tee)), _qe_file(tee)
            )
            for tee in _TEES
        }
        tcb_public = cas["tcb"].key.public_key()
        for signed in (*tcb_infos.values(), *qe_identities.values()):
            _check_signed(signed, tcb_public)
        return cls(
            platform=IntelPlatform.from_json(doc),
            root=cas["root"],
            pck_ca=cas["pck_ca"],
            pck=cas["pck"],
            tcb_signer=cas["tcb"],
            root_crl=root_crl,
            pck_crl=pck_crl,
            tcb_infos=tcb_infos,
            qe_identities=qe_identities,
            tcb_status=str(doc.get("tcb_status", "UpToDate")),
            advisory_ids=tuple(str(a) for a in doc.get("advisory_ids", ())),
            pck_revoked=bool(doc.get("pck_revoked", False)),
        )

    def _ca(self, role: str) -> KeyAndCert:
        return {"root": self.root, "pck_ca": self.pck_ca, "pck": self.pck, "tcb": self.tcb_signer}[
            role
        ]


def _tee(tee: str) -> Tee:
    if tee == "tdx":
        return "tdx"
    if tee == "sgx":
        return "sgx"
    raise ValueError(f"tee must be 'tdx' or 'sgx', got {tee!r}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc


def _same_key(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    def spki(public: Any) -> bytes:
        der: bytes = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return der

    return spki(key.public_key()) == spki(cert.public_key())


def _check_signed(signed: SignedJson, public: ec.EllipticCurvePublicKey) -> None:
    try:
        raw = bytes.fromhex(signed.signature)
        if len(raw) != 64:
            raise ValueError("signature is not 64 bytes")
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public.verify(der, signed.text.encode(), ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature) as exc:
        raise ParseError(
            f"emulated {signed.member}", "signature does not verify under the TCB Signing key"
        ) from exc


def fingerprint(root: IntelTestRoot) -> str:
    """SHA-256 of the root certificate (DER), hex."""
    return hashlib.sha256(root.root_der).hexdigest()
