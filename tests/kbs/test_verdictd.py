"""Verdictd's EAA protocol (veritee.kbs.verdictd) as pure logic, and its SGX gate.

The transport (RA-TLS over loopback) is in tests/kbs/test_verdictd_server.py.
"""

from __future__ import annotations

import base64
import json
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from typer.testing import CliRunner

from veritee.as_.config import AsSettings
from veritee.cli import app
from veritee.errors import ConfigError
from veritee.kbs.bootstrap import KbsSettings, build_kbs
from veritee.kbs.config import parse_kbs_config
from veritee.kbs.resources import KvResourceBackend
from veritee.kbs.verdictd import NAMED_RESOURCES, Reply, VerdictdBroker, compact
from veritee.kbs.verdictd_config import RatlsServerConfig, parse_listen
from veritee.kbs.verdictd_policy import (
    DEFAULT_SGX_DATA,
    RATLS_CLAIM,
    VerdictdGate,
    load_gate,
    peer_policy_input,
    sgx_opa_input,
)
from veritee.policy.resource import ResourcePolicy
from veritee.ratls.cert import make_identity, plain_identity
from veritee.ratls.quoter import EmulatedQuoter
from veritee.store.kv import MemoryStore

ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
DENY = "package policy\n\nimport rego.v1\n\ndefault allow := false\n"
ONLY_KEYS = (
    "package policy\n\nimport rego.v1\n\n"
    'allow if data["resource-path"][1] == "key"\n'
)
MRENCLAVE = bytes(range(32))
MRSIGNER = bytes(range(32, 64))
KEK = bytes(range(100, 132))


@dataclass(frozen=True)
class Peer:
    tee: str = "sgx"
    fmt: str = "dice"
    claims: dict[str, Any] = field(default_factory=lambda: {"body": {"mr_enclave": "00"}})
    measurements: dict[str, str] = field(
        default_factory=lambda: {
            "mrenclave": MRENCLAVE.hex(),
            "mrsigner": MRSIGNER.hex(),
            "isvprodid": "0100",
            "isvsvn": "0200",
        }
    )
    emulated: bool = True


def broker(policy: str = ALLOW, resources: dict[str, bytes] | None = None) -> VerdictdBroker:
    backend = KvResourceBackend(MemoryStore())
    backend.put("default", "key", "kek1", KEK)
    for name, data in (resources or {}).items():
        repo, type_, tag = name.split("/")
        backend.put(repo, type_, tag, data)
    compiled = ResourcePolicy(policy)
    return VerdictdBroker(
        resources=backend, resource_policy=lambda: compiled, policy_input=lambda _peer: {}
    )


def ask(b: VerdictdBroker, doc: Any) -> Reply:
    return b.handle(json.dumps(doc).encode(), Peer())


def seal(plaintext: bytes, key: bytes = KEK) -> tuple[str, str]:
    iv = secrets.token_bytes(12)
    return base64.b64encode(AESGCM(key).encrypt(iv, plaintext, None)).decode(), (
        base64.b64encode(iv).decode()
    )


def blob(sent: str, nonce: str, **extra: Any) -> dict[str, Any]:
    doc = {"kid": "default/key/kek1", "encrypted_data": sent, "iv": nonce, "algorithm": "AES",
           "key_length": 256}
    doc.update(extra)
    return doc


# --- refusals first --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [b"", b"not json", b"\xff\xfe", b"[1,2]", b'"version"', b"{}", b'{"command": 1}',
     b'{"command":"getKek","kids":[]}', b'{"command":"Get Unknown"}',
     b'{"command":"VERSION"}'],
)
def test_non_json_missing_or_unknown_command_closes_without_reply(request_bytes: bytes) -> None:
    assert broker().handle(request_bytes, Peer()) == Reply(b"", close=True)


def test_get_kek_of_a_missing_key_fails_naming_the_kid() -> None:
    reply = ask(broker(), {"command": "Get KEK", "kids": ["default/key/kek1", "default/key/no"]})
    assert reply == Reply(
        b'{"data":{},"error":"kid: default/key/no\'s key not found","status":"Fail"}'
    )


@pytest.mark.parametrize("kids", [None, "default/key/kek1", [1], {"a": "b"}])
def test_get_kek_with_bad_kids_is_a_parameters_error(kids: Any) -> None:
    reply = ask(broker(), {"command": "Get KEK", "kids": kids})
    assert reply.data == b'{"data":{},"error":"parameters error","status":"Fail"}'
    assert not reply.close


def test_get_kek_under_a_denying_policy_names_the_policy_not_the_key() -> None:
    reply = ask(broker(DENY), {"command": "Get KEK", "kids": ["default/key/kek1"]})
    doc = json.loads(reply.data)
    assert doc["status"] == "Fail"
    assert doc["data"] == {}
    assert "not released by the resource policy" in doc["error"]
    assert base64.b64encode(KEK).decode() not in reply.data.decode()


def test_a_bad_kid_path_is_not_found() -> None:
    reply = ask(broker(), {"command": "Get KEK", "kids": ["../../etc/passwd"]})
    assert json.loads(reply.data)["error"] == "kid: ../../etc/passwd's key not found"


@pytest.mark.parametrize(
    "change",
    [{"algorithm": "RSA"}, {"algorithm": "aes"}, {"key_length": 128}, {"key_length": "256"},
     {"key_length": True}, {"iv": "***"}, {"encrypted_data": "AAAA"}, {"kid": 7},
     {"encrypted_data": None}],
)
def test_decrypt_with_a_bad_blob_is_a_parameters_error(change: dict[str, Any]) -> None:
    sent, iv = seal(b"layer key")
    blobs = [blob(sent, iv), blob(sent, iv, **change)]
    reply = ask(broker(), {"command": "Decrypt", "blobs": blobs})
    assert reply.data == b'{"data":{},"error":"parameters error","status":"Fail"}'


@pytest.mark.parametrize("blobs", [None, [], "x", [1]])
def test_decrypt_without_blobs_is_a_parameters_error(blobs: Any) -> None:
    reply = ask(broker(), {"command": "Decrypt", "blobs": blobs})
    assert reply.data == b'{"data":{},"error":"parameters error","status":"Fail"}'


def test_decrypt_under_another_key_fails_without_plaintext() -> None:
    sent, iv = seal(b"layer key", secrets.token_bytes(32))
    reply = ask(broker(), {"command": "Decrypt", "blobs": [blob(sent, iv)]})
    assert reply.data == (
        b'{"data":{},"error":"kid: default/key/kek1: decryption failed","status":"Fail"}'
    )


def test_decrypt_with_a_key_that_is_not_aes_256() -> None:
    b = broker(resources={"default/key/short": b"0123456789abcdef"})
    sent, iv = seal(b"layer key")
    reply = ask(b, {"command": "Decrypt", "blobs": [blob(sent, iv, kid="default/key/short")]})
    assert json.loads(reply.data)["error"] == "kid: default/key/short's key is not an AES-256 key"


def test_echo_without_string_data_replies_the_raw_error_and_closes() -> None:
    assert ask(broker(), {"command": "echo"}) == Reply(b"Echo parameters error", close=True)
    assert ask(broker(), {"command": "echo", "data": 5}) == Reply(
        b"Echo parameters error", close=True
    )


@pytest.mark.parametrize("name", [None, "Nothing", "a/b", "default/../x", 3])
def test_resource_info_of_a_bad_name_is_a_file_name_error(name: Any) -> None:
    reply = ask(broker(), {"command": "Get Resource Info", "name": name})
    assert reply == Reply(b'{"error":"file name error","status":"Fail"}')


def test_resource_info_of_a_missing_resource() -> None:
    reply = ask(broker(), {"command": "Get Resource Info", "name": "Policy"})
    assert reply.data == (
        b'{"error":"default/security-policy/test not found","status":"Fail"}'
    )


def test_get_resource_failure_is_base64_of_the_sorted_fail_json() -> None:
    reply = ask(broker(), {"command": "Get Resource",
                           "optional": {"resource_path": "default/x/missing"}})
    expected = b'{"error":"default/x/missing not found","status":"Fail"}'
    assert base64.b64decode(reply.data) == expected
    assert not reply.close


def test_named_command_failure_is_verdictds_fail_json_in_base64() -> None:
    reply = ask(broker(), {"command": "Get Sigstore Config", "optional": {}})
    assert json.loads(base64.b64decode(reply.data)) == {
        "status": "Fail",
        "error": "Can't fetch sigstore.yaml file, error:default/sigstore-config/test not found",
    }


def test_resource_policy_sees_the_mapped_path() -> None:
    b = broker(ONLY_KEYS, {"default/security-policy/test": b"{}"})
    reply = ask(b, {"command": "Get Policy"})
    assert "not released by the resource policy" in base64.b64decode(reply.data).decode()
    assert json.loads(ask(b, {"command": "Get KEK", "kids": ["default/key/kek1"]}).data)[
        "status"] == "OK"


# --- what is served ---------------------------------------------------------------------------


def test_version_reply_bytes() -> None:
    assert ask(broker(), {"command": "version"}) == Reply(b'{"status":"OK","version":"v1"}')


def test_echo_replies_raw_data_then_closes() -> None:
    assert ask(broker(), {"command": "echo", "data": "héllo {x}"}) == Reply(
        "héllo {x}".encode(), close=True
    )


def test_get_kek_gives_the_stored_key_sorted() -> None:
    b = broker(resources={"default/key/a": b"A" * 32})
    reply = ask(b, {"command": "Get KEK", "kids": ["default/key/kek1", "kbs:///default/key/a"]})
    key = base64.b64encode(KEK).decode()
    a = base64.b64encode(b"A" * 32).decode()
    assert reply == Reply(
        f'{{"data":{{"default/key/kek1":"{key}","kbs:///default/key/a":"{a}"}},"status":"OK"}}'
        .encode()
    )


@pytest.mark.parametrize("algorithm", ["AES", "A256GCM"])
def test_decrypt_gives_the_plaintext_under_the_encrypted_data_as_sent(algorithm: str) -> None:
    sent, iv = seal(b"the layer key")
    sent2, iv2 = seal(b"another")
    reply = ask(broker(), {"command": "Decrypt", "blobs": [
        blob(sent, iv, algorithm=algorithm), blob(sent2, iv2, kid="kbs://kbs.example/default/key/kek1")]})
    assert reply.data == compact({"data": {
        sent: base64.b64encode(b"the layer key").decode(),
        sent2: base64.b64encode(b"another").decode()}, "status": "OK"})
    assert reply.data.startswith(b'{"data":{')
    assert reply.data.endswith(b',"status":"OK"}')


def test_resource_info_then_resource_vd_cc_spelling() -> None:
    data = b"\x00\x01 a resource " * 10
    b = broker(resources={"default/sigstore-config/test": data})
    info = ask(b, {"command": "Get Resource Info", "name": "default/sigstore-config/test"})
    size = len(base64.b64encode(data))
    assert info.data == f'{{"data":{{"base64size":"{size}"}},"status":"OK"}}'.encode()
    named = ask(b, {"command": "Get Resource Info", "name": "Sigstore Config"})
    assert named.data == info.data
    got = ask(b, {"command": "Get Resource",
                  "optional": {"resource_path": "default/sigstore-config/test"}})
    assert got == Reply(base64.b64encode(data))


@pytest.mark.parametrize("name", sorted(NAMED_RESOURCES))
def test_named_commands_serve_the_mapped_resources(name: str) -> None:
    path = NAMED_RESOURCES[name][1]
    b = broker(resources={path: f"content of {name}".encode()})
    reply = ask(b, {"command": f"Get {name}", "optional": {}})
    assert base64.b64decode(reply.data) == f"content of {name}".encode()


def test_the_session_appraises_the_peer_once() -> None:
    seen: list[object] = []
    backend = KvResourceBackend(MemoryStore())
    backend.put("default", "key", "kek1", KEK)
    compiled = ResourcePolicy(ALLOW)

    def policy_input(peer: object) -> dict[str, object]:
        seen.append(peer)
        return {}

    b = VerdictdBroker(resources=backend, resource_policy=lambda: compiled,
                       policy_input=policy_input)
    session = b.session(Peer())
    request = compact({"command": "Get KEK", "kids": ["default/key/kek1"]})
    session.handle(compact({"command": "version"}))
    assert seen == []
    session.handle(request)
    session.handle(request)
    assert len(seen) == 1


# --- the gate ----------------------------------------------------------------------------------


def test_gate_opa_input_is_verdictds() -> None:
    assert sgx_opa_input(Peer()) == {
        "mrEnclave": base64.b64encode(MRENCLAVE).decode(),
        "mrSigner": base64.b64encode(MRSIGNER).decode(),
        "productId": 1,
        "svn": 2,
    }


def test_gate_refuses_non_sgx_and_malformed_measurements() -> None:
    gate = VerdictdGate()
    assert "not implemented" in (gate.refusal(Peer(tee="tdx")) or "")
    bad = Peer(measurements={"mrenclave": "00", "mrsigner": MRSIGNER.hex(),
                             "isvprodid": "0000", "isvsvn": "0000"})
    assert gate.refusal(bad) == "the peer's mrenclave is not 32 bytes of hex"


@pytest.mark.parametrize(
    "data",
    [
        {"mrEnclave": [base64.b64encode(bytes(32)).decode()], "mrSigner": [], "productId": 0,
         "svn": 0},
        {"mrEnclave": [], "mrSigner": ["other"], "productId": 0, "svn": 0},
        {"mrEnclave": [], "mrSigner": [], "productId": 2, "svn": 0},
        {"mrEnclave": [], "mrSigner": [], "productId": 0, "svn": 3},
    ],
)
def test_gate_refuses_outside_sgx_data(data: dict[str, Any]) -> None:
    why = VerdictdGate(data=data).refusal(Peer())
    assert why is not None
    assert why.startswith("sgxPolicy.rego refused {")


@pytest.mark.parametrize(
    "data",
    [
        DEFAULT_SGX_DATA,
        {"mrEnclave": ["x", base64.b64encode(MRENCLAVE).decode()],
         "mrSigner": [base64.b64encode(MRSIGNER).decode()], "productId": 1, "svn": 2},
    ],
)
def test_gate_allows_inside_sgx_data(data: dict[str, Any]) -> None:
    assert VerdictdGate(data=data).refusal(Peer()) is None


def test_gate_files(tmp_path: Path) -> None:
    (tmp_path / "sgxData").write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        load_gate(None, tmp_path / "sgxData")
    (tmp_path / "sgxData").write_text("[]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_gate(None, tmp_path / "sgxData")
    (tmp_path / "p.rego").write_text("package other\nallow := true\n")
    with pytest.raises(ConfigError, match="SGX policy"):
        load_gate(tmp_path / "p.rego", None)
    (tmp_path / "p.rego").write_text("package policy\nallow := true\n")
    (tmp_path / "sgxData").write_text(json.dumps({"mrEnclave": ["nope"]}, indent=4))
    assert load_gate(tmp_path / "p.rego", tmp_path / "sgxData").refusal(Peer()) is None


# --- the policy input --------------------------------------------------------------------------


def test_peer_policy_input_is_rcars_ear_shape(tmp_path: Path) -> None:
    parts = build_kbs(KbsSettings(attestation=AsSettings(data_dir=tmp_path)))
    peer = Peer(claims={"body": {"mr_enclave": MRENCLAVE.hex()}, "report_data": "ab",
                        "emulated": True})
    doc = peer_policy_input(peer, parts.service.attestation, clock=lambda: 1000)
    cpu0 = doc["submods"]["cpu0"]
    assert cpu0["ear.status"] in ("affirming", "warning", "contraindicated")
    assert cpu0["ear.veraison.annotated-evidence"]["sgx"] == {
        "body": {"mr_enclave": MRENCLAVE.hex()}, "emulated": True}
    assert cpu0["ear.veraison.annotated-evidence"]["runtime_data_claims"] is None
    assert cpu0["ear.veraison.annotated-evidence"]["report_data"] == "ab"
    assert cpu0["ear.veritee.emulated"] is True
    assert doc["ear.veritee.emulated"] is True
    assert doc["iat"] == 1000
    assert doc[RATLS_CLAIM] == {"tee": "sgx", "fmt": "dice",
                                "measurements": dict(Peer().measurements)}


# --- [ratls] in kbs-config.toml -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("", "give attester, or certificate and private_key"),
        ('attester = "emulated-sgx"\n', "needs emulated_root"),
        ('attester = "sgx"\n', "ratls.attester"),
        ('certificate = "c.pem"\n', "certificate and private_key go together"),
        ('attester = "tdx"\ncertificate = "c"\nprivate_key = "k"\n', "not both"),
        ('attester = "tdx"\nlisten = "1234"\n', "not a HOST:PORT address"),
        ('attester = "tdx"\nformat = "x509"\n', "ratls.format"),
        ('attester = "tdx"\nidle_timeout = 0\n', "ratls.idle_timeout"),
    ],
)
def test_ratls_section_refusals(section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_kbs_config(tomllib.loads("[ratls]\n" + section))


def test_ratls_section(tmp_path: Path) -> None:
    config = parse_kbs_config(tomllib.loads(
        '[ratls]\nlisten = "0.0.0.0:1234"\nattester = "emulated-sgx"\n'
        f'emulated_root = "{tmp_path}"\nsgx_data = "/opt/verdictd/opa/sgxData"\nretries = 3\n'))
    assert config.ratls is not None
    assert config.ratls.attester == "emulated-sgx"
    assert config.ratls.format == "dice"
    assert config.ratls.handshake_timeout == 30
    assert "ignored unknown key ratls.retries" in config.notes
    assert parse_listen("[::1]:1234") == ("::1", 1234)
    assert parse_kbs_config({}).ratls is None


def test_ratls_certificate_pair(tmp_path: Path, test_root: Any) -> None:
    identity = make_identity(EmulatedQuoter(test_root.directory, "sgx"))
    (tmp_path / "cert.pem").write_bytes(identity.cert_pem)
    (tmp_path / "key.pem").write_bytes(identity.key_pem)
    section = RatlsServerConfig(certificate=str(tmp_path / "cert.pem"),
                                private_key=str(tmp_path / "key.pem"))
    assert section.identity().certificate == identity.certificate
    other = plain_identity()
    (tmp_path / "other.pem").write_bytes(other.key_pem)
    mismatched = RatlsServerConfig(certificate=str(tmp_path / "cert.pem"),
                                   private_key=str(tmp_path / "other.pem"))
    with pytest.raises(ConfigError, match="does not match the certificate"):
        mismatched.identity()
    missing = RatlsServerConfig(certificate=str(tmp_path / "none.pem"),
                                private_key=str(tmp_path / "key.pem"))
    with pytest.raises(ConfigError, match="cannot read"):
        missing.identity()
    (tmp_path / "bad.pem").write_text("not pem")
    bad = RatlsServerConfig(certificate=str(tmp_path / "bad.pem"),
                            private_key=str(tmp_path / "key.pem"))
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        bad.identity()


def test_serve_ratls_listen_needs_a_ratls_section(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["serve", "kbs", "--data-dir", str(tmp_path / "state"),
                                 "--ratls-listen", "127.0.0.1:1234"])
    assert result.exit_code == 2
    assert "--ratls-listen needs a [ratls] section" in result.output
    config = tmp_path / "kbs.toml"
    config.write_text('[ratls]\nattester = "emulated-sgx"\n')
    result = runner.invoke(app, ["serve", "kbs", "--data-dir", str(tmp_path / "state"),
                                 "--config", str(config), "--ratls-listen", "127.0.0.1:1234"])
    assert result.exit_code == 2
    assert "needs emulated_root" in result.output
    assert "Traceback" not in result.output
