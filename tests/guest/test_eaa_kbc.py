"""The EAA KBC (veritee.guest.eaa_kbc): its messages against the broker's protocol logic
through an in-memory channel, then over real RA-TLS sockets with the CDH."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import ConfigError, ParseError
from veritee.guest.eaa_kbc import (
    MAX_FRAG_LENGTH,
    EaaClosed,
    EaaKbc,
    EaaRefused,
    EaaReplyError,
    eaa_resource_getter,
    parse_address,
)
from veritee.kbs.resources import KvResourceBackend
from veritee.kbs.verdictd import VerdictdBroker
from veritee.policy.resource import ResourcePolicy
from veritee.store.kv import MemoryStore

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
