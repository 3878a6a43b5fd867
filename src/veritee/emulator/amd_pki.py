"""A generated AMD SEV-SNP key hierarchy for one processor generation (test root).

:class:`AmdTestRoot` mirrors AMD's real hierarchy, certificate for certificate:

* **ARK** ``ARK-<Gen>``: self-signed RSA-4096;
* **ASK** ``SEV-<Gen>`` and **ASVK** ``SEV-VLEK-<Gen>``: RSA-4096, signed by the ARK;
* **VCEK** ``SEV-VCEK`` and **VLEK** ``SEV-VLEK``: EC P-384, signed by the ASK and ASVK.

Every signature is RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt.
Names use AMD's DN attributes in AMD's order (OU, C, L, ST, O, CN); the CA
certificates carry the same standard extensions as AMD's, and the VCEK/VLEK
carry the AMD extensions (1.3.6.1.4.1.3704.1.*) in the order, and with the
encodings, of real KDS certificates (``shared/specs/verification.md`` §4.2):
INTEGER ``structVersion`` (1 on Turin, else 0), IA5String ``productName``
("Milan-B0"/"Genoa"/"Turin" on VCEKs, "Milan"/"Genoa"/"Turin" on VLEKs), INTEGER
SPLs including the reserved ``spl_4``..``spl_7`` (AMD omits ``spl_4`` on Turin),
``hwID`` as the **raw** CHIP_ID bytes (64, or the first 8 on Turin; KDS does not
DER-wrap them) and, on VLEKs, an IA5String ``csp_id``.

Deliberate differences from AMD:

* the VCEK/VLEK serial number is 1, not 0: ``cryptography`` refuses to build a
  certificate with serial 0 (it only warns when parsing one);
* the keys are generated here, so nothing chains to AMD's pinned ARKs; a
  verifier must be told to trust :attr:`AmdTestRoot.ark` explicitly.

The CRL distribution points name AMD's real KDS URLs, as AMD's do.  Generating
the three RSA-4096 keys dominates :meth:`AmdTestRoot.create` (about 0.2-1.5 s
per key, so usually 1-3 s in all); :meth:`AmdTestRoot.reissue` re-uses them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from veritee.emulator.validity import add_years, issue_time
from veritee.paths import write_private
from veritee.pem import dump_certificates

AmdProduct = Literal["Milan", "Genoa", "Turin"]
Signer = Literal["vcek", "vlek"]
PRODUCTS: Final[tuple[AmdProduct, ...]] = get_args(AmdProduct)
SIGNERS: Final[tuple[Signer, ...]] = get_args(Signer)

#: The PSS parameters of every AMD certificate signature.
PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
#: The csp_id (1.3.6.1.4.1.3704.1.5) of the generated VLEK.
VLEK_CSP_ID: Final = "CN=emulator.veritee.invalid"
#: Reported TCB per generation when none is given: the TCB of real KDS certificates
#: (Milan: the trustee VLEK vector; Genoa: the Azure Genoa VCEK; Turin: virtee's Turin VCEK).
DEFAULT_TCB: Final[Mapping[AmdProduct, Mapping[str, int]]] = {
    "Milan": {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 217},
    "Genoa": {"bootloader": 10, "tee": 0, "snp": 23, "microcode": 84},
    "Turin": {"fmc": 0, "bootloader": 0, "tee": 0, "snp": 0, "microcode": 9},
}
TCB_FIELDS: Final = ("bootloader", "tee", "snp", "microcode")

_AMD_OID: Final = "1.3.6.1.4.1.3704.1."
_KDS: Final = "https://kdsintf.amd.com"
_GENERATION: Final[Mapping[AmdProduct, int]] = {"Milan": 1, "Genoa": 2, "Turin": 3}
_ASK_SERIAL_LOW: Final[Mapping[AmdProduct, int]] = {"Milan": 1, "Genoa": 2, "Turin": 1}
_VCEK_PRODUCT_NAME: Final[Mapping[AmdProduct, str]] = {
    "Milan": "Milan-B0",
    "Genoa": "Genoa",
    "Turin": "Turin",
}
_VEK_SERIAL: Final = 1  # AMD uses 0, which cryptography cannot build
_CA_YEARS: Final = 25
_VCEK_YEARS: Final = 7
_VLEK_YEARS: Final = 1
# Files written by save(); keys are PKCS#8 PEM, mode 0600.
_ROLES: Final = ("ark", "ask", "asvk", "vcek", "vlek")
_CHIP_FILE: Final = "chip.json"


def amd_name(common_name: str) -> x509.Name:
    """AMD's DN with ``common_name``, attributes in AMD's order."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True, eq=False)
class AmdTestRoot:
    """One emulated processor: its generation's test ARK/ASK/ASVK and its VCEK/VLEK.

    ``chip_id`` is the 64-byte CHIP_ID the emulated reports carry (on Turin only
    the first 8 bytes are meaningful and the rest are zero); ``reported_tcb`` is
    the TCB the VCEK and VLEK were issued for, with keys ``bootloader``, ``tee``,
    ``snp``, ``microcode`` and, on Turin only, ``fmc``.
    """

    product: AmdProduct
    chip_id: bytes
    reported_tcb: dict[str, int]
    ark: x509.Certificate
    ask: x509.Certificate
    asvk: x509.Certificate
    vcek: x509.Certificate
    vlek: x509.Certificate
    ark_key: rsa.RSAPrivateKey
    ask_key: rsa.RSAPrivateKey
    asvk_key: rsa.RSAPrivateKey
    vcek_key: ec.EllipticCurvePrivateKey
    vlek_key: ec.EllipticCurvePrivateKey

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(
        cls,
        *,
        product: AmdProduct = "Milan",
        chip_id: bytes | None = None,
        reported_tcb: Mapping[str, int] | None = None,
        now: dt.datetime | None = None,
    ) -> AmdTestRoot:
        """Generate a new hierarchy (three RSA-4096 and two P-384 keys).

        ``chip_id``: 64 bytes (on Turin also 8, zero-padded to 64); random when None.
        ``reported_tcb``: see the class docstring; :data:`DEFAULT_TCB` when None.
        ``now``: the issuance time, from which every certificate is valid (ARK, ASK
        and ASVK for 25 years, the VCEK for 7, the VLEK for 1, as AMD issues them);
        default: the current time minus one day, to tolerate clock skew.
        Raises :class:`ValueError` for a bad product, CHIP_ID or TCB.
        """
        if product not in PRODUCTS:
            raise ValueError(f"product must be one of {', '.join(PRODUCTS)}, not {product!r}")
        chip = _check_chip_id(product, chip_id)
        tcb = _check_tcb(product, reported_tcb)
        issued = issue_time(now)
        gen = _GENERATION[product]
        ark_key, ask_key, asvk_key = (_rsa_key() for _ in range(3))
        ark_name = amd_name(f"ARK-{product}")
        ark = _ca_cert(
            ark_name, ark_name, ark_key, ark_key, gen << 16, issued, f"{_KDS}/vcek/v1/{product}/crl"
        )
        ask = _ca_cert(
            amd_name(f"SEV-{product}"),
            ark_name,
            ask_key,
            ark_key,
            gen << 16 | _ASK_SERIAL_LOW[product],
            issued,
            f"{_KDS}/vcek/v1/{product}/crl",
        )
        asvk = _ca_cert(
            amd_name(f"SEV-VLEK-{product}"),
            ark_name,
            asvk_key,
            ark_key,
            gen << 16 | 0x101,
            issued,
            f"{_KDS}/vlek/v1/{product}/crl",
        )
        vcek_key = ec.generate_private_key(ec.SECP384R1())
        vlek_key = ec.generate_private_key(ec.SECP384R1())
        return cls._with_veks(
            product,
            chip,
            tcb,
            ark,
            ask,
            asvk,
            ark_key,
            ask_key,
            asvk_key,
            vcek_key,
            vlek_key,
            issued,
        )

    def reissue(
        self,
        *,
        chip_id: bytes | None = None,
        reported_tcb: Mapping[str, int] | None = None,
        now: dt.datetime | None = None,
    ) -> AmdTestRoot:
        """New VCEK and VLEK certificates for another CHIP_ID and/or TCB.

        The ARK, ASK, ASVK and all five keys are kept (so this is fast and the
        emulated chip signs with the same keys); unspecified arguments keep this
        root's values, except ``now``, which defaults as in :meth:`create`.
        """
        chip = self.chip_id if chip_id is None else _check_chip_id(self.product, chip_id)
        tcb = _check_tcb(self.product, self.reported_tcb if reported_tcb is None else reported_tcb)
        return self._with_veks(
            self.product,
            chip,
            tcb,
            self.ark,
            self.ask,
            self.asvk,
            self.ark_key,
            self.ask_key,
            self.asvk_key,
            self.vcek_key,
            self.vlek_key,
            issue_time(now),
        )

    @classmethod
    def _with_veks(
        cls,
        product: AmdProduct,
        chip_id: bytes,
        tcb: dict[str, int],
        ark: x509.Certificate,
        ask: x509.Certificate,
        asvk: x509.Certificate,
        ark_key: rsa.RSAPrivateKey,
        ask_key: rsa.RSAPrivateKey,
        asvk_key: rsa.RSAPrivateKey,
        vcek_key: ec.EllipticCurvePrivateKey,
        vlek_key: ec.EllipticCurvePrivateKey,
        issued: dt.datetime,
    ) -> AmdTestRoot:
        hw_id = chip_id[:8] if product == "Turin" else chip_id
        vcek = _vek_cert(
            "SEV-VCEK",
            ask,
            ask_key,
            vcek_key,
            _vek_extensions(product, _VCEK_PRODUCT_NAME[product], tcb, (_AMD_OID + "4", hw_id)),
            issued,
            _VCEK_YEARS,
        )
        csp_id = core.IA5String(VLEK_CSP_ID).dump()
        vlek = _vek_cert(
            "SEV-VLEK",
            asvk,
            asvk_key,
            vlek_key,
            _vek_extensions(product, product, tcb, (_AMD_OID + "5", csp_id)),
            issued,
            _VLEK_YEARS,
        )
        return cls(
            product=product,
            chip_id=chip_id,
            reported_tcb=tcb,
            ark=ark,
            ask=ask,
            asvk=asvk,
            vcek=vcek,
            vlek=vlek,
            ark_key=ark_key,
            ask_key=ask_key,
            asvk_key=asvk_key,
            vcek_key=vcek_key,
            vlek_key=vlek_key,
        )

    # ------------------------------------------------------------------- access

    @property
    def hw_id(self) -> bytes:
        """The VCEK's hwID as KDS names it: CHIP_ID, or its first 8 bytes on Turin."""
        return self.chip_id[:8] if self.product == "Turin" else self.chip_id

    def vek(self, signer: Signer = "vcek") -> x509.Certificate:
        """The VCEK or the VLEK."""
        return self.vcek if _signer(signer) == "vcek" else self.vlek

    def vek_key(self, signer: Signer = "vcek") -> ec.EllipticCurvePrivateKey:
        """The VCEK's or the VLEK's private key."""
        return self.vcek_key if _signer(signer) == "vcek" else self.vlek_key

    def intermediate(self, signer: Signer = "vcek") -> x509.Certificate:
        """The ASK (VCEK path) or the ASVK (VLEK path)."""
        return self.ask if _signer(signer) == "vcek" else self.asvk

    def cert_chain_pem(self, signer: Signer = "vcek") -> bytes:
        """PEM: the VCEK (or VLEK), then the ASK (or ASVK), then the ARK."""
        return dump_certificates(self.vek(signer), self.intermediate(signer), self.ark)

    def kds_vcek_der(self) -> bytes:
        """The VCEK as DER, as KDS serves it from ``/vcek/v1/{product}/{hwid}?…``."""
        return self.vcek.public_bytes(serialization.Encoding.DER)

    def kds_cert_chain_pem(self, signer: Signer = "vcek") -> bytes:
        """``/vcek/v1/{product}/cert_chain`` (ASK, ARK) or ``/vlek/…`` (ASVK, ARK), as PEM."""
        return dump_certificates(self.intermediate(signer), self.ark)

    # ---------------------------------------------------------------- save/load

    def save(self, directory: Path) -> None:
        """Write ``<role>.pem`` certificates, ``<role>.key`` PKCS#8 PEM keys (mode 0600)
        for the roles ark, ask, asvk, vcek and vlek, and ``chip.json`` (product,
        CHIP_ID as hex, reported TCB) into ``directory``, creating it (mode 0700)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        certs = self._certs()
        keys = self._keys()
        for role in _ROLES:
            (directory / f"{role}.pem").write_bytes(dump_certificates(certs[role]))
            write_private(
                directory / f"{role}.key",
                keys[role].private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        chip = {
            "product": self.product,
            "chip_id": self.chip_id.hex(),
            "reported_tcb": self.reported_tcb,
        }
        (directory / _CHIP_FILE).write_text(json.dumps(chip, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> AmdTestRoot:
        """Read what :meth:`save` wrote.

        Raises :class:`ValueError` naming the file when one is missing or malformed,
        or when a key does not belong to its certificate.
        """
        chip = _read_chip(directory / _CHIP_FILE)
        product, chip_id, tcb = chip
        certs = {role: _read_cert(directory / f"{role}.pem") for role in _ROLES}
        ark_key, ask_key, asvk_key = (
            _read_rsa_key(directory / f"{role}.key", certs[role]) for role in ("ark", "ask", "asvk")
        )
        vcek_key, vlek_key = (
            _read_ec_key(directory / f"{role}.key", certs[role]) for role in ("vcek", "vlek")
        )
        return cls(
            product=product,
            chip_id=chip_id,
            reported_tcb=tcb,
            ark=certs["ark"],
            ask=certs["ask"],
            asvk=certs["asvk"],
            vcek=certs["vcek"],
            vlek=certs["vlek"],
            ark_key=ark_key,
            ask_key=ask_key,
            asvk_key=asvk_key,
            vcek_key=vcek_key,
            vlek_key=vlek_key,
        )

    def _certs(self) -> dict[str, x509.Certificate]:
        return {
            "ark": self.ark,
            "ask": self.ask,
            "asvk": self.asvk,
            "vcek": self.vcek,
            "vlek": self.vlek,
        }

    def _keys(self) -> dict[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]:
        return {
            "ark": self.ark_key,
            "ask": self.ask_key,
            "asvk": self.asvk_key,
            "vcek": self.vcek_key,
            "vlek": self.vlek_key,
        }


# ------------------------------------------------------------------ validation


def _signer(signer: str) -> Signer:
    if signer == "vcek":
        return "vcek"
    if signer == "vlek":
        return "vlek"
    raise ValueError(f"signer must be 'vcek' or 'vlek', not {signer!r}")


def _check_chip_id(product: AmdProduct, chip_id: bytes | None) -> bytes:
    if chip_id is None:
        return os.urandom(8) + bytes(56) if product == "Turin" else os.urandom(64)
    chip_id = bytes(chip_id)
    if product == "Turin" and len(chip_id) == 8:
        return chip_id + bytes(56)
    if len(chip_id) != 64:
        sizes = "8 or 64" if product == "Turin" else "64"
        raise ValueError(f"chip_id must be {sizes} bytes for {product}, got {len(chip_id)}")
    return chip_id


def _check_tcb(product: AmdProduct, tcb: Mapping[str, int] | None) -> dict[str, int]:
    """A TCB with exactly the generation's fields, each 0..255."""
    if tcb is None:
        return dict(DEFAULT_TCB[product])
    wanted = ("fmc", *TCB_FIELDS) if product == "Turin" else TCB_FIELDS
    if set(tcb) != set(wanted):
        raise ValueError(
            f"reported_tcb for {product} needs exactly the keys {', '.join(wanted)}; "
            f"got {', '.join(sorted(tcb)) or 'none'}"
        )
    out: dict[str, int] = {}
    for key in wanted:
        value = tcb[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise ValueError(f"reported_tcb[{key!r}] must be an integer 0..255, got {value!r}")
        out[key] = value
    return out


# ---------------------------------------------------------------- certificates


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


def _ca_cert(
    subject: x509.Name,
    issuer: x509.Name,
    key: rsa.RSAPrivateKey,
    signer: rsa.RSAPrivateKey,
    serial: int,
    issued: dt.datetime,
    crl_url: str,
) -> x509.Certificate:
    """ARK (``key is signer``) or ASK/ASVK, with AMD's extensions in AMD's order."""
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    key_usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=key is signer,
        encipher_only=False,
        decipher_only=False,
    )
    crl = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(crl_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )
    builder = _builder(subject, issuer, public, serial, issued, _CA_YEARS)
    if key is signer:  # the ARK: KU, SKI, BC (no path length), CRL DP
        builder = (
            builder.add_extension(key_usage, critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        )
    else:  # ASK/ASVK: SKI, AKI (key id only), BC (path length 0), KU, CRL DP
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            x509.SubjectKeyIdentifier.from_public_key(signer.public_key())
        )
        builder = (
            builder.add_extension(ski, critical=False)
            .add_extension(aki, critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(key_usage, critical=True)
        )
    builder = builder.add_extension(crl, critical=False)
    return builder.sign(signer, hashes.SHA384(), rsa_padding=PSS)


def _vek_extensions(
    product: AmdProduct, product_name: str, tcb: Mapping[str, int], last: tuple[str, bytes]
) -> list[tuple[str, bytes]]:
    """The AMD extensions of a VCEK/VLEK, in the order and encodings KDS uses."""

    def integer(value: int) -> bytes:
        return bytes(core.Integer(value).dump())

    ext = [
        (_AMD_OID + "1", integer(1 if product == "Turin" else 0)),
        (_AMD_OID + "2", bytes(core.IA5String(product_name).dump())),
    ]
    if product == "Turin":
        ext += [
            (_AMD_OID + "3.9", integer(tcb["fmc"])),
            (_AMD_OID + "3.1", integer(tcb["bootloader"])),
            (_AMD_OID + "3.2", integer(tcb["tee"])),
            (_AMD_OID + "3.3", integer(tcb["snp"])),
            *((_AMD_OID + f"3.{n}", integer(0)) for n in (5, 6, 7)),
        ]
    else:
        ext += [
            (_AMD_OID + "3.1", integer(tcb["bootloader"])),
            (_AMD_OID + "3.2", integer(tcb["tee"])),
            *((_AMD_OID + f"3.{n}", integer(0)) for n in (4, 5, 6, 7)),
            (_AMD_OID + "3.3", integer(tcb["snp"])),
        ]
    ext += [(_AMD_OID + "3.8", integer(tcb["microcode"])), last]
    return ext


def _vek_cert(
    common_name: str,
    issuer: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    key: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[str, bytes]],
    issued: dt.datetime,
    years: int,
) -> x509.Certificate:
    builder = _builder(
        amd_name(common_name), issuer.subject, key.public_key(), _VEK_SERIAL, issued, years
    )
    for oid, value in extensions:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA384(), rsa_padding=PSS)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public: CertificatePublicKeyTypes,
    serial: int,
    issued: dt.datetime,
    years: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(issued)
        .not_valid_after(add_years(issued, years))
    )


# ------------------------------------------------------------------------ files


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _read_chip(path: Path) -> tuple[AmdProduct, bytes, dict[str, int]]:
    try:
        doc = json.loads(_read(path))
        product = doc["product"]
        chip_hex = doc["chip_id"]
        tcb = doc["reported_tcb"]
        if product not in PRODUCTS or not isinstance(chip_hex, str) or not isinstance(tcb, dict):
            raise TypeError("unexpected types")
        return product, _check_chip_id(product, bytes.fromhex(chip_hex)), _check_tcb(product, tcb)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a test-root chip description: {exc}") from exc


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError as exc:
        raise ValueError(f"{path}: not a PEM certificate: {exc}") from exc


def _read_key(path: Path, cert: x509.Certificate) -> object:
    # The test root's own keys, checked against its certificates below; skipping
    # OpenSSL's RSA consistency check saves ~0.6 s per RSA-4096 key at every load.
    try:
        key = serialization.load_pem_private_key(
            _read(path), password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key: {exc}") from exc
    if key.public_key() != cert.public_key():
        raise ValueError(f"{path}: the key does not belong to {path.with_suffix('.pem').name}")
    return key


def _read_rsa_key(path: Path, cert: x509.Certificate) -> rsa.RSAPrivateKey:
    key = _read_key(path, cert)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA key")
    return key


def _read_ec_key(path: Path, cert: x509.Certificate) -> ec.EllipticCurvePrivateKey:
    key = _read_key(path, cert)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC key")
    return key
