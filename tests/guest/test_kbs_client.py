"""The KBS client: RCAR messages, runtime data and report data against Trustee's vectors,
JWE decryption, error parsing and printing, and the ``veritee client`` CLI (against the
real KBS, served by uvicorn on loopback)."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from datadir import SEEDS, TRUSTEE
from joserfc import jwe
from joserfc.jwk import ECKey, RSAKey
from live_server import serve_app
from typer.testing import CliRunner, Result

import veritee.cli.client as cli_client
from veritee.as_.config import AsSettings
from veritee.auth.admin import AdminAuthError, Ed25519AdminAuth
from veritee.cli.client import app, sample_reference_value_message
from veritee.kbs.bootstrap import KbsComponents, KbsSettings, build_kbs
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

ERRORS = "https://github.com/confidential-containers/kbs/errors/"
SECRET = b"the very secret resource"


@pytest.fixture(scope="module")
def rcar() -> dict[str, Any]:
    path = TRUSTEE / "derived" / "rcar-sample-vectors.json"
    if not path.is_file():
        pytest.fail(f"{path} missing")
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


# --- the real KBS over HTTP on loopback ----------------------------------------------------------

ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
DENY = "package policy\n\nimport rego.v1\n\ndefault allow := false\n"


@dataclass
class Kbs:
    """One real KBS (sample evidence allowed, as for Trustee's sample attester) on 127.0.0.1."""

    url: str
    admin_token: str
    parts: KbsComponents

    def admin(self, **kwargs: Any) -> KbsClient:
        return KbsClient(self.url, admin_token=self.admin_token, **kwargs)

    def set_policy(self, text: str) -> None:
        with self.admin() as admin:
            admin.set_resource_policy(text)


class Wire:
    """A real httpx.Client whose event hooks keep every request and response it exchanges."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
        self.http = httpx.Client(
            transport=transport,
            event_hooks={"request": [self.requests.append], "response": [self.responses.append]},
        )

    def client(self, kbs: Kbs, **kwargs: Any) -> KbsClient:
        return KbsClient(kbs.url, http=self.http, **kwargs)

    def names(self) -> list[str]:
        return [r.url.path.rsplit("/", 1)[-1] for r in self.requests]


@pytest.fixture(scope="module")
def real_kbs(test_root: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    data = tmp_path_factory.mktemp("kbs")
    settings = AsSettings(data_dir=data, trust_root=test_root.directory, allow_sample=True)
    parts = build_kbs(KbsSettings(attestation=settings))
    token = parts.attestation.admin.token_path.read_text().strip()
    with serve_app(parts.app) as url:
        kbs = Kbs(url, token, parts)
        with kbs.admin() as admin:
            admin.set_resource("default/key/1", SECRET)
        yield kbs


@pytest.fixture
def wire() -> Iterator[Wire]:
    recorder = Wire()
    yield recorder
    recorder.http.close()


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
    assert client.token is not None
    assert client.session_id == session
    assert json.loads(attest.content)["runtime-data"]["tee-pubkey"]["kty"] == key_alg


def test_resource_with_a_bearer_token(real_kbs: Kbs, wire: Wire) -> None:
    real_kbs.set_policy(ALLOW)
    with KbsClient(real_kbs.url, evidence_provider=SampleProvider()) as client:
        token = client.attest()
    fresh = wire.client(real_kbs, tee_key=client.tee_key)
    fresh.token = token
    assert fresh.get_resource("default/key/1", use_bearer=True) == SECRET
    (get,) = wire.requests  # no handshake: the token alone
    assert get.headers["authorization"] == f"Bearer {token}"
    assert "cookie" not in get.headers


def test_denial_retries_once_with_a_fresh_handshake_then_raises(real_kbs: Kbs, wire: Wire) -> None:
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
    assert client.token is not None
    assert client.token not in str(info.value)


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


@dataclass
class CliKbs:
    url: str
    requests: list[httpx.Request]


@pytest.fixture
def kbs(real_kbs: Kbs, monkeypatch: pytest.MonkeyPatch) -> CliKbs:
    """The real KBS for the CLI; an event hook on the CLI's own httpx.Client keeps its requests."""
    seen = CliKbs(real_kbs.url, [])
    original = cli_client._client

    def observed(target: Any, **kwargs: Any) -> KbsClient:
        client = original(target, **kwargs)
        hooks = client.http.event_hooks
        client.http.event_hooks = {**hooks, "request": [*hooks["request"], seen.requests.append]}
        return client

    monkeypatch.setattr(cli_client, "_client", observed)
    return seen


def run(runner: CliRunner, kbs: CliKbs, *args: str) -> Result:
    return runner.invoke(cli(), ["client", "--url", kbs.url, *args])


def test_cli_attest_and_get_resource(
    runner: CliRunner, kbs: CliKbs, real_kbs: Kbs, test_root: Any, tmp_path: Path
) -> None:
    real_kbs.set_policy(ALLOW)
    root = str(test_root.directory)
    key_file = tmp_path / "tee.pem"
    result = run(runner, kbs, "attest", "--emulated", root, "--tee-key-file", str(key_file))
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token_is_valid(token)
    assert key_file.stat().st_mode & 0o777 == 0o600
    result = run(runner, kbs, "get-resource", "--path", "default/key/1", "--emulated", root)
    assert result.exit_code == 0, result.output
    assert result.stdout == base64.b64encode(SECRET).decode() + "\n"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    sent = len(kbs.requests)
    result = run(
        runner,
        kbs,
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
    (get,) = kbs.requests[sent:]
    assert get.headers["authorization"] == f"Bearer {token}"
    assert "cookie" not in get.headers


def test_cli_prints_a_denial_like_kbs_client(
    runner: CliRunner, kbs: CliKbs, real_kbs: Kbs, test_root: Any
) -> None:
    real_kbs.set_policy(DENY)
    result = run(
        runner, kbs, "get-resource", "--path", "a/b/c", "--emulated", str(test_root.directory)
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == _seed_denial()


def test_cli_prints_attest_refusals(runner: CliRunner, test_root: Any, tmp_path: Path) -> None:
    # A KBS as shipped refuses the sample TEE's evidence (it carries no hardware signature).
    parts = build_kbs(
        KbsSettings(attestation=AsSettings(data_dir=tmp_path, trust_root=test_root.directory))
    )
    with serve_app(parts.app) as url:
        result = run(
            runner,
            CliKbs(url, []),
            "attest",
            "--tee",
            "sample",
            "--emulated",
            str(test_root.directory),
        )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: KBS attest unauthorized, Error Info: ErrorInformation { error_type: "
        f'"{ERRORS}AttestationError", '
        'detail: "Attestation error: RCAR handshake Attest failed" }\n'
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


def test_cli_config_commands(
    runner: CliRunner, kbs: CliKbs, real_kbs: Kbs, test_root: Any, tmp_path: Path
) -> None:
    key_path = real_kbs.parts.attestation.admin.key_path  # the server's own admin key
    emulated = ["--emulated", str(test_root.directory)]
    secret = tmp_path / "secret"
    secret.write_bytes(b"s3cr3t")
    policy = tmp_path / "p.rego"
    policy.write_text("package policy\n")
    admin = ["config", "--auth-private-key", str(key_path)]
    result = run(
        runner, kbs, *admin, "set-resource", "--path", "r/t/x", "--resource-file", str(secret)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Set resource success \n resource: czNjcjN0\n"
    bearer = kbs.requests[-1].headers["authorization"].removeprefix("Bearer ")
    real_kbs.parts.admin.authorize(f"Bearer {bearer}", path="/kbs/v0/resource")
    claims = token_claims(bearer)  # the signature was checked just above
    assert claims["exp"] - claims["iat"] == 7200
    with pytest.raises(AdminAuthError):  # signed with that key, not any other
        Ed25519AdminAuth(_admin_key(tmp_path)[1].public_key()).authorize(
            f"Bearer {bearer}", path="/kbs/v0/resource"
        )
    result = run(runner, kbs, *admin, "set-resource-policy", "--policy-file", str(policy))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Set resource policy success \n policy: cGFja2FnZSBwb2xpY3kK\n"
    result = run(runner, kbs, "get-resource", "--path", "r/t/x", *emulated)
    assert result.exit_code == 1  # that policy (no allow rule) really applies
    assert "PolicyDeny" in result.stderr
    result = run(runner, kbs, *admin, "set-resource-policy", "--allow-all")
    assert result.exit_code == 0
    assert "Set resource policy success" in result.stdout
    result = run(runner, kbs, "get-resource", "--path", "r/t/x", *emulated)
    assert result.exit_code == 0, result.output
    assert base64.b64decode(result.stdout) == b"s3cr3t"  # the resource really is stored
    result = run(
        runner, kbs, *admin, "set-attestation-policy", "--policy-file", str(policy), "--id", "x"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Set attestation policy success \n policy: cGFja2FnZSBwb2xpY3kK\n"
    assert json.loads(kbs.requests[-1].content)["policy_id"] == "x"
    result = run(runner, kbs, *admin, "set-sample-reference-value", "cli-svn", "1", "--as-integer")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Reference Values Updated\n"
    assert json.loads(kbs.requests[-1].content) == sample_reference_value_message(
        "cli-svn", "1", as_integer=True
    )
    result = run(runner, kbs, *admin, "get-reference-value", "--id", "cli-svn")
    assert result.stdout == '"[1]"\n'
    message = tmp_path / "m.json"
    payload = base64.b64encode(b'{"cli-svn":["1"]}').decode()
    message.write_text(f'{{"version":"0.1.0","type":"sample","payload":"{payload}"}}')
    result = run(runner, kbs, *admin, "set-reference-value", "--message-file", str(message))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Reference Values Updated\n"
    result = run(runner, kbs, *admin, "get-reference-value", "--id", "cli-svn")
    assert result.stdout == '"[\\"1\\"]"\n'
    result = run(runner, kbs, *admin, "get-resource-policy")
    assert result.stdout == '["resource-policy"]\n'
    result = run(runner, kbs, *admin, "delete-resource", "--path", "r/t/x")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Delete resource success\n"
    result = run(runner, kbs, "get-resource", "--path", "r/t/x", *emulated)
    assert result.exit_code == 1  # really deleted
    assert result.stdout == ""
    admin_calls = [
        r
        for r in kbs.requests
        if not r.url.path.endswith(("/auth", "/attest"))
        and not (r.method == "GET" and "/resource/" in r.url.path)
    ]
    assert len(admin_calls) == 10
    assert all(r.headers["authorization"].startswith("Bearer ") for r in admin_calls)
    assert all("authorization" not in r.headers for r in kbs.requests if r not in admin_calls)


def test_cli_admin_refusal(runner: CliRunner, kbs: CliKbs, tmp_path: Path) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text("NOT-THE-TOKEN\n")
    result = run(
        runner, kbs, "config", "--admin-token-file", str(token_file), "get-resource-policy"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith('Error: Request Failed, Response: "{\\"type\\":')
    assert f"{ERRORS}AdminAuthAccess" in result.stderr
    assert "NOT-THE-TOKEN" not in result.stderr
    (sent,) = kbs.requests
    assert sent.headers["authorization"] == "Bearer NOT-THE-TOKEN"


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
    runner: CliRunner, kbs: CliKbs, tmp_path: Path, args: list[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not json, not a key\n")
    key_path, _ = _admin_key(tmp_path)
    args = [
        str(token_file) if a == "TOKENFILE" else str(key_path) if a == "KEYFILE" else a
        for a in args
    ]
    result = run(runner, kbs, *args)
    assert result.exit_code == 2, result.output
    assert kbs.requests == []


def test_cli_without_emulated_says_how(runner: CliRunner, kbs: CliKbs) -> None:
    result = run(runner, kbs, "get-resource", "--path", "a/b/c")
    assert result.exit_code == 2
    assert "--emulated ROOTDIR" in result.stderr
    assert result.stdout == ""
    assert kbs.requests == []
