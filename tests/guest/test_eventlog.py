"""The AA event log: refused events and broken logs first, then upstream's vectors, the real
Alibaba Cloud log re-encoded, WAL recovery, and replay by our verifier's parser."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from datadir import TRUSTEE

from veritee.emulator.machine import EmulatedMachine
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.base import Attester, AttesterError
from veritee.guest.attesters.snp import SnpAttester
from veritee.guest.attesters.tdx import TdxAttester
from veritee.guest.eventlog import (
    EL_HEADER,
    END_MARKER,
    EV_EVENT_TAG,
    WAL_NAME,
    AaelEventError,
    AaEventLog,
    EventLogError,
    aael_event,
    cc_eventlog,
    pcr_to_ccmr,
    tcg2_entry,
    trim_ccel,
)
from veritee.verifier.ccel import parse_ccel, replay_ccel

ALIBABA = TRUSTEE / "deps/eventlog/test_data/CCEL_AAEL_alibabacloud"

# guest-components §3.2 vectors (upstream unit test).
AAEL_SHA256 = "46df8dacf00a07d34a83cdf56d7978697790787cf2ba1432ef7c38f22cd96351"
AAEL_SHA384 = (
    "dad5f0e226318ffa9839b75a472c6aa7fdb5834949d0a0a22990cf04d5692440"
    "fb00f3aa0609db7e49cd8d793f670d02"
)
AAEL_ENTRY = (
    "0400000006000000010000000c00"
    + AAEL_SHA384
    + "20000000"
    + "4c454141"
    + "18000000"
    + "646f6d61696e206f7065726174696f6e20636f6e74656e74"
)
AAEL_RTMR3 = (
    "82d3f7a4203f58dafe0519eb5e9f645339cda127418c62d4b0270d790ab6ff3c"
    "38783523613a7a9f610e7ba004788c26"
)
PULL = ("github.com/confidential-containers", "PullImage")


@pytest.fixture
def tdx(test_root: TestRoot, tmp_path: Path) -> TdxAttester:
    return TdxAttester(EmulatedMachine.launch(test_root, "tdx"), tmp_path / "eventlog")


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("domain", "operation", "content", "match"),
    [
        ("a b", "op", "c", "domain"),
        ("", "op", "c", "domain"),
        ("d", "", "c", "operation"),
        ("d", "o\tp", "c", "operation"),
        ("d", "op", "line\nbreak", "newline"),
        ("d", "op", "carriage\rreturn", "non-printable"),
        ("d", "op", "tab\there", "non-printable"),
        ("d", "op", "bell\x07", "non-printable"),
        ("d\x00", "op", "c", "non-printable"),
    ],
)
def test_events_that_would_not_split_back_are_refused(
    domain: str, operation: str, content: str, match: str
) -> None:
    with pytest.raises(AaelEventError, match=match) as info:
        aael_event(domain, operation, content)
    assert isinstance(info.value, ValueError)


def test_a_refused_event_touches_neither_log_nor_register(tdx: TdxAttester) -> None:
    log = AaEventLog(tdx.aael_path or Path(), tdx)
    with pytest.raises(AaelEventError):
        log.extend("d", "op", "two\nlines")
    assert log.contents() == b""
    assert tdx.read_runtime_measurement(17) == bytes(48)


def test_an_attester_without_a_register_cannot_keep_a_log(
    test_root: TestRoot, tmp_path: Path
) -> None:
    snp = SnpAttester(EmulatedMachine.launch(test_root, "snp"))
    with pytest.raises(EventLogError, match="snp attester cannot extend"):
        AaEventLog(tmp_path / "eventlog", snp)


def test_trim_ccel_refuses_a_table_without_an_end() -> None:
    entry = tcg2_entry(1, EV_EVENT_TAG, bytes(48), b"x")
    with pytest.raises(EventLogError, match="end marker"):
        trim_ccel(EL_HEADER + entry)
    with pytest.raises(EventLogError, match="Spec ID header"):
        trim_ccel(bytes(10))
    unknown = struct.pack("<IIIH", 1, EV_EVENT_TAG, 1, 0x0004) + bytes(20)
    with pytest.raises(EventLogError, match="unknown digest algorithm 0x0004"):
        trim_ccel(EL_HEADER + unknown + END_MARKER)


def test_a_corrupted_wal_is_an_error_not_a_guess(tdx: TdxAttester, tmp_path: Path) -> None:
    log = AaEventLog(tmp_path / "eventlog", tdx)
    log.extend(*PULL, "one")
    (tmp_path / WAL_NAME).write_bytes(b"not a write-ahead log")
    with pytest.raises(EventLogError, match="does not hold an AAEL entry"):
        AaEventLog(tmp_path / "eventlog", tdx)


def test_a_register_moved_elsewhere_is_reported_as_corruption(
    tdx: TdxAttester, tmp_path: Path
) -> None:
    crashing = _Crashing(tdx, after_extend=False)
    with pytest.raises(_Crash):
        AaEventLog(tmp_path / "eventlog", crashing).extend(*PULL, "lost")
    tdx.extend_runtime_measurement(hashlib.sha384(b"someone else").digest(), 17)
    with pytest.raises(EventLogError, match="probably corrupted"):
        AaEventLog(tmp_path / "eventlog", tdx)


def test_a_wal_pointing_past_the_log_is_refused(tdx: TdxAttester, tmp_path: Path) -> None:
    with pytest.raises(_Crash):
        AaEventLog(tmp_path / "eventlog", _Crashing(tdx, after_extend=True)).extend(*PULL, "x")
    (tmp_path / "eventlog").write_bytes(b"")
    wal = tmp_path / WAL_NAME
    data = wal.read_bytes()
    wal.write_bytes(struct.pack(">Q", 4096) + data[8:])
    with pytest.raises(EventLogError, match="past the end"):
        AaEventLog(tmp_path / "eventlog", tdx)


# --------------------------------------------------------------------------- vectors


def test_upstream_vectors() -> None:
    event = aael_event("domain", "operation", "content")
    assert hashlib.sha256(event).hexdigest() == AAEL_SHA256
    assert hashlib.sha384(event).hexdigest() == AAEL_SHA384
    entry = tcg2_entry(4, EV_EVENT_TAG, hashlib.sha384(event).digest(), event)
    assert entry.hex() == AAEL_ENTRY
    assert len(entry) == 98


def test_the_log_reproduces_the_upstream_entry_and_rtmr3(tdx: TdxAttester, tmp_path: Path) -> None:
    log = AaEventLog(tmp_path / "eventlog", tdx)
    assert log.mr_index == 4
    entry = log.extend("domain", "operation", "content")
    assert entry.hex() == AAEL_ENTRY
    assert log.contents() == entry
    assert tdx.read_runtime_measurement(17).hex() == AAEL_RTMR3  # RTMR3 starts at zero
    assert not (tmp_path / WAL_NAME).exists()


@pytest.mark.parametrize(
    ("pcr", "ccmr"), [(0, 4), (1, 1), (7, 1), (2, 2), (6, 2), (8, 3), (15, 3), (16, 4), (17, 4)]
)
def test_pcr_to_ccmr(pcr: int, ccmr: int) -> None:
    assert pcr_to_ccmr(pcr) == ccmr


def test_el_header_is_guest_components_69_bytes() -> None:
    assert len(EL_HEADER) == 69
    assert EL_HEADER[4:8] == struct.pack("<I", 3)  # EV_NO_ACTION
    assert struct.unpack_from("<I", EL_HEADER, 28)[0] == 37
    assert EL_HEADER[32:56] == bytes(24)  # zero signature, platform class and versions
    assert EL_HEADER[56:] == struct.pack("<IHHHH", 2, 0x000C, 48, 0x0012, 32) + b"\x00"


def test_real_alibaba_cloud_aael_entries_re_encode_byte_for_byte() -> None:
    raw = ALIBABA.read_bytes()
    entries = parse_ccel(raw)
    aael = [e for e in entries if e["details"].get("unicode_name") == "AAEL"]
    assert len(entries) == 87
    assert len(aael) == 2
    encoded = b""
    for e in aael:
        domain, _, rest = e["details"]["string"].partition(" ")
        operation, _, content = rest.partition(" ")
        event = aael_event(domain, operation, content)
        assert e["digests"] == [{"alg": "SHA-384", "digest": hashlib.sha384(event).hexdigest()}]
        encoded += tcg2_entry(e["index"], EV_EVENT_TAG, hashlib.sha384(event).digest(), event)
    assert raw.endswith(encoded + END_MARKER)  # the last two entries, then the end flag
    assert trim_ccel(raw) == raw[: -len(END_MARKER)]
    assert cc_eventlog(raw, None) == raw
    assert aael[1]["details"]["data"]["content"] == {
        "key": "value",
        "nested-key": {"sub-key": "value"},
    }


def test_cc_eventlog_assembly() -> None:
    entry = bytes.fromhex(AAEL_ENTRY)
    assert cc_eventlog(None, None) is None
    assert cc_eventlog(None, b"") == EL_HEADER + END_MARKER
    alone = cc_eventlog(None, entry)
    assert alone == EL_HEADER + entry + END_MARKER
    (parsed,) = parse_ccel(alone)
    assert parsed["details"]["data"] == {
        "domain": "domain",
        "operation": "operation",
        "content": "content",
    }
    assert replay_ccel(alone)[3].hex() == AAEL_RTMR3
    table = EL_HEADER + entry + END_MARKER + b"\xff" * 100  # the CCEL's unused area
    assert cc_eventlog(table, entry) == EL_HEADER + entry + entry + END_MARKER
    assert cc_eventlog(EL_HEADER + bytes(8) + b"\xff" * 8, None) == EL_HEADER + END_MARKER


# --------------------------------------------------------------------------- WAL recovery


class _Crash(BaseException):
    """The process dies (not an error anyone handles)."""


class _Crashing:
    """A TDX attester whose process dies just before or just after the register moves."""

    def __init__(self, inner: TdxAttester, *, after_extend: bool) -> None:
        self.inner = inner
        self.after_extend = after_extend
        self.tee = inner.tee

    def evidence(self, report_data: bytes) -> bytes:
        return self.inner.evidence(report_data)

    def supports_runtime_measurement(self) -> bool:
        return True

    def extend_runtime_measurement(self, digest: bytes, pcr: int) -> None:
        if self.after_extend:
            self.inner.extend_runtime_measurement(digest, pcr)
        raise _Crash

    def read_runtime_measurement(self, pcr: int) -> bytes:
        return self.inner.read_runtime_measurement(pcr)

    def init_data_binding(self) -> bytes:
        return self.inner.init_data_binding()


@pytest.mark.parametrize("after_extend", [False, True])
def test_reopening_finishes_an_interrupted_extension(
    tdx: TdxAttester, tmp_path: Path, after_extend: bool
) -> None:
    path = tmp_path / "eventlog"
    log = AaEventLog(path, tdx)
    first = log.extend(*PULL, '{"image":"a", "digest":"sha256:01"}')
    crashing: Attester = _Crashing(tdx, after_extend=after_extend)
    with pytest.raises(_Crash):
        AaEventLog(path, crashing).extend(*PULL, '{"image":"b", "digest":"sha256:02"}')
    assert (tmp_path / WAL_NAME).exists()
    assert path.read_bytes() == first
    if after_extend:
        with path.open("ab") as f:
            f.write(b"\x04\x00\x00")  # a torn write of the entry
    reopened = AaEventLog(path, tdx)
    assert not (tmp_path / WAL_NAME).exists()
    second = aael_event(*PULL, '{"image":"b", "digest":"sha256:02"}')
    assert reopened.contents() == first + tcg2_entry(
        4, EV_EVENT_TAG, hashlib.sha384(second).digest(), second
    )
    assert replay_ccel(EL_HEADER + reopened.contents())[3] == tdx.read_runtime_measurement(17)


def test_an_extension_the_register_refused_leaves_no_wal(
    test_root: TestRoot, tmp_path: Path
) -> None:
    machine = EmulatedMachine.launch(test_root, "tdx")
    tdx = TdxAttester(machine)
    log = AaEventLog(tmp_path / "eventlog", tdx, init_pcr=1)  # RTMR0: not extendable
    with pytest.raises(AttesterError, match="RTMR2 and RTMR3"):
        log.extend(*PULL, "x")
    assert not (tmp_path / WAL_NAME).exists()
    assert log.contents() == b""
