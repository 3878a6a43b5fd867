"""The RCAR routes over HTTP: a real uvicorn on loopback, driven by httpx with cookie jars.

``verify`` here is a test double of the Attestation Service boundary: it checks the
report-data binding of ``sample`` evidence the way the sample verifier does (base64
``report_data`` == HASH(JCS(runtime data))) and returns a fake token.  The real AS is
exercised by the KBS end-to-end tests.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
import redis
from datadir import TRUSTEE
from fastapi import FastAPI, Request
from live_server import serve_app

from veritee.errors import VerificationError
from veritee.kbs import rcar
from veritee.kbs.rcar_api import SESSION_COOKIE, RcarRoutes, cookie_session_id, session_token
from veritee.kbs.session import MemorySessionStore, RedisSessionStore, SessionStore
from veritee.web import install_error_handlers

RCAR_VECTORS = TRUSTEE / "derived" / "rcar-sample-vectors.json"
ATTESTATION_ERROR = "https://github.com/confidential-containers/kbs/errors/AttestationError"
ATTEST_FAILED = {
    "type": ATTESTATION_ERROR,
    "detail": "Attestation error: RCAR handshake Attest failed",
}
PUBKEY = {
    "kty": "EC",
    "crv": "P-256",
    "alg": "ECDH-ES+A256KW",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
REQUEST = {
    "version": "0.4.0",
    "tee": "sample",
    "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512", "sm3"]},
}


class SampleVerifier:
    """Test double of the AS: checks each sample evidence's report data binding."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[str, bytes]], dict[str, Any], str]] = []
        self.lock = threading.Lock()
        self.delay = 0.0

    def __call__(
        self, evidences: list[tuple[str, bytes]], runtime: dict[str, Any], hash_alg: str
    ) -> str:
        with self.lock:
            self.calls.append((evidences, runtime, hash_alg))
        time.sleep(self.delay)
        for index, (tee, evidence) in enumerate(evidences):
            bound = runtime if index == 0 else rcar.device_runtime_data(runtime)
            expected = rcar.expected_report_data(tee, bound)
            if base64.b64decode(json.loads(evidence)["report_data"]) != expected:
                raise VerificationError("report_data", "the runtime data does not match")
        return f"fake-token-{runtime['nonce']}"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def app_for(
    sessions: SessionStore, verify: rcar.Verify, clock: Callable[[], float], timeout_s: int = 300
) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(
        RcarRoutes, sessions=sessions, verify=verify, timeout_s=timeout_s, clock=clock
    )

    # Under /kbs/v0 like the resource route: the cookie (no Path) defaults to /kbs/v0.
    @app.get("/kbs/v0/whoami")
    async def whoami(request: Request) -> dict[str, str | None]:
        session_id = cookie_session_id(request.headers.get("cookie"))
        return {"token": session_token(session_id, sessions, clock())}

    return app


@pytest.fixture
def verifier() -> SampleVerifier:
    return SampleVerifier()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sessions() -> MemorySessionStore:
    return MemorySessionStore()


@pytest.fixture
def base(sessions: MemorySessionStore, verifier: SampleVerifier, clock: Clock) -> Iterator[str]:
    with serve_app(app_for(sessions, verifier, clock)) as url:
        yield url


@pytest.fixture
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as c:
        yield c


def sample_attestation(
    nonce: str,
    *,
    pubkey: dict[str, Any] | None = None,
    bind_nonce: str | None = None,
    bind_pubkey: dict[str, Any] | None = None,
    additional: str = "",
) -> dict[str, Any]:
    """A sample-TEE Attestation whose report data binds ``bind_*`` (default: the real ones)."""
    key = pubkey or PUBKEY
    bound = rcar.runtime_data(bind_nonce or nonce, bind_pubkey or key, additional)
    report = rcar.expected_report_data("sample", bound)
    return {
        "init-data": None,
        "runtime-data": {"nonce": nonce, "tee-pubkey": key},
        "tee-evidence": {
            "primary_evidence": {"svn": "1", "report_data": base64.b64encode(report).decode()},
            "additional_evidence": additional,
        },
    }


def auth(client: httpx.Client, **overrides: Any) -> httpx.Response:
    return client.post("/kbs/v0/auth", json={**REQUEST, **overrides})


def handshake_nonce(client: httpx.Client) -> str:
    response = auth(client)
    assert response.status_code == 200
    nonce: str = response.json()["nonce"]
    return nonce


def assert_attest_failed(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.json() == ATTEST_FAILED
    assert "set-cookie" not in response.headers


# --------------------------------------------------------------------------- /auth


def test_auth_refuses_other_protocol_versions(client: httpx.Client) -> None:
    response = auth(client, version="0.3.0")
    assert response.status_code == 401
    assert response.json() == {
        "type": ATTESTATION_ERROR,
        "detail": "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version "
        "Mismatch: expect =0.4.0 while the request is 0.3.0",
    }
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("body", [b"{not json", b'{"version": "0.4.0", "tee": "quantum"}', b""])
def test_auth_refuses_malformed_requests_and_unknown_tees(
    client: httpx.Client, body: bytes
) -> None:
    response = client.post(
        "/kbs/v0/auth", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 401
    assert response.json() == {
        "type": ATTESTATION_ERROR,
        "detail": "Attestation error: RCAR handshake Auth failed: deserialize Request",
    }


def test_auth_returns_a_challenge_and_trustees_cookie(
    client: httpx.Client, sessions: MemorySessionStore
) -> None:
    before = time.time()
    response = auth(client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    challenge = response.json()
    assert list(challenge) == ["nonce", "extra-params"]
    assert challenge["extra-params"] == ""
    assert len(base64.b64decode(challenge["nonce"], validate=True)) == 32
    [cookie] = response.headers.get_list("set-cookie")
    name_value, _, attributes = cookie.partition("; ")
    name, _, session_id = name_value.partition("=")
    assert name == SESSION_COOKIE
    assert len(session_id) == 32
    # Only Expires, as actix writes it: no Path, Max-Age, HttpOnly, Secure or SameSite.
    key, _, date = attributes.partition("=")
    assert key == "Expires"
    assert date.endswith(" GMT")
    assert ";" not in date
    expires = parsedate_to_datetime(date).timestamp()
    assert before + 299 <= expires <= time.time() + 301
    stored = sessions.get(session_id, now=time.time())
    assert stored is not None
    assert stored.nonce == challenge["nonce"]
    assert client.cookies.get(SESSION_COOKIE) == session_id


# --------------------------------------------------------------------------- /attest: refusals


def test_attest_without_a_cookie(client: httpx.Client, verifier: SampleVerifier) -> None:
    nonce = handshake_nonce(client)
    client.cookies.clear()
    assert_attest_failed(client.post("/kbs/v0/attest", json=sample_attestation(nonce)))
    assert verifier.calls == []


def test_attest_with_an_unknown_cookie(client: httpx.Client, verifier: SampleVerifier) -> None:
    nonce = handshake_nonce(client)
    client.cookies.set(SESSION_COOKIE, uuid.uuid4().hex)
    assert_attest_failed(client.post("/kbs/v0/attest", json=sample_attestation(nonce)))
    assert verifier.calls == []


def test_attest_with_an_expired_session(
    client: httpx.Client, clock: Clock, verifier: SampleVerifier
) -> None:
    nonce = handshake_nonce(client)
    clock.offset = 301  # the KBS's clock passes the 300 s timeout; the jar keeps the cookie
    assert_attest_failed(client.post("/kbs/v0/attest", json=sample_attestation(nonce)))
    assert verifier.calls == []


def test_malformed_attestation(client: httpx.Client) -> None:
    handshake_nonce(client)
    assert_attest_failed(
        client.post(
            "/kbs/v0/attest", content=b"{oops", headers={"content-type": "application/json"}
        )
    )


def test_replayed_attest_fails(client: httpx.Client, verifier: SampleVerifier) -> None:
    nonce = handshake_nonce(client)
    body = sample_attestation(nonce)
    first = client.post("/kbs/v0/attest", json=body)
    assert first.status_code == 200
    assert_attest_failed(client.post("/kbs/v0/attest", json=body))
    assert len(verifier.calls) == 1


def test_concurrent_attests_on_one_session_verify_once(base: str, verifier: SampleVerifier) -> None:
    verifier.delay = 0.2
    with httpx.Client(base_url=base, timeout=10) as c:
        nonce = handshake_nonce(c)
        cookie = c.cookies[SESSION_COOKIE]
    body = sample_attestation(nonce)
    statuses: list[int] = []
    lock = threading.Lock()

    def post() -> None:
        with httpx.Client(base_url=base, timeout=10, cookies={SESSION_COOKIE: cookie}) as c:
            status = c.post("/kbs/v0/attest", json=body).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 401, 401, 401]
    assert len(verifier.calls) == 1


def test_report_data_bound_to_a_different_nonce(client: httpx.Client) -> None:
    nonce = handshake_nonce(client)
    other = base64.b64encode(b"\x07" * 32).decode()
    response = client.post("/kbs/v0/attest", json=sample_attestation(nonce, bind_nonce=other))
    assert_attest_failed(response)
    # The failed attempt spent the challenge: the client must start again.
    assert_attest_failed(client.post("/kbs/v0/attest", json=sample_attestation(nonce)))


def test_report_data_bound_to_a_different_tee_pubkey(client: httpx.Client) -> None:
    nonce = handshake_nonce(client)
    other = dict(PUBKEY, x="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert_attest_failed(
        client.post("/kbs/v0/attest", json=sample_attestation(nonce, bind_pubkey=other))
    )


def test_attestation_with_a_different_nonce_does_not_burn_the_challenge(
    client: httpx.Client, verifier: SampleVerifier
) -> None:
    nonce = handshake_nonce(client)
    other = base64.b64encode(b"\x07" * 32).decode()
    assert_attest_failed(client.post("/kbs/v0/attest", json=sample_attestation(other)))
    assert verifier.calls == []
    assert client.post("/kbs/v0/attest", json=sample_attestation(nonce)).status_code == 200


def test_a_challenge_does_not_cross_sessions(base: str) -> None:
    with (
        httpx.Client(base_url=base, timeout=10) as alice,
        httpx.Client(base_url=base, timeout=10) as mallory,
    ):
        alice_nonce = handshake_nonce(alice)
        handshake_nonce(mallory)
        assert_attest_failed(mallory.post("/kbs/v0/attest", json=sample_attestation(alice_nonce)))


# --------------------------------------------------------------------------- /attest: success


def test_full_handshake_returns_token_and_cookie(
    client: httpx.Client, verifier: SampleVerifier
) -> None:
    response = auth(client)
    auth_cookie = response.headers["set-cookie"]
    nonce = response.json()["nonce"]
    assert client.get("/kbs/v0/whoami").json() == {"token": None}  # not attested yet
    attested = client.post("/kbs/v0/attest", json=sample_attestation(nonce))
    assert attested.status_code == 200
    assert attested.headers["content-type"] == "application/json"
    assert attested.json() == {"token": f"fake-token-{nonce}"}
    assert attested.headers["set-cookie"] == auth_cookie  # same id, same expiry
    [(evidences, runtime, hash_alg)] = verifier.calls
    assert hash_alg == "sha384"
    assert [tee for tee, _ in evidences] == ["sample"]
    assert runtime == {"tee-pubkey": PUBKEY, "nonce": nonce, "additional-evidence": ""}
    assert client.get("/kbs/v0/whoami").json() == {"token": f"fake-token-{nonce}"}


def test_session_token_needs_an_unexpired_attested_cookie(
    client: httpx.Client, clock: Clock
) -> None:
    nonce = handshake_nonce(client)
    assert client.post("/kbs/v0/attest", json=sample_attestation(nonce)).status_code == 200
    with httpx.Client(base_url=str(client.base_url), timeout=10) as stranger:
        assert stranger.get("/kbs/v0/whoami").json() == {"token": None}
        stranger.cookies.set(SESSION_COOKIE, uuid.uuid4().hex)
        assert stranger.get("/kbs/v0/whoami").json() == {"token": None}
    clock.offset = 301
    assert client.get("/kbs/v0/whoami").json() == {"token": None}


def test_vector_attestation_over_http(
    base: str, sessions: MemorySessionStore, verifier: SampleVerifier
) -> None:
    """The derived vector's fixed nonce, planted as the session's challenge."""
    vec = json.loads(RCAR_VECTORS.read_text())["with_sampledevice_additional_evidence"]
    with httpx.Client(base_url=base, timeout=10) as c:
        handshake_nonce(c)
        session = sessions.get(c.cookies[SESSION_COOKIE], now=time.time())
        assert session is not None
        session.nonce = vec["attestation"]["runtime-data"]["nonce"]
        sessions.create(session)
        response = c.post("/kbs/v0/attest", json=vec["attestation"])
    assert response.status_code == 200
    [(evidences, runtime, _)] = verifier.calls
    assert [tee for tee, _ in evidences] == ["sample", "sampledevice"]
    assert rcar.jcs(runtime).decode() == vec["primary_runtime_data_jcs"]


def test_composite_evidence_is_passed_through(
    client: httpx.Client, verifier: SampleVerifier
) -> None:
    nonce = handshake_nonce(client)
    device = rcar.expected_report_data("sampledevice", rcar.runtime_data(nonce, PUBKEY, None))
    additional = json.dumps(
        {"sampledevice": {"svn": "2", "report_data": base64.b64encode(device).decode()}},
        separators=(",", ":"),
    )
    response = client.post("/kbs/v0/attest", json=sample_attestation(nonce, additional=additional))
    assert response.status_code == 200
    [(evidences, runtime, _)] = verifier.calls
    assert [tee for tee, _ in evidences] == ["sample", "sampledevice"]
    assert json.loads(evidences[1][1]) == json.loads(additional)["sampledevice"]
    assert runtime["additional-evidence"] == additional


def test_composite_device_bound_to_the_wrong_runtime_data_fails(client: httpx.Client) -> None:
    nonce = handshake_nonce(client)
    # The device bound the *primary* form (with additional-evidence): not what Trustee checks.
    wrong = rcar.expected_report_data("sampledevice", rcar.runtime_data(nonce, PUBKEY, ""))
    additional = json.dumps(
        {"sampledevice": {"svn": "2", "report_data": base64.b64encode(wrong).decode()}}
    )
    assert_attest_failed(
        client.post("/kbs/v0/attest", json=sample_attestation(nonce, additional=additional))
    )


def test_rsa_tee_key_handshake(client: httpx.Client) -> None:
    nonce = handshake_nonce(client)
    key = {"kty": "RSA", "alg": "RSA-OAEP-256", "n": "sXch", "e": "AQAB"}
    assert (
        client.post("/kbs/v0/attest", json=sample_attestation(nonce, pubkey=key)).status_code == 200
    )


# --------------------------------------------------------------------------- two replicas


def test_two_replicas_sharing_redis(verifier: SampleVerifier, clock: Clock, redis_url: str) -> None:
    prefix = f"veritee:test:{uuid.uuid4().hex}:"
    store_a = RedisSessionStore(redis_url, prefix=prefix)
    store_b = RedisSessionStore(redis_url, prefix=prefix)
    try:
        with (
            serve_app(app_for(store_a, verifier, clock)) as url_a,
            serve_app(app_for(store_b, verifier, clock)) as url_b,
            httpx.Client(timeout=10) as c,
        ):
            response = c.post(f"{url_a}/kbs/v0/auth", json=REQUEST)  # /auth on replica A
            assert response.status_code == 200
            nonce = response.json()["nonce"]
            # Both replicas are 127.0.0.1, so the jar sends the cookie to B as well.
            attested = c.post(f"{url_b}/kbs/v0/attest", json=sample_attestation(nonce))
            assert attested.status_code == 200, attested.text
            replay = c.post(f"{url_a}/kbs/v0/attest", json=sample_attestation(nonce))
            assert_attest_failed(replay)
            assert c.get(f"{url_a}/kbs/v0/whoami").json() == {"token": f"fake-token-{nonce}"}
    finally:
        store_a.close()
        store_b.close()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()
