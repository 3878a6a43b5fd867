"""The Attestation Agent on the emulated machine, against the real KBS and AS over loopback."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from kbs_live import ALLOW, SECRET, Kbs, live_kbs
from live_server import serve_app

from veritee.as_.api import create_app as create_as_app
from veritee.emulator.machine import EmulatedMachine
from veritee.emulator.root import TestRoot
from veritee.guest.aa import (
    AttestationAgent,
    InitDataMismatch,
    RuntimeDataTooLong,
    RuntimeMeasurementResult,
    UnsupportedTokenType,
)
from veritee.guest.aa_config import AaConfig
from veritee.guest.attesters.detect import attester_for, detect_devices
from veritee.guest.eventlog import AaEventLog
from veritee.guest.kbs_protocol import KbsClientError, load_tee_key, tee_pubkey_jwk, token_claims
from veritee.initdata import digest_for_tee, parse_initdata
from veritee.verifier.base import VerifyOptions
from veritee.verifier.registry import VerifierSettings, build_verifier

INITDATA = 'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"note.txt" = "hello"\n'


@pytest.fixture(scope="module")
def kbs(test_root: TestRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    with live_kbs(test_root.directory, tmp_path_factory.mktemp("kbs")) as live:
        live.set_policy(ALLOW)
        yield live


@pytest.fixture(scope="module")
def as_url(kbs: Kbs) -> Iterator[str]:
    parts = kbs.parts.attestation
    with serve_app(create_as_app(parts.service, admin=kbs.parts.admin, rvps=parts.rvps)) as url:
        yield url


@pytest.fixture(autouse=True)
def _close_agents() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


_OPEN: list[AttestationAgent] = []


def agent(
    root: TestRoot,
    tmp_path: Path,
    *,
    tee: str = "tdx",
    config: str = "",
    initdata: str | None = None,
    launched_with: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[AttestationAgent, EmulatedMachine]:
    document = parse_initdata(initdata) if initdata is not None else None
    bound = parse_initdata(launched_with) if launched_with is not None else document
    digest = digest_for_tee(bound, tee)[1] if bound is not None and tee != "sgx" else None
    machine = EmulatedMachine.launch(root, tee, init_data_digest=digest, env=env)  # type: ignore[arg-type]
    log_path = tmp_path / "eventlog"
    attester = attester_for(tee, machine, aael_path=log_path)
    settings = AaConfig.from_text(config, "aa.toml")
    eventlog = None
    if settings.eventlog_config.enable_eventlog and attester.supports_runtime_measurement():
        eventlog = AaEventLog(log_path, attester, init_pcr=settings.eventlog_config.init_pcr)
    aa = AttestationAgent(
        attester,
        settings,
        devices=detect_devices(machine),
        initdata=document,
        eventlog=eventlog,
    )
    _OPEN.append(aa)
    return aa, machine


def verdict(root: TestRoot, tee: str, evidence: bytes, **options: bytes):  # type: ignore[no-untyped-def]
    settings = VerifierSettings(trust_root=root.directory)
    return build_verifier(tee, settings).verify(evidence, VerifyOptions(**options))


# -- negative first ---------------------------------------------------------------------------


def test_runtime_data_over_64_bytes_is_refused(test_root: TestRoot, tmp_path: Path) -> None:
    aa, _ = agent(test_root, tmp_path)
    with pytest.raises(RuntimeDataTooLong, match="65 bytes; at most 64"):
        aa.get_evidence(bytes(65))
    with pytest.raises(RuntimeDataTooLong):
        aa.get_additional_evidence(bytes(65))


def test_initdata_that_is_not_the_launched_one_stops_the_agent(
    test_root: TestRoot, tmp_path: Path
) -> None:
    other = INITDATA.replace("hello", "goodbye")
    aa, _ = agent(test_root, tmp_path, initdata=INITDATA, launched_with=other)
    with pytest.raises(InitDataMismatch, match="not the TEE's MRCONFIGID"):
        aa.check_init_data()
    aa, _ = agent(test_root, tmp_path, tee="snp", initdata=INITDATA, launched_with=other)
    with pytest.raises(InitDataMismatch, match="HOST_DATA"):
        aa.check_init_data()


def test_token_types_unknown_or_unconfigured(test_root: TestRoot, tmp_path: Path) -> None:
    aa, _ = agent(test_root, tmp_path)
    with pytest.raises(UnsupportedTokenType, match="Unsupported token type 'oauth'"):
        aa.get_token("oauth")
    with pytest.raises(UnsupportedTokenType, match=r"no \[token_configs.kbs\] url in aa.toml"):
        aa.get_token("kbs")
    with pytest.raises(UnsupportedTokenType, match=r"no \[token_configs.coco_as\] url"):
        aa.get_token("coco_as")


def test_runtime_measurement_off_or_unsupported(test_root: TestRoot, tmp_path: Path) -> None:
    aa, _ = agent(test_root, tmp_path)  # enable_eventlog defaults to false
    assert aa.extend_runtime_measurement("d", "o", "c") is RuntimeMeasurementResult.NOT_ENABLED
    on = "[eventlog_config]\nenable_eventlog = true\n"
    aa, _ = agent(test_root, tmp_path, tee="snp", config=on)
    assert aa.extend_runtime_measurement("d", "o", "c") is RuntimeMeasurementResult.NOT_SUPPORTED


# -- evidence -----------------------------------------------------------------------------------


def test_evidence_carries_the_runtime_data_unhashed(test_root: TestRoot, tmp_path: Path) -> None:
    aa, _ = agent(test_root, tmp_path)
    evidence = aa.get_evidence(b"xxxx")
    assert verdict(test_root, "tdx", evidence, report_data=b"xxxx").verified
    refused = verdict(test_root, "tdx", evidence, report_data=b"yyyy")
    assert not refused.verified
    assert refused.step == "report_data"


def test_additional_evidence_is_empty_without_devices(test_root: TestRoot, tmp_path: Path) -> None:
    aa, _ = agent(test_root, tmp_path)
    assert aa.get_additional_evidence(b"xx") == b""
    aa, _ = agent(test_root, tmp_path, env={"ENABLE_SAMPLE_DEVICE": "1"})
    assert aa.additional_tees == ["sampledevice"]
    doc = json.loads(aa.get_additional_evidence(b"xx"))
    assert doc == {"sampledevice": {"svn": "2", "report_data": base64.b64encode(b"xx").decode()}}


def test_aael_events_extend_rtmr3_and_fresh_evidence_replays(
    test_root: TestRoot, tmp_path: Path
) -> None:
    aa, machine = agent(test_root, tmp_path, config="[eventlog_config]\nenable_eventlog = true\n")
    assert machine.tdx is not None
    before = aa.attester.read_runtime_measurement(17)
    assert aa.extend_runtime_measurement("github.com/x", "PullImage", "a") is (
        RuntimeMeasurementResult.OK
    )
    assert aa.extend_runtime_measurement("github.com/x", "PullImage", "b") is (
        RuntimeMeasurementResult.OK
    )
    assert aa.attester.read_runtime_measurement(17) != before
    result = verdict(test_root, "tdx", aa.get_evidence(b"now"), report_data=b"now")
    assert result.verified, result.error
    aael = [
        e["details"]["data"]
        for e in result.claims["uefi_event_logs"]
        if e["details"].get("unicode_name") == "AAEL"
    ]
    assert aael == [
        {"domain": "github.com/x", "operation": "PullImage", "content": "a"},
        {"domain": "github.com/x", "operation": "PullImage", "content": "b"},
    ]


def test_initdata_launched_with_checks_out(test_root: TestRoot, tmp_path: Path) -> None:
    aa, _ = agent(test_root, tmp_path, initdata=INITDATA)
    assert aa.check_init_data() is None
    aa, _ = agent(test_root, tmp_path, tee="sgx", initdata=INITDATA)
    assert aa.check_init_data() == "sgx binds no initdata at launch: only the verifier can check it"


# -- tokens and resources -----------------------------------------------------------------------


def test_kbs_token_with_its_key_pair_is_kept(
    test_root: TestRoot, tmp_path: Path, kbs: Kbs
) -> None:
    aa, _ = agent(test_root, tmp_path, config=f'[token_configs.kbs]\nurl = "{kbs.url}"\n')
    first = json.loads(aa.get_token("kbs"))
    assert set(first) == {"token", "tee_keypair"}
    assert first["tee_keypair"].startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8 EC
    key = load_tee_key(first["tee_keypair"].encode())
    claims = token_claims(first["token"])
    assert claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["tdx"]
    runtime = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["runtime_data_claims"]
    assert runtime["tee-pubkey"] == tee_pubkey_jwk(key)
    assert json.loads(aa.get_token("kbs")) == first  # kept until shortly before it expires
    assert aa.get_resource("kbs:///default/key/1") == SECRET


def test_coco_as_token_is_kept(test_root: TestRoot, tmp_path: Path, as_url: str) -> None:
    aa, _ = agent(test_root, tmp_path, config=f'[token_configs.coco_as]\nurl = "{as_url}"\n')
    token = aa.get_token("coco_as").decode()
    claims = token_claims(token)
    assert claims["submods"]["cpu0"]["ear.status"] in ("affirming", "warning")
    assert aa.get_token("coco_as").decode() == token


def test_a_kbs_that_is_down_is_a_clear_error(test_root: TestRoot, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    aa, _ = agent(test_root, tmp_path, config=f'[token_configs.kbs]\nurl = "{url}"\n')
    with pytest.raises(KbsClientError, match=r"POST /kbs/v0/auth: ConnectError"):
        aa.get_resource("kbs:///default/key/1")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
