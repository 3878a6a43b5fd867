"""A test root of trust on disk: Intel and AMD test PKIs plus a manifest.

Layout of ``DIR`` (``veritee emulator init DIR``)::

    veritee-test-root.json   manifest (kind, version, created, product)
    intel/                   IntelTestRoot.save(): root.pem is the test Intel SGX Root CA
    amd/                     AmdTestRoot.save(): ark.pem is the test ARK
    nvidia/                  NvidiaTestRoot.save(): device_root.pem (test NVIDIA Device
                             Identity CA) and rim_root.pem (test RIM root), ocsp/ and rims/
                             (see veritee.emulator.nvidia_pki); absent in roots made before
                             GPU support, which still serve the CPU TEEs

Private keys are written 0600.  Verifiers read only the anchors (see
:mod:`veritee.verifier.trust_root`), and only when told to.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from veritee.emulator.amd_pki import AmdTestRoot
from veritee.emulator.intel_pki import IntelTestRoot
from veritee.emulator.nvidia_pki import NvidiaTestRoot
from veritee.errors import InputError
from veritee.verifier.trust_root import MANIFEST, MANIFEST_KIND

Product = Literal["Milan", "Genoa", "Turin"]


@dataclass(frozen=True)
class TestRoot:
    """The test PKIs of one directory (``nvidia`` is None in a root made before GPU support)."""

    __test__ = False  # not a pytest test class

    directory: Path
    intel: IntelTestRoot
    amd: AmdTestRoot
    nvidia: NvidiaTestRoot | None = None

    def gpu(self) -> NvidiaTestRoot:
        """The NVIDIA test PKI; InputError when this root predates it."""
        if self.nvidia is None:
            raise InputError(
                f"the test root {self.directory} has no NVIDIA GPU PKI (it was made before "
                "GPU support); create a new one with `veritee emulator init` for --tee nvidia"
            )
        return self.nvidia

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        product: Product = "Milan",
        tcb_status: str = "UpToDate",
        now: dt.datetime | None = None,
    ) -> TestRoot:
        """Create fresh test roots in ``directory`` (which must be empty or absent)."""
        if directory.exists() and any(directory.iterdir()):
            raise InputError(f"{directory} is not empty; refusing to overwrite a test root")
        intel = IntelTestRoot.create(tcb_status=tcb_status, now=now)
        amd = AmdTestRoot.create(product=product, now=now)
        nvidia = NvidiaTestRoot.create(now=now)
        directory.mkdir(parents=True, exist_ok=True)
        intel.save(directory / "intel")
        amd.save(directory / "amd")
        from veritee.emulator.nvidia import save_test_root  # signxml and lxml: only when needed

        save_test_root(nvidia, directory / "nvidia")
        created = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        manifest = {
            "kind": MANIFEST_KIND,
            "version": 1,
            "created": created,
            "product": product,
            "tcb_status": tcb_status,
            "warning": "TEST ROOT: evidence signed under it proves nothing about hardware",
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return cls(directory, intel, amd, nvidia)

    @classmethod
    def load(cls, directory: Path) -> TestRoot:
        try:
            doc = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{directory} is not a veritee test root ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("kind") != MANIFEST_KIND:
            raise InputError(f"{directory / MANIFEST} is not a veritee test-root manifest")
        nvidia = None
        if (directory / "nvidia").is_dir():
            try:
                nvidia = NvidiaTestRoot.load(directory / "nvidia")
            except ValueError as exc:
                raise InputError(f"{directory}: broken NVIDIA test PKI: {exc}") from exc
        return cls(
            directory,
            IntelTestRoot.load(directory / "intel"),
            AmdTestRoot.load(directory / "amd"),
            nvidia,
        )
