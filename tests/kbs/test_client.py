"""The KBS client: RCAR messages, runtime data and report data against Trustee's vectors,
JWE decryption, error parsing and printing, and the ``veritee client`` CLI (no server:
an in-process httpx.MockTransport plays the KBS)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwe
from joserfc.jwk import ECKey, RSAKey
from typer.testing import CliRunner, Result

import veritee.cli.client as cli_client
from veritee.auth.admin import Ed25519AdminAuth
from veritee.cli.client import app, sample_reference_value_message
from veritee.kbs.client import (
    EmulatedEvidenceProvider,
    KbsClient,
    KbsClientError,
    KbsRequestError,
    build_request,
    compose_attestation,
    decrypt_response,
    digest,
    jcs,
    load_tee_key,
    resource_path,
    rust_debug_error_information,
    rust_debug_str,
    select_hash_algorithm,
    tee_key_pem,
    tee_pubkey_jwk,
    token_claims,
    token_is_valid,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VERITEE_SHARED", REPO.parent / "shared"))
TRUSTEE = SHARED / "testdata" / "trustee"
SEEDS = SHARED / "seeds"
ERRORS = "https://github.com/confidential-containers/kbs/errors/"
SECRET = b"the very secret resource"


@pytest.fixture(scope="module")
def rcar() -> dict[str, Any]:
    path = TRUSTEE / "derived" / "rcar-sample-vectors.json"
    if not path.is_file():
        pytest.fail(f"{path} missing; set VERITEE_SHARED")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _vector_public_key(jwk: Mapping[str, str]) -> ec.EllipticCurvePublicKey:
    numbers = ec.EllipticCurvePublicNumbers(
        _b64url_int(jwk["x"]), _b64url_int(jwk["y"]), ec.SECP256R1()
    )
    return numbers.public_key()


class SampleProvider:
    """Trustee's sample attester: report data as it comes, standard base64."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def evidence(self, tee: str, report_data: bytes) -> bytes:
        self.calls.append((tee, report_data))
        doc = {"svn": "1", "report_data": base64.b64encode(report_data).decode()}
        return json.dumps(doc, separators=(",", ":")).encode()


class SampleWithDevice(SampleProvider):
    def additional_evidence(self, report_data: bytes) -> Mapping[str, Any]:
        return {"sampledevice": {"svn": "2", "report_data": base64.b64encode(report_data).decode()}}


# --- messages vs Trustee's vectors -------------------------------------------------------------


def test_request_matches_guest_components_and_kbs_client_field_names(rcar: dict[str, Any]) -> None:
    request = build_request("sample")
    assert request == rcar["single_device"]["request"]
    kbs_client_auth = json.loads((TRUSTEE / "tools" / "kbs-client" / "auth.json").read_text())
    assert list(request) == list(kbs_client_auth)  # version, tee, extra-params
    assert json.dumps(build_request("tdx"), separators=(",", ":")) == (
        '{"version":"0.4.0","tee":"tdx","extra-params":'
        '{"supported-hash-algorithms":["sha256","sha384","sha512","sm3"]}}'
    )


def test_jcs_upstream_unit_vector(rcar: dict[str, Any]) -> None:
    vector = rcar["upstream_unit_vector"]
    assert jcs(vector["input"]).decode() == vector["jcs"]
    assert digest("sha384", jcs(vector["input"])).hex() == vector["sha384_hex"]


def test_tee_pubkey_jwk_of_the_vector_key(rcar: dict[str, Any]) -> None:
    jwk = rcar["single_device"]["primary_runtime_data"]["tee-pubkey"]
    assert tee_pubkey_jwk(_vector_public_key(jwk)) == jwk
    assert list(tee_pubkey_jwk(_vector_public_key(jwk))) == ["kty", "crv", "alg", "x", "y"]


def test_single_device_runtime_data_report_data_and_attestation(rcar: dict[str, Any]) -> None:
    vector = rcar["single_device"]
    jwk = vector["primary_runtime_data"]["tee-pubkey"]
    provider = SampleProvider()
    prepared = compose_attestation(provider, "sample", vector["challenge"]["nonce"], jwk)
    assert jcs(vector["primary_runtime_data"]).decode() == vector["primary_runtime_data_jcs"]
    assert prepared.report_data.hex() == vector["primary_report_data_sha384_hex"]
    assert provider.calls == [("sample", prepared.report_data)]
    assert prepared.device_report_data is None
    message = prepared.message
    assert list(message) == ["init-data", "runtime-data", "tee-evidence"]
    assert message["init-data"] is None  # kbs-types serialises an absent init-data as null
    assert {k: v for k, v in message.items() if k != "init-data"} == vector["attestation"]
    assert list(message["tee-evidence"]) == ["primary_evidence", "additional_evidence"]


def test_attestation_field_names_vs_kbs_client_attest_json() -> None:
    legacy = json.loads((TRUSTEE / "tools" / "kbs-client" / "attest.json").read_text())
    message = compose_attestation(
        SampleProvider(), "sample", "n", tee_pubkey_jwk(ec.generate_private_key(ec.SECP256R1()))
    ).message
    # attest.json is the pre-0.4.0 form: tee-pubkey moved under runtime-data since.
    assert set(legacy) - {"tee-pubkey"} <= set(message)
    assert "tee-pubkey" in message["runtime-data"]
    assert "tee-pubkey" not in message


def test_composite_evidence_with_sampledevice(rcar: dict[str, Any]) -> None:
    single = rcar["single_device"]
    vector = rcar["with_sampledevice_additional_evidence"]
    jwk = single["primary_runtime_data"]["tee-pubkey"]
    nonce = single["challenge"]["nonce"]
    assert jcs({"nonce": nonce, "tee-pubkey": jwk}).decode() == vector["device_runtime_data_jcs"]
    prepared = compose_attestation(SampleWithDevice(), "sample", nonce, jwk)
    assert prepared.device_report_data is not None
    assert prepared.device_report_data.hex() == vector["device_report_data_sha384_hex"]
    assert prepared.report_data.hex() == vector["primary_report_data_sha384_hex"]
    additional = prepared.message["tee-evidence"]["additional_evidence"]
    primary = {"tee-pubkey": jwk, "nonce": nonce, "additional-evidence": additional}
    assert jcs(primary).decode() == vector["primary_runtime_data_jcs"]
    assert {k: v for k, v in prepared.message.items() if k != "init-data"} == vector["attestation"]


def test_emulated_provider_reproduces_the_vectors(rcar: dict[str, Any], test_root: Any) -> None:
    single = rcar["single_device"]
    vector = rcar["with_sampledevice_additional_evidence"]
    jwk = single["primary_runtime_data"]["tee-pubkey"]
    provider = EmulatedEvidenceProvider(test_root.directory, devices=["sampledevice"])
    prepared = compose_attestation(provider, "sample", single["challenge"]["nonce"], jwk)
    assert {k: v for k, v in prepared.message.items() if k != "init-data"} == vector["attestation"]
    plain = EmulatedEvidenceProvider(test_root.directory)
    prepared = compose_attestation(plain, "sample", single["challenge"]["nonce"], jwk)
    assert prepared.message["tee-evidence"] == single["attestation"]["tee-evidence"]


def test_emulated_tdx_evidence_carries_the_padded_report_data(test_root: Any) -> None:
    jwk = tee_pubkey_jwk(ec.generate_private_key(ec.SECP256R1()))
    provider = EmulatedEvidenceProvider(test_root.directory)
    prepared = compose_attestation(provider, "tdx", "bm9uY2U=", jwk)
    evidence = prepared.message["tee-evidence"]["primary_evidence"]
    assert list(evidence) == ["cc_eventlog", "quote"]
    quote = base64.b64decode(evidence["quote"])
    assert prepared.report_data + bytes(16) in quote


def test_emulated_provider_refusals(tmp_path: Path) -> None:
    with pytest.raises(KbsClientError, match="no emulated device"):
        EmulatedEvidenceProvider(tmp_path, devices=["nvidia"])
    with pytest.raises(KbsClientError, match="no 'az-snp-vtpm' TEE"):
        EmulatedEvidenceProvider(tmp_path).evidence("az-snp-vtpm", b"x")


def test_hash_algorithm_selection() -> None:
    assert select_hash_algorithm("", "tdx") == "sha384"
    assert select_hash_algorithm({}, "snp") == "sha384"
    assert select_hash_algorithm({"selected-hash-algorithm": "SHA512"}, "se") == "sha512"
    assert select_hash_algorithm("", "se") == "sha512"
    with pytest.raises(KbsClientError, match="not a string"):
        select_hash_algorithm({"selected-hash-algorithm": 5}, "tdx")
    with pytest.raises(KbsClientError, match="unknown hash"):
        select_hash_algorithm({"selected-hash-algorithm": "md5"}, "tdx")
    prepared = compose_attestation(
        SampleProvider(), "sample", "n", {"kty": "EC"}, hash_algorithm="sha512"
    )
    assert len(prepared.report_data) == 64


def test_rsa_jwk_and_key_files() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = tee_pubkey_jwk(key)
    assert list(jwk) == ["kty", "alg", "n", "e"]
    assert jwk["alg"] == "RSA-OAEP-256"
    assert jwk["e"] == "AQAB"
    assert _b64url_int(jwk["n"]) == key.public_key().public_numbers().n
    assert tee_pubkey_jwk(load_tee_key(tee_key_pem(key))) == jwk
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert tee_pubkey_jwk(load_tee_key(pkcs1)) == jwk
    with pytest.raises(KbsClientError, match="P-256 or P-521"):
        load_tee_key(tee_key_pem(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(KbsClientError, match="not an unencrypted PEM"):
        load_tee_key(b"junk")


def test_resource_paths() -> None:
    assert resource_path("/default/key/1") == "default/key/1"
    for bad in ("a/b", "a/b/c/d", "a//c", "a/.b/c", "a/b/c d"):
        with pytest.raises(KbsClientError, match="not <repository>/<type>/<tag>"):
            resource_path(bad)


def _jwt(claims: dict[str, Any]) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256'})}.{part(claims)}.c2ln"


def test_token_validity_reads_exp_and_nbf_only() -> None:
    now = time.time()
    assert token_is_valid(_jwt({"exp": now + 60}))
    assert not token_is_valid(_jwt({"exp": now - 60}))
    assert not token_is_valid(_jwt({"exp": now + 60, "nbf": now + 30}))
    assert not token_is_valid("not-a-jwt")


# --- JWE -----------------------------------------------------------------------------------------


def trustee_jwe(jwk: Mapping[str, Any], plaintext: bytes) -> dict[str, str]:
    """A kbs-types Response as Trustee builds it for ``tee-pubkey`` (flattened, no aad)."""
    if jwk["kty"] == "EC":
        key: ECKey | RSAKey = ECKey.import_key({k: v for k, v in jwk.items() if k != "alg"})
    else:
        key = RSAKey.import_key({k: v for k, v in jwk.items() if k != "alg"})
    algorithms = [jwk["alg"], "A256GCM"]
    compact = jwe.encrypt_compact(
        {"alg": jwk["alg"], "enc": "A256GCM"}, plaintext, key, algorithms=algorithms
    )
    names = ("protected", "encrypted_key", "iv", "ciphertext", "tag")
    return dict(zip(names, compact.split("."), strict=True))


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP521R1()], ids=["P-256", "P-521"])
def test_jwe_decrypts_with_ec_keys(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    body = trustee_jwe(tee_pubkey_jwk(key), SECRET)
    header = json.loads(base64.urlsafe_b64decode(body["protected"] + "=="))
    assert header["alg"] == "ECDH-ES+A256KW"
    assert header["epk"]["crv"] == curve.name.replace("secp", "P-").replace("r1", "")
    assert decrypt_response(body, key) == SECRET
    assert decrypt_response({**body, "aad": "ignored"}, key) == SECRET


def test_jwe_decrypts_with_rsa_oaep_256() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = trustee_jwe(tee_pubkey_jwk(key), SECRET)
    assert decrypt_response(body, key) == SECRET


def test_jwe_decrypts_deprecated_rsa1_5_without_warnings() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**tee_pubkey_jwk(key), "alg": "RSA1_5"}
    with pytest.warns(
        Warning, match="RSA1_5"
    ):  # joserfc warns when *encrypting* to RSA1_5 (the server side)
        body = trustee_jwe(jwk, SECRET)
    assert decrypt_response(body, key) == SECRET


def test_jwe_failures_name_no_key_material() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    body = trustee_jwe(tee_pubkey_jwk(key), SECRET)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(KbsClientError, match="does not decrypt") as info:
        decrypt_response(body, other)
    assert body["encrypted_key"] not in str(info.value)
    tampered = {**body, "ciphertext": body["ciphertext"][::-1]}
    with pytest.raises(KbsClientError, match="does not decrypt"):
        decrypt_response(tampered, key)
    with pytest.raises(KbsClientError, match="not a JWE"):
        decrypt_response({"protected": body["protected"]}, key)


# --- errors --------------------------------------------------------------------------------------


def test_kbs_request_error_parses_trustee_bodies_and_hides_tokens() -> None:
    request = httpx.Request(
        "GET",
        "http://kbs/kbs/v0/resource/a/b/c",
        headers={"Authorization": "Bearer SECRET-TOKEN"},
    )
    body = {"type": ERRORS + "PolicyDeny", "detail": "Access denied by policy"}
    error = KbsRequestError.from_response(httpx.Response(401, json=body, request=request))
    assert (error.status, error.type, error.detail, error.name) == (
        401,
        ERRORS + "PolicyDeny",
        "Access denied by policy",
        "PolicyDeny",
    )
    assert "SECRET-TOKEN" not in str(error)
    assert str(error) == "GET /kbs/v0/resource/a/b/c: HTTP 401: PolicyDeny: Access denied by policy"
    bare = KbsRequestError.from_response(httpx.Response(405, content=b"", request=request))
    assert (bare.status, bare.type, bare.name, bare.detail) == (405, "", "", "Method Not Allowed")
    urn = KbsRequestError.from_response(
        httpx.Response(413, json={"type": "urn:veritee:errors:PayloadTooLarge"}, request=request)
    )
    assert (urn.name, urn.detail) == ("PayloadTooLarge", "")


def _seed_denial() -> str:
    seed = next(SEEDS.glob("002_*.txt")).read_text()
    start = seed.index("WARN kbs_protocol")
    end = seed.index("Error: request unauthorized") + len("Error: request unauthorized")
    return seed[start:end]


def test_error_information_is_printed_like_kbs_protocol() -> None:
    error = KbsRequestError(
        "GET", "/kbs/v0/resource/a/b/c", 401, ERRORS + "PolicyDeny", "Access denied by policy"
    )
    seed = _seed_denial()
    assert rust_debug_error_information(error) in seed
    assert rust_debug_error_information(error, pretty=False) == (
        f'ErrorInformation {{ error_type: "{ERRORS}PolicyDeny", '
        'detail: "Access denied by policy" }'
    )
    assert rust_debug_str('a"b\\c\n\x01') == '"a\\"b\\\\c\\n\\u{1}"'


# --- a KBS in a MockTransport ----------------------------------------------------------------


class FakeKbs:
    """Just enough of Trustee's /kbs/v0 to drive the client: RCAR with the report-data check,
    resources as JWE to the tee-pubkey, admin calls that require a Bearer token."""

    def __init__(self, *, allow: bool = True, admin_token: str | None = "ADMIN") -> None:
        self.allow = allow
        self.admin_token = admin_token
        self.sessions: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        self.resources: dict[str, bytes] = {"default/key/1": SECRET}
        self.admin_bodies: list[tuple[str, str, bytes]] = []
        self.counter = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @staticmethod
    def error(name: str, detail: str, status: int = 401) -> httpx.Response:
        return httpx.Response(status, json={"type": ERRORS + name, "detail": detail})

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/kbs/v0/")
        if path == "auth" and request.method == "POST":
            self.counter += 1
            sid = f"{self.counter:032x}"
            nonce = base64.b64encode(hashlib.sha256(sid.encode()).digest()).decode()
            self.sessions[sid] = {"request": json.loads(request.content), "nonce": nonce}
            return httpx.Response(
                200,
                json={"nonce": nonce, "extra-params": ""},
                headers={
                    "Set-Cookie": f"kbs-session-id={sid}; Expires=Fri, 01 Jan 2100 00:00:00 GMT"
                },
            )
        if path == "attest" and request.method == "POST":
            return self.attest(request)
        if path.startswith("resource/"):
            return self.resource(request, path.removeprefix("resource/"))
        if path in ("resource-policy", "attestation-policy", "reference-value") or path.startswith(
            "reference-value/"
        ):
            denied = self.check_admin(request)
            if denied is not None:
                return denied
            self.admin_bodies.append((request.method, path, request.content))
            if path == "resource-policy" and request.method == "GET":
                return httpx.Response(200, json=["resource-policy"])
            if path.startswith("reference-value/"):
                return httpx.Response(200, json=["1"])
            return httpx.Response(200)
        return self.error("PluginNotFound", f"Plugin {path} not found", 404)

    def attest(self, request: httpx.Request) -> httpx.Response:
        cookie = request.headers.get("cookie", "")
        sid = cookie.removeprefix("kbs-session-id=")
        session = self.sessions.get(sid)
        if session is None:
            return self.error("AttestationError", "Attestation error: RCAR handshake Attest failed")
        message = json.loads(request.content)
        runtime = message["runtime-data"]
        if runtime["nonce"] != session["nonce"]:
            return self.error("AttestationError", "Attestation error: nonce mismatch")
        evidence = message["tee-evidence"]
        primary = {
            "tee-pubkey": runtime["tee-pubkey"],
            "nonce": runtime["nonce"],
            "additional-evidence": evidence["additional_evidence"],
        }
        expected = hashlib.sha384(jcs(primary)).digest()
        got = base64.b64decode(evidence["primary_evidence"]["report_data"])
        if got != expected:
            return self.error("AttestationError", "Attestation error: report data mismatch")
        token = _jwt({"exp": int(time.time()) + 300, "sid": sid})
        self.tokens[token] = runtime["tee-pubkey"]
        session["token"] = token
        return httpx.Response(
            200, json={"token": token}, headers={"Set-Cookie": f"kbs-session-id={sid}"}
        )

    def check_admin(self, request: httpx.Request) -> httpx.Response | None:
        if self.admin_token is None:
            return None
        if request.headers.get("authorization") != f"Bearer {self.admin_token}":
            return self.error("AdminAuthAccess", "admin access denied for endpoint: bad token")
        return None

    def resource(self, request: httpx.Request, path: str) -> httpx.Response:
        if request.method in ("POST", "DELETE"):
            denied = self.check_admin(request)
            if denied is not None:
                return denied
            if request.method == "POST":
                self.resources[path] = request.content
            elif self.resources.pop(path, None) is None:
                return self.error("PluginInternalError", "Plugin internal error")
            return httpx.Response(200)
        token = None
        sid = request.headers.get("cookie", "").removeprefix("kbs-session-id=")
        if sid in self.sessions:
            token = self.sessions[sid].get("token")
        elif request.headers.get("authorization", "").startswith("Bearer "):
            token = request.headers["authorization"].removeprefix("Bearer ")
        if token is None or token not in self.tokens:
            return self.error("TokenNotFound", "Attestation Token not found")
        if not self.allow:
            return self.error("PolicyDeny", "Access denied by policy")
        if path not in self.resources:
            return self.error("PluginInternalError", "Plugin internal error")
        return httpx.Response(200, json=trustee_jwe(self.tokens[token], self.resources[path]))


def _client(kbs: FakeKbs, **kwargs: Any) -> KbsClient:
    http = httpx.Client(transport=kbs.transport())
    return KbsClient("http://kbs.test/", http=http, **kwargs)


@pytest.mark.parametrize("key_alg", ["EC", "RSA"])
def test_rcar_and_resource_with_the_cookie(key_alg: Any) -> None:
    kbs = FakeKbs()
    client = _client(kbs, evidence_provider=SampleProvider(), tee="sample", key_alg=key_alg)
    assert client.get_resource("default/key/1") == SECRET
    auth, attest, get = kbs.requests
    assert str(auth.url) == "http://kbs.test/kbs/v0/auth"
    assert json.loads(auth.content) == build_request("sample")
    assert auth.headers["content-type"] == "application/json"
    assert attest.headers["cookie"] == "kbs-session-id=" + f"{1:032x}"
    assert get.headers["cookie"] == attest.headers["cookie"]
    assert "authorization" not in get.headers
    assert client.token is not None
    assert client.session_id == f"{1:032x}"
    assert json.loads(attest.content)["runtime-data"]["tee-pubkey"]["kty"] == key_alg


def test_resource_with_a_bearer_token() -> None:
    kbs = FakeKbs()
    client = _client(kbs, evidence_provider=SampleProvider())
    token = client.attest()
    fresh = _client(kbs, tee_key=client.tee_key)
    fresh.token = token
    assert fresh.get_resource("default/key/1", use_bearer=True) == SECRET
    get = kbs.requests[-1]
    assert get.headers["authorization"] == f"Bearer {token}"
    assert "cookie" not in get.headers


def test_denial_retries_once_with_a_fresh_handshake_then_raises() -> None:
    kbs = FakeKbs(allow=False)
    seen: list[KbsRequestError] = []
    client = _client(kbs, evidence_provider=SampleProvider())
    with pytest.raises(KbsRequestError) as info:
        client.get_resource("default/key/1", on_unauthorized=seen.append)
    assert (info.value.status, info.value.name, info.value.detail) == (
        401,
        "PolicyDeny",
        "Access denied by policy",
    )
    assert [e.name for e in seen] == ["PolicyDeny"]
    assert [r.url.path.rsplit("/", 1)[-1] for r in kbs.requests] == [
        "auth",
        "attest",
        "1",
        "auth",
        "attest",
        "1",
    ]
    assert client.token is not None
    assert client.token not in str(info.value)


def test_attest_needs_a_provider_and_reports_refusals() -> None:
    with pytest.raises(KbsClientError, match="evidence provider"):
        _client(FakeKbs()).attest()

    class Liar(SampleProvider):
        def evidence(self, tee: str, report_data: bytes) -> bytes:
            return super().evidence(tee, bytes(48))

    with pytest.raises(KbsRequestError, match="report data mismatch") as info:
        _client(FakeKbs(), evidence_provider=Liar()).attest()
    assert info.value.name == "AttestationError"
    assert info.value.path == "/kbs/v0/attest"


def test_admin_calls_send_the_bearer_token_and_trustee_bodies() -> None:
    kbs = FakeKbs()
    client = _client(kbs, admin_token="ADMIN")
    client.set_resource("r/t/new", b"\x00\x01")
    assert kbs.resources["r/t/new"] == b"\x00\x01"
    assert kbs.requests[-1].headers["content-type"] == "application/octet-stream"
    client.delete_resource("r/t/new")
    assert "r/t/new" not in kbs.resources
    client.set_resource_policy("package policy\n")
    client.set_attestation_policy("package policy\n", "default_cpu")
    client.set_reference_value({"version": "0.1.0", "type": "sample", "payload": "e30="})
    assert client.get_resource_policy() == '["resource-policy"]'
    assert client.get_reference_value("svn") == ["1"]
    bodies = [(m, p, json.loads(b) if b else None) for m, p, b in kbs.admin_bodies]
    assert bodies[0] == ("POST", "resource-policy", {"policy": "cGFja2FnZSBwb2xpY3kK"})
    assert bodies[1] == (
        "POST",
        "attestation-policy",
        {"type": "rego", "policy_id": "default_cpu", "policy": "cGFja2FnZSBwb2xpY3kK"},
    )
    assert bodies[2][2] == {"version": "0.1.0", "type": "sample", "payload": "e30="}
    with pytest.raises(KbsRequestError) as info:
        _client(kbs, admin_token="WRONG-SECRET").set_resource_policy("x")
    assert info.value.name == "AdminAuthAccess"
    assert "WRONG-SECRET" not in str(info.value)
    with pytest.raises(KbsRequestError, match="PluginInternalError"):
        client.delete_resource("r/t/absent")


# --- the CLI -------------------------------------------------------------------------------------


def cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(app, name="client")

    @root.callback()
    def main() -> None:
        """Root command (a group, so that 'client' is a subcommand)."""

    return root


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


@pytest.fixture
def kbs(monkeypatch: pytest.MonkeyPatch) -> FakeKbs:
    fake = FakeKbs()
    original = cli_client._client

    def patched(target: Any, **kwargs: Any) -> KbsClient:
        assert target.url == "http://kbs.test"
        original(target, **kwargs).close()  # the real constructor still validates the options
        return KbsClient(target.url, http=httpx.Client(transport=fake.transport()), **kwargs)

    monkeypatch.setattr(cli_client, "_client", patched)
    return fake


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(cli(), ["client", "--url", "http://kbs.test", *args])


def test_cli_attest_and_get_resource(
    runner: CliRunner, kbs: FakeKbs, test_root: Any, tmp_path: Path
) -> None:
    root = str(test_root.directory)
    key_file = tmp_path / "tee.pem"
    result = run(runner, "attest", "--emulated", root, "--tee-key-file", str(key_file))
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token_is_valid(token)
    assert key_file.stat().st_mode & 0o777 == 0o600
    result = run(runner, "get-resource", "--path", "default/key/1", "--emulated", root)
    assert result.exit_code == 0, result.output
    assert result.stdout == base64.b64encode(SECRET).decode() + "\n"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    result = run(
        runner,
        "get-resource",
        "--path",
        "default/key/1",
        "--attestation-token",
        str(token_file),
        "--tee-key-file",
        str(key_file),
    )
    assert result.exit_code == 0, result.output
    assert base64.b64decode(result.stdout) == SECRET
    assert kbs.requests[-1].headers["authorization"] == f"Bearer {token}"


def test_cli_prints_a_denial_like_kbs_client(
    runner: CliRunner, kbs: FakeKbs, test_root: Any
) -> None:
    kbs.allow = False
    result = run(runner, "get-resource", "--path", "a/b/c", "--emulated", str(test_root.directory))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == _seed_denial()


def test_cli_prints_attest_refusals(runner: CliRunner, kbs: FakeKbs, test_root: Any) -> None:
    kbs.sessions.clear()
    original = kbs.attest
    kbs.attest = lambda request: kbs.error("AttestationError", "Attestation error: nope")  # type: ignore[method-assign]
    result = run(runner, "attest", "--emulated", str(test_root.directory))
    kbs.attest = original  # type: ignore[method-assign]
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: KBS attest unauthorized, Error Info: ErrorInformation { error_type: "
        f'"{ERRORS}AttestationError", detail: "Attestation error: nope" }}\n'
    )


def _admin_key(tmp_path: Path) -> tuple[Path, ed25519.Ed25519PrivateKey]:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "admin.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, key


def test_cli_config_commands(runner: CliRunner, kbs: FakeKbs, tmp_path: Path) -> None:
    key_path, key = _admin_key(tmp_path)
    kbs.admin_token = None  # accept any; the token itself is checked below
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cr3t")
    policy = tmp_path / "p.rego"
    policy.write_text("package policy\n")
    admin = ["config", "--auth-private-key", str(key_path)]
    result = run(runner, *admin, "set-resource", "--path", "r/t/x", "--resource-file", str(secret))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Set resource success \n resource: czNjcjN0\n"
    bearer = kbs.requests[-1].headers["authorization"].removeprefix("Bearer ")
    Ed25519AdminAuth(key.public_key()).authorize(f"Bearer {bearer}", path="/kbs/v0/resource")
    claims = token_claims(bearer)  # the signature was checked just above
    assert claims["exp"] - claims["iat"] == 7200
    result = run(runner, *admin, "set-resource-policy", "--policy-file", str(policy))
    assert result.stdout == "Set resource policy success \n policy: cGFja2FnZSBwb2xpY3kK\n"
    result = run(runner, *admin, "set-resource-policy", "--allow-all")
    assert result.exit_code == 0
    assert "Set resource policy success" in result.stdout
    result = run(
        runner, *admin, "set-attestation-policy", "--policy-file", str(policy), "--id", "x"
    )
    assert result.stdout == "Set attestation policy success \n policy: cGFja2FnZSBwb2xpY3kK\n"
    assert json.loads(kbs.admin_bodies[-1][2])["policy_id"] == "x"
    result = run(runner, *admin, "set-sample-reference-value", "svn", "1", "--as-integer")
    assert result.stdout == "Reference Values Updated\n"
    assert json.loads(kbs.admin_bodies[-1][2]) == sample_reference_value_message(
        "svn", "1", as_integer=True
    )
    message = tmp_path / "m.json"
    message.write_text('{"version":"0.1.0","type":"sample","payload":"e30="}')
    result = run(runner, *admin, "set-reference-value", "--message-file", str(message))
    assert result.stdout == "Reference Values Updated\n"
    result = run(runner, *admin, "get-reference-value", "--id", "svn")
    assert result.stdout == '"[\\"1\\"]"\n'
    result = run(runner, *admin, "get-resource-policy")
    assert result.stdout == '["resource-policy"]\n'
    result = run(runner, *admin, "delete-resource", "--path", "r/t/x")
    assert result.stdout == "Delete resource success\n"


def test_cli_admin_refusal(runner: CliRunner, kbs: FakeKbs, tmp_path: Path) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text("NOT-THE-TOKEN\n")
    result = run(runner, "config", "--admin-token-file", str(token_file), "get-resource-policy")
    assert result.exit_code == 1
    assert result.stderr.startswith('Error: Request Failed, Response: "{\\"type\\":')
    assert "AdminAuthAccess" in result.stderr
    assert "NOT-THE-TOKEN" not in result.stderr


def test_sample_reference_value_messages() -> None:
    def payload(**kwargs: bool) -> Any:
        message = sample_reference_value_message("svn", "1", **kwargs)
        assert message["version"] == "0.1.0"
        assert message["type"] == "sample"
        return json.loads(base64.b64decode(message["payload"]))

    assert payload() == {"svn": ["1"]}
    assert payload(as_integer=True) == {"svn": [1]}
    assert payload(as_single_value=True) == {"svn": "1"}
    assert json.loads(
        base64.b64decode(sample_reference_value_message("d", "true", as_bool=True)["payload"])
    ) == {"d": [True]}


@pytest.mark.parametrize(
    "args",
    [
        ["get-resource"],  # --path is required
        ["get-resource", "--path", "a/b/c"],  # no evidence source
        ["attest"],  # no evidence source
        ["attest", "--tee", "cca", "--emulated", "."],
        ["attest", "--emulated", "/nonexistent/root"],
        ["get-resource", "--path", "a/b/c", "--attestation-token", "TOKENFILE"],
        ["config", "set-resource-policy"],
        ["config", "set-resource-policy", "--allow-all", "--deny-all"],
        ["config", "set-sample-reference-value", "svn", "x", "--as-integer"],
        ["config", "set-sample-reference-value", "svn", "yes", "--as-bool"],
        ["config", "set-sample-reference-value", "svn", "1", "--as-bool", "--as-integer"],
        ["config", "--auth-private-key", "TOKENFILE", "get-resource-policy"],
        [
            "config",
            "--auth-private-key",
            "KEYFILE",
            "--admin-token-file",
            "TOKENFILE",
            "get-resource-policy",
        ],
        ["config", "set-reference-value", "--message-file", "TOKENFILE"],
        ["config", "set-resource", "--path", "a/b/c", "--resource-file", "/nonexistent"],
        ["--cert-file", "/nonexistent", "attest"],
        ["frobnicate"],
    ],
)
def test_cli_usage_errors_exit_2(
    runner: CliRunner, kbs: FakeKbs, tmp_path: Path, args: list[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not json, not a key\n")
    key_path, _ = _admin_key(tmp_path)
    args = [
        str(token_file) if a == "TOKENFILE" else str(key_path) if a == "KEYFILE" else a
        for a in args
    ]
    result = run(runner, *args)
    assert result.exit_code == 2, result.output
    assert kbs.requests == []


def test_cli_without_emulated_says_how(runner: CliRunner, kbs: FakeKbs) -> None:
    result = run(runner, "get-resource", "--path", "a/b/c")
    assert result.exit_code == 2
    assert "--emulated ROOTDIR" in result.stderr
    assert result.stdout == ""
