"""The emulated CC event log: guest-components' AAEL vectors, TDVF-style boot events, replay."""

from __future__ import annotations

import hashlib
import struct

import pytest

from veritee.emulator.eventlog import (
    EV_EFI_ACTION,
    EV_EVENT_TAG,
    EV_NO_ACTION,
    EV_SEPARATOR,
    SPEC_ID_HEADER,
    CcEventLog,
    aael_event,
    boot_log,
)
from veritee.emulator.intel_pki import IntelTestRoot
from veritee.emulator.intel_quote import TdxFields, build_tdx_quote
from veritee.verifier.base import VerifyOptions
from veritee.verifier.ccel import parse_ccel, replay, replay_ccel
from veritee.verifier.intel import IntelVerifier
from veritee.verifier.intel_quote import TdReport, parse_quote


def test_aael_event_reads_back_as_trustee_does() -> None:
    log = CcEventLog()
    log.extend(4, EV_EVENT_TAG, aael_event("domain", "operation", "content"))
    content = '{"image":"docker.io/library/busybox", "digest":"sha256:00"}'
    log.extend(
        4, EV_EVENT_TAG, aael_event("github.com/confidential-containers", "PullImage", content)
    )
    first, second = parse_ccel(log.to_bytes())
    assert first["details"] == {
        "string": "domain operation content",
        "unicode_name": "AAEL",
        "data": {"domain": "domain", "operation": "operation", "content": "content"},
    }
    assert first["digest_matches_event"] is True
    assert first["index"] == 4
    assert first["type_name"] == "EV_EVENT_TAG"
    assert second["details"]["data"]["content"] == {
        "image": "docker.io/library/busybox",
        "digest": "sha256:00",
    }
    assert replay_ccel(log.to_bytes()) == log.rtmrs()


def test_spec_id_header_and_end_marker() -> None:
    data = CcEventLog().to_bytes()
    assert data == SPEC_ID_HEADER + b"\xff" * 8
    pcr, event_type = struct.unpack_from("<II", data)
    assert (pcr, event_type) == (0, EV_NO_ACTION)
    assert data[8:28] == bytes(20)
    (size,) = struct.unpack_from("<I", data, 28)
    spec = data[32 : 32 + size]
    assert spec.startswith(b"Spec ID Event03\x00")
    assert spec[24:] == struct.pack("<IHH", 1, 0x000C, 48) + b"\x00"  # SHA-384 only, no vendor info
    assert parse_ccel(data) == []


def test_extend_validation() -> None:
    log = CcEventLog()
    with pytest.raises(ValueError, match="mr_index"):
        log.extend(0, EV_SEPARATOR, bytes(4))
    with pytest.raises(ValueError, match="mr_index"):
        log.extend(5, EV_SEPARATOR, bytes(4))
    with pytest.raises(ValueError, match="48 bytes"):
        log.extend(1, EV_SEPARATOR, bytes(4), digest=bytes(32))
    # EV_NO_ACTION is recorded but not measured
    log.extend(0, EV_NO_ACTION, b"informational")
    assert log.rtmrs() == (bytes(48),) * 4
    assert len(log.entries()) == 1


def test_explicit_digest_is_extended() -> None:
    log = CcEventLog()
    digest = hashlib.sha384(b"the image").digest()
    log.extend(2, EV_EFI_ACTION, b"description", digest)
    assert log.rtmrs()[1] == hashlib.sha384(bytes(48) + digest).digest()
    (entry,) = parse_ccel(log.to_bytes())
    assert entry["digest_matches_event"] is False
    assert entry["digests"] == [{"alg": "SHA-384", "digest": digest.hex()}]


def test_boot_log_looks_like_tdvf() -> None:
    kernel, initrd = b"kernel image", b"initrd image"
    cmdline = "console=hvc0 root=/dev/vda1 rw"
    log = boot_log(kernel, cmdline, initrd)
    entries = parse_ccel(log.to_bytes())
    names = [(e["index"], e["type_name"]) for e in entries]
    assert names[:2] == [(1, "EV_EFI_HANDOFF_TABLES2"), (1, "EV_EFI_PLATFORM_FIRMWARE_BLOB2")]
    assert (1, "EV_SEPARATOR") in names
    assert (2, "EV_SEPARATOR") in names
    details = {e["type_name"]: e["details"] for e in entries}
    assert details["EV_EFI_HANDOFF_TABLES2"] == {"string": "TdxTable"}
    assert details["EV_EFI_PLATFORM_FIRMWARE_BLOB2"] == {
        "string": "Fv(XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)"
    }
    assert details["EV_EFI_BOOT_SERVICES_APPLICATION"] == {
        "device_paths": ["VenMedia(1428F772-B64A-441E-B8C3-9EBDD7F893C7,)", "File(kernel)"]
    }
    variables = [
        e["details"]["unicode_name"]
        for e in entries
        if e["type_name"] == "EV_EFI_VARIABLE_DRIVER_CONFIG"
    ]
    assert variables == ["SecureBoot", "PK", "KEK", "db", "dbx"]
    tags = [e for e in entries if e["type_name"] == "EV_EVENT_TAG"]
    assert [(t["index"], t["details"]["string"]) for t in tags] == [
        (3, "LOADED_IMAGE::LoadOptions"),
        (3, "Linux initrd"),
    ]
    by_digest = {e["digests"][0]["digest"] for e in entries}
    assert hashlib.sha384(kernel).hexdigest() in by_digest
    assert hashlib.sha384(initrd).hexdigest() in by_digest
    assert hashlib.sha384((cmdline + "\x00").encode("utf-16-le")).hexdigest() in by_digest
    for e in entries:
        if e["type_name"] in ("EV_SEPARATOR", "EV_EFI_ACTION", "EV_EFI_VARIABLE_DRIVER_CONFIG"):
            assert e["digest_matches_event"] is True
    rtmrs = log.rtmrs()
    assert replay(entries) == rtmrs
    assert all(r != bytes(48) for r in rtmrs[:3])
    assert rtmrs[3] == bytes(48)
    # different inputs give different measurements
    assert boot_log(kernel, cmdline + " quiet", initrd).rtmrs()[2] != rtmrs[2]
    assert boot_log(b"other", cmdline, initrd).rtmrs()[1] != rtmrs[1]


def test_ccel_replay_equals_the_quote_rtmrs() -> None:
    root = IntelTestRoot.create()
    log = boot_log(b"kernel", "console=hvc0", b"initrd")
    log.extend(4, EV_EVENT_TAG, aael_event("github.com/confidential-containers", "Boot", "ok"))
    fields = TdxFields()
    fields.rtmr0, fields.rtmr1, fields.rtmr2, fields.rtmr3 = log.rtmrs()
    quote = build_tdx_quote(root, fields, version=5, td15=True)

    class Collateral:
        def collateral_for(self, **_: object) -> str:
            return root.collateral_json("tdx")

    verdict = IntelVerifier("tdx", collateral=Collateral(), root_ca_der=root.root_der).verify(
        quote, VerifyOptions()
    )
    assert verdict.verified, verdict.error
    body = parse_quote(quote).body
    assert isinstance(body, TdReport)
    assert replay_ccel(log.to_bytes()) == body.rtmrs
