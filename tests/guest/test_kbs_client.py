"""The guest's KBS client against the real KBS, over HTTP on loopback: RCAR with the
session cookie, token keeping and renewal, handshake retries, passport mode with an
Attestation Agent's tokens, refusals, and the admin calls."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kbs_live import (
    ALLOW,
    DENY,
    ERRORS,
    SECRET,
    Kbs,
    SampleProvider,
    Wire,
    live_kbs,
)

from veritee.guest.kbs_client import (
    RCAR_ATTEMPTS,
    AaTokenProvider,
    KbsClient,
    StaticTokenProvider,
)
from veritee.guest.kbs_http import KbsRequestError, KbsResourceNotFound
from veritee.guest.kbs_protocol import (
    KbsClientError,
    build_request,
    tee_key_pem,
    token_claims,
)


@pytest.fixture(scope="module")
def real_kbs(test_root: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    with live_kbs(test_root.directory, tmp_path_factory.mktemp("kbs")) as kbs:
        yield kbs


@pytest.fixture(scope="module")
def short_kbs(test_root: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    """A KBS whose tokens live 5 s: always within the client's 10 s renewal margin."""
    data = tmp_path_factory.mktemp("short-kbs")
    with live_kbs(test_root.directory, data, duration_s=5) as kbs:
        kbs.set_policy(ALLOW)
        yield kbs


@pytest.fixture
def wire() -> Iterator[Wire]:
    recorder = Wire()
    yield recorder
    recorder.http.close()


class Flaky(SampleProvider):
    """Evidence bound to the wrong report data for the first ``failures`` handshakes."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def evidence(self, tee: str, report_data: bytes) -> bytes:
        if self.failures > 0:
            self.failures -= 1
            report_data = bytes(48)
        return super().evidence(tee, report_data)


def aa_get_token(guest: KbsClient, asked: list[str]) -> Callable[[str], bytes]:
    """An Attestation Agent's GetToken over ``guest``'s session: JSON {token, tee_keypair}."""

    def get_token(token_type: str) -> bytes:
        asked.append(token_type)
        pem = tee_key_pem(guest.tee_key).decode()
        return json.dumps({"token": guest.token(), "tee_keypair": pem}).encode()

    return get_token


# --- background check: the session cookie --------------------------------------------------------


@pytest.mark.parametrize("key_alg", ["EC", "RSA"])
def test_rcar_and_resource_with_the_cookie(real_kbs: Kbs, wire: Wire, key_alg: Any) -> None:
    real_kbs.set_policy(ALLOW)
    client = wire.client(
        real_kbs, evidence_provider=SampleProvider(), tee="sample", key_alg=key_alg
    )
    assert client.get_resource("default/key/1") == SECRET
    auth, attest, get = wire.requests
    assert str(auth.url) == f"{real_kbs.url}/kbs/v0/auth"
    assert json.loads(auth.content) == build_request("sample")
    assert auth.headers["content-type"] == "application/json"
    session = wire.responses[0].cookies["kbs-session-id"]  # what /auth set
    assert attest.headers["cookie"] == f"kbs-session-id={session}"
    assert get.headers["cookie"] == attest.headers["cookie"]
    assert "authorization" not in get.headers
    assert client.token() == json.loads(wire.responses[1].content)["token"]  # kept
    assert client.session_id == session
    assert len(wire.requests) == 3
    assert json.loads(attest.content)["runtime-data"]["tee-pubkey"]["kty"] == key_alg


def test_a_denial_gets_one_fresh_handshake_then_is_raised(real_kbs: Kbs, wire: Wire) -> None:
    real_kbs.set_policy(DENY)
    seen: list[KbsRequestError] = []
    client = wire.client(real_kbs, evidence_provider=SampleProvider())
    with pytest.raises(KbsRequestError) as info:
        client.get_resource("default/key/1", on_unauthorized=seen.append)
    assert (info.value.status, info.value.name, info.value.detail) == (
        401,
        "PolicyDeny",
        "Access denied by policy",
    )
    assert info.value.type == ERRORS + "PolicyDeny"
    assert [e.name for e in seen] == ["PolicyDeny"]
    assert wire.names() == ["auth", "attest", "1", "auth", "attest", "1"]
    assert client.token() not in str(info.value)
    assert len(wire.requests) == 6  # the kept token needed no handshake


def test_attest_needs_a_provider_and_reports_refusals(real_kbs: Kbs, wire: Wire) -> None:
    with pytest.raises(KbsClientError, match="evidence provider"):
        wire.client(real_kbs).attest()
    assert wire.requests == []

    class Liar(SampleProvider):
        def evidence(self, tee: str, report_data: bytes) -> bytes:
            return super().evidence(tee, bytes(48))

    with pytest.raises(KbsRequestError, match="Attestation error") as info:
        wire.client(real_kbs, evidence_provider=Liar()).attest()
    assert (info.value.status, info.value.name) == (401, "AttestationError")
    assert info.value.type == ERRORS + "AttestationError"
    assert info.value.path == "/kbs/v0/attest"
    assert wire.names() == ["auth", "attest"]


def _fetch(kbs: Kbs, path: str) -> bytes:
    with KbsClient(kbs.url, evidence_provider=SampleProvider()) as guest:
        return guest.get_resource(path)


def test_admin_calls_send_the_bearer_token_and_trustee_bodies(real_kbs: Kbs, wire: Wire) -> None:
    client = wire.client(real_kbs, admin_token=real_kbs.admin_token)
    client.set_resource("r/t/new", b"\x00\x01")
    assert wire.requests[-1].headers["content-type"] == "application/octet-stream"
    assert wire.requests[-1].content == b"\x00\x01"
    real_kbs.set_policy(ALLOW)
    assert _fetch(real_kbs, "r/t/new") == b"\x00\x01"  # really stored
    client.delete_resource("r/t/new")
    with pytest.raises(KbsRequestError, match="PluginInternalError"):
        _fetch(real_kbs, "r/t/new")  # really gone
    client.set_resource_policy("package policy\n")
    with pytest.raises(KbsRequestError) as denied:
        _fetch(real_kbs, "default/key/1")  # a policy without allow really applies
    assert denied.value.name == "PolicyDeny"
    client.set_attestation_policy("package policy\n", "test_client")
    message = {
        "version": "0.1.0",
        "type": "sample",
        "payload": base64.b64encode(b'{"client-svn":["1"]}').decode(),
    }
    client.set_reference_value(message)
    assert client.get_resource_policy() == '["resource-policy"]'
    assert client.get_reference_value("client-svn") == ["1"]
    assert all(
        r.headers["authorization"] == f"Bearer {real_kbs.admin_token}" for r in wire.requests
    )
    bodies = [
        (
            r.method,
            r.url.path.removeprefix("/kbs/v0/"),
            json.loads(r.content) if r.content else None,
        )
        for r in wire.requests
        if not r.url.path.startswith("/kbs/v0/resource/")
    ]
    assert bodies[0] == ("POST", "resource-policy", {"policy": "cGFja2FnZSBwb2xpY3kK"})
    assert bodies[1] == (
        "POST",
        "attestation-policy",
        {"type": "rego", "policy_id": "test_client", "policy": "cGFja2FnZSBwb2xpY3kK"},
    )
    assert bodies[2] == ("POST", "reference-value", message)
    with pytest.raises(KbsRequestError) as info:
        wire.client(real_kbs, admin_token="WRONG-SECRET").set_resource_policy("x")
    assert (info.value.status, info.value.name) == (401, "AdminAuthAccess")
    assert "WRONG-SECRET" not in str(info.value)
    with pytest.raises(KbsRequestError, match="PluginInternalError"):
        client.delete_resource("r/t/absent")


# --- tokens: kept, renewed near expiry, handshakes retried ---------------------------------------


def test_one_handshake_serves_two_resource_fetches_and_the_token(
    real_kbs: Kbs, wire: Wire
) -> None:
    real_kbs.set_policy(ALLOW)
    client = wire.client(real_kbs, evidence_provider=SampleProvider())
    assert client.get_resource("default/key/1") == SECRET
    assert client.get_resource("/default/key/1") == SECRET
    token = client.token()
    assert wire.names() == ["auth", "attest", "1", "1"]
    assert token == json.loads(wire.responses[1].content)["token"]


def test_token_is_kept_and_then_used_for_the_resource(real_kbs: Kbs, wire: Wire) -> None:
    real_kbs.set_policy(ALLOW)
    client = wire.client(real_kbs, evidence_provider=SampleProvider())
    first = client.token()
    assert client.token() == first
    assert client.get_resource("default/key/1") == SECRET
    assert wire.names() == ["auth", "attest", "1"]


def test_a_token_expiring_within_the_margin_is_renewed(short_kbs: Kbs, wire: Wire) -> None:
    client = wire.client(short_kbs, evidence_provider=SampleProvider())
    first = client.token()
    claims = token_claims(first)
    assert claims["exp"] - claims["iat"] == 5
    second = client.token()
    assert second != first
    assert client.get_resource("default/key/1") == SECRET
    assert wire.names() == ["auth", "attest"] * 2 + ["auth", "attest", "1"]


def test_without_a_margin_a_short_token_is_kept(short_kbs: Kbs, wire: Wire) -> None:
    client = wire.client(short_kbs, evidence_provider=SampleProvider(), token_margin_s=0)
    assert client.token() == client.token()
    assert client.get_resource("default/key/1") == SECRET
    assert wire.names() == ["auth", "attest", "1"]


def test_the_clock_decides_when_a_token_is_renewed(real_kbs: Kbs, wire: Wire) -> None:
    real_kbs.set_policy(ALLOW)
    later = [0.0]
    client = wire.client(
        real_kbs, evidence_provider=SampleProvider(), clock=lambda: time.time() + later[0]
    )
    token = client.token()
    lifetime = token_claims(token)["exp"] - time.time()  # 300 s, less what has passed
    later[0] = lifetime - 30
    assert client.token() == token
    assert client.get_resource("default/key/1") == SECRET
    later[0] = lifetime - 5  # within the 10 s margin
    assert client.get_resource("default/key/1") == SECRET
    later[0] = 0.0  # the renewed token is as young as the first was
    assert client.token() != token
    assert wire.names() == ["auth", "attest", "1", "auth", "attest", "1"]


def test_failed_handshakes_are_retried_a_second_apart(real_kbs: Kbs, wire: Wire) -> None:
    sleeps: list[float] = []
    client = wire.client(real_kbs, evidence_provider=Flaky(2), sleep=sleeps.append)
    token = client.token()
    assert sleeps == [1.0, 1.0]
    assert wire.names() == ["auth", "attest"] * 3
    assert [r.status_code for r in wire.responses] == [200, 401, 200, 401, 200, 200]
    assert client.token() == token


def test_five_failed_handshakes_raise_the_last_refusal(real_kbs: Kbs, wire: Wire) -> None:
    sleeps: list[float] = []
    client = wire.client(real_kbs, evidence_provider=Flaky(99), sleep=sleeps.append)
    with pytest.raises(KbsRequestError) as info:
        client.token()
    assert (info.value.status, info.value.name) == (401, "AttestationError")
    assert sleeps == [1.0] * (RCAR_ATTEMPTS - 1)
    assert wire.names() == ["auth", "attest"] * RCAR_ATTEMPTS
    with pytest.raises(KbsClientError, match="evidence provider or a token provider"):
        wire.client(real_kbs).token()


# --- passport: Authorization: Bearer, the key from the token provider ----------------------------


@pytest.mark.parametrize("key_alg", ["EC", "RSA"])
def test_passport_with_the_attestation_agents_token(
    real_kbs: Kbs, wire: Wire, key_alg: Any
) -> None:
    real_kbs.set_policy(ALLOW)
    asked: list[str] = []
    with KbsClient(real_kbs.url, evidence_provider=SampleProvider(), key_alg=key_alg) as agent:
        provider = AaTokenProvider(aa_get_token(agent, asked))
        holder = wire.client(real_kbs, token_provider=provider)
        assert holder.get_resource("default/key/1") == SECRET
        assert holder.get_resource("default/key/1") == SECRET
        assert holder.token() == agent.token()
    assert asked == ["kbs"] * 3
    assert wire.names() == ["1", "1"]  # no handshake of its own
    for get in wire.requests:
        assert get.headers["authorization"] == f"Bearer {agent.token()}"
        assert "cookie" not in get.headers


def test_passport_asks_for_another_token_after_a_401(real_kbs: Kbs, wire: Wire) -> None:
    real_kbs.set_policy(ALLOW)
    with KbsClient(real_kbs.url, evidence_provider=SampleProvider()) as agent:
        good = agent.token()
        forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
        tokens = iter([forged, good])

        class Renewing:
            def get_token(self) -> tuple[str, Any]:
                return next(tokens), agent.tee_key

        seen: list[KbsRequestError] = []
        holder = wire.client(real_kbs, token_provider=Renewing())
        assert holder.get_resource("default/key/1", on_unauthorized=seen.append) == SECRET
    assert [e.name for e in seen] == ["TokenVerifierError"]
    first, second = wire.requests
    assert first.headers["authorization"] == f"Bearer {forged}"
    assert second.headers["authorization"] == f"Bearer {good}"


def test_passport_refused_with_the_only_token_it_has(real_kbs: Kbs, wire: Wire) -> None:
    real_kbs.set_policy(DENY)
    with KbsClient(real_kbs.url, evidence_provider=SampleProvider()) as agent:
        passport = StaticTokenProvider(agent.token(), agent.tee_key)
    assert agent.token() not in repr(passport)
    holder = wire.client(real_kbs, token_provider=passport)
    with pytest.raises(KbsRequestError) as info:
        holder.get_resource("default/key/1")
    assert (info.value.status, info.value.name) == (401, "PolicyDeny")
    assert wire.names() == ["1"]  # the same token again would only be refused again
    with pytest.raises(KbsClientError, match="not both"):
        KbsClient(real_kbs.url, evidence_provider=SampleProvider(), token_provider=passport)


# --- refusals and the admin calls ----------------------------------------------------------------


def test_a_missing_resource_is_not_retried(
    real_kbs: Kbs, wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_kbs.set_policy(ALLOW)
    monkeypatch.setattr(real_kbs.parts.service, "resources", None)  # no resource plugin
    client = wire.client(real_kbs, evidence_provider=SampleProvider())
    with pytest.raises(KbsResourceNotFound) as info:
        client.get_resource("default/key/1")
    assert (info.value.status, info.value.type) == (404, ERRORS + "PluginNotFound")
    assert wire.names() == ["auth", "attest", "1"]
