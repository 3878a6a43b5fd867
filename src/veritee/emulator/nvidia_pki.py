"""A generated NVIDIA key hierarchy (test root): a GPU device PKI and a RIM signing PKI.

:class:`NvidiaTestRoot` mirrors the shape of NVIDIA's real hierarchies, certificate for
certificate, every key EC P-384 and every signature ECDSA with SHA-384:

* **device identity** (the chain a Hopper GPU hands out with its SPDM report, leaf first):
  ``GH100 A01 GSP FMC LF`` (the report signing key) ← ``GH100 A01 GSP BROM`` ←
  ``NVIDIA GH100 Provisioner ICA 1`` ← ``NVIDIA GH100 Identity`` ← the self-signed
  ``NVIDIA Device Identity CA``.  Names keep NVIDIA's attribute order (the two GSP
  certificates carry a ``serialNumber`` attribute equal to their serial, in hex), validity
  runs to 9999-12-31 as NVIDIA's does, and the CA extensions are NVIDIA's (basic
  constraints, key usage, CRL distribution point and OCSP access on the upper CAs, key
  identifiers).  The leaf carries the SAN ``otherName`` 1.3.6.1.4.1.412.274.1
  ("NVIDIA:GH100:<16 hex>") and the TCG DICE extension 2.23.133.5.4.1 in NVIDIA's layout:
  ``SEQUENCE {version INTEGER (1), the BROM key's SubjectPublicKeyInfo, SEQUENCE
  {sha384 OID, fwid OCTET STRING (48)}}``; its last 48 bytes are the FWID that the report's
  opaque data repeats.
* **RIM signing** (what NVIDIA's RIMs carry in their XML-DSig KeyInfo, leaf first):
  ``HCC RIM L4 Signer`` ← ``NVIDIA Reference Value L3 GH100 001`` ←
  ``NVIDIA Reference Value GH100 CA`` ← the self-signed ``NVIDIA CoRIM signing Root CA``.

The CRL and OCSP URLs are NVIDIA's, as in NVIDIA's certificates.  The keys are generated
here, so nothing chains to NVIDIA's pinned roots; a verifier trusts ``device_root.pem`` and
``rim_root.pem`` only when told to (``--trust-root``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from asn1crypto import core, keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from veritee.emulator.validity import add_years, issue_time
from veritee.paths import write_private
from veritee.pem import dump_certificates

OID_DICE_TCB_INFO: Final = x509.ObjectIdentifier("2.23.133.5.4.1")
OID_NVIDIA_UEID: Final = x509.ObjectIdentifier("1.3.6.1.4.1.412.274.1")
OCSP_URL: Final = "http://ocsp.ndis.nvidia.com"
FWID_LEN: Final = 48
#: Device PKI, leaf first; RIM PKI, leaf first (file stems under ``nvidia/``).
DEVICE_NAMES: Final = ("device_leaf", "device_brom", "device_ica", "device_identity", "device_root")
RIM_NAMES: Final = ("rim_signer", "rim_l3", "rim_ca", "rim_root")
_FAR: Final = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
_C, _O, _CN, _SN = (
    NameOID.COUNTRY_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.COMMON_NAME,
    NameOID.SERIAL_NUMBER,
)
_CORP = "NVIDIA Corporation"


#: The CAs and the RIM signer: name, subject attributes in NVIDIA's order, issuer, validity in
#: years (None: to 9999-12-31, as NVIDIA's device certificates), extension options.
_CAS: Final[tuple[tuple[str, tuple[tuple[x509.ObjectIdentifier, str], ...], str | None,
                        int | None, dict[str, Any]], ...]] = (
    ("device_root", ((_CN, "NVIDIA Device Identity CA"), (_O, "NVIDIA")), None, None, {}),
    ("device_identity", ((_CN, "NVIDIA GH100 Identity"), (_O, _CORP)), "device_root", None,
     {"crl": "http://crl.ndis.nvidia.com/crl/l1-root.crl"}),
    ("device_ica", ((_CN, "NVIDIA GH100 Provisioner ICA 1"), (_O, _CORP), (_C, "US")),
     "device_identity", None, {"crl": "http://crl.ndis.nvidia.com/crl/l2-gh100.crl"}),
    ("rim_root", ((_C, "US"), (_O, "NVIDIA"), (_CN, "NVIDIA CoRIM signing Root CA")), None, 30,
     {"bare_root": True}),
    ("rim_ca", ((_CN, "NVIDIA Reference Value GH100 CA"), (_O, _CORP), (_C, "US")), "rim_root",
     10, {"crl": "http://crl.ndis.nvidia.com/crl-corim/l1-corim"}),
    ("rim_l3", ((_CN, "NVIDIA Reference Value L3 GH100 001"), (_O, _CORP), (_C, "US")), "rim_ca",
     5, {"path_length": 0, "ocsp_only": True}),
    ("rim_signer", ((_C, "US"), (NameOID.STATE_OR_PROVINCE_NAME, "CA"),
                    (NameOID.LOCALITY_NAME, "Santa Clara"), (_O, _CORP),
                    (_CN, "HCC RIM L4 Signer")), "rim_l3", 4, {"end_entity": True}),
)  # fmt: skip


class _Fwid(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, type]]] = [
        ("hash_alg", core.ObjectIdentifier),
        ("digest", core.OctetString),
    ]


class DiceTcbInfo(core.Sequence):  # type: ignore[misc]
    """The content of NVIDIA's 2.23.133.5.4.1 extension (see the module docstring)."""

    _fields: ClassVar[list[tuple[str, type]]] = [
        ("version", core.Integer),
        ("identity", keys.PublicKeyInfo),
        ("fwid", _Fwid),
    ]


def _name(*attrs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs])


@dataclass(frozen=True)
class NvidiaTestRoot:
    """Both NVIDIA test PKIs: ``certs`` and ``keys`` by the names in DEVICE_NAMES/RIM_NAMES."""

    certs: Mapping[str, x509.Certificate]
    keys: Mapping[str, ec.EllipticCurvePrivateKey]

    @classmethod
    def create(cls, now: dt.datetime | None = None) -> NvidiaTestRoot:
        issued = issue_time(now)
        made: dict[str, tuple[x509.Certificate, ec.EllipticCurvePrivateKey]] = {}

        def issue(name: str, subject: x509.Name, parent: str | None, until: dt.datetime,
                  serial: int = 0, **kw: Any) -> None:  # fmt: skip
            key = ec.generate_private_key(ec.SECP384R1())
            serial = serial or x509.random_serial_number()
            issuer_cert, issuer_key = made[parent] if parent else (None, key)
            cert = _cert(subject, key, issuer_cert, issuer_key, serial, issued, until, **kw)
            made[name] = (cert, key)

        for name, attrs, parent, years, options in _CAS:
            until = _FAR if years is None else add_years(issued, years)
            issue(name, _name(*attrs), parent, until, **options)
        brom_serial = (int.from_bytes(secrets.token_bytes(9), "big") >> 2) | (1 << 70)
        brom_name = _gsp_name("GH100 A01 GSP BROM", f"{brom_serial:018X}")
        issue("device_brom", brom_name, "device_ica", _FAR, serial=brom_serial, plain_ca=True)
        brom_cert, brom_key = made["device_brom"]
        leaf_key = ec.generate_private_key(ec.SECP384R1())
        # NVIDIA's leaf serial is its key identifier (kept below 2**159, as X.509 wants).
        leaf_serial = int.from_bytes(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()).digest, "big"
        ) & ((1 << 159) - 1)
        fwid = hashlib.sha384(b"veritee emulated GH100 GSP FMC " + secrets.token_bytes(16))
        leaf = _leaf(leaf_key, brom_cert, brom_key, leaf_serial, issued, fwid.digest())
        made["device_leaf"] = (leaf, leaf_key)
        return cls({n: c for n, (c, _) in made.items()}, {n: k for n, (_, k) in made.items()})

    # ----------------------------------------------------------------- accessors

    @property
    def device_root(self) -> x509.Certificate:
        return self.certs["device_root"]

    @property
    def rim_root(self) -> x509.Certificate:
        return self.certs["rim_root"]

    @property
    def device_root_pem(self) -> bytes:
        return dump_certificates(self.device_root)

    @property
    def rim_root_pem(self) -> bytes:
        return dump_certificates(self.rim_root)

    @property
    def leaf_key(self) -> ec.EllipticCurvePrivateKey:
        return self.keys["device_leaf"]

    @property
    def rim_signer_key(self) -> ec.EllipticCurvePrivateKey:
        return self.keys["rim_signer"]

    def device_chain(self) -> list[x509.Certificate]:
        """Leaf first, root last, as the GPU hands it out."""
        return [self.certs[n] for n in DEVICE_NAMES]

    def device_chain_pem(self) -> bytes:
        return dump_certificates(*self.device_chain())

    def rim_chain(self) -> list[x509.Certificate]:
        """The RIM signer's chain, leaf first and root last, as NVIDIA's KeyInfo carries it."""
        return [self.certs[n] for n in RIM_NAMES]

    @property
    def fwid(self) -> bytes:
        """The FWID in the leaf's DICE extension (what the report's opaque ``fwid`` repeats)."""
        return leaf_fwid(self.certs["device_leaf"])

    def authorities(self) -> list[tuple[x509.Certificate, ec.EllipticCurvePrivateKey]]:
        """Every CA of both PKIs with its key (device CAs first, then the RIM CAs)."""
        names = [*DEVICE_NAMES[1:], *RIM_NAMES[1:]]
        return [(self.certs[n], self.keys[n]) for n in names]

    # --------------------------------------------------------------------- files

    def save(self, directory: Path) -> None:
        """``<name>.pem`` and ``<name>.key`` (0600) for every certificate and
        ``device_chain.pem``; ``device_root.pem`` and ``rim_root.pem`` are the anchors."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, cert in self.certs.items():
            (directory / f"{name}.pem").write_bytes(dump_certificates(cert))
            key = self.keys[name].private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private(directory / f"{name}.key", key)
        (directory / "device_chain.pem").write_bytes(self.device_chain_pem())

    @classmethod
    def load(cls, directory: Path) -> NvidiaTestRoot:
        """Read what :meth:`save` wrote; ValueError names the file that is missing or wrong."""
        certs: dict[str, x509.Certificate] = {}
        keys_: dict[str, ec.EllipticCurvePrivateKey] = {}
        for name in (*DEVICE_NAMES, *RIM_NAMES):
            path = directory / f"{name}.pem"
            try:
                certs[name] = x509.load_pem_x509_certificate(path.read_bytes())
                key = serialization.load_pem_private_key(
                    (directory / f"{name}.key").read_bytes(), password=None
                )
            except (OSError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"{path.with_suffix('')}: unreadable test-root file: {exc}"
                ) from exc
            if (
                not isinstance(key, ec.EllipticCurvePrivateKey)
                or key.public_key() != certs[name].public_key()
            ):
                raise ValueError(f"{directory / name}.key does not belong to {name}.pem")
            keys_[name] = key
        return cls(certs, keys_)


def leaf_fwid(cert: x509.Certificate) -> bytes:
    """The FWID of a device leaf: the digest in its DICE extension (its last 48 bytes)."""
    ext = cert.extensions.get_extension_for_oid(OID_DICE_TCB_INFO).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    digest: bytes = DiceTcbInfo.load(ext.value)["fwid"]["digest"].native
    return digest


# ---------------------------------------------------------------- certificates


def _gsp_name(common_name: str, serial_hex: str) -> x509.Name:
    return _name((_SN, serial_hex), (_C, "US"), (_O, _CORP), (_CN, common_name))


def _usage(*, sign: bool = False, cert_sign: bool = False, crl: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=crl,
        encipher_only=False,
        decipher_only=False,
    )


def _ocsp_access() -> x509.AuthorityInformationAccess:
    url = x509.UniformResourceIdentifier(OCSP_URL)
    return x509.AuthorityInformationAccess(
        [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, url)]
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    signer: ec.EllipticCurvePrivateKey,
    serial: int,
    issued: dt.datetime,
    until: dt.datetime,
    *,
    crl: str | None = None,
    path_length: int | None = None,
    plain_ca: bool = False,
    ocsp_only: bool = False,
    bare_root: bool = False,
    end_entity: bool = False,
) -> x509.Certificate:
    """A CA (or, with ``end_entity``, the RIM signer) with NVIDIA's extensions in their order."""
    public = key.public_key()
    issuer_public = issuer.public_key() if issuer else public
    assert isinstance(issuer_public, ec.EllipticCurvePublicKey)
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public)
    aki = x509.AuthorityKeyIdentifier(aki.key_identifier, None, None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(issued)
        .not_valid_after(until)
    )
    basic = x509.BasicConstraints(ca=not end_entity, path_length=path_length)
    if end_entity:
        builder = builder.add_extension(ski, False).add_extension(aki, False)
        builder = builder.add_extension(basic, True).add_extension(_usage(sign=True), True)
        builder = builder.add_extension(_ocsp_access(), False)
    elif bare_root:
        builder = builder.add_extension(ski, False).add_extension(aki, False)
        builder = builder.add_extension(basic, True)
        builder = builder.add_extension(_usage(cert_sign=True, crl=True), True)
    else:
        builder = builder.add_extension(basic, True)
        builder = builder.add_extension(_usage(cert_sign=True, crl=not plain_ca), True)
        if crl is not None:
            point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl)], None, None, None)
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), False)
        if crl is not None or ocsp_only:
            builder = builder.add_extension(_ocsp_access(), False)
        builder = builder.add_extension(ski, False).add_extension(aki, False)
    return builder.sign(signer, hashes.SHA384())


def _leaf(
    key: ec.EllipticCurvePrivateKey,
    brom: x509.Certificate,
    brom_key: ec.EllipticCurvePrivateKey,
    serial: int,
    issued: dt.datetime,
    fwid: bytes,
) -> x509.Certificate:
    """``GH100 A01 GSP FMC LF``: key usage, key ids, the UEID SAN and the DICE extension."""
    public = key.public_key()
    brom_public = brom.public_key()
    assert isinstance(brom_public, ec.EllipticCurvePublicKey)
    ueid = f"NVIDIA:GH100:{secrets.token_hex(8).upper()}"
    san = x509.OtherName(OID_NVIDIA_UEID, core.UTF8String(ueid).dump())
    spki = brom_public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tcb_info = DiceTcbInfo(
        {
            "version": 1,
            "identity": keys.PublicKeyInfo.load(spki),
            "fwid": {"hash_alg": "2.16.840.1.101.3.4.2.2", "digest": fwid},
        }
    ).dump()
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(brom_public)
    return (
        x509.CertificateBuilder()
        .subject_name(_gsp_name("GH100 A01 GSP FMC LF", f"{serial:040X}"))
        .issuer_name(brom.subject)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(issued)
        .not_valid_after(_FAR)
        .add_extension(_usage(sign=True), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
        .add_extension(x509.AuthorityKeyIdentifier(aki.key_identifier, None, None), False)
        .add_extension(x509.SubjectAlternativeName([san]), False)
        .add_extension(x509.UnrecognizedExtension(OID_DICE_TCB_INFO, tcb_info), False)
        .sign(brom_key, hashes.SHA384())
    )
