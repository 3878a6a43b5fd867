"""NVIDIA reference integrity manifests (RIMs): the model, parsing, comparison with a GPU's
report, and the ids NVIDIA's RIM service serves them under.

A RIM is an ISO/IEC 19770-2:2015 SWID tag (``SoftwareIdentity``) whose ``Meta`` carries the
driver or VBIOS version (``colloquialVersion``) and whose ``Payload`` lists one
``Resource type="Measurement"`` per measurement index (0-based): ``active``,
``alternatives=N``, ``Hash0`` … ``Hash{N-1}`` (attributes in the SHA-384 namespace
``http://www.w3.org/2001/04/xmlenc#sha384``), ``size`` in bytes and a ``name``.  The document
is signed with an enveloped XML-DSig whose ``KeyInfo/X509Data`` holds the signer's chain, leaf
first, up to NVIDIA's RIM root ("NVIDIA CoRIM signing Root CA").  Parsing here does not check
that signature; :func:`veritee.verifier.nvidia_rim_signature.verify_rim` does.

Facts from NVIDIA's local GPU verifier (nvtrust), stated here, not copied:

* RIM index ``I`` is compared with the report's measurement block ``I + 1`` (the report's
  blocks are numbered from 1 and stored at position ``index - 1``);
* only active measurements are compared; the driver and VBIOS RIMs must not both have an
  active measurement at one index;
* RIM index 35 is not compared when the report's ``nvdec0_status`` says NVDEC0 is disabled;
* a measurement matches when one of its alternatives equals the runtime value and its size
  equals the runtime value's length.

**Schema.**  nvtrust validates RIMs against ISO's ``swidSchema2015.xsd``.  That XSD is not
shipped here (its licence grants use only for implementing the ISO standard, and it imports
the XML-DSig and ``xml.xsd`` schemas over the network); :func:`parse_rim` checks instead what
the schema requires of the elements this module reads: the ``SoftwareIdentity`` root in the
2015 namespace with ``name`` and ``tagId``, an ``Entity`` with ``name`` and a role including
``tagCreator``, one ``Meta`` with ``colloquialVersion``, one ``Payload`` whose children are
``Resource`` elements with a ``type``, and one ``ds:Signature``.  Anything else is a
:class:`~veritee.errors.ParseError`.

**Kind.**  NVIDIA's RIMs do not say whether they are a driver or a VBIOS RIM (both have
``edition="GPU"``, ``product="GH100"``); nvtrust is told by its caller.  Here the version
format decides unless ``kind`` is given: a VBIOS version is five dot-separated pairs of hex
digits (``96.00.5E.00.01``), a driver version decimal groups (``545.00``, ``550.90.07``).

**Parsing safety.**  lxml with entity resolution, DTD loading and network access off, no
huge-tree mode, documents over :data:`MAX_RIM_SIZE` refused, and any DOCTYPE refused.
"""

from __future__ import annotations

import binascii
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography import x509

from veritee.errors import ParseError, VerificationError

# lxml ships no type information.
_etree: Any = importlib.import_module("lxml.etree")

__all__ = [
    "MAX_RIM_SIZE",
    "NVDEC0_INDEX",
    "GoldenMeasurement",
    "Mismatch",
    "Rim",
    "RimKind",
    "compare_measurements",
    "parse_rim",
    "rim_id",
]

RimKind = Literal["driver", "vbios"]
SWID_NS: Final = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
SHA384_NS: Final = "http://www.w3.org/2001/04/xmlenc#sha384"
DSIG_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
MAX_RIM_SIZE: Final = 1024 * 1024
#: RIM index of the NVDEC0 measurement, skipped when NVDEC0 is disabled.
NVDEC0_INDEX: Final = 35
_WHAT: Final = "nvidia rim"
_VBIOS_VERSION = re.compile(r"[0-9A-Fa-f]{2}(\.[0-9A-Fa-f]{2}){4}")
_DRIVER_VERSION = re.compile(r"\d+(\.\d+)+")


@dataclass(frozen=True)
class GoldenMeasurement:
    """One ``Resource type="Measurement"`` of a RIM."""

    index: int  # RIM index, 0-based: the report's block index minus one
    name: str
    size: int
    alternatives: tuple[bytes, ...]
    active: bool


@dataclass(frozen=True)
class Rim:
    """A parsed RIM.  ``signer_chain`` is KeyInfo's certificates, leaf first, as given."""

    kind: RimKind
    version: str  # colloquialVersion as written
    tag_id: str
    product: str
    measurements: Mapping[int, GoldenMeasurement]
    signer_chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class Mismatch:
    """An active golden measurement that no runtime value matched (hex, lower case)."""

    report_index: int  # the report's block index (RIM index + 1)
    rim: str  # "driver" or "vbios"
    expected: tuple[str, ...]
    actual: str | None  # None: the report has no block at that index


# ----------------------------------------------------------------------------- parsing


def parse_rim(data: bytes, *, kind: RimKind | None = None) -> Rim:
    """Parse a RIM (no signature check).  Raises :class:`ParseError` naming what is wrong."""
    return _rim_from(_parse_xml(data), None, kind)


def _parse_xml(data: bytes) -> Any:
    if len(data) > MAX_RIM_SIZE:
        raise ParseError(_WHAT, f"{len(data)} bytes is over the {MAX_RIM_SIZE}-byte limit")
    parser = _etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )
    try:
        root = _etree.fromstring(data, parser=parser)
    except _etree.XMLSyntaxError as exc:
        raise ParseError(_WHAT, f"not well-formed XML: {exc}") from None
    if root is None:
        raise ParseError(_WHAT, "empty document")
    info = _etree.ElementTree(root).docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise ParseError(_WHAT, "a DOCTYPE is not allowed")
    return root


def _rim_from(root: Any, chain: tuple[x509.Certificate, ...] | None, kind: RimKind | None) -> Rim:
    """The RIM in ``root``; ``chain``: the signer chain, read from ``root`` when None."""
    if root.tag != f"{{{SWID_NS}}}SoftwareIdentity":
        raise ParseError(_WHAT, f"the root element is {root.tag}, not a 2015 SoftwareIdentity")
    if chain is None:
        chain = _signer_chain(root)
    name, tag_id = root.get("name"), root.get("tagId")
    if not name or not tag_id:
        raise ParseError(_WHAT, "SoftwareIdentity lacks its name or tagId")
    entities = [e for e in root if e.tag == f"{{{SWID_NS}}}Entity"]
    if not any(e.get("name") and "tagCreator" in (e.get("role") or "").split() for e in entities):
        raise ParseError(_WHAT, "no Entity with the tagCreator role")
    meta = _one(root, "Meta")
    version = meta.get("colloquialVersion") or ""
    if not version:
        raise ParseError(_WHAT, "Meta has no colloquialVersion")
    found = kind or _kind_of(version)
    measurements = _measurements(_one(root, "Payload"))
    product = meta.get("product") or name
    return Rim(found, version, tag_id, product, measurements, chain)


def _one(root: Any, local: str) -> Any:
    found = [e for e in root if e.tag == f"{{{SWID_NS}}}{local}"]
    if len(found) != 1:
        raise ParseError(_WHAT, f"expected one {local} element, found {len(found)}")
    return found[0]


def _kind_of(version: str) -> RimKind:
    if _VBIOS_VERSION.fullmatch(version):
        return "vbios"
    if _DRIVER_VERSION.fullmatch(version):
        return "driver"
    raise ParseError(
        _WHAT, f"colloquialVersion {version!r} is neither a driver nor a VBIOS version"
    )


def _measurements(payload: Any) -> dict[int, GoldenMeasurement]:
    out: dict[int, GoldenMeasurement] = {}
    for element in payload:
        if not isinstance(element.tag, str):
            continue  # a comment or processing instruction
        if element.tag != f"{{{SWID_NS}}}Resource" or not element.get("type"):
            raise ParseError(_WHAT, f"Payload holds {element.tag}, not a typed Resource")
        if element.get("type") != "Measurement":
            continue
        golden = _measurement(element)
        if golden.index in out:
            raise ParseError(_WHAT, f"two measurements have index {golden.index}")
        out[golden.index] = golden
    if not out:
        raise ParseError(_WHAT, "the Payload has no measurements")
    return out


def _measurement(element: Any) -> GoldenMeasurement:
    index = _integer(element, "index")
    size, count = _integer(element, "size"), _integer(element, "alternatives")
    active = element.get("active")
    if active not in ("True", "False"):
        raise ParseError(_WHAT, f"measurement {index}: active is {active!r}, not True or False")
    if count < 1:
        raise ParseError(_WHAT, f"measurement {index}: no alternatives")
    values = []
    for n in range(count):
        text = element.get(f"{{{SHA384_NS}}}Hash{n}")
        if text is None:
            raise ParseError(_WHAT, f"measurement {index}: Hash{n} is missing")
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise ParseError(_WHAT, f"measurement {index}: Hash{n} is not hex") from None
        if len(value) != size:
            raise ParseError(_WHAT, f"measurement {index}: Hash{n} is not {size} bytes")
        values.append(value)
    name = element.get("name") or f"Measurement_{index}"
    return GoldenMeasurement(index, name, size, tuple(values), active == "True")


def _integer(element: Any, attribute: str) -> int:
    text = element.get(attribute) or ""
    if not text.isdigit() or len(text) > 6:
        raise ParseError(_WHAT, f"Resource {attribute}={text!r} is not a small integer")
    return int(text)


def _signer_chain(root: Any) -> tuple[x509.Certificate, ...]:
    signatures = [e for e in root if e.tag == f"{{{DSIG_NS}}}Signature"]
    if len(signatures) != 1:
        raise ParseError(_WHAT, f"expected one enveloped ds:Signature, found {len(signatures)}")
    texts = signatures[0].findall(
        f"{{{DSIG_NS}}}KeyInfo/{{{DSIG_NS}}}X509Data/{{{DSIG_NS}}}X509Certificate"
    )
    if not texts:
        raise ParseError(_WHAT, "KeyInfo/X509Data carries no certificate")
    chain = []
    for number, element in enumerate(texts):
        try:
            der = binascii.a2b_base64("".join((element.text or "").split()))
            chain.append(x509.load_der_x509_certificate(der))
        except (binascii.Error, ValueError):
            raise ParseError(_WHAT, f"KeyInfo certificate {number} does not decode") from None
    return tuple(chain)


# ----------------------------------------------------------------------------- comparison


def compare_measurements(
    report: Mapping[int, bytes], driver: Rim, vbios: Rim, *, nvdec0_disabled: bool = False
) -> list[Mismatch]:
    """Every active golden measurement of ``driver`` and ``vbios`` that the report (keyed by
    block index, from 1) does not match, ordered by index.  Both RIMs active at one index is
    ``VerificationError("rim_conflict")``."""
    golden: dict[int, tuple[str, GoldenMeasurement]] = {}
    for rim in (driver, vbios):
        for index, measurement in rim.measurements.items():
            if not measurement.active:
                continue
            if index in golden:
                raise VerificationError(
                    "rim_conflict",
                    f"the driver and VBIOS RIMs both have an active measurement at index "
                    f"{index} (report block {index + 1})",
                )
            golden[index] = (rim.kind, measurement)
    mismatches = []
    for index in sorted(golden):
        if index == NVDEC0_INDEX and nvdec0_disabled:
            continue
        kind, measurement = golden[index]
        actual = report.get(index + 1)
        if (
            actual is not None
            and len(actual) == measurement.size
            and (actual in measurement.alternatives)
        ):
            continue
        expected = tuple(v.hex() for v in measurement.alternatives)
        mismatches.append(
            Mismatch(index + 1, kind, expected, None if actual is None else actual.hex())
        )
    return mismatches


def rim_id(
    kind: RimKind,
    *,
    driver_version: str | None = None,
    project: str | None = None,
    project_sku: str | None = None,
    chip_sku: str | None = None,
    vbios_version: str | None = None,
) -> str:
    """The id under which NVIDIA's RIM service serves a RIM: ``NV_GPU_DRIVER_GH100_<driver
    version>`` or ``NV_GPU_VBIOS_<PROJECT>_<PROJECT SKU>_<CHIP SKU>_<VBIOS VERSION without
    dots>`` (upper case).  A missing or empty part is a :class:`ParseError`."""
    parts = {
        "driver_version": driver_version,
        "project": project,
        "project_sku": project_sku,
        "chip_sku": chip_sku,
        "vbios_version": vbios_version,
    }
    clean = {k: (v or "").strip().strip("\x00").strip() for k, v in parts.items()}
    needed = (
        ("driver_version",)
        if kind == "driver"
        else ("project", "project_sku", "chip_sku", "vbios_version")
    )
    if kind not in ("driver", "vbios"):
        raise ParseError("nvidia rim id", f"unknown RIM kind {kind!r}")
    missing = [k for k in needed if not clean[k]]
    if missing:
        raise ParseError("nvidia rim id", f"no {', '.join(missing)} for the {kind} RIM id")
    if kind == "driver":
        return f"NV_GPU_DRIVER_GH100_{clean['driver_version']}"
    version = clean["vbios_version"].replace(".", "").upper()
    return (
        f"NV_GPU_VBIOS_{clean['project'].upper()}_{clean['project_sku'].upper()}_"
        f"{clean['chip_sku'].upper()}_{version}"
    )
