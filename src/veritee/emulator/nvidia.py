"""An emulated NVIDIA H100 (Hopper) in confidential-computing mode: its SPDM attestation
report, the driver and VBIOS RIMs that describe it, and Trustee's evidence JSON.

The report is what a Hopper GPU answers to SPDM 1.1 GET_MEASUREMENTS (DMTF DSP0274): the
37-byte request (version 0x11, code 0xE0, param1 1 = signature requested, param2 0xFF = all
measurements, the nonce, slot 0) followed by the response (0x11, 0x60, 0, 0, the block count,
the u24 record length, 64 measurement blocks in the DMTF layout with 48-byte SHA-384 values,
a response nonce, the u16 opaque length, NVIDIA's opaque data items and the raw r||s P-384
signature over SHA-384 of everything before it, by the ``GH100 A01 GSP FMC LF`` key).  The
opaque items are those of a real H100 report, in its order and encodings (type u16, size u16,
data): vbios_version, board_id, chip_sku, chip_sku_mod, project, project_sku,
project_sku_mod, driver_version, gpu_info, measurement_count, cpr_info, nvdec0_status, fwid
(the FWID of the signing certificate), protected_pcie_status.

The RIMs are SWID tags (ISO/IEC 19770-2:2015) laid out as NVIDIA's: Entity, a Meta with
the TCG RIM attributes and ``colloquialVersion``, and a Payload of 64 ``Resource
type="Measurement"`` entries (RIM index I describes report block I+1), enveloped XML-DSig
(ECDSA-SHA384, C14N 1.1) made with signxml, the RIM signer's chain in KeyInfo.  Their
golden values are the emulated measurements, so report and RIMs match unless told not to.

A test root's ``nvidia/`` also holds (:func:`save_test_root`) a good OCSP response for every
non-root certificate of both PKIs, signed by its issuer, as ``ocsp/<serial in lower-case
hex>.der``, and the default GPU's RIMs as ``rims/<RIM id>.swidtag``, so a verifier runs
offline against it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import importlib
import itertools
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509 import ocsp
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

from veritee.emulator.nvidia_pki import DEVICE_NAMES, RIM_NAMES, NvidiaTestRoot

# lxml ships no type information; signxml (typed) builds on it.
_etree: Any = importlib.import_module("lxml.etree")

BLOCKS: Final = 64
DIGEST_LEN: Final = 48
DEFAULT_UUID: Final = "GPU-00000000-0000-0000-0000-000000000000"
#: RIM indexes (0-based) that NVIDIA's GH100 driver and VBIOS RIMs mark active.
DRIVER_INDEXES: Final = (7, *range(21, 41))
VBIOS_INDEXES: Final = (*range(7), *range(8, 13))
SWID_NS: Final = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
TCG_RIM_NS: Final = "https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-information-model/"
SHA384_NS: Final = "http://www.w3.org/2001/04/xmlenc#sha384"
_STATUS_U: Final = b"U"  # 0x55, as a real H100 reports nvdec0 and protected PCIe status


def default_measurement(index: int) -> bytes:
    """The emulated value of report block ``index`` (1-based): a SHA-384 for the blocks a RIM
    marks active, zeros for the rest (as on a real H100)."""
    if index - 1 in DRIVER_INDEXES or index - 1 in VBIOS_INDEXES:
        return hashlib.sha384(f"veritee emulated GH100 measurement {index}".encode()).digest()
    return bytes(DIGEST_LEN)


def default_measurements() -> dict[int, bytes]:
    return {i: default_measurement(i) for i in range(1, BLOCKS + 1)}


@dataclass
class GpuFields:
    """What the emulated GPU reports.  ``measurements``: block index (1-based) -> value."""

    nonce: bytes = bytes(32)
    driver_version: str = "550.90.07"
    vbios_version: str = "96.00.9f.00.01"
    measurements: dict[int, bytes] = field(default_factory=default_measurements)
    project: str = "1010"
    project_sku: str = "0200"
    project_sku_mod: bytes = b"\x00\x00"
    chip_sku: str = "882"
    chip_sku_mod: str = "0"
    board_id: bytes = bytes.fromhex("b1030000")
    gpu_info: bytes = bytes.fromhex("8001000000000000")
    cpr_info: bytes = bytes.fromhex("00c00100")
    nvdec0_status: bytes = _STATUS_U
    protected_pcie_status: bytes = _STATUS_U
    fwid: bytes | None = None  # None: the FWID of the signing certificate
    response_nonce: bytes | None = None  # None: random


def apply_gpu_settings(fields: GpuFields, settings: Mapping[str, bytes]) -> None:
    """``measurement.N`` (block N, 48 bytes), ``nonce`` (≤ 32 bytes, zero-padded), ``fwid``,
    ``nvdec0_status``, ``protected_pcie_status``, ``board_id``, ``gpu_info``, ``cpr_info``,
    ``project_sku_mod``; ValueError names a setting that is unknown or the wrong size."""
    raw = ("board_id", "gpu_info", "cpr_info", "project_sku_mod")
    for name, value in settings.items():
        index = name.removeprefix("measurement.")
        if index != name:
            if not index.isdigit() or not 1 <= int(index) <= BLOCKS:
                raise ValueError(f"{name}: GPU measurement blocks are 1..{BLOCKS}")
            if len(value) != DIGEST_LEN:
                raise ValueError(f"{name}: a measurement is {DIGEST_LEN} bytes")
            fields.measurements[int(index)] = value
        elif name == "nonce":
            if len(value) > 32:
                raise ValueError("nonce: at most 32 bytes")
            fields.nonce = value.ljust(32, b"\x00")
        elif name == "fwid":
            if len(value) != DIGEST_LEN:
                raise ValueError(f"fwid: {DIGEST_LEN} bytes")
            fields.fwid = value
        elif name in ("nvdec0_status", "protected_pcie_status", *raw):
            setattr(fields, name, value)
        else:
            raise ValueError(f"unknown GPU field {name!r}")


# --------------------------------------------------------------------- report


def vbios_version_bytes(version: str) -> bytes:
    """NVIDIA's 8-byte VBIOS version field for ``aa.bb.cc.dd.ee`` (see the SPDM parser)."""
    parts = [int(p, 16) for p in version.split(".")]
    if len(parts) != 5 or not all(0 <= p <= 0xFF for p in parts):
        raise ValueError(f"VBIOS version {version!r} is not five hex bytes joined by dots")
    return bytes([*reversed(parts[:4]), parts[4], 0, 0, 0])


def _item(kind: int, data: bytes) -> bytes:
    return kind.to_bytes(2, "little") + len(data).to_bytes(2, "little") + data


def _opaque(fields: GpuFields, fwid: bytes) -> bytes:
    counts = b"".join(
        (0 if fields.measurements[i] == bytes(len(fields.measurements[i])) else 1).to_bytes(
            4, "little"
        )
        for i in sorted(fields.measurements)
    )
    items = [
        (6, vbios_version_bytes(fields.vbios_version)),
        (14, fields.board_id),
        (15, fields.chip_sku.encode().ljust(9, b"\x00")),
        (16, fields.chip_sku_mod.encode().ljust(5, b"\x00")),
        (17, fields.project.encode() + b"\x00"),
        (18, fields.project_sku.encode() + b"\x00"),
        (19, fields.project_sku_mod),
        (3, fields.driver_version.encode() + b"\x00"),
        (4, fields.gpu_info),
        (12, counts),
        (13, fields.cpr_info),
        (11, fields.nvdec0_status),
        (20, fwid),
        (21, fields.protected_pcie_status),
    ]
    return b"".join(_item(kind, data) for kind, data in items)


def build_gpu_report(root: NvidiaTestRoot, fields: GpuFields) -> bytes:
    """SPDM GET_MEASUREMENTS request + signed response, as a Hopper GPU returns them."""
    if len(fields.nonce) != 32:
        raise ValueError("the SPDM nonce is 32 bytes")
    request = bytes([0x11, 0xE0, 0x01, 0xFF]) + fields.nonce + b"\x00"
    record = b""
    for index in sorted(fields.measurements):
        value = fields.measurements[index]
        dmtf = bytes([0x01]) + len(value).to_bytes(2, "little") + value
        record += bytes([index, 0x01]) + len(dmtf).to_bytes(2, "little") + dmtf
    opaque = _opaque(fields, root.fwid if fields.fwid is None else fields.fwid)
    response_nonce = fields.response_nonce or secrets.token_bytes(32)
    response = (
        bytes([0x11, 0x60, 0x00, 0x00, len(fields.measurements)])
        + len(record).to_bytes(3, "little")
        + record
        + response_nonce
        + len(opaque).to_bytes(2, "little")
        + opaque
    )
    signed = request + response
    der = root.leaf_key.sign(signed, ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return signed + r.to_bytes(48, "big") + s.to_bytes(48, "big")


class EmulatedGpu:
    """The emulated H100 behind the guest's :class:`~veritee.guest.attesters.nvidia.NvidiaGpu`
    interface: each report is signed afresh over the nonce asked for, with ``fields``' other
    values (the default GPU unless given)."""

    arch = "HOPPER"

    def __init__(
        self, root: NvidiaTestRoot, fields: GpuFields | None = None, uuid: str = DEFAULT_UUID
    ) -> None:
        self.root = root
        self.fields = fields or GpuFields()
        self.uuid = uuid

    def attestation_report(self, nonce: bytes) -> bytes:
        return build_gpu_report(self.root, dataclasses.replace(self.fields, nonce=nonce))

    def certificate_chain(self) -> bytes:
        return self.root.device_chain_pem()


def gpu_evidence_json(report: bytes, chain_pem: bytes, uuid: str = DEFAULT_UUID) -> dict[str, Any]:
    """Trustee's ``nvidia`` evidence: one Hopper device, the report in hex, the chain as the
    base64 of its PEM text."""
    device = {
        "arch": "HOPPER",
        "uuid": uuid,
        "evidence": report.hex(),
        "certificate": base64.b64encode(chain_pem).decode(),
    }
    return {"device_evidence_list": [device]}


# ----------------------------------------------------------------------- RIMs

RimKind = Literal["driver", "vbios"]


def rim_file_name(kind: RimKind, fields: GpuFields) -> str:
    """The RIM's id at NVIDIA's RIM service (``NV_GPU_DRIVER_GH100_…``, ``NV_GPU_VBIOS_…``)
    plus ``.swidtag``."""
    if kind == "driver":
        return f"NV_GPU_DRIVER_GH100_{fields.driver_version}.swidtag"
    version = fields.vbios_version.replace(".", "").upper()
    return f"NV_GPU_VBIOS_{fields.project}_{fields.project_sku}_{fields.chip_sku}_{version}.swidtag"


def build_rims(
    root: NvidiaTestRoot,
    fields: GpuFields,
    *,
    driver_indexes: Iterable[int] = DRIVER_INDEXES,
    vbios_indexes: Iterable[int] = VBIOS_INDEXES,
    tamper: Mapping[int, bytes] | None = None,
) -> tuple[bytes, bytes]:
    """The signed driver and VBIOS RIMs for ``fields``.  Indexes are RIM indexes (0-based);
    ``tamper`` maps a report block index (1-based) to the golden value to write instead of
    the measurement (the RIM is still validly signed)."""
    golden = dict(fields.measurements)
    golden.update(tamper or {})
    driver = _rim(root, "driver", fields.driver_version, set(driver_indexes), golden)
    vbios = _rim(root, "vbios", fields.vbios_version.upper(), set(vbios_indexes), golden)
    return driver, vbios


def _rim(
    root: NvidiaTestRoot, kind: RimKind, version: str, active: set[int], golden: dict[int, bytes]
) -> bytes:
    e = _etree
    tag_id = hashlib.sha384(f"veritee emulated GH100 {kind} RIM {version}".encode()).hexdigest()
    doc = e.Element(
        f"{{{SWID_NS}}}SoftwareIdentity",
        nsmap={None: SWID_NS, "ns2": SHA384_NS},
        attrib={
            "corpus": "false",
            "name": "GH100",
            "patch": "false",
            "supplemental": "false",
            "tagId": tag_id,
            "version": "1.0",
            "tagVersion": "0",
        },
    )
    e.SubElement(
        doc,
        f"{{{SWID_NS}}}Entity",
        attrib={"name": "NVIDIA Corporation", "role": "softwareCreator tagCreator"},
    )
    meta = e.SubElement(doc, f"{{{SWID_NS}}}Meta", nsmap={"ns1": TCG_RIM_NS})
    for name, value in (
        ("colloquialVersion", version),
        ("edition", "GPU"),
        ("product", "GH100"),
        ("revision", "r1"),
        ("PayloadType", "direct"),
    ):
        meta.set(name, value)
    for name, value in (
        ("BindingSpec", "RIMIM"),
        ("BindingSpecVersion", "1.01"),
        ("PlatformManufacturerId", "5703"),
        ("PlatformManufacturerStr", "NVIDIA Corporation"),
        ("PlatformModel", "GH100"),
        ("FirmwareManufacturer", "NVIDIA Corporation"),
        ("FirmwareManufacturerId", "5703"),
    ):
        meta.set(f"{{{TCG_RIM_NS}}}{name}", value)
    payload = e.SubElement(doc, f"{{{SWID_NS}}}Payload")
    for index in range(BLOCKS):
        on = index in active
        digest = golden.get(index + 1, bytes(DIGEST_LEN)) if on else bytes(DIGEST_LEN)
        label = ("Mixed" if kind == "driver" else "Hashed") if on else ""
        resource = e.SubElement(payload, f"{{{SWID_NS}}}Resource")
        resource.set("type", "Measurement")
        resource.set("index", str(index))
        resource.set("active", "True" if on else "False")
        resource.set("alternatives", "1")
        resource.set(f"{{{SHA384_NS}}}Hash0", digest.hex())
        resource.set("name", f"{label}Measurement_{index}")
        resource.set("size", str(len(digest)))
    e.indent(doc, space="    ")
    signer = XMLSigner(
        signature_algorithm=SignatureMethod.ECDSA_SHA384,
        digest_algorithm=DigestAlgorithm.SHA384,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1,
    )
    signed = signer.sign(doc, key=root.rim_signer_key, cert=root.rim_chain())
    data: bytes = e.tostring(signed)
    return data


def write_rims(root: NvidiaTestRoot, fields: GpuFields, directory: Path) -> list[Path]:
    """Write the driver and VBIOS RIMs of ``fields`` to ``directory`` under their RIM ids."""
    directory.mkdir(parents=True, exist_ok=True)
    driver, vbios = build_rims(root, fields)
    paths = [
        directory / rim_file_name("driver", fields),
        directory / rim_file_name("vbios", fields),
    ]
    paths[0].write_bytes(driver)
    paths[1].write_bytes(vbios)
    return paths


# ----------------------------------------------------------------------- OCSP


def ocsp_responses(root: NvidiaTestRoot, now: dt.datetime | None = None) -> dict[str, bytes]:
    """A good OCSP response (DER) for every non-root certificate of both PKIs, by lower-case
    hex serial; each is signed by the certificate's issuer and current for 20 years."""
    produced = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    out: dict[str, bytes] = {}
    for chain in (DEVICE_NAMES, RIM_NAMES):
        for name, parent in itertools.pairwise(chain):
            cert, issuer = root.certs[name], root.certs[parent]
            response = (
                ocsp.OCSPResponseBuilder()
                .add_response(
                    cert=cert,
                    issuer=issuer,
                    algorithm=hashes.SHA1(),  # noqa: S303 - the CertID hash OCSP clients send
                    cert_status=ocsp.OCSPCertStatus.GOOD,
                    this_update=produced - dt.timedelta(days=1),
                    next_update=produced + dt.timedelta(days=20 * 365),
                    revocation_time=None,
                    revocation_reason=None,
                )
                .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
                .sign(root.keys[parent], hashes.SHA384())
            )
            out[f"{cert.serial_number:x}"] = response.public_bytes(serialization.Encoding.DER)
    return out


def save_test_root(root: NvidiaTestRoot, directory: Path) -> None:
    """``root.save(directory)`` plus ``ocsp/<serial>.der`` (:func:`ocsp_responses`) and
    ``rims/`` for the default emulated GPU."""
    root.save(directory)
    (directory / "ocsp").mkdir(exist_ok=True)
    for serial, der in ocsp_responses(root).items():
        (directory / "ocsp" / f"{serial}.der").write_bytes(der)
    write_rims(root, GpuFields(), directory / "rims")
