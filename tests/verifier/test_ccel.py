"""CCEL parsing against Trustee's eventlog vectors, replay, and malformed input."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from veritee.emulator.eventlog import EV_EFI_ACTION, EV_SEPARATOR, SPEC_ID_HEADER, CcEventLog
from veritee.errors import ParseError
from veritee.verifier.ccel import parse_ccel, replay, replay_ccel
from veritee.verifier.intel_quote import TdReport, parse_quote


@pytest.fixture(scope="session")
def trustee(vectors: Path) -> Path:
    path = vectors.parent / "trustee" / "deps"
    if not path.is_dir():
        pytest.fail(f"Trustee fixtures not found at {path}")
    return path


EVENTLOGS = [
    "CCEL_data",
    "CCEL_data_ovmf",
    "CCEL_data_grub",
    "CCEL_data_grub_gke",
    "CCEL_AAEL_alibabacloud",
    "CCEL_data_csv",
]


@pytest.mark.parametrize("name", EVENTLOGS)
def test_parse_reproduces_trustee_output(trustee: Path, name: str) -> None:
    data = (trustee / "eventlog" / "test_data" / name).read_bytes()
    expected = json.loads((trustee / "eventlog" / "test_data" / f"{name}_out.json").read_text())
    assert parse_ccel(data) == expected["uefi_event_logs"]


# Trustee's test_rtmr_integrity values (deps/eventlog/src/lib.rs), and the replay of the
# AAEL log (tests/data/SOURCES.md, from shared/testdata/guest-components).
Z = "00" * 48
REPLAYS = {
    "CCEL_data": (
        "2dc712306a963eadb894ad47dbaa17df44814151555aee11cbb843becca88950ffd079664902e6f22c66f7c8213543f4",
        "0fa3be56af61208bbd179dc7b124988eb929319154663c539d6f46445ecac2fec287075047ff7bd1922829fec28cd3cf",
        Z,
        Z,
    ),
    "CCEL_data_ovmf": (
        "8566f998798db09443b244c62de9a3041fb02e2e6936c4396d784bba2e90177329ec5aba3bb484404f2ab9cc90abe193",
        "775b9f6bfe99f8a31396f0d0218e67ffa796d3b96ccf961cbb0deba48c79c00f082cda1a5567c1c16305f1fc210c13c6",
        "94eaf7a7bf398ed8d888c91057ae0261802e4f3df084213a76ca7f0b5055ac9d2241de43cd58d9e8b49c503bbf25f34a",
        Z,
    ),
    "CCEL_data_grub": (
        "cec0a104f691f60da2387fea3c2de00c4ac035e2bb479ff02edcce69039d9e9907f0b3e55031da3dc7038f423adebd79",
        "6c289e0c62182d41ebe97bdbc9872d10998a08eaa86adcdc684001a363207ee72942c7522cdf00a4bbc3d784bed7b670",
        "08919d017ba0e52cd6d966351c7de16fe76c1d3d3d3da4554239e4c7d16cb8b82a94e7eaea3a0e6e18eb690b999fd31e",
        Z,
    ),
    "CCEL_data_gcp": (
        "3300980705adf09d28b707b79699d9874892164280832be2c386a715b6e204e0897fb564a064f810659207ba862b304f",
        "204d49f78d29918fe7b2f694e76653861a0c2a018987d2c3a54266eff737232524cf0af68c4d180e2f8c2c0937f21967",
        Z,
        Z,
    ),
    "CCEL_data_grub_gke": (
        "bc9945139042cf2cc75caf920aa57f14884ecfd7e893bccc51250c8ce90eb53ce72741e6adaa18183eb1331a87d4544a",
        "c17cb288a4dee302bb9ed8d27257a168f3264ad68cab53757f37eeaa7039657fa887cad65cf910e0fdc435ff110f8a7b",
        "334aeba2c985f8886cea97d1ecffbd512769d528b9a94009583db667ad7d2faa7d37fa145d75b192ceee2d2f10b2eb6d",
        Z,
    ),
}


@pytest.mark.parametrize("name", REPLAYS)
def test_replay_matches_trustee(trustee: Path, name: str) -> None:
    data = (trustee / "eventlog" / "test_data" / name).read_bytes()
    assert tuple(r.hex() for r in replay_ccel(data)) == REPLAYS[name]


def test_aael_log_replays_rtmr3(trustee: Path) -> None:
    data = (trustee / "eventlog" / "test_data" / "CCEL_AAEL_alibabacloud").read_bytes()
    rtmrs = replay_ccel(data)
    assert rtmrs[3].hex() == (
        "5e4ecd49d3c7983d6f9ca36755b5cee0b423d7fa8c5a88aeb0681bd4698772bc"
        "37b4463dc5f722efe352a66417257dad"
    )
    aael = [e for e in parse_ccel(data) if e["details"].get("unicode_name") == "AAEL"]
    assert [e["details"]["data"]["content"] for e in aael] == [
        "some-content",
        {"key": "value", "nested-key": {"sub-key": "value"}},
    ]


def test_trustee_claims_fixture_pairs_quote_4_with_ccel_data(trustee: Path) -> None:
    """parse_tdx_claims_expected.json holds CCEL_data's entries; its RTMRs are not quote 4's.

    Trustee's claims test parses tdx_quote_4.dat and CCEL_data side by side without
    replaying, and the two do not belong together: the log replays to
    2dc71230…/0fa3be56… while the quote's RTMR0/RTMR1 are e940da7c…/559cfcf4….
    """
    expected = json.loads(
        (trustee / "verifier" / "test_data" / "parse_tdx_claims_expected.json").read_text()
    )
    data = (trustee / "eventlog" / "test_data" / "CCEL_data").read_bytes()
    assert parse_ccel(data) == expected["uefi_event_logs"]
    quote = parse_quote((trustee / "verifier" / "test_data" / "tdx_quote_4.dat").read_bytes())
    assert isinstance(quote.body, TdReport)
    assert quote.body.rtmrs[0].hex() == expected["quote"]["body"]["rtmr_0"]
    assert replay_ccel(data)[:2] != quote.body.rtmrs[:2]


# --- replay rules ---------------------------------------------------------------------


def test_replay_skips_no_action_and_foreign_digests() -> None:
    digest = {"alg": "SHA-384", "digest": "11" * 48}
    entries = [
        {"index": 1, "type_name": "EV_NO_ACTION", "digests": [digest]},
        {"index": 0, "type_name": "EV_SEPARATOR", "digests": [digest]},
        {"index": 5, "type_name": "EV_SEPARATOR", "digests": [digest]},
        {
            "index": 2,
            "type_name": "EV_SEPARATOR",
            "digests": [{"alg": "SHA-256", "digest": "22" * 32}],
        },
    ]
    assert replay(entries) == (bytes(48),) * 4


# --- framing and malformed input ------------------------------------------------------


def _log() -> CcEventLog:
    log = CcEventLog()
    log.extend(1, EV_SEPARATOR, bytes(4))
    log.extend(2, EV_EFI_ACTION, b"Calling EFI Application from Boot Option")
    return log


def test_end_of_log_forms() -> None:
    log = _log()
    body = SPEC_ID_HEADER + b"".join(log.entries())
    for data in (
        body,
        body + b"\xff" * 8,
        body + bytes(4096),
        body + b"\xff" * 3,
        body + bytes(8) + b"junk",
    ):
        assert len(parse_ccel(data)) == 2
        assert replay_ccel(data) == log.rtmrs()


def _header(algorithms: list[tuple[int, int]], event_type: int = 3) -> bytes:
    spec = b"Spec ID Event03\x00" + bytes([0, 0, 0, 0, 0, 2, 0, 2])
    spec += struct.pack("<I", len(algorithms))
    spec += b"".join(struct.pack("<HH", a, s) for a, s in algorithms) + b"\x00"
    return struct.pack("<II", 0, event_type) + bytes(20) + struct.pack("<I", len(spec)) + spec


def test_multi_bank_entries_parse() -> None:
    header = _header([(0x000B, 32), (0x000C, 48), (0x0012, 32)])
    event = bytes(4)
    sm3 = hashes.Hash(hashes.SM3())
    sm3.update(event)
    entry = (
        struct.pack("<III", 3, EV_SEPARATOR, 3)
        + struct.pack("<H", 0x000B)
        + hashlib.sha256(event).digest()
        + struct.pack("<H", 0x000C)
        + hashlib.sha384(event).digest()
        + struct.pack("<H", 0x0012)
        + sm3.finalize()
        + struct.pack("<I", len(event))
        + event
    )
    (parsed,) = parse_ccel(header + entry)
    assert [d["alg"] for d in parsed["digests"]] == ["SHA-256", "SHA-384", "SM3"]
    assert parsed["digest_matches_event"] is True
    assert (
        replay([parsed])[2] == hashlib.sha384(bytes(48) + hashlib.sha384(event).digest()).digest()
    )


MALFORMED = {
    "empty": b"",
    "truncated header": SPEC_ID_HEADER[:20],
    "header not EV_NO_ACTION": _header([(0x000C, 48)], event_type=4),
    "unknown header algorithm": _header([(0x0099, 48)]),
    "wrong SHA-384 size": _header([(0x000C, 32)]),
    "truncated entry": SPEC_ID_HEADER + _log().entries()[0][:30],
    "unknown event type": SPEC_ID_HEADER + struct.pack("<II", 1, 0x77) + _log().entries()[0][8:],
    "digest not in header": SPEC_ID_HEADER
    + struct.pack("<IIIH", 1, EV_SEPARATOR, 1, 0x000B)
    + bytes(32)
    + struct.pack("<I", 0),
    "event longer than the log": SPEC_ID_HEADER
    + struct.pack("<IIIH", 1, EV_SEPARATOR, 1, 0x000C)
    + bytes(48)
    + struct.pack("<I", 1000),
    "EV_EFI_ACTION not UTF-8": SPEC_ID_HEADER
    + struct.pack("<IIIH", 2, EV_EFI_ACTION, 1, 0x000C)
    + bytes(48)
    + struct.pack("<I", 2)
    + b"\xff\xfe",
    "AAEL without spaces": SPEC_ID_HEADER
    + struct.pack("<IIIH", 4, 6, 1, 0x000C)
    + bytes(48)
    + struct.pack("<I", 12)
    + struct.pack("<II", 0x4141454C, 4)
    + b"abcd",
    "trailing partial entry": SPEC_ID_HEADER + b"".join(_log().entries()) + b"\x01\x00",
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_logs_raise_parse_error(name: str) -> None:
    with pytest.raises(ParseError):
        parse_ccel(MALFORMED[name])


def test_mutations_raise_only_parse_error(trustee: Path) -> None:
    data = (trustee / "eventlog" / "test_data" / "CCEL_AAEL_alibabacloud").read_bytes()
    data = data[: data.index(b"\xff" * 8) + 8]
    rng = random.Random(20261123)
    for _ in range(400):
        mutated = bytearray(data)
        if rng.random() < 0.5:
            del mutated[rng.randrange(len(mutated)) :]
        for _ in range(rng.randrange(1, 4)):
            if mutated:
                mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        with contextlib.suppress(ParseError):
            replay(parse_ccel(bytes(mutated)))


DEVICE_PATHS = [
    # Trustee's boot_services_app.rs test vectors
    (
        "1800b37c0000000000a2a5000000000000000000000000002a000000000000000403140072f728144ab61e44b8c39ebdd7f893c7040412006b00650072006e0065006c0000007fff0400",
        ["VenMedia(1428F772-B64A-441E-B8C3-9EBDD7F893C7,)", "File(kernel)"],
    ),
    (
        "18406a7d0000000008c00e00000000000000000000000000820000000000000002010c00d041030a0000000001010600000101010600000001010600000101010600000004012a000f000000002800000000000000500300000000005e27f1007553d5439eb5de2add4c99320202040430005c004500460049005c0042004f004f0054005c0042004f004f0054005800360034002e0045004600490000007fff0400",
        [
            "ACPI(PNP0A03,0)",
            "Pci(0,1)",
            "Pci(0,0)",
            "Pci(0,1)",
            "Pci(0,0)",
            "HD(15,GPT,00F1275E-5375-43D5-9EB5-DE2ADD4C9932,0x2800,0x35000)",
            "File(\\EFI\\BOOT\\BOOTX64.EFI)",
        ],
    ),
    ("009d9b7a000000008879e4000000000000000000000000000000000000000000", None),
]


def _node(kind: int, sub: int, data: str) -> bytes:
    raw = bytes.fromhex(data)
    return struct.pack("<BBH", kind, sub, 4 + len(raw)) + raw


NODES = [
    # Trustee's device_paths/*_parser.rs test vectors
    (_node(3, 5, "0000"), "USB(0,0)"),
    (
        _node(3, 0x0B, "001320f5fa77000000000000000000000000000000000000000000000000000001"),
        "Mac(001320F5FA77,0x01)",
    ),
    (
        _node(3, 0x0C, "0100A8C06400A8C00000BC0C0600010000000000000000"),
        "IPv4(192.168.0.100,TCP,Static,192.168.0.1)",
    ),
    (
        _node(3, 0x15, "00010203040506070001020304050607"),
        "FibreEx(0x0001020304050607,0x0001020304050607)",
    ),
    (_node(5, 1, "0500000000"), "BBS(USB,,0)"),
    (_node(5, 1, "F0FF000000"), "BBS(65520,,0)"),
    (_node(5, 1, "8000000041424300"), "BBS(DEV,ABC,0)"),
    (
        _node(4, 1, "00000000000000000000000000000000000000000000000000000000431202a0000000000101"),
        "HD(0,MBR,0x00000000)",
    ),
    (
        _node(4, 1, "01000000000800000000000000E02E0000000000431202a000000000431202a0000000000101"),
        "HD(1,MBR,0xa0021243,0x800,0x2ee000)",
    ),
    (_node(2, 1, "d041030a02000000"), "ACPI(PNP0A03,2)"),
    (_node(3, 0x17, "010000000000000000000000"), "Path(3,23,010000000000000000000000)"),
    (_node(4, 9, ""), "Path(4,9,)"),
]


def _image_load(path: bytes) -> bytes:
    end = bytes.fromhex("7fff0400")
    return struct.pack("<QQQQ", 0, 0, 0, len(path) + len(end)) + path + end


def _one_event(event_type: int, event: bytes) -> bytes:
    return (
        SPEC_ID_HEADER
        + struct.pack("<IIIH", 2, event_type, 1, 0x000C)
        + bytes(48)
        + struct.pack("<I", len(event))
        + event
    )


@pytest.mark.parametrize(("event", "paths"), DEVICE_PATHS)
def test_boot_services_application_device_paths(event: str, paths: list[str] | None) -> None:
    (entry,) = parse_ccel(_one_event(0x80000003, bytes.fromhex(event)))
    assert entry["details"] == ({} if paths is None else {"device_paths": paths})


@pytest.mark.parametrize(("node", "text"), NODES, ids=[t for _, t in NODES])
def test_device_path_nodes(node: bytes, text: str) -> None:
    (entry,) = parse_ccel(_one_event(0x80000003, _image_load(node)))
    assert entry["details"] == {"device_paths": [text]}
