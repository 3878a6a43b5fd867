"""The Attestation Service end to end over real HTTP on loopback (seed 000's flow).

Emulated TDX evidence goes to POST /attestation; the raw JWT comes back, verifies
through the service's JWKS, and `.submods.cpu0."ear.trustworthiness-vector"` holds
what the policy says.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import serve_app

from veritee.as_.api import create_app
from veritee.as_.bootstrap import build_attestation_service
from veritee.as_.config import AsSettings
from veritee.emulator.evidence import EvidenceRequest, emulate
from veritee.emulator.root import TestRoot
from veritee.token.verify import load_jwks, verify_token

# Seed 000's client.rego, as the seed gives it (line breaks restored only).
CLIENT_REGO = (
    Path(__file__).parents[1] / "policy" / "fixtures" / "seed000_client.rego"
).read_text()


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Service:
    url: str
    admin_token: str
    root: TestRoot

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def attest(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}/attestation", json=body, timeout=30)


@pytest.fixture(scope="module")
def service(test_root: TestRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data = tmp_path_factory.mktemp("as")
    policies = data / "policies"
    policies.mkdir()
    (policies / "client.rego").write_text(CLIENT_REGO)
    parts = build_attestation_service(
        AsSettings(data_dir=data / "state", trust_root=test_root.directory, policy_dir=policies)
    )
    app = create_app(parts.service, admin=parts.admin.auth, rvps=parts.rvps)
    with serve_app(app) as url:
        yield Service(url, parts.admin.token_path.read_text().strip(), test_root)


def _tdx(root: TestRoot, **kwargs: Any) -> str:
    made = emulate(root, EvidenceRequest(tee="tdx", **kwargs))
    return _b64u(made.wire_bytes())


def _vector(token: str, url: str) -> dict[str, Any]:
    claims = verify_token(token, load_jwks(f"{url}/.well-known/jwks.json"))
    return dict(claims["submods"]["cpu0"]["ear.trustworthiness-vector"])


def test_seed000_client_policy_gives_the_seed_vector(service: Service) -> None:
    reply = service.attest(
        {
            "verification_requests": [{"tee": "tdx", "evidence": _tdx(service.root)}],
            "policy_ids": ["client"],
        }
    )
    assert reply.status_code == 200, reply.text
    token = reply.text
    assert token.count(".") == 2
    assert _vector(token, service.url) == {
        "configuration": 2,
        "executables": 3,
        "file-system": 2,
        "hardware": 2,
    }
    claims = verify_token(token, load_jwks(f"{service.url}/.well-known/jwks.json"))
    assert claims["ear.veritee.emulated"] is True
    assert claims["submods"]["cpu0"]["ear.appraisal-policy-id"] == "client"
    assert claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["tdx"]["emulated"] is True


def test_default_policy_warning_then_affirming_with_reference_values(service: Service) -> None:
    evidence = emulate(service.root, EvidenceRequest(tee="tdx"))
    body = {"verification_requests": [{"tee": "tdx", "evidence": _b64u(evidence.wire_bytes())}]}
    token = service.attest(body).text
    claims = verify_token(token, load_jwks(f"{service.url}/.well-known/jwks.json"))
    assert claims["submods"]["cpu0"]["ear.status"] == "warning"
    mr_td = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["tdx"]["quote"]["body"][
        "mr_td"
    ]
    message = {
        "version": "0.1.0",
        "type": "sample",
        "payload": base64.b64encode(json.dumps({"mr_td": [mr_td]}).encode()).decode(),
    }
    reply = httpx.post(f"{service.url}/rvps/reference-value", json=message, headers=service.admin())
    assert reply.status_code == 200, reply.text
    token = service.attest(body).text
    claims = verify_token(token, load_jwks(f"{service.url}/.well-known/jwks.json"))
    assert claims["submods"]["cpu0"]["ear.status"] == "affirming"
    httpx.delete(f"{service.url}/rvps/reference-value/mr_td", headers=service.admin())


def test_expired_reference_value_is_not_served(service: Service) -> None:
    evidence = emulate(service.root, EvidenceRequest(tee="tdx"))
    body = {"verification_requests": [{"tee": "tdx", "evidence": _b64u(evidence.wire_bytes())}]}
    mr_td = evidence.raw[184:232].hex()
    soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=2)
    reply = httpx.post(
        f"{service.url}/rvps/reference-values",
        json={"name": "mr_td", "value": [mr_td], "expiration": soon.strftime("%Y-%m-%dT%H:%M:%SZ")},
        headers=service.admin(),
    )
    assert reply.status_code == 200, reply.text
    jwks = load_jwks(f"{service.url}/.well-known/jwks.json")
    assert verify_token(service.attest(body).text, jwks)["submods"]["cpu0"]["ear.status"] == (
        "affirming"
    )
    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 1.1)
    assert verify_token(service.attest(body).text, jwks)["submods"]["cpu0"]["ear.status"] == (
        "warning"
    )


def test_runtime_and_init_data_bindings(service: Service) -> None:
    structured = {"nonce": "abc", "tee-pubkey": {"kty": "EC"}}
    import rfc8785

    report_data = hashlib.sha384(rfc8785.dumps(structured)).digest()
    initdata = 'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"x" = "y"\n'
    digest = hashlib.sha384(initdata.encode()).digest()
    evidence = _tdx(service.root, report_data=report_data, settings={"mr_config_id": digest})
    good = {
        "tee": "tdx",
        "evidence": evidence,
        "runtime_data": {"structured": structured},
        "init_data": {"init_data_toml": initdata},
    }
    reply = service.attest({"verification_requests": [good]})
    assert reply.status_code == 200, reply.text
    claims = verify_token(reply.text, load_jwks(f"{service.url}/.well-known/jwks.json"))
    evidence_claims = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert evidence_claims["runtime_data_claims"] == structured
    assert evidence_claims["init_data_claims"] == {"x": "y"}
    wrong_rd = {**good, "runtime_data": {"structured": {**structured, "nonce": "abd"}}}
    reply = service.attest({"verification_requests": [wrong_rd]})
    assert reply.status_code == 403
    assert reply.json()["type"].endswith("RuntimeDataMismatch")
    wrong_id = {**good, "init_data": {"init_data_toml": initdata + "\n"}}
    reply = service.attest({"verification_requests": [wrong_id]})
    assert reply.status_code == 403
    assert reply.json()["type"].endswith("InitDataMismatch")


@pytest.mark.parametrize(
    ("body", "status", "name"),
    [
        ({"verification_requests": [{"tee": "tdx", "evidence": "%%%"}]}, 400, "MalformedEvidence"),
        ({"verification_requests": [{"tee": "tpm", "evidence": "e30"}]}, 400, "UnknownTee"),
        ({"verification_requests": "x"}, 400, "MalformedRequest"),
    ],
)
def test_bad_requests_have_precise_errors(
    service: Service, body: Any, status: int, name: str
) -> None:
    reply = service.attest(body)
    assert reply.status_code == status
    assert reply.json()["type"].endswith(name)


def test_unknown_policy_and_rejected_evidence(service: Service) -> None:
    evidence = _tdx(service.root)
    reply = service.attest(
        {"verification_requests": [{"tee": "tdx", "evidence": evidence}], "policy_ids": ["nope"]}
    )
    assert reply.status_code == 404
    assert reply.json()["type"].endswith("UnknownPolicy")
    raw = bytearray(emulate(service.root, EvidenceRequest(tee="tdx")).raw)
    raw[200] ^= 1
    wire = {"cc_eventlog": None, "quote": base64.b64encode(bytes(raw)).decode()}
    reply = service.attest(
        {"verification_requests": [{"tee": "tdx", "evidence": _b64u(json.dumps(wire).encode())}]}
    )
    assert reply.status_code == 403
    assert "quote_signature" in reply.json()["detail"]


def test_ten_megabyte_body_gets_413(service: Service) -> None:
    reply = httpx.post(
        f"{service.url}/attestation",
        content=b"{" + b" " * (10 * 1024 * 1024),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert reply.status_code == 413
    assert reply.json()["type"].endswith("PayloadTooLarge")


def test_policy_api_is_admin_only_and_reports_compile_errors(service: Service) -> None:
    text = "package policy\n\nimport rego.v1\n\ndefault hardware := 2\nexecutables := := 3\n"
    body = {"policy_id": "broken", "policy": _b64u(text.encode())}
    assert httpx.post(f"{service.url}/policy", json=body).status_code == 401
    assert httpx.get(f"{service.url}/policy").status_code == 401
    reply = httpx.post(f"{service.url}/policy", json=body, headers=service.admin())
    assert reply.status_code == 400
    assert "line 6" in reply.json()["detail"]
    listed = httpx.get(f"{service.url}/policy", headers=service.admin()).json()
    assert {"policy-id": "broken"} not in listed
    assert {"policy-id": "client"} in listed
    good = {"policy_id": "mine", "policy": _b64u(CLIENT_REGO.encode())}
    assert (
        httpx.post(f"{service.url}/policy", json=good, headers=service.admin()).status_code == 200
    )
    forged = service.admin_token[:-4] + "AAAA"
    assert (
        httpx.post(
            f"{service.url}/policy", json=good, headers={"Authorization": f"Bearer {forged}"}
        ).status_code
        == 401
    )


def test_jwks_and_cert_chain_are_published(service: Service) -> None:
    jwks = httpx.get(f"{service.url}/.well-known/jwks.json").json()
    assert jwks["keys"][0]["alg"] == "ES256"
    chain = httpx.get(f"{service.url}/.well-known/token-cert-chain.pem").text
    assert "BEGIN CERTIFICATE" in chain


def test_openapi_is_served(service: Service) -> None:
    doc = httpx.get(f"{service.url}/openapi.json").json()
    assert "/attestation" in doc["paths"]


def test_first_start_writes_keys(tmp_path: Path, test_root: TestRoot) -> None:
    parts = build_attestation_service(AsSettings(data_dir=tmp_path))
    assert parts.admin.created
    assert parts.signer_created
    again = build_attestation_service(AsSettings(data_dir=tmp_path))
    assert not again.admin.created
    assert not again.signer_created
    assert again.service.signer.jwks() == parts.service.signer.jwks()
