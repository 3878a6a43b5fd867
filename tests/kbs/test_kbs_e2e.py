"""The KBS end to end over real HTTP on loopback, driven by the real client.

Set a resource through the authenticated admin API; attest with emulated evidence;
the resource is denied under the default policy (PolicyDeny, 401); set an allow
policy; the resource comes back and decrypts with the client's private key.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from live_server import serve_app

from veritee.as_.config import AsSettings
from veritee.auth.admin import sign_admin_token
from veritee.emulator.root import TestRoot
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient, StaticTokenProvider
from veritee.guest.kbs_http import KbsRequestError
from veritee.kbs.bootstrap import KbsComponents, KbsSettings, build_kbs

ALLOW_ALL = (
    "package policy\n\nimport rego.v1\n\ndefault allow := false\n\n"
    'allow if {\n\tdata.plugin == "resource"\n}\n'
)
TRUSTEE = "https://github.com/confidential-containers/kbs/errors/"


@dataclass
class Kbs:
    url: str
    admin_token: str
    root: TestRoot
    parts: KbsComponents | None = None

    def admin(self) -> KbsClient:
        return KbsClient(self.url, admin_token=self.admin_token)

    def guest(self, tee: str, **kwargs: object) -> KbsClient:
        provider = EmulatedEvidenceProvider(self.root.directory)
        return KbsClient(self.url, evidence_provider=provider, tee=tee, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def kbs(test_root: TestRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    data = tmp_path_factory.mktemp("kbs")
    parts = build_kbs(
        KbsSettings(attestation=AsSettings(data_dir=data, trust_root=test_root.directory))
    )
    with serve_app(parts.app) as url:
        yield Kbs(url, parts.attestation.admin.token_path.read_text().strip(), test_root, parts)


@pytest.mark.parametrize("tee", ["tdx", "snp", "sgx"])
def test_deny_then_allow_then_decrypt(kbs: Kbs, tee: str) -> None:
    path = f"default/key/{tee}"
    with kbs.admin() as admin:
        admin.set_resource(path, f"secret for {tee}".encode())
        admin.set_resource_policy("package policy\n\nimport rego.v1\n\ndefault allow := false\n")
    with kbs.guest(tee) as guest:
        token = guest.attest()
        assert token.count(".") == 2
        with pytest.raises(KbsRequestError) as denied:
            guest.get_resource(path)
        assert denied.value.status == 401
        assert denied.value.type == TRUSTEE + "PolicyDeny"
        assert denied.value.detail == "Access denied by policy"
        with kbs.admin() as admin:
            admin.set_resource_policy(ALLOW_ALL)
        assert guest.get_resource(path) == f"secret for {tee}".encode()
        passport = StaticTokenProvider(guest.token(), guest.tee_key)
        with KbsClient(kbs.url, token_provider=passport) as holder:
            assert holder.get_resource(path) == f"secret for {tee}".encode()


def test_rsa_tee_key(kbs: Kbs) -> None:
    with kbs.admin() as admin:
        admin.set_resource("default/key/rsa", b"rsa secret")
        admin.set_resource_policy(ALLOW_ALL)
    with kbs.guest("tdx", key_alg="RSA") as guest:
        guest.attest()
        assert guest.get_resource("default/key/rsa") == b"rsa secret"


def _auth(client: httpx.Client, url: str, tee: str = "tdx") -> tuple[str, str]:
    reply = client.post(
        f"{url}/kbs/v0/auth", json={"version": "0.4.0", "tee": tee, "extra-params": ""}
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["nonce"], reply.cookies["kbs-session-id"]


def _attestation(kbs: Kbs, nonce: str, tee_pubkey: dict[str, str]) -> dict[str, object]:
    from veritee.guest.kbs_protocol import compose_attestation

    prepared = compose_attestation(
        EmulatedEvidenceProvider(kbs.root.directory), "tdx", nonce, tee_pubkey
    )
    return prepared.message


def _error(reply: httpx.Response) -> str:
    return str(reply.json()["type"]).removeprefix(TRUSTEE)


def test_wrong_nonce_and_replay_and_other_pubkey(kbs: Kbs) -> None:
    guest = kbs.guest("tdx")
    with httpx.Client() as client:
        nonce, _ = _auth(client, kbs.url)
        other = base64.b64encode(b"\x01" * 32).decode()
        reply = client.post(
            f"{kbs.url}/kbs/v0/attest", json=_attestation(kbs, other, guest.tee_pubkey)
        )
        assert reply.status_code == 401
        assert _error(reply) == "AttestationError"
        message = _attestation(kbs, nonce, guest.tee_pubkey)
        assert client.post(f"{kbs.url}/kbs/v0/attest", json=message).status_code == 200
        replay = client.post(f"{kbs.url}/kbs/v0/attest", json=message)
        assert replay.status_code == 401
        assert _error(replay) == "AttestationError"
    with httpx.Client() as client:
        nonce, _ = _auth(client, kbs.url)
        message = _attestation(kbs, nonce, guest.tee_pubkey)
        swapped = kbs.guest("tdx").tee_pubkey
        runtime = message["runtime-data"]
        assert isinstance(runtime, dict)
        message["runtime-data"] = {**runtime, "tee-pubkey": swapped}
        reply = client.post(f"{kbs.url}/kbs/v0/attest", json=message)
        assert reply.status_code == 401
        assert _error(reply) == "AttestationError"
    guest.close()


def test_expired_session(test_root: TestRoot, tmp_path: Path) -> None:
    parts = build_kbs(
        KbsSettings(
            attestation=AsSettings(data_dir=tmp_path, trust_root=test_root.directory),
            session_timeout_s=1,
        )
    )
    with serve_app(parts.app) as url, httpx.Client() as client:
        nonce, _ = _auth(client, url)
        time.sleep(1.5)
        kbs = Kbs(url, "", test_root)
        reply = client.post(
            f"{url}/kbs/v0/attest", json=_attestation(kbs, nonce, kbs.guest("tdx").tee_pubkey)
        )
        assert reply.status_code == 401
        assert _error(reply) == "AttestationError"


def test_tokens_and_admin_auth(kbs: Kbs) -> None:
    with kbs.admin() as admin:
        admin.set_resource("default/key/t", b"x")
        admin.set_resource_policy(ALLOW_ALL)
    guest = kbs.guest("tdx")
    token = guest.attest()
    url = f"{kbs.url}/kbs/v0/resource/default/key/t"
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    reply = httpx.get(url, headers={"Authorization": f"Bearer {forged}"})
    assert (reply.status_code, _error(reply)) == (401, "TokenVerifierError")
    assert _error(httpx.get(url)) == "TokenNotFound"
    body = {"policy": base64.urlsafe_b64encode(ALLOW_ALL.encode()).rstrip(b"=").decode()}
    missing = httpx.post(f"{kbs.url}/kbs/v0/resource-policy", json=body)
    assert (missing.status_code, _error(missing)) == (401, "AdminAuthAccess")
    stranger = sign_admin_token(ed25519.Ed25519PrivateKey.generate(), lifetime_s=600)
    other = httpx.post(
        f"{kbs.url}/kbs/v0/resource-policy",
        json=body,
        headers={"Authorization": f"Bearer {stranger}"},
    )
    assert (other.status_code, _error(other)) == (401, "AdminAuthAccess")
    assert "Bearer" not in other.text
    assert stranger not in other.text
    guest.close()


@pytest.mark.parametrize(
    "path",
    [
        "default/key/../../etc",
        "default/../key/x",
        "default/key",
        "a/b/c/d",
        "default/key/.hidden",
        "%2e%2e/key/x",
    ],
)
def test_path_traversal_is_refused(kbs: Kbs, path: str) -> None:
    reply = httpx.post(
        f"{kbs.url}/kbs/v0/resource/{path}",
        content=b"x",
        headers={"Authorization": f"Bearer {kbs.admin_token}"},
    )
    assert reply.status_code in (401, 404)
    assert _error(reply) in ("PluginInternalError", "PluginNotFound")


def test_oversized_body_and_unknown_tee_and_plugin(kbs: Kbs) -> None:
    big = httpx.post(
        f"{kbs.url}/kbs/v0/auth",
        content=b"{" + b" " * (3 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413
    reply = httpx.post(
        f"{kbs.url}/kbs/v0/auth", json={"version": "0.4.0", "tee": "quantum", "extra-params": ""}
    )
    assert (reply.status_code, _error(reply)) == (401, "AttestationError")
    reply = httpx.get(f"{kbs.url}/kbs/v0/nope")
    assert (reply.status_code, _error(reply)) == (404, "PluginNotFound")
    reply = httpx.get(f"{kbs.url}/kbs/v0/auth")
    assert (reply.status_code, _error(reply)) == (404, "PluginNotFound")


def test_healthz_and_metrics(kbs: Kbs) -> None:
    assert httpx.get(f"{kbs.url}/healthz").status_code == 200
    text = httpx.get(f"{kbs.url}/metrics").text
    assert "# TYPE" in text


def test_attestation_policy_and_reference_values_through_the_kbs(kbs: Kbs) -> None:
    with kbs.admin() as admin:
        admin.set_reference_value(
            {
                "version": "0.1.0",
                "type": "sample",
                "payload": base64.b64encode(json.dumps({"svn": ["1"]}).encode()).decode(),
            }
        )
        assert admin.get_reference_value("svn") == ["1"]
        with pytest.raises(KbsRequestError) as broken:
            admin.set_attestation_policy("package policy\nx := := 1\n", "default_cpu")
        assert broken.value.type == TRUSTEE + "PolicyEngineError"


def test_expired_bearer_token(kbs: Kbs) -> None:
    assert kbs.parts is not None
    with kbs.admin() as admin:
        admin.set_resource("default/key/old", b"x")
        admin.set_resource_policy(ALLOW_ALL)
    guest = kbs.guest("tdx")
    token = guest.attest()
    signer = kbs.parts.attestation.service.signer
    claims = kbs.parts.service.verify_token(token)
    expired = signer.sign({**claims, "iat": claims["iat"] - 7200, "exp": claims["iat"] - 3600})
    reply = httpx.get(
        f"{kbs.url}/kbs/v0/resource/default/key/old", headers={"Authorization": f"Bearer {expired}"}
    )
    assert (reply.status_code, _error(reply)) == (401, "TokenVerifierError")
    # the same claims, freshly signed, are accepted: only the expiry made the difference
    fresh = signer.sign(claims)
    reply = httpx.get(
        f"{kbs.url}/kbs/v0/resource/default/key/old", headers={"Authorization": f"Bearer {fresh}"}
    )
    assert reply.status_code == 200
    guest.close()
