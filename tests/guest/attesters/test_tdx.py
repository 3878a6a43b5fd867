"""The TDX attester against the emulated TD: refusals first, then the exact kernel requests,
verified evidence, the AAEL in cc_eventlog, and the real TDREPORT."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from datadir import GUEST_COMPONENTS

from veritee.emulator.kernel import Call, EmulatedKernel
from veritee.emulator.machine import EmulatedMachine
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.base import AttesterError
from veritee.guest.attesters.tdx import (
    DEVICE,
    MEASUREMENTS,
    TDX_CMD_GET_REPORT0,
    TdxAttester,
    parse_tdreport,
)
from veritee.guest.attesters.tsm import TSM_REPORT, ProviderMismatch
from veritee.guest.eventlog import EL_HEADER, WAL_NAME, AaEventLog
from veritee.verifier.base import Verdict
from veritee.verifier.ccel import replay_ccel
from veritee.verifier.intel_quote import TdReport, parse_quote

Verify = Callable[..., Verdict]

TDREPORT = GUEST_COMPONENTS / "attestation-agent/attester/test/tdx_report_1.bin"
MRTD = (
    "98bbc39e3e27b4cb27ed6d21870b187738f64ec44b9f3f93d603b35a84e610dc"
    "b45f1b6d79c648c7bf8e68f7a37b8ab5"
)
RTMR0 = (
    "f4ec1a04670fe7926cd5de4aef9aaa7689ab4ceaa132d7c5242b47f67dfaaea6"
    "4c372a17ad68fef9a6ac99aabbddabdc"
)
RTMR1 = (
    "4e5f8826653198ab4bc5156fbe4bc99db054c0b8239a16c4b59249fb427f4acc"
    "50eed1b46a85c7d526c4e1e47621b14c"
)
PULL = ("github.com/confidential-containers", "PullImage")


def launch(root: TestRoot, **options: object) -> EmulatedMachine:
    return EmulatedMachine.launch(root, "tdx", **options)


def body(evidence: bytes) -> TdReport:
    quote = base64.b64decode(json.loads(evidence)["quote"])
    report = parse_quote(quote).body
    assert isinstance(report, TdReport)
    return report


def entry_calls(machine: EmulatedMachine) -> list[Call]:
    return [c for c in machine.calls if c.path.startswith(TSM_REPORT)]


# --------------------------------------------------------------------------- refusals


def test_report_data_over_64_bytes_is_refused_before_any_kernel_call(test_root: TestRoot) -> None:
    machine = launch(test_root)
    with pytest.raises(AttesterError, match="65 bytes; tdx takes at most 64"):
        TdxAttester(machine).evidence(bytes(65))
    assert machine.calls == []


def test_wrong_provider_is_refused_and_the_entry_removed(test_root: TestRoot) -> None:
    machine = launch(test_root)
    machine.faults.provider = "sev_guest"
    with pytest.raises(ProviderMismatch, match="'sev_guest', not 'tdx_guest'"):
        TdxAttester(machine).evidence(b"data")
    ops = [c.op for c in entry_calls(machine)]
    assert ops == ["make_dir", "read", "remove_dir"]  # nothing written to another TEE
    assert machine.entries() == []


def test_a_racing_inblob_writer_is_a_conflict(test_root: TestRoot) -> None:
    machine = launch(test_root)
    machine.faults.inblob_race = True
    with pytest.raises(AttesterError, match="inblob write conflict: generation is 2"):
        TdxAttester(machine).evidence(b"data")
    assert machine.entries() == []


def test_a_failing_quote_names_the_errno_and_removes_the_entry(test_root: TestRoot) -> None:
    machine = launch(test_root)
    machine.faults.fw_error = 1
    with pytest.raises(AttesterError, match=r"outblob failed: EIO"):
        TdxAttester(machine).evidence(b"data")
    assert machine.entries() == []


def test_without_configfs_tsm_there_is_no_quote(test_root: TestRoot) -> None:
    machine = launch(test_root, configfs_tsm=False)
    with pytest.raises(AttesterError, match=r"need configfs-tsm .*Linux 6\.7.*/dev/tdx_guest"):
        TdxAttester(machine).evidence(b"")
    with pytest.raises(AttesterError, match="neither"):
        TdxAttester(EmulatedMachine()).evidence(b"")


def test_rtmr0_and_rtmr1_cannot_be_extended(test_root: TestRoot) -> None:
    machine = launch(test_root)
    attester = TdxAttester(machine)
    before = attester.read_runtime_measurement(1)
    with pytest.raises(AttesterError, match=r"RTMR0 .*EINVAL.*only RTMR2 and RTMR3"):
        attester.extend_runtime_measurement(bytes(48), 1)
    assert attester.read_runtime_measurement(1) == before


def test_without_sysfs_registers_are_read_not_extended(test_root: TestRoot) -> None:
    machine = launch(test_root, sysfs=False, init_data_digest=b"\x07" * 32)
    attester = TdxAttester(machine)
    assert not attester.supports_runtime_measurement()
    with pytest.raises(AttesterError, match=r"Linux 6\.16"):
        attester.extend_runtime_measurement(bytes(48), 17)
    assert machine.tdx is not None
    assert attester.read_runtime_measurement(2) == machine.tdx.rtmrs[1]
    assert attester.init_data_binding() == b"\x07" * 32 + bytes(16)
    # TDX_CMD_GET_REPORT0: 64 bytes of report data (zero), room for the 1024-byte TDREPORT.
    first, second = machine.ioctls
    assert (first.device, first.request) == (DEVICE, TDX_CMD_GET_REPORT0)
    assert TDX_CMD_GET_REPORT0 == 0xC4405401
    assert first.arg == bytes(64 + 1024)
    assert second.arg == first.arg


def test_a_malformed_ccel_table_is_an_error(test_root: TestRoot) -> None:
    machine = launch(test_root)
    assert machine.tdx is not None
    good = machine.tdx.ccel_table
    machine.tdx.ccel_table = EL_HEADER + b"\x01" * 20
    with pytest.raises(AttesterError, match=r"CCEL.*unknown digest algorithm 0x0101"):
        TdxAttester(machine).evidence(b"")
    machine.tdx.ccel_table = good[:300]  # the table's end lost
    with pytest.raises(AttesterError, match="CCEL table is cut short"):
        TdxAttester(machine).evidence(b"")


@pytest.mark.parametrize("damage", ["cut mid-entry", "last entry dropped", "digest changed"])
def test_a_truncated_or_tampered_log_is_refused_at_eventlog(
    test_root: TestRoot, tmp_path: Path, verify: Verify, damage: str
) -> None:
    path = tmp_path / "eventlog"
    attester = TdxAttester(launch(test_root), path)
    log = AaEventLog(path, attester)
    first = log.extend(*PULL, '{"image":"a", "digest":"sha256:01"}')
    second = log.extend(*PULL, '{"image":"b", "digest":"sha256:02"}')
    assert verify("tdx", attester.evidence(b"nonce"), report_data=b"nonce").verified
    if damage == "cut mid-entry":
        path.write_bytes(first + second[:40])
    elif damage == "last entry dropped":
        path.write_bytes(first)
    else:
        path.write_bytes(first + second[:14] + bytes(48) + second[62:])
    verdict = verify("tdx", attester.evidence(b"nonce"), report_data=b"nonce")
    assert (verdict.verified, verdict.step) == (False, "eventlog")


def test_an_unfinished_extension_is_never_quoted_half_way(
    test_root: TestRoot, tmp_path: Path
) -> None:
    attester = TdxAttester(launch(test_root), tmp_path / "eventlog", settle_s=0.05)
    AaEventLog(tmp_path / "eventlog", attester).extend("d", "op", "c")
    (tmp_path / WAL_NAME).write_bytes(b"an extension in progress")
    with pytest.raises(AttesterError, match=r"kept changing .*\.wal_event_entry"):
        attester.evidence(b"")


@pytest.mark.parametrize("when", ["before", "after"])
def test_an_extension_overlapping_the_quote_is_not_half_reported(
    test_root: TestRoot, tmp_path: Path, verify: Verify, when: str
) -> None:
    path = tmp_path / "eventlog"

    class Overlapped(TdxAttester):
        """Another thread's extension lands while the quote is being made."""

        pending = 1

        def _quote(self, inblob: bytes) -> bytes:
            if when == "before" and self.pending:
                self.pending = 0
                log.extend("example.com", "Overlap", when)
            quote = super()._quote(inblob)
            if when == "after" and self.pending:
                self.pending = 0
                log.extend("example.com", "Overlap", when)
            return quote

    attester = Overlapped(launch(test_root), path)
    log = AaEventLog(path, attester)
    log.extend("example.com", "First", "x")
    evidence = attester.evidence(b"n")
    verdict = verify("tdx", evidence, report_data=b"n")
    assert verdict.verified, verdict.error
    texts = [e["details"]["string"] for e in verdict.claims["uefi_event_logs"][-2:]]
    assert texts == ["example.com First x", f"example.com Overlap {when}"]


# --------------------------------------------------------------------------- requests


def test_configfs_tsm_request_sequence(test_root: TestRoot) -> None:
    machine = launch(test_root)
    TdxAttester(machine).evidence(b"abc")
    calls = entry_calls(machine)
    entry = calls[1].path.rsplit("/", 1)[0]
    assert [(c.op, c.path) for c in calls] == [
        ("make_dir", TSM_REPORT),
        ("read", f"{entry}/provider"),
        ("write", f"{entry}/inblob"),
        ("read", f"{entry}/outblob"),
        ("read", f"{entry}/generation"),
        ("remove_dir", entry),
    ]
    assert calls[2].data == b"abc" + bytes(61)  # zero-padded, never hashed
    assert machine.entries() == []


def test_evidence_verifies_with_its_report_data_and_init_data(
    test_root: TestRoot, verify: Verify
) -> None:
    digest = hashlib.sha384(b"initdata toml").digest()
    machine = launch(test_root, init_data_digest=digest)
    attester = TdxAttester(machine)
    evidence = attester.evidence(b"\x01" * 64)
    doc = json.loads(evidence)
    assert list(doc) == ["cc_eventlog", "quote"]
    assert evidence == json.dumps(doc, separators=(",", ":")).encode()
    verdict = verify("tdx", evidence, report_data=b"\x01" * 64, init_data=digest)
    assert verdict.verified, verdict.error
    assert verdict.claims["emulated"] is True
    assert attester.init_data_binding() == digest
    assert body(evidence).mr_config_id == digest
    wrong = verify("tdx", evidence, report_data=b"\x02" * 64)
    assert (wrong.verified, wrong.step) == (False, "report_data")


def test_aael_extensions_reach_the_quote_and_replay(
    test_root: TestRoot, tmp_path: Path, verify: Verify
) -> None:
    machine = launch(test_root)
    attester = TdxAttester(machine, tmp_path / "eventlog")
    log = AaEventLog(tmp_path / "eventlog", attester)
    assert machine.tdx is not None
    launch_rtmrs = tuple(machine.tdx.rtmrs)
    log.extend(*PULL, '{"image":"docker.io/library/busybox", "digest":"sha256:00"}')
    log.extend("example.com", "Configure", "ok")
    evidence = attester.evidence(b"nonce")
    quote = body(evidence)
    assert quote.rtmrs[:3] == launch_rtmrs[:3]
    assert quote.rtmrs[3] != bytes(48)
    assert quote.rtmrs[3] == attester.read_runtime_measurement(17)
    cc_eventlog = base64.b64decode(json.loads(evidence)["cc_eventlog"])
    assert cc_eventlog.endswith(log.contents() + b"\xff" * 8)
    assert replay_ccel(cc_eventlog) == quote.rtmrs
    verdict = verify("tdx", evidence, report_data=b"nonce")
    assert verdict.verified, verdict.error
    logs = verdict.claims["uefi_event_logs"]
    aael = [e for e in logs if e["details"].get("unicode_name") == "AAEL"]
    assert [e["details"]["data"] for e in aael] == [
        {
            "domain": PULL[0],
            "operation": PULL[1],
            "content": {"image": "docker.io/library/busybox", "digest": "sha256:00"},
        },
        {"domain": "example.com", "operation": "Configure", "content": "ok"},
    ]
    assert all(e["index"] == 4 for e in aael)


def test_cc_eventlog_without_ccel(test_root: TestRoot, tmp_path: Path, verify: Verify) -> None:
    machine = launch(test_root, ccel=False)
    bare = TdxAttester(machine)
    assert json.loads(bare.evidence(b""))["cc_eventlog"] is None
    assert verify("tdx", bare.evidence(b"")).verified
    attester = TdxAttester(machine, tmp_path / "eventlog")
    AaEventLog(tmp_path / "eventlog", attester).extend("d", "op", "c")
    log = base64.b64decode(json.loads(attester.evidence(b""))["cc_eventlog"])
    assert log.startswith(EL_HEADER)
    # The boot's RTMR0..2 have no log to replay them: the verifier says so.
    assert verify("tdx", attester.evidence(b"")).step == "eventlog"


# --------------------------------------------------------------------------- the real TDREPORT


def test_the_real_tdreport_gives_its_documented_values() -> None:
    report = parse_tdreport(TDREPORT.read_bytes())
    assert report.mr_td.hex() == MRTD
    assert report.rtmrs[0].hex() == RTMR0
    assert report.rtmrs[1].hex() == RTMR1
    assert report.rtmrs[2:] == (bytes(48), bytes(48))
    assert report.mr_config_id == bytes(48)
    assert report.report_data == bytes(64)


def test_registers_read_through_the_ioctl_from_the_real_tdreport() -> None:
    kernel = EmulatedKernel()
    real = TDREPORT.read_bytes()

    def answer(request: int, arg: bytearray) -> None:
        assert (request, len(arg)) == (TDX_CMD_GET_REPORT0, 1088)
        arg[64:] = real

    kernel.add_device(DEVICE, answer)
    attester = TdxAttester(kernel)
    assert not kernel.exists(MEASUREMENTS)
    # upstream's test: PCR 1 -> RTMR0, 2 -> RTMR1, 8 -> RTMR2, 16 -> RTMR3
    assert attester.read_runtime_measurement(1).hex() == RTMR0
    assert attester.read_runtime_measurement(2).hex() == RTMR1
    assert attester.read_runtime_measurement(8) == bytes(48)
    assert attester.read_runtime_measurement(16) == bytes(48)
    assert attester.init_data_binding() == bytes(48)
    assert struct.unpack_from("<I", real)[0] & 0xFF == 0x81  # REPORTTYPE: TDX
