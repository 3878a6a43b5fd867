"""virtee/sev's serde form of an SNP report, encoded independently from the byte layout."""

from __future__ import annotations

import struct
from typing import Any


def serde_form(raw: bytes, *, turin: bool = False) -> dict[str, Any]:
    """virtee/sev's serde form of a report, written from the byte layout (independent encoder)."""

    def u32(o: int) -> int:
        return int(struct.unpack_from("<I", raw, o)[0])

    def u64(o: int) -> int:
        return int(struct.unpack_from("<Q", raw, o)[0])

    def arr(o: int, n: int) -> list[int]:
        return list(raw[o : o + n])

    def tcb(o: int) -> dict[str, int | None]:
        b = raw[o : o + 8]
        if turin:
            return {"fmc": b[0], "bootloader": b[1], "tee": b[2], "snp": b[3], "microcode": b[7]}
        return {"fmc": None, "bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7]}

    def ver(o: int) -> dict[str, int]:
        return {"major": raw[o + 2], "minor": raw[o + 1], "build": raw[o]}

    v = u32(0)
    return {
        "version": v,
        "guest_svn": u32(4),
        "policy": u64(8),
        "family_id": arr(0x10, 16),
        "image_id": arr(0x20, 16),
        "vmpl": u32(0x30),
        "sig_algo": u32(0x34),
        "current_tcb": tcb(0x38),
        "plat_info": u64(0x40),
        "key_info": u32(0x48),
        "report_data": arr(0x50, 64),
        "measurement": arr(0x90, 48),
        "host_data": arr(0xC0, 32),
        "id_key_digest": arr(0xE0, 48),
        "author_key_digest": arr(0x110, 48),
        "report_id": arr(0x140, 32),
        "report_id_ma": arr(0x160, 32),
        "reported_tcb": tcb(0x180),
        "cpuid_fam_id": raw[0x188] if v >= 3 else None,
        "cpuid_mod_id": raw[0x189] if v >= 3 else None,
        "cpuid_step": raw[0x18A] if v >= 3 else None,
        "chip_id": arr(0x1A0, 64),
        "committed_tcb": tcb(0x1E0),
        "current": ver(0x1E8),
        "committed": ver(0x1EC),
        "launch_tcb": tcb(0x1F0),
        "launch_mit_vector": u64(0x1F8) if v >= 5 else None,
        "current_mit_vector": u64(0x200) if v >= 5 else None,
        "signature": {"r": arr(0x2A0, 72), "s": arr(0x2E8, 72)},
    }
