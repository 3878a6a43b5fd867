"""Seed 000 end to end: `veritee serve` and `veritee agent serve` as separate processes.

The agent runs in an emulated TDX under the session's test root, started as seed 000
starts a PeerPod's guest components: with the pod's initdata (aa.toml with the event
log on and the KBS URL; cdh.toml with the KBC), all features on.  A workload then
uses the local REST API exactly as the seed's curl lines do.  Expected values come from
the seed: the client policy's vector {"configuration": 2, "executables": 3,
"file-system": 2, "hardware": 2}; the rest from the formats (MRCONFIGID = the initdata
digest padded to 48 bytes; AAEL entries in Trustee's parsed form).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from spawn import veritee_agent, veritee_server
from typer.testing import CliRunner

from veritee.cli import app
from veritee.emulator.root import TestRoot
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_protocol import load_tee_key, tee_pubkey_jwk, token_claims
from veritee.verifier.intel_quote import TdReport, parse_quote

POLICIES = Path(__file__).resolve().parents[1] / "policy" / "fixtures"
SEED_VECTOR = {"configuration": 2, "executables": 3, "file-system": 2, "hardware": 2}
SECRET = b'{"default": [{"type": "insecureAcceptAnything"}], "transports": {}}'
RESOURCE = "default/container-policy/insecure-accept-all"
ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
# A policy that reads the AAEL entries in Trustee's parsed form.
AAEL_POLICY = """package policy

import rego.v1

default executables := 33

aael := [e.details.data |
\tsome e in input.tdx.uefi_event_logs
\te.details.unicode_name == "AAEL"
]

executables := 2 if {
\tcount(aael) == 2
\taael[0].operation == "load-config"
\taael[1].content == {"file": "app.yaml"}
}
"""
EVENTS = [
    {"domain": "test", "operation": "load-config", "content": "test"},
    {"domain": "test", "operation": "load-config", "content": '{"file": "app.yaml"}'},
]


@dataclass
class Setup:
    trustee: str
    agent: str
    admin_token: str
    initdata: str
    trustee_log: Path


def initdata(trustee: str) -> str:
    """Seed 000's initdata, with the Trustee address filled in."""
    return f"""version = "0.1.0"
algorithm = "sha256"
[data]
"aa.toml" = '''
[eventlog_config]
enable_eventlog = true
[token_configs]
[token_configs.kbs]
url = "{trustee}"
'''
"cdh.toml" = '''
[kbc]
name = "cc_kbc"
url = "{trustee}"
[image]
image_security_policy_uri = "kbs:///default/container-policy/insecure-accept-all"
'''
"""


@pytest.fixture(scope="module")
def setup(test_root: TestRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("seed000")
    policies = work / "policies"
    policies.mkdir()
    (policies / "client.rego").write_text((POLICIES / "seed000_client.rego").read_text())
    (policies / "aael.rego").write_text(AAEL_POLICY)
    trustee_args = [
        "serve",
        "--data-dir",
        str(work / "trustee"),
        "--trust-root",
        str(test_root.directory),
        "--policy-dir",
        str(policies),
    ]
    with veritee_server(trustee_args, work / "trustee.log") as trustee:
        document = initdata(trustee)
        (work / "initdata.toml").write_text(document)
        agent_args = [
            "--emulated",
            str(test_root.directory),
            "--features",
            "all",
            "--initdata",
            str(work / "initdata.toml"),
        ]
        with veritee_agent(agent_args, work / "agent.log") as agent:
            token = (work / "trustee" / "admin.token").read_text().strip()
            yield Setup(trustee, agent, token, document, work / "trustee.log")


def attest(setup: Setup, evidence: bytes, policy: str, raw: bytes | None = None) -> httpx.Response:
    """The seed's `curl -X POST http://…/attestation -d @request.json`."""
    request: dict[str, object] = {
        "tee": "tdx",
        "evidence": base64.urlsafe_b64encode(evidence).rstrip(b"=").decode(),
    }
    if raw is not None:
        request["runtime_data"] = {"raw": base64.urlsafe_b64encode(raw).decode()}
    body = {"verification_requests": [request], "policy_ids": [policy]}
    return httpx.post(f"{setup.trustee}/attestation", json=body, timeout=60)


def submod(token: str) -> dict[str, object]:
    cpu0 = token_claims(token)["submods"]["cpu0"]
    assert isinstance(cpu0, dict)
    return cpu0


def test_1_evidence_is_accepted_with_its_runtime_data_and_refused_with_another(
    setup: Setup,
) -> None:
    reply = httpx.get(f"{setup.agent}/aa/evidence?runtime_data=AAAA", timeout=60)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    accepted = attest(setup, reply.content, "client", raw=b"AAAA")
    assert accepted.status_code == 200, accepted.text
    assert submod(accepted.text)["ear.trustworthiness-vector"] == SEED_VECTOR
    assert "Tdx Verifier/endorsement check passed" in setup.trustee_log.read_text()  # the seed's
    refused = attest(setup, reply.content, "client", raw=b"BBBB")
    assert refused.status_code == 403  # VerificationFailed
    assert "report_data" in refused.text


def test_2_3_aael_events_replay_and_reach_policies_and_the_token(setup: Setup) -> None:
    for event in EVENTS:
        reply = httpx.post(f"{setup.agent}/aa/aael", json=event, timeout=60)
        assert reply.content == b'{"success":"true"}'
    evidence = httpx.get(f"{setup.agent}/aa/evidence?runtime_data=after", timeout=60).content
    reply = attest(setup, evidence, "aael", raw=b"after")
    assert reply.status_code == 200, reply.text  # the verifier replayed the log to RTMR3
    cpu0 = submod(reply.text)
    assert cpu0["ear.trustworthiness-vector"]["executables"] == 2  # type: ignore[index]
    logs = cpu0["ear.veraison.annotated-evidence"]["tdx"]["uefi_event_logs"]  # type: ignore[index]
    aael = [e["details"]["data"] for e in logs if e["details"].get("unicode_name") == "AAEL"]
    assert aael == [
        {"domain": "test", "operation": "load-config", "content": "test"},
        {"domain": "test", "operation": "load-config", "content": {"file": "app.yaml"}},
    ]
    doc = json.loads(evidence)
    tampered = bytearray(base64.b64decode(doc["cc_eventlog"]))
    at = tampered.rindex(b"load-config")
    tampered[at] ^= 0x20
    doc["cc_eventlog"] = base64.b64encode(bytes(tampered)).decode()
    refused = attest(setup, json.dumps(doc).encode(), "aael", raw=b"after")
    assert refused.status_code == 403  # VerificationFailed
    assert "eventlog" in refused.text


def test_4_kbs_token_with_its_key_pair_verifies(setup: Setup, tmp_path: Path) -> None:
    reply = httpx.get(f"{setup.agent}/aa/token?token_type=kbs", timeout=60)
    assert reply.status_code == 200, reply.text
    answer = json.loads(reply.content)
    token_file = tmp_path / "token.jwt"
    token_file.write_text(answer["token"])
    jwks = f"{setup.trustee}/.well-known/jwks.json"
    verified = CliRunner().invoke(app, ["token", "verify", str(token_file), "--jwks", jwks])
    assert verified.exit_code == 0, verified.output
    key = load_tee_key(answer["tee_keypair"].encode())
    runtime = submod(answer["token"])["ear.veraison.annotated-evidence"]["runtime_data_claims"]  # type: ignore[index]
    assert runtime["tee-pubkey"] == tee_pubkey_jwk(key)


def test_5_cdh_resource_returns_the_stored_bytes(setup: Setup) -> None:
    with KbsClient(setup.trustee, admin_token=setup.admin_token) as admin:
        admin.set_resource(RESOURCE, SECRET)
        admin.set_resource_policy(ALLOW)
    reply = httpx.get(f"{setup.agent}/cdh/resource/{RESOURCE}", timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.content == SECRET


def test_6_initdata_is_bound_in_mrconfigid_and_reported(setup: Setup) -> None:
    reply = httpx.get(f"{setup.agent}/aa/evidence?runtime_data=x", timeout=60)
    evidence = json.loads(reply.content)
    quote = parse_quote(base64.b64decode(evidence["quote"]))
    assert isinstance(quote.body, TdReport)
    digest = hashlib.sha256(setup.initdata.encode()).digest()
    assert quote.body.mr_config_id == digest.ljust(48, b"\0")
    token = json.loads(httpx.get(f"{setup.agent}/aa/token?token_type=kbs", timeout=60).content)
    annotated = submod(token["token"])["ear.veraison.annotated-evidence"]
    claims = annotated["init_data_claims"]  # type: ignore[index]
    assert claims["aa.toml"]["eventlog_config"] == {"enable_eventlog": True}
    assert claims["cdh.toml"]["kbc"]["name"] == "cc_kbc"
    other = setup.initdata.replace("enable_eventlog = true", "enable_eventlog = false")
    request = {
        "tee": "tdx",
        "evidence": base64.urlsafe_b64encode(json.dumps(evidence).encode()).rstrip(b"=").decode(),
        "init_data": {"init_data_toml": other},
    }
    body = {"verification_requests": [request], "policy_ids": ["client"]}
    refused = httpx.post(f"{setup.trustee}/attestation", json=body, timeout=60)
    assert refused.status_code == 403  # VerificationFailed
    assert "init_data" in refused.text
