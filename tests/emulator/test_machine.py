"""The emulated machine as a kernel: the ABI it enforces, the errnos it answers with, and
state that changes only as hardware's does."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from veritee.emulator.kernel import EmulatedKernel, Faults, Tsm
from veritee.emulator.machine import EmulatedMachine
from veritee.emulator.machine_tdx import CCEL_TABLE_SIZE, MR_TD
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.snp import (
    EXT_REPORT_REQ,
    GUEST_REQUEST,
    REPORT_REQ,
    SNP_GET_EXT_REPORT,
    SNP_GET_REPORT,
)
from veritee.guest.attesters.tdx import (
    CCEL_TABLE,
    MEASUREMENTS,
    TDX_CMD_GET_REPORT0,
    TdxAttester,
    parse_tdreport,
)
from veritee.guest.attesters.tsm import TSM_REPORT
from veritee.guest.eventlog import AaEventLog
from veritee.verifier.base import VerifyOptions
from veritee.verifier.ccel import replay_ccel
from veritee.verifier.registry import VerifierSettings, build_verifier
from veritee.verifier.snp_report import parse_report

SNP_GET_DERIVED_KEY = 0xC0205301
SEV_GUEST = "/dev/sev-guest"
TDX_GUEST = "/dev/tdx_guest"


def errno_of(call: Callable[..., object], *args: object) -> int | None:
    try:
        call(*args)
    except OSError as exc:
        return exc.errno
    return None


class SevRequest:
    """A hand-made snp_guest_request_ioctl with its buffers, as a guest program builds it."""

    def __init__(
        self,
        *,
        ext: bool = True,
        version: int = 1,
        vmpl: int = 0,
        certs_len: int = 4096,
        reserved: bytes = bytes(28),
        with_req: bool = True,
    ) -> None:
        self.certs = ctypes.create_string_buffer(max(certs_len, 1))
        if ext:
            packed = EXT_REPORT_REQ.pack(b"u" * 64, vmpl, ctypes.addressof(self.certs), certs_len)
        else:
            packed = REPORT_REQ.pack(b"u" * 64, vmpl)
        packed = packed[:68] + reserved + packed[96:]
        self.req = ctypes.create_string_buffer(packed, len(packed))
        self.resp = ctypes.create_string_buffer(4000)
        req_ptr = ctypes.addressof(self.req) if with_req else 0
        self.arg = bytearray(
            GUEST_REQUEST.pack(version, req_ptr, ctypes.addressof(self.resp), 0, 0)
        )

    def exitinfo2(self) -> tuple[int, int]:
        fw, vmm = GUEST_REQUEST.unpack(self.arg)[3:]
        return fw, vmm


@pytest.fixture
def snp(test_root: TestRoot) -> EmulatedMachine:
    return EmulatedMachine.launch(test_root, "snp", configfs_tsm=False)


@pytest.fixture
def tdx(test_root: TestRoot) -> EmulatedMachine:
    return EmulatedMachine.launch(test_root, "tdx")


# --------------------------------------------------------------------------- the SEV ABI


def test_sev_guest_refuses_what_the_kernel_refuses(snp: EmulatedMachine) -> None:
    def answer(request: int, sent: SevRequest) -> int | None:
        return errno_of(snp.ioctl, SEV_GUEST, request, sent.arg)

    assert answer(SNP_GET_DERIVED_KEY, SevRequest()) == errno.ENOTTY  # not emulated
    assert answer(0xC0185302, SevRequest()) == errno.ENOTTY  # wrong size in the number
    short = SevRequest()
    short.arg = short.arg[:24]
    assert answer(SNP_GET_EXT_REPORT, short) == errno.EINVAL
    assert answer(SNP_GET_EXT_REPORT, SevRequest(version=2)) == errno.EINVAL
    assert answer(SNP_GET_EXT_REPORT, SevRequest(with_req=False)) == errno.EFAULT
    assert answer(SNP_GET_EXT_REPORT, SevRequest(vmpl=4)) == errno.EINVAL
    assert answer(SNP_GET_EXT_REPORT, SevRequest(reserved=b"\x01" + bytes(27))) == errno.EINVAL
    assert answer(SNP_GET_EXT_REPORT, SevRequest(certs_len=100)) == errno.EINVAL  # not paged
    assert answer(SNP_GET_EXT_REPORT, SevRequest(certs_len=5 * 4096)) == errno.EINVAL
    assert [call.request for call in snp.ioctls][:2] == [SNP_GET_DERIVED_KEY, 0xC0185302]


def test_a_small_certificate_buffer_gets_eio_and_the_size_needed(snp: EmulatedMachine) -> None:
    snp.faults.cert_table_size = 4097
    sent = SevRequest()
    assert errno_of(snp.ioctl, SEV_GUEST, SNP_GET_EXT_REPORT, sent.arg) == errno.EIO
    assert sent.exitinfo2() == (0, 1)  # vmm_error SNP_GUEST_VMM_ERR_INVALID_LEN
    assert EXT_REPORT_REQ.unpack(sent.req.raw)[3] == 8192  # written back into user memory
    assert sent.resp.raw == bytes(4000)


def test_a_firmware_error_is_eio_with_fw_error(snp: EmulatedMachine) -> None:
    snp.faults.fw_error = 0x16
    sent = SevRequest(ext=False)
    assert errno_of(snp.ioctl, SEV_GUEST, SNP_GET_REPORT, sent.arg) == errno.EIO
    assert sent.exitinfo2() == (0x16, 0)


def test_reports_and_certificates_land_in_user_memory(snp: EmulatedMachine) -> None:
    sent = SevRequest(vmpl=2)
    snp.ioctl(SEV_GUEST, SNP_GET_EXT_REPORT, sent.arg)
    assert sent.exitinfo2() == (0, 0)
    status, size = struct.unpack_from("<II", sent.resp.raw)
    assert (status, size) == (0, 1184)
    report = parse_report(sent.resp.raw[32 : 32 + size])
    assert (report.report_data, report.vmpl) == (b"u" * 64, 2)
    assert snp.snp is not None
    assert sent.certs.raw == snp.snp.cert_table().ljust(4096, b"\x00")
    plain = SevRequest(certs_len=0)  # no buffer: a report without certificates
    snp.ioctl(SEV_GUEST, SNP_GET_EXT_REPORT, plain.arg)
    assert plain.certs.raw == b"\x00"
    (call,) = [c for c in snp.ioctls if c.arg == bytes(sent.arg[:24]) + bytes(8)]
    assert call.req == sent.req.raw


def test_host_data_is_the_initdata_digest_resized_as_kata_does(test_root: TestRoot) -> None:
    long = hashlib.sha512(b"initdata").digest()
    machine = EmulatedMachine.launch(test_root, "snp", init_data_digest=long)
    assert machine.snp is not None
    assert parse_report(machine.snp.report(bytes(64))).host_data == long[:32]
    tdx = EmulatedMachine.launch(test_root, "tdx", init_data_digest=long)
    assert tdx.read(f"{MEASUREMENTS}/mrconfigid") == long[:48]
    short = hashlib.sha256(b"initdata").digest()
    tdx = EmulatedMachine.launch(test_root, "tdx", init_data_digest=short)
    assert tdx.read(f"{MEASUREMENTS}/mrconfigid") == short + bytes(16)


# --------------------------------------------------------------------------- TDX


def test_tdx_guest_refuses_what_the_kernel_refuses(tdx: EmulatedMachine) -> None:
    assert errno_of(tdx.ioctl, TDX_GUEST, 0xC4405402, bytearray(1088)) == errno.ENOTTY
    assert errno_of(tdx.ioctl, TDX_GUEST, TDX_CMD_GET_REPORT0, bytearray(1024)) == errno.EINVAL
    rtmr = f"{MEASUREMENTS}/rtmr3:sha384"
    assert errno_of(tdx.write, rtmr, bytes(32)) == errno.EINVAL  # 48 bytes or nothing
    assert errno_of(tdx.write, f"{MEASUREMENTS}/rtmr1:sha384", bytes(48)) == errno.EINVAL
    assert errno_of(tdx.write, f"{MEASUREMENTS}/mrconfigid", bytes(48)) == errno.EACCES
    assert errno_of(tdx.read, MEASUREMENTS) == errno.EISDIR
    assert errno_of(tdx.read, "/sys/nothing") == errno.ENOENT
    assert errno_of(tdx.make_dir, "/sys") == errno.EPERM
    assert errno_of(tdx.make_dir, "/nowhere") == errno.ENOENT
    assert errno_of(tdx.remove_dir, MEASUREMENTS) == errno.EPERM
    assert errno_of(tdx.ioctl, CCEL_TABLE, 0, bytearray(1)) == errno.ENOTTY
    assert errno_of(tdx.ioctl, "/dev/missing", 0, bytearray(1)) == errno.ENOENT


def test_rtmrs_start_from_the_boot_and_change_only_by_extension(tdx: EmulatedMachine) -> None:
    assert tdx.tdx is not None
    table = tdx.read(CCEL_TABLE)
    assert len(table) == CCEL_TABLE_SIZE
    assert table.endswith(b"\xff" * 1000)  # the unused area
    launched = replay_ccel(table)
    assert tuple(tdx.tdx.rtmrs) == launched
    assert launched[3] == bytes(48)
    assert all(r != bytes(48) for r in launched[:3])
    value = hashlib.sha384(b"event").digest()
    tdx.write(f"{MEASUREMENTS}/rtmr3:sha384", value)
    extended = hashlib.sha384(bytes(48) + value).digest()
    assert tdx.read(f"{MEASUREMENTS}/rtmr3:sha384") == extended
    tdx.write(f"{MEASUREMENTS}/rtmr2:sha384", value)
    assert tdx.read(f"{MEASUREMENTS}/rtmr2:sha384") == hashlib.sha384(launched[2] + value).digest()
    arg = bytearray(b"r" * 64 + bytes(1024))
    tdx.ioctl(TDX_GUEST, TDX_CMD_GET_REPORT0, arg)
    report = parse_tdreport(bytes(arg[64:]))
    assert report.rtmrs[3] == extended
    assert (report.report_data, report.mr_td) == (b"r" * 64, MR_TD)
    assert arg[64:68] == bytes([0x81, 0, 0, 0])  # REPORTTYPE: TDX
    assert tdx.read(f"{MEASUREMENTS}/mrtd:sha384") == MR_TD


# --------------------------------------------------------------------------- configfs-tsm


def test_configfs_tsm_entries(tdx: EmulatedMachine) -> None:
    entry = tdx.make_dir(TSM_REPORT)
    assert tdx.entries() == [entry]
    for name in ("provider", "inblob", "outblob", "generation", "auxblob"):
        assert tdx.exists(f"{entry}/{name}")
    assert tdx.read(f"{entry}/provider") == b"tdx_guest\n"
    assert tdx.read(f"{entry}/generation") == b"0\n"
    assert errno_of(tdx.read, f"{entry}/outblob") == errno.EINVAL  # nothing asked yet
    assert errno_of(tdx.write, f"{entry}/inblob", bytes(65)) == errno.EINVAL
    tdx.write(f"{entry}/inblob", b"a" * 10)
    assert errno_of(tdx.read, f"{entry}/outblob") == errno.EINVAL  # TDX wants 64 bytes
    tdx.write(f"{entry}/inblob", b"a" * 64)
    assert tdx.read(f"{entry}/generation") == b"2\n"  # every write counts
    quote = tdx.read(f"{entry}/outblob")
    assert tdx.read(f"{entry}/outblob") == quote  # one report per generation
    assert errno_of(tdx.read, f"{entry}/inblob") == errno.EACCES
    assert tdx.read(f"{entry}/auxblob") == b""
    second = tdx.make_dir(TSM_REPORT)
    assert second != entry
    tdx.remove_dir(entry)
    assert not tdx.exists(f"{entry}/provider")
    assert tdx.entries() == [second]
    assert errno_of(tdx.remove_dir, entry) == errno.ENOENT


def test_sev_entries_carry_the_certificate_table(test_root: TestRoot) -> None:
    machine = EmulatedMachine.launch(test_root, "snp")
    entry = machine.make_dir(TSM_REPORT)
    assert machine.read(f"{entry}/provider") == b"sev_guest\n"
    machine.write(f"{entry}/privlevel", b"0\n")
    machine.write(f"{entry}/inblob", b"n" * 64)
    assert machine.read(f"{entry}/generation") == b"2\n"
    assert parse_report(machine.read(f"{entry}/outblob")).report_data == b"n" * 64
    assert machine.snp is not None
    assert machine.read(f"{entry}/auxblob") == machine.snp.cert_table()


def test_faults_change_what_the_tsm_says() -> None:
    kernel = EmulatedKernel()
    kernel.add_tsm(Tsm("tdx_guest", lambda inblob: b"quote over " + inblob))
    kernel.faults = Faults(provider="sev_guest", inblob_race=True)
    entry = kernel.make_dir(TSM_REPORT)
    assert kernel.read(f"{entry}/provider") == b"sev_guest\n"
    kernel.write(f"{entry}/inblob", b"mine")
    assert kernel.read(f"{entry}/generation") == b"2\n"
    assert kernel.read(f"{entry}/outblob") != b"quote over mine"  # the other writer's


# --------------------------------------------------------------------------- concurrency


def test_concurrent_evidence_and_extensions(
    test_root: TestRoot, tdx: EmulatedMachine, tmp_path: Path
) -> None:
    attester = TdxAttester(tdx, tmp_path / "eventlog")
    log = AaEventLog(tmp_path / "eventlog", attester)
    verifier = build_verifier("tdx", VerifierSettings(trust_root=test_root.directory))
    quotes: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(3):
                log.extend("example.com", "Step", f"{n}-{i}")
            quotes[n] = attester.evidence(n.to_bytes(64, "big"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert tdx.entries() == []
    final = attester.evidence(b"final")
    assert verifier.verify(final, VerifyOptions(report_data=b"final")).verified
    # Each quote and the log taken with it agree, though other threads kept extending.
    for n, evidence in quotes.items():
        verdict = verifier.verify(evidence, VerifyOptions(report_data=n.to_bytes(64, "big")))
        assert verdict.verified, verdict.error
    assert len(log.contents()) == 18 * len(log.extend("example.com", "Step", "0-0"))
