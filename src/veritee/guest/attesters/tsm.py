"""configfs-tsm (``/sys/kernel/config/tsm/report``, Linux ≥ 6.7): one report per entry.

As guest-components' ``tsm_report`` does: make a fresh entry, check its
``provider``, write the 64-byte ``inblob``, read ``outblob`` (the quote or report)
and, when asked, ``auxblob`` (SEV: the certificate table), then read
``generation``: more than one write means another writer raced us between our
write and our read, and the outblob may be theirs.  The entry is removed whatever
happens.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Final

from veritee.guest.attesters._common import failed
from veritee.guest.attesters.base import AttesterError, Kernel

__all__ = [
    "PROVIDER_SEV",
    "PROVIDER_TDX",
    "TSM_REPORT",
    "ProviderMismatch",
    "TsmReport",
    "tsm_provider",
    "tsm_report",
]

TSM_REPORT: Final = "/sys/kernel/config/tsm/report"
PROVIDER_TDX: Final = "tdx_guest"
PROVIDER_SEV: Final = "sev_guest"


class ProviderMismatch(AttesterError):
    """The configfs-tsm provider is another TEE's."""


@dataclass(frozen=True)
class TsmReport:
    outblob: bytes
    auxblob: bytes | None


def tsm_provider(kernel: Kernel) -> str | None:
    """The provider behind configfs-tsm (``tdx_guest``, ``sev_guest``, …), or None when
    there is no configfs-tsm or no entry can be made."""
    if not kernel.exists(TSM_REPORT):
        return None
    try:
        entry = kernel.make_dir(TSM_REPORT)
    except OSError:
        return None
    try:
        return kernel.read(f"{entry}/provider").decode(errors="replace").strip()
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            kernel.remove_dir(entry)


def tsm_report(kernel: Kernel, provider: str, inblob: bytes, *, auxblob: bool = False) -> TsmReport:
    """One report from a fresh entry, which must belong to ``provider``."""
    try:
        entry = kernel.make_dir(TSM_REPORT)
    except OSError as exc:
        raise failed(f"creating a configfs-tsm report entry under {TSM_REPORT}", exc) from exc
    try:
        return _report(kernel, entry, provider, inblob, auxblob)
    finally:
        # An entry left behind costs kernel memory, not correctness: the report stands.
        with contextlib.suppress(OSError):
            kernel.remove_dir(entry)


def _report(kernel: Kernel, entry: str, provider: str, inblob: bytes, aux: bool) -> TsmReport:
    def read(name: str) -> bytes:
        try:
            return kernel.read(f"{entry}/{name}")
        except OSError as exc:
            raise failed(f"reading configfs-tsm {entry}/{name}", exc) from exc

    found = read("provider")
    if found != f"{provider}\n".encode():
        raise ProviderMismatch(
            f"configfs-tsm provider is {found.decode(errors='replace').strip()!r}, "
            f"not {provider!r}: this is not the TEE it was asked for"
        )
    try:
        kernel.write(f"{entry}/inblob", inblob)
    except OSError as exc:
        raise failed(f"writing configfs-tsm {entry}/inblob", exc) from exc
    outblob = read("outblob")
    auxblob = read("auxblob") if aux else None
    text = read("generation").decode(errors="replace").strip()
    try:
        generation = int(text)
    except ValueError:
        raise AttesterError(f"configfs-tsm generation is not a number: {text!r}") from None
    if generation > 1:
        raise AttesterError(
            f"configfs-tsm inblob write conflict: generation is {generation}, another writer "
            "changed the request before the report was read"
        )
    if not outblob:
        raise AttesterError(f"configfs-tsm {entry}/outblob is empty")
    return TsmReport(outblob, auxblob)
