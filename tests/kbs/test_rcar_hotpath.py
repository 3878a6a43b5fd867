"""The flow's hot path: ``/auth``, ``/attest`` and the resource GET served as plain ASGI
in front of the KBS app, and what it keeps in memory (the compiled resource policy, the
imported token keys).  Two KBS apps over one data directory stand for two workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from live_server import serve_app

from veritee.as_.config import AsSettings
from veritee.emulator.root import TestRoot
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient, StaticTokenProvider
from veritee.guest.kbs_http import KbsRequestError
from veritee.kbs.bootstrap import KbsComponents, KbsSettings, build_kbs
from veritee.kbs.errors import TokenVerifierError
from veritee.kbs.rcar_api import SESSION_COOKIE
from veritee.token.signer import TokenSigner

TRUSTEE = "https://github.com/confidential-containers/kbs/errors/"
ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
DENY = "package policy\n\nimport rego.v1\n\ndefault allow := false\n"
# Releases only when the request's query says so: the query reaches the policy.
BY_QUERY = 'package policy\n\nimport rego.v1\n\nallow if data.query.ok == "yes"\n'
RESOURCE = "default/key/hot"


@dataclass
class Worker:
    url: str
    parts: KbsComponents


@dataclass
class Pair:
    a: Worker
    b: Worker
    admin_token: str
    root: TestRoot

    def admin(self) -> KbsClient:
        return KbsClient(self.a.url, admin_token=self.admin_token)

    def guest(self, url: str) -> KbsClient:
        provider = EmulatedEvidenceProvider(self.root.directory)
        return KbsClient(url, evidence_provider=provider, tee="tdx")


@pytest.fixture(scope="module")
def pair(test_root: TestRoot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    data: Path = tmp_path_factory.mktemp("kbs-hot")
    settings = KbsSettings(
        attestation=AsSettings(data_dir=data, trust_root=test_root.directory),
        body_limit=64 * 1024,
    )
    with ExitStack() as stack:
        workers = []
        for _ in range(2):
            parts = build_kbs(settings)
            workers.append(Worker(stack.enter_context(serve_app(parts.app)), parts))
        token = workers[0].parts.attestation.admin.token_path.read_text().strip()
        result = Pair(workers[0], workers[1], token, test_root)
        with result.admin() as admin:
            admin.set_resource(RESOURCE, b"hot secret")
            admin.set_resource_policy(ALLOW)
        yield result


def test_a_policy_change_is_seen_by_the_next_request_on_every_worker(pair: Pair) -> None:
    with pair.admin() as admin, pair.guest(pair.a.url) as on_a, pair.guest(pair.b.url) as on_b:
        admin.set_resource_policy(ALLOW)
        assert on_a.get_resource(RESOURCE) == b"hot secret"  # both compile and keep ALLOW
        assert on_b.get_resource(RESOURCE) == b"hot secret"
        admin.set_resource_policy(DENY)  # through worker a only
        for guest in (on_a, on_b):
            with pytest.raises(KbsRequestError) as refused:
                guest.get_resource(RESOURCE)
            assert (refused.value.status, refused.value.name) == (401, "PolicyDeny")
        admin.set_resource_policy(ALLOW)
        assert on_b.get_resource(RESOURCE) == b"hot secret"


def test_the_query_reaches_the_policy(pair: Pair) -> None:
    with pair.admin() as admin, pair.guest(pair.b.url) as guest:
        admin.set_resource_policy(BY_QUERY)
        try:
            guest.attest()
            cookie = {"Cookie": f"{SESSION_COOKIE}={guest.session_id}"}
            url = f"{pair.b.url}/kbs/v0/resource/{RESOURCE}"
            assert httpx.get(url, params={"ok": "yes"}, headers=cookie).status_code == 200
            denied = httpx.get(url, params={"ok": "no"}, headers=cookie)
            assert denied.status_code == 401
            assert denied.json()["type"] == TRUSTEE + "PolicyDeny"
        finally:
            admin.set_resource_policy(ALLOW)


def test_a_token_from_another_signer_is_refused_once_keys_are_cached(pair: Pair) -> None:
    with pair.guest(pair.a.url) as guest:
        token = guest.attest()
        service = pair.b.parts.service
        claims = service.verify_token(token)  # worker b imports and keeps the keys
        assert service.verify_token(token) == claims
        forged = TokenSigner.generate().sign(claims)
        with pytest.raises(TokenVerifierError):
            service.verify_token(forged)
        # Over HTTP, as a Bearer token (passport mode), on both workers.
        for url in (pair.a.url, pair.b.url):
            ok = KbsClient(url, token_provider=StaticTokenProvider(token, guest.tee_key))
            bad = KbsClient(url, token_provider=StaticTokenProvider(forged, guest.tee_key))
            with ok, bad:
                assert ok.get_resource(RESOURCE) == b"hot secret"
                with pytest.raises(KbsRequestError) as refused:
                    bad.get_resource(RESOURCE, attempts=1)
                assert refused.value.name == "TokenVerifierError"


def test_a_new_signing_key_replaces_the_cached_one(test_root: TestRoot, tmp_path: Path) -> None:
    parts = build_kbs(
        KbsSettings(attestation=AsSettings(data_dir=tmp_path, trust_root=test_root.directory))
    )
    service, attestation = parts.service, parts.attestation.service
    old_signer = attestation.signer
    claims = {"eat_profile": attestation.ear.profile, "exp": 4_000_000_000, "iat": 1}
    old = old_signer.sign(claims)
    assert service.verify_token(old)["exp"] == claims["exp"]
    attestation.signer = TokenSigner.generate()  # rotated
    with pytest.raises(TokenVerifierError):
        service.verify_token(old)
    assert service.verify_token(attestation.signer.sign(claims))["exp"] == claims["exp"]
    attestation.signer = old_signer
    assert service.verify_token(old)["exp"] == claims["exp"]


def test_refusals_on_the_hot_path_keep_trustees_bodies(pair: Pair) -> None:
    base = f"{pair.a.url}/kbs/v0"
    missing = httpx.get(f"{base}/resource/{RESOURCE}")
    assert missing.status_code == 401
    assert missing.json()["type"] == TRUSTEE + "TokenNotFound"
    assert missing.headers["content-type"] == "application/json"
    unknown = httpx.get(f"{base}/resource/{RESOURCE}", cookies={SESSION_COOKIE: uuid.uuid4().hex})
    assert unknown.json()["type"] == TRUSTEE + "TokenNotFound"
    no_cookie = httpx.post(f"{base}/attest", content=b"{}")
    assert no_cookie.status_code == 401
    assert no_cookie.json() == {
        "type": TRUSTEE + "AttestationError",
        "detail": "Attestation error: RCAR handshake Attest failed",
    }
    bad_version = httpx.post(
        f"{base}/auth", json={"version": "0.3.0", "tee": "tdx", "extra-params": ""}
    )
    assert bad_version.status_code == 401
    assert "Protocol Version Mismatch" in bad_version.json()["detail"]
    assert "set-cookie" not in bad_version.headers
    too_big = httpx.post(f"{base}/attest", content=b"x" * (64 * 1024 + 1))
    assert too_big.status_code == 413
    assert too_big.json()["type"].endswith("PayloadTooLarge")
    # Other methods and plugins still go through the app's own routes.
    assert httpx.get(f"{base}/auth").json()["type"] == TRUSTEE + "PluginNotFound"
    assert httpx.put(f"{base}/resource/{RESOURCE}").json()["type"] == TRUSTEE + "TokenNotFound"


def test_auth_answers_a_challenge_and_trustees_cookie(pair: Pair) -> None:
    answer = httpx.post(
        f"{pair.b.url}/kbs/v0/auth", json={"version": "0.4.0", "tee": "tdx", "extra-params": ""}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert set(answer.json()) == {"nonce", "extra-params"}
    [cookie] = answer.headers.get_list("set-cookie")
    name, _, rest = cookie.partition("=")
    session_id, _, expires = rest.partition("; ")
    assert name == SESSION_COOKIE
    assert len(session_id) == 32
    assert expires.startswith("Expires=")
    assert expires.endswith(" GMT")
