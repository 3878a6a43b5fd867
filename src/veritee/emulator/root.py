"""A test root of trust on disk: Intel and AMD test PKIs plus a manifest.

Layout of ``DIR`` (``veritee emulator init DIR``)::

    veritee-test-root.json   manifest (kind, version, created, product)
    intel/                   IntelTestRoot.save(): root.pem is the test Intel SGX Root CA
    amd/                     AmdTestRoot.save(): ark.pem is the test ARK

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
from veritee.errors import InputError
from veritee.verifier.trust_root import MANIFEST, MANIFEST_KIND

Product = Literal["Milan", "Genoa", "Turin"]


@dataclass(frozen=True)
class TestRoot:
    """Both test PKIs of one directory."""

    __test__ = False  # not a pytest test class

    directory: Path
    intel: IntelTestRoot
    amd: AmdTestRoot

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
        directory.mkdir(parents=True, exist_ok=True)
        intel.save(directory / "intel")
        amd.save(directory / "amd")
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
        return cls(directory, intel, amd)

    @classmethod
    def load(cls, directory: Path) -> TestRoot:
        try:
            doc = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{directory} is not a veritee test root ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("kind") != MANIFEST_KIND:
            raise InputError(f"{directory / MANIFEST} is not a veritee test-root manifest")
        return cls(
            directory, IntelTestRoot.load(directory / "intel"), AmdTestRoot.load(directory / "amd")
        )
