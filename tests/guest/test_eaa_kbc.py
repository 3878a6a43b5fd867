"""The EAA KBC (veritee.guest.eaa_kbc): its messages against the broker's protocol logic
through an in-memory channel, then over real RA-TLS sockets with the CDH."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from spawn import free_port, veritee_server

from veritee.emulator.root import TestRoot
from veritee.errors import ConfigError, ParseError
from veritee.guest.bootstrap import AgentSettings, build_agent
from veritee.guest.eaa_kbc import (
    MAX_FRAG_LENGTH,
    EaaClosed,
    EaaConnectError,
    EaaKbc,
    EaaRefused,
    EaaReplyError,
    eaa_resource_getter,
    parse_address,
    ratls_connector,
)
from veritee.guest.kbs_client import KbsClient
from veritee.guest.resource_uri import parse_resource_uri
from veritee.image.keyprovider import unwrap_key, wrap_optsdata
from veritee.kbs.resources import KvResourceBackend
from veritee.kbs.verdictd import VerdictdBroker
from veritee.policy.resource import ResourcePolicy
from veritee.ratls.cert import make_identity
from veritee.ratls.quoter import EmulatedQuoter
from veritee.ratls.verify import RatlsVerifier
from veritee.store.kv import MemoryStore
from veritee.verifier.registry import VerifierSettings

ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
KEK = bytes(range(32))
BIG = secrets.token_bytes(3 * MAX_FRAG_LENGTH + 17)


@dataclass(frozen=True)
class Peer:
    tee: str = "sgx"
    fmt: str = "dice"
    claims: dict[str, Any] = field(default_factory=dict)
    measurements: dict[str, str] = field(default_factory=dict)
    emulated: bool = True


class MemoryChannel:
    """The broker's session behind send/recv, replies handed out at most n bytes at a time."""

    def __init__(self, broker: VerdictdBroker, *, mangle: dict[str, bytes] | None = None) -> None:
        self.session = broker.session(Peer())
        self.sent: list[dict[str, Any]] = []
        self.pending = b""
        self.closed = False
        self.mangle = mangle or {}

    def send(self, data: bytes) -> None:
        assert not self.closed
        doc = json.loads(data)
        self.sent.append(doc)
        if doc["command"] in self.mangle:
            self.pending += self.mangle[doc["command"]]
            return
        reply = self.session.handle(data)
        self.pending += reply.data
        if reply.close:
            self.closed = True

    def recv(self, n: int = 65536) -> bytes:
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def close(self) -> None:
        self.closed = True


def broker(policy: str = ALLOW) -> VerdictdBroker:
    backend = KvResourceBackend(MemoryStore())
    backend.put("default", "image-kek", "k1", KEK)
    backend.put("default", "big", "blob", BIG)
    backend.put("default", "lie", "fail", b'{"error":"stored","status":"Fail"}')
    compiled = ResourcePolicy(policy)
    return VerdictdBroker(
        resources=backend, resource_policy=lambda: compiled, policy_input=lambda _p: {}
    )


def kbc(b: VerdictdBroker | None = None, **kwargs: Any) -> tuple[EaaKbc, list[MemoryChannel]]:
    channels: list[MemoryChannel] = []

    def connect() -> MemoryChannel:
        channel = MemoryChannel(b or broker(), **kwargs)
        channels.append(channel)
        return channel

    return EaaKbc(connect), channels


# --- refusals first ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "1.2.3.4", "http://1.2.3.4:80", "1.2.3.4:0",
                                  "1.2.3.4:65536", ":80", "host:port"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ConfigError, match="IP:PORT"):
        parse_address(text)


def test_addresses() -> None:
    assert parse_address("127.0.0.1:1234") == ("127.0.0.1", 1234)
    assert parse_address("[::1]:1234") == ("::1", 1234)


def test_a_broker_that_closes_without_reply() -> None:
    client, _ = kbc(mangle={"version": b""})
    with pytest.raises(EaaClosed, match="without a reply"):
        client.get_resource("default/image-kek/k1")


def test_a_broker_of_another_version() -> None:
    client, channels = kbc(mangle={"version": b'{"status":"OK","version":"v2"}'})
    with pytest.raises(EaaReplyError, match="v2"):
        client.check_version()
    assert channels[0].closed


def test_non_json_reply() -> None:
    client, _ = kbc(mangle={"Get KEK": b"<html>"})
    with pytest.raises(EaaReplyError, match="Get KEK reply is not JSON"):
        client.get_kek(["default/image-kek/k1"])


def test_missing_resource_is_the_brokers_refusal() -> None:
    client, channels = kbc()
    with pytest.raises(EaaRefused, match="default/x/y not found"):
        client.get_resource("default/x/y")
    assert [d["command"] for d in channels[0].sent] == ["version", "Get Resource Info"]


def test_a_fail_document_as_resource_is_a_refusal() -> None:
    client, _ = kbc()
    with pytest.raises(EaaRefused, match="stored"):
        client.get_resource("default/lie/fail")


def test_get_kek_refused_names_the_kid_not_the_key() -> None:
    client, _ = kbc()
    with pytest.raises(EaaRefused, match="default/image-kek/none's key not found") as info:
        client.get_kek(["kbs:///default/image-kek/k1", "default/image-kek/none"])
    assert base64.b64encode(KEK).decode() not in str(info.value)


def test_decrypt_of_altered_data() -> None:
    client, _ = kbc()
    with pytest.raises(EaaRefused, match="decryption failed"):
        client.decrypt("default/image-kek/k1", b"x" * 40, b"y" * 12)


def test_a_malformed_key_id_uri_is_not_sent() -> None:
    client, channels = kbc()
    with pytest.raises(ParseError):
        client.get_kek(["kbs:///default/../k1"])
    assert channels == []


def test_getter_refuses_other_plugins() -> None:
    get = eaa_resource_getter(lambda: MemoryChannel(broker()))
    with pytest.raises(ParseError, match="KBS resources"):
        get("kbs+plugin:///a/b/c")
    with pytest.raises(ParseError, match="KBS resources"):
        get("kbs:///a/b/c?x=1")


# --- what is served ----------------------------------------------------------------------------


def test_version_comes_first_then_info_then_resource() -> None:
    client, channels = kbc()
    with client:
        assert client.get_resource("default/big/blob") == BIG
        assert client.get_resource("default/image-kek/k1") == KEK
    assert channels[0].sent == [
        {"command": "version"},
        {"command": "Get Resource Info", "name": "default/big/blob"},
        {"command": "Get Resource", "optional": {"resource_path": "default/big/blob"}},
        {"command": "Get Resource Info", "name": "default/image-kek/k1"},
        {"command": "Get Resource", "optional": {"resource_path": "default/image-kek/k1"}},
    ]
    assert channels[0].closed
    assert len(channels) == 1


def test_get_kek_and_decrypt() -> None:
    client, channels = kbc()
    iv = secrets.token_bytes(12)
    sealed = AESGCM(KEK).encrypt(iv, b"layer private options", None)
    assert client.get_kek(["kbs://any.host/default/image-kek/k1"]) == {
        "kbs://any.host/default/image-kek/k1": KEK}
    assert client.decrypt("kbs:///default/image-kek/k1", sealed, iv) == b"layer private options"
    assert channels[0].sent[1] == {"command": "Get KEK", "kids": ["default/image-kek/k1"]}
    assert channels[0].sent[2]["blobs"] == [{
        "kid": "default/image-kek/k1", "encrypted_data": base64.b64encode(sealed).decode(),
        "algorithm": "A256GCM", "key_length": 256, "iv": base64.b64encode(iv).decode()}]


def test_getter_is_one_connection_per_resource() -> None:
    channels: list[MemoryChannel] = []

    def connect() -> MemoryChannel:
        channels.append(MemoryChannel(broker()))
        return channels[-1]

    get = eaa_resource_getter(connect)
    assert get("kbs:///default/image-kek/k1") == KEK
    assert get("kbs:///default/big/blob") == BIG
    assert len(channels) == 2
    assert all(c.closed for c in channels)


# --- over real RA-TLS: `veritee serve --ratls-listen` as a process, and the CDH -----------------


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, test_root: TestRoot
) -> Iterator[tuple[str, Path]]:
    """`veritee serve --config … --ratls-listen 127.0.0.1:P`; the KEK and an allowing policy
    stored through the admin API.  Yields the RA-TLS address and the test root."""
    data = tmp_path_factory.mktemp("serve-ratls")
    config = data / "kbs-config.toml"
    config.write_text(
        "[http_server]\ninsecure_http = true\n\n"
        '[[plugins]]\nname = "resource"\n\n'
        f'[ratls]\nattester = "emulated-sgx"\nemulated_root = "{test_root.directory}"\n'
    )
    address = f"127.0.0.1:{free_port()}"
    args = ["serve", "--data-dir", str(data / "state"), "--trust-root", str(test_root.directory),
            "--config", str(config), "--ratls-listen", address]
    with veritee_server(args, data / "out.txt") as url:
        token = (data / "state" / "admin.token").read_text().strip()
        with KbsClient(url, admin_token=token) as admin:
            admin.set_resource("default/image-kek/k1", KEK)
            admin.set_resource("default/cred/auth", b'{"auths": {}}')
            admin.set_resource_policy(ALLOW)
        assert "RA-TLS key broker (Verdictd protocol, mutual) on 127.0.0.1:" in (
            data / "out.txt").read_text()
        yield address, test_root.directory


def test_serve_ratls_listen_refuses_a_guest_of_another_root(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    address, root = served
    other = TestRoot.init(tmp_path / "other")
    identity = make_identity(EmulatedQuoter(other.directory, "sgx"))
    verifier = RatlsVerifier(VerifierSettings(trust_root=root))
    with pytest.raises((EaaClosed, EaaConnectError)), EaaKbc(
        ratls_connector(address, identity, verifier, timeout=20)
    ) as client:
        client.get_resource("default/image-kek/k1")


def test_serve_ratls_listen_serves_the_kbs_resources(served: tuple[str, Path]) -> None:
    address, root = served
    identity = make_identity(EmulatedQuoter(root, "sgx"))
    verifier = RatlsVerifier(VerifierSettings(trust_root=root))
    with EaaKbc(ratls_connector(address, identity, verifier, timeout=20)) as client:
        assert client.check_version() == "v1"
        assert client.get_resource("default/image-kek/k1") == KEK
        assert client.get_kek(["default/image-kek/k1"]) == {"default/image-kek/k1": KEK}


def test_the_cdh_with_eaa_kbc(served: tuple[str, Path], tmp_path: Path) -> None:
    """An emulated SGX guest whose cdh.toml selects eaa_kbc: credentials at start, a
    resource, and the image key provider's unwrap, all through the broker."""
    address, root = served
    cdh_toml = tmp_path / "cdh.toml"
    cdh_toml.write_text(
        f'[kbc]\nname = "eaa_kbc"\nurl = "{address}"\n\n'
        "[[credentials]]\n"
        'resource_uri = "kbs:///default/cred/auth"\n'
        'path = "/run/confidential-containers/cdh/kbs/auth.json"\n'
    )
    parts = build_agent(AgentSettings(
        cdh_config=cdh_toml, emulated_root=root, emulated_tee="sgx", env={},
        credentials_root=tmp_path / "creds", eventlog=tmp_path / "eventlog"))
    assert (tmp_path / "creds" / "auth.json").read_bytes() == b'{"auths": {}}'
    assert parts.cdh.get_resource("kbs:///default/image-kek/k1") == KEK
    kid = parse_resource_uri("kbs:///default/image-kek/k1")
    packet = wrap_optsdata(b'{"symkey":"..."}', kid, KEK)
    assert unwrap_key(packet.to_json(), parts.cdh.get_resource) == b'{"symkey":"..."}'
    with pytest.raises(EaaRefused, match="not found"):
        parts.cdh.get_resource("kbs:///default/image-kek/missing")
