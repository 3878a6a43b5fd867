"""Test roots of trust made by the emulator, loaded only when configured explicitly.

A test-root directory (``veritee emulator init DIR``) holds a manifest,
``veritee-test-root.json``, and the roots themselves: ``intel/root.pem`` (the
test "Intel SGX Root CA"), ``amd/ark.pem`` (the test ARK), and for an emulated NVIDIA
GPU ``nvidia/device_root.pem`` (test device identity root) and ``nvidia/rim_root.pem``
(test RIM signing root).  Each is optional, but a test root holds at least one.
Verifiers trust these beside the vendor roots, and mark evidence that chains to them
emulated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.errors import InputError, ParseError
from veritee.pem import load_certificates

MANIFEST = "veritee-test-root.json"
MANIFEST_KIND = "veritee-test-root"
INTEL_ROOT = Path("intel") / "root.pem"
AMD_ARK = Path("amd") / "ark.pem"
NVIDIA_DEVICE_ROOT = Path("nvidia") / "device_root.pem"
NVIDIA_RIM_ROOT = Path("nvidia") / "rim_root.pem"


@dataclass(frozen=True)
class TestAnchors:
    """The trust anchors of one test root: an Intel root (DER), AMD ARKs, NVIDIA device and
    RIM roots."""

    __test__ = False  # not a pytest test class

    directory: Path
    intel_root_der: bytes | None
    amd_arks: tuple[x509.Certificate, ...]
    nvidia_device_roots: tuple[x509.Certificate, ...] = ()
    nvidia_rim_roots: tuple[x509.Certificate, ...] = ()


def load_test_anchors(directory: Path) -> TestAnchors:
    """Read the anchors of the test root in ``directory``; InputError if it is not one."""
    manifest = directory / MANIFEST
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{directory} is not a veritee test root: cannot read {MANIFEST} ({exc})"
        ) from exc
    if not isinstance(doc, dict) or doc.get("kind") != MANIFEST_KIND:
        raise InputError(f"{manifest} is not a veritee test-root manifest")
    intel = _optional(directory / INTEL_ROOT)
    amd = _optional(directory / AMD_ARK)
    nv_device = _optional(directory / NVIDIA_DEVICE_ROOT)
    nv_rim = _optional(directory / NVIDIA_RIM_ROOT)
    try:
        intel_der = load_certificates(intel)[0].public_bytes(Encoding.DER) if intel else None
        arks = tuple(load_certificates(amd)) if amd else ()
        device_roots = tuple(load_certificates(nv_device)) if nv_device else ()
        rim_roots = tuple(load_certificates(nv_rim)) if nv_rim else ()
    except ParseError as exc:
        raise InputError(f"test root {directory}: {exc}") from exc
    if intel_der is None and not arks and not device_roots and not rim_roots:
        raise InputError(
            f"test root {directory} holds neither {INTEL_ROOT} nor {AMD_ARK} "
            f"nor {NVIDIA_DEVICE_ROOT} nor {NVIDIA_RIM_ROOT}"
        )
    return TestAnchors(
        directory=directory,
        intel_root_der=intel_der,
        amd_arks=arks,
        nvidia_device_roots=device_roots,
        nvidia_rim_roots=rim_roots,
    )


def _optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
