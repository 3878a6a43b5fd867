"""RA-TLS certificates: make one around a fresh key and a quote, and read one back.

:func:`make_identity` follows current rats-tls (``shared/specs/ratls.md`` §1.5): a fresh
P-256 key, a self-signed certificate ``O=Inclavare Containers, CN=RATS-TLS``, serial 1,
valid from an hour ago for 365 days, with basicConstraints CA:FALSE, SKI and AKI, then the
evidence extension(s), all non-critical.  The DICE format binds the key through the claims
buffer (``pubkey-hash`` = SHA-256 of the SPKI DER; report data = SHA-256 of the claims
buffer); the legacy format binds SHA-256 of the SPKI DER directly.

:func:`read_certificate` parses a peer's certificate with asn1crypto rather than
cryptography: real RA-TLS certificates carry encodings recent cryptography refuses (Gramine
signs with an explicit NULL in the ECDSA AlgorithmIdentifier; enclave-tls wrote version
value 3), and only their self-signature, validity, key and extensions matter here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from veritee.errors import InputError, ParseError
from veritee.ratls import formats
from veritee.ratls.formats import PubkeyHash
from veritee.ratls.quoter import Quoter

__all__ = [
    "Evidence",
    "PeerCertificate",
    "RatlsIdentity",
    "all_evidence",
    "extract_evidence",
    "make_identity",
    "plain_identity",
    "read_certificate",
    "spki_der",
]

Format = Literal["dice", "legacy"]
_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Inclavare Containers"),
        x509.NameAttribute(NameOID.COMMON_NAME, "RATS-TLS"),
    ]
)
_LEGACY_OID_FOR_TEE = {kind: oid for oid, kind in formats.LEGACY_OIDS}


@dataclass(frozen=True)
class RatlsIdentity:
    """A certificate and its key, ready for a TLS context."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_pem: bytes
    key_pem: bytes  # PKCS#8 PEM, unencrypted: callers write it owner-only

    @property
    def cert_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def make_identity(
    quoter: Quoter,
    *,
    fmt: Literal["dice", "legacy"] = "dice",
    claims: Mapping[str, bytes] | None = None,
    endorsements: bytes | None = None,
    now: dt.datetime | None = None,
) -> RatlsIdentity:
    """A fresh key and an RA-TLS certificate whose quote (from ``quoter``) binds it.

    ``claims`` are custom DICE claims (text name → bytes), after ``pubkey-hash``;
    ``endorsements`` is an encoded endorsements buffer
    (:func:`~veritee.ratls.formats.encode_endorsements`), DICE only.  InputError for an
    option the format does not have, or a TEE it has no OID/tag for.
    """
    if fmt not in ("dice", "legacy"):
        raise InputError(f"unknown RA-TLS format {fmt!r}; expected dice or legacy")
    if fmt == "legacy" and (claims or endorsements is not None):
        raise InputError("the legacy RA-TLS format has no claims and no endorsements")
    tee = quoter.tee
    if tee not in ("sgx", "tdx", "snp"):
        raise InputError(f"RA-TLS supports tee sgx, tdx or snp, not {tee!r}")
    key = ec.generate_private_key(ec.SECP256R1())
    spki = spki_der(key.public_key())
    extensions: list[x509.UnrecognizedExtension] = []
    if fmt == "dice":
        try:
            buffer = formats.encode_claims(formats.pubkey_hash(spki), claims)
        except ValueError as exc:
            raise InputError(f"RA-TLS claims: {exc}") from exc
        quote = quoter.quote(hashlib.sha256(buffer).digest().ljust(64, b"\x00"))
        value = formats.encode_evidence(tee, quote, buffer)
        extensions.append(x509.UnrecognizedExtension(formats.OID_DICE_EVIDENCE, value))
        if endorsements is not None:
            extensions.append(
                x509.UnrecognizedExtension(formats.OID_DICE_ENDORSEMENTS, endorsements)
            )
    else:
        quote = quoter.quote(hashlib.sha256(spki).digest().ljust(64, b"\x00"))
        extensions.append(x509.UnrecognizedExtension(_LEGACY_OID_FOR_TEE[tee], quote))
    return _self_signed(key, extensions, now)


def plain_identity(now: dt.datetime | None = None) -> RatlsIdentity:
    """The same certificate profile with no evidence (what rats-tls's nullattester sends)."""
    return _self_signed(ec.generate_private_key(ec.SECP256R1()), [], now)


def _self_signed(
    key: ec.EllipticCurvePrivateKey,
    extensions: list[x509.UnrecognizedExtension],
    now: dt.datetime | None,
) -> RatlsIdentity:
    when = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_SUBJECT)
        .issuer_name(_SUBJECT)
        .serial_number(1)
        .public_key(public)
        .not_valid_before(when - dt.timedelta(hours=1))
        .not_valid_after(when + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    certificate = builder.sign(key, hashes.SHA256())
    return RatlsIdentity(
        certificate=certificate,
        key=key,
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class PeerCertificate:
    """What verification needs of a certificate, read leniently (see the module docstring)."""

    der: bytes
    tbs: bytes
    signature: bytes
    signature_algo: str  # asn1crypto: "ecdsa", "rsassa_pkcs1v15", "rsassa_pss", ...
    hash_algo: str  # asn1crypto: "sha1", "sha256", ...
    self_issued: bool
    spki: bytes
    not_before: dt.datetime
    not_after: dt.datetime
    extensions: tuple[tuple[str, bool, bytes], ...]  # (dotted OID, critical, value)

    def extension(self, oid: x509.ObjectIdentifier) -> bytes | None:
        for dotted, _critical, value in self.extensions:
            if dotted == oid.dotted_string:
                return value
        return None


def read_certificate(data: bytes | x509.Certificate) -> PeerCertificate:
    """Parse a certificate (DER, PEM or a cryptography object); ParseError if it is not one."""
    der = (
        data.public_bytes(serialization.Encoding.DER)
        if isinstance(data, x509.Certificate)
        else data
    )
    try:
        if der.lstrip().startswith(b"-----BEGIN"):  # not pem.detect: quotes hold PEM chains
            _, _, der = asn1_pem.unarmor(der)
        cert = asn1_x509.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        algorithm = cert["signature_algorithm"]
        validity = tbs["validity"]
        extensions = tuple(
            (ext["extn_id"].dotted, bool(ext["critical"].native), bytes(ext["extn_value"].contents))
            for ext in tbs["extensions"]
        )
        return PeerCertificate(
            der=bytes(der),
            tbs=tbs.dump(),
            signature=bytes(cert["signature_value"].native),
            signature_algo=algorithm.signature_algo,
            hash_algo=algorithm.hash_algo,
            self_issued=tbs["issuer"].dump() == tbs["subject"].dump(),
            spki=tbs["subject_public_key_info"].dump(),
            not_before=validity["not_before"].native,
            not_after=validity["not_after"].native,
            extensions=extensions,
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ParseError("certificate", f"not an X.509 certificate: {exc}") from exc


@dataclass(frozen=True)
class Evidence:
    """The evidence one certificate carries.

    ``fmt``: ``dice`` (2.23.133.5.4.9), ``legacy`` (Inclavare 1.2.840.113741.1337.x),
    ``gramine`` (0.6.9.42.840.113741.1337.6) or ``sgxsdk`` (1.2.840.113741.1.13.1).
    ``tee``: ``sgx``, ``tdx``, ``snp``, or a kind veritee cannot verify (``sgx_la``, ``sev``,
    ``csv``, ``sgx_epid``, ``intel_report``).  The claims fields are DICE only.
    """

    fmt: str
    tee: str
    oid: str
    raw: bytes
    tag: int | None = None
    claims_buffer: bytes | None = None
    pubkey_hash: PubkeyHash | None = None
    claims: Mapping[str, bytes] | None = None
    endorsements: formats.Endorsements | None = None


def extract_evidence(cert: bytes | x509.Certificate | PeerCertificate) -> Evidence | None:
    """The certificate's evidence, found by OID: DICE first, then the Inclavare legacy OIDs
    (rats-tls's order), Gramine's and the Intel SGX SDK's.  ``None`` when there is none;
    ParseError for an extension that is there but malformed."""
    found = all_evidence(cert, first=True)
    return found[0] if found else None


def all_evidence(
    cert: bytes | x509.Certificate | PeerCertificate, *, first: bool = False
) -> list[Evidence]:
    """Every evidence extension of the certificate, in :func:`extract_evidence`'s order
    (Gramine and the Intel SGX SDK write a legacy one beside the DICE one)."""
    peer = cert if isinstance(cert, PeerCertificate) else read_certificate(cert)
    found: list[Evidence] = []
    value = peer.extension(formats.OID_DICE_EVIDENCE)
    if value is not None:
        found.append(_dice(peer, value))
    for oid, kind in formats.LEGACY_OIDS:
        value = peer.extension(oid)
        if value is not None and not (first and found):
            found.append(Evidence("legacy", kind, oid.dotted_string, value))
    for oid, fmt in ((formats.OID_GRAMINE_LEGACY, "gramine"), (formats.OID_SGXSDK, "sgxsdk")):
        value = peer.extension(oid)
        if value is not None and not (first and found):
            found.append(Evidence(fmt, formats.intel_quote_kind(value), oid.dotted_string, value))
    return found


def _dice(peer: PeerCertificate, value: bytes) -> Evidence:
    dice = formats.decode_evidence(value)
    key_hash, claims = formats.decode_claims(dice.claims_buffer)
    raw_endorsements = peer.extension(formats.OID_DICE_ENDORSEMENTS)
    endorsements = (
        formats.decode_endorsements(raw_endorsements) if raw_endorsements is not None else None
    )
    return Evidence(
        fmt="dice",
        tee=formats.evidence_kind(dice.tag, dice.evidence),
        oid=formats.OID_DICE_EVIDENCE.dotted_string,
        raw=dice.evidence,
        tag=dice.tag,
        claims_buffer=dice.claims_buffer,
        pubkey_hash=key_hash,
        claims=claims,
        endorsements=endorsements,
    )
