"""The local REST API over real HTTP on loopback, with guest-components' statuses and bodies.

The expected statuses, bodies and content types are api-server-rest's
(shared/specs/guest-components.md §1): 403 ``Forbidden`` off loopback, 404 ``URL NOT
FOUND`` for a wrong method on ``/aa/*``, 405 only on ``/info``, string booleans from
``/aa/aael``, strict URL-safe base64 without padding.  Where upstream answers bad input
with 500 this API says 400 (see ``veritee.guest.api``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kbs_live import ALLOW, SECRET, Kbs, live_kbs
from live_server import serve_app

from veritee.emulator.machine import EmulatedMachine
from veritee.emulator.root import TestRoot
from veritee.guest.aa import AttestationAgent
from veritee.guest.aa_config import AaConfig
from veritee.guest.api import create_app
from veritee.guest.attesters.detect import attester_for
from veritee.guest.cdh import ConfidentialDataHub
from veritee.guest.cdh_config import CdhConfig
from veritee.guest.eventlog import AaEventLog
from veritee.verifier.base import VerifyOptions
from veritee.verifier.registry import VerifierSettings, build_verifier

ON = "[eventlog_config]\nenable_eventlog = true\n"


@pytest.fixture(scope="module")
def kbs(test_root: TestRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    with live_kbs(test_root.directory, tmp_path_factory.mktemp("kbs")) as live:
        live.set_policy(ALLOW)
        yield live


def build(
    root: TestRoot, tmp_path: Path, kbs_url: str, *, config: str = ON
) -> tuple[AttestationAgent, ConfidentialDataHub]:
    machine = EmulatedMachine.launch(root, "tdx")
    attester = attester_for("tdx", machine, aael_path=tmp_path / "eventlog")
    settings = AaConfig.from_text(f'[token_configs.kbs]\nurl = "{kbs_url}"\n{config}', "aa.toml")
    eventlog = None
    if settings.eventlog_config.enable_eventlog:
        eventlog = AaEventLog(tmp_path / "eventlog", attester)
    aa = AttestationAgent(attester, settings, eventlog=eventlog)
    cdh_config = CdhConfig.from_text(f'[kbc]\nname = "cc_kbc"\nurl = "{kbs_url}"\n', "cdh.toml")
    return aa, ConfidentialDataHub(cdh_config, aa.get_resource)


@pytest.fixture
def api(test_root: TestRoot, tmp_path: Path, kbs: Kbs) -> Iterator[tuple[str, AttestationAgent]]:
    aa, cdh = build(test_root, tmp_path, kbs.url)
    with aa, serve_app(create_app(aa, cdh, "all")) as url:
        yield url, aa


def get(url: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(str(kwargs.pop("method", "GET")), url + path, timeout=60, **kwargs)  # type: ignore[arg-type]


# -- negative first ---------------------------------------------------------------------------


def test_a_caller_off_loopback_is_forbidden(test_root: TestRoot, tmp_path: Path) -> None:
    """api-server-rest checks the peer address first; a remote peer is simulated with
    httpx's ASGI transport (tests stay on loopback), the real app behind it."""
    aa, cdh = build(test_root, tmp_path, "http://127.0.0.1:1")
    app = create_app(aa, cdh, "all")

    async def ask(peer: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(peer, 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
            return await client.get("/info")

    for peer, status in (("192.0.2.7", 403), ("10.0.0.1", 403), ("::ffff:127.0.0.1", 200)):
        reply = asyncio.run(ask(peer))
        assert reply.status_code == status, peer
        if status == 403:
            assert reply.text == "Forbidden"
            assert "content-type" not in reply.headers


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("", "runtime_data is required"),
        ("?runtime_data=eHh4eA==&encoding=base64", "padding"),
        ("?runtime_data=a%2Bb%2Fcw&encoding=base64", "the standard alphabet"),
        ("?runtime_data=eHh4eB&encoding=base64", "stray trailing bits"),
        ("?runtime_data=eHh4eA&encoding=hex", "an unknown encoding"),
        ("?runtime_data=" + "A" * 87 + "&encoding=base64", "65 bytes"),
        ("?runtime_data=" + "x" * 65, "65 raw bytes"),
    ],
)
def test_bad_runtime_data_is_400(api: tuple[str, AttestationAgent], query: str, why: str) -> None:
    url, _ = api
    for path in ("/aa/evidence", "/aa/additional-evidence"):
        reply = get(url, path + query)
        assert reply.status_code == 400, (path, why)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"domain":"d","operation":"o"}',
        b'{"domain":"d","operation":"o","content":7}',
        b'{"domain":"d","operation":"o","content":"c","extra":1}',
        b'{"domain":"d","operation":"o","content":"two\\nlines"}',
        b'{"domain":"has space","operation":"o","content":"c"}',
    ],
)
def test_malformed_aael_bodies_are_400(api: tuple[str, AttestationAgent], body: bytes) -> None:
    url, aa = api
    before = aa.attester.read_runtime_measurement(17)
    reply = get(url, "/aa/aael", method="POST", content=body)
    assert reply.status_code == 400
    assert reply.text.startswith("Illegal AAEL entry format: ")
    assert aa.attester.read_runtime_measurement(17) == before


def test_wrong_methods_and_unknown_paths(api: tuple[str, AttestationAgent]) -> None:
    url, _ = api
    for method, path in (
        ("POST", "/aa/evidence?runtime_data=x"),
        ("PUT", "/aa/additional-evidence?runtime_data=x"),
        ("POST", "/aa/token?token_type=kbs"),
        ("GET", "/aa/aael"),
        ("GET", "/aa/nothing"),
        ("GET", "/nothing"),
        ("GET", "/cdh/resource"),
        ("GET", "/cdh/resource/"),
    ):
        reply = get(url, path, method=method)
        assert (reply.status_code, reply.text) == (404, "URL NOT FOUND"), (method, path)
    reply = get(url, "/info", method="POST")
    assert (reply.status_code, reply.text) == (405, "Method Not Allowed")


def test_token_type_missing_or_unknown(api: tuple[str, AttestationAgent]) -> None:
    url, _ = api
    assert get(url, "/aa/token").status_code == 400
    reply = get(url, "/aa/token?token_type=oauth")
    assert reply.status_code == 400
    assert "Unsupported token type 'oauth'" in reply.text


def test_features_turn_routes_off(test_root: TestRoot, tmp_path: Path, kbs: Kbs) -> None:
    aa, cdh = build(test_root, tmp_path, kbs.url)
    with aa, serve_app(create_app(aa, cdh, "resource")) as url:
        reply = get(url, "/aa/evidence?runtime_data=x")
        assert (reply.status_code, reply.text) == (404, "Attestation Feature Not Enabled")
        info = get(url, "/info").json()
        assert "tee" not in info
        assert info["feature"] == "resource"
        assert get(url, "/cdh/resource/default/key/1").content == SECRET
    with aa, serve_app(create_app(aa, None, "attestation")) as url:
        reply = get(url, "/cdh/resource/default/key/1")
        assert (reply.status_code, reply.text) == (404, "Resource Feature Not Enabled")
        assert get(url, "/aa/evidence?runtime_data=x").status_code == 200


def test_a_kbs_that_is_down_is_a_clear_500_and_the_agent_keeps_serving(
    test_root: TestRoot, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    aa, cdh = build(test_root, tmp_path, down)
    with aa, serve_app(create_app(aa, cdh, "all")) as url:
        reply = get(url, "/cdh/resource/default/key/1")
        assert reply.status_code == 500
        assert reply.headers["content-type"].startswith("text/plain")
        assert reply.text.startswith("get resource failed: ")
        assert "ConnectError" in reply.text
        assert "Traceback" not in reply.text
        reply = get(url, "/aa/token?token_type=kbs")
        assert reply.status_code == 500
        assert reply.text.startswith("get token failed: ")
        assert get(url, "/info").status_code == 200
        assert get(url, "/aa/evidence?runtime_data=still").status_code == 200


# -- the routes -------------------------------------------------------------------------------


def test_evidence_raw_and_base64(api: tuple[str, AttestationAgent], test_root: TestRoot) -> None:
    url, _ = api
    verifier = build_verifier("tdx", VerifierSettings(trust_root=test_root.directory))
    reply = get(url, "/aa/evidence?runtime_data=xxxx")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    assert set(json.loads(reply.content)) == {"cc_eventlog", "quote"}
    assert verifier.verify(reply.content, VerifyOptions(report_data=b"xxxx")).verified
    digest = bytes(range(48))
    encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    reply = get(url, f"/aa/evidence?runtime_data={encoded}&encoding=base64")
    assert verifier.verify(reply.content, VerifyOptions(report_data=digest)).verified
    reply = get(url, "/aa/evidence?runtime_data=a+b%20c")  # form decoding: + is a space
    assert verifier.verify(reply.content, VerifyOptions(report_data=b"a b c")).verified
    reply = get(url, "/aa/additional-evidence?runtime_data=xxxx")
    assert (reply.status_code, reply.content) == (200, b"")


def test_aael_replies_with_string_booleans(
    api: tuple[str, AttestationAgent], test_root: TestRoot, tmp_path: Path, kbs: Kbs
) -> None:
    url, aa = api
    event = {"domain": "github.com/confidential-containers", "operation": "PullImage",
             "content": '{"image":"busybox","digest":"sha256:00"}'}
    before = aa.attester.read_runtime_measurement(17)
    reply = get(url, "/aa/aael", method="POST", json=event)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.content == b'{"success":"true"}'
    assert aa.attester.read_runtime_measurement(17) != before
    off, cdh = build(test_root, tmp_path / "off", kbs.url, config="")
    with off, serve_app(create_app(off, cdh, "all")) as plain:
        reply = get(plain, "/aa/aael", method="POST", json=event)
    assert reply.content == (
        b'{"success":"false","message": "Attestation Agent does not enable eventlog recording"}'
    )


def test_token_and_resource(api: tuple[str, AttestationAgent]) -> None:
    url, _ = api
    reply = get(url, "/aa/token?token_type=kbs")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    assert set(json.loads(reply.content)) == {"token", "tee_keypair"}
    reply = get(url, "/cdh/resource/default/key/1")
    assert (reply.status_code, reply.content) == (200, SECRET)
    assert reply.headers["content-type"] == "application/octet-stream"
    assert get(url, "/cdh/resource/default/key/1", method="POST").content == SECRET  # any method
    for bad in ("default/key/%2e%2e", "default", "default/key/1/extra", "a/b/c%0a"):
        assert get(url, f"/cdh/resource/{bad}").status_code == 400, bad


def test_info(api: tuple[str, AttestationAgent]) -> None:
    url, _ = api
    reply = get(url, "/info")
    assert reply.headers["content-type"] == "application/json"
    info = reply.json()
    assert info["tee"] == "tdx"
    assert info["feature"] == "all"
    assert info["version"].startswith("Guest Components Version: veritee ")
    assert "additional_tees" not in info
