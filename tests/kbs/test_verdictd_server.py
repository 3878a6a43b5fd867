"""The Verdictd-style broker over real RA-TLS sockets on loopback, with emulated SGX.

One KBS (its resource store and resource policy) behind a :class:`VerdictdServer` in
mutual mode; clients attest with the session's emulator test root.  Refusals first: a
guest the gate refuses, a client without a certificate and one with a plain certificate
get no application byte.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.as_.config import AsSettings
from veritee.emulator.root import TestRoot
from veritee.errors import ConfigError, VeriteeError
from veritee.guest.eaa_kbc import EaaClosed, EaaConnectError, EaaKbc, EaaRefused, ratls_connector
from veritee.kbs.bootstrap import KbsComponents, KbsSettings, build_kbs
from veritee.kbs.verdictd import VerdictdBroker
from veritee.kbs.verdictd_policy import VerdictdGate
from veritee.kbs.verdictd_server import VerdictdServer
from veritee.ratls.cert import RatlsIdentity, make_identity, plain_identity
from veritee.ratls.quoter import EmulatedQuoter
from veritee.ratls.tls import AttestedConnection, client_context, connect_attested
from veritee.ratls.verify import RatlsVerifier
from veritee.verifier.registry import VerifierSettings

ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
KEK = secrets.token_bytes(32)
KID = "default/image-kek/84688df7-2c0c-40fa-956b-29d8e74d16c0"
OTHER_ENCLAVE = base64.b64encode(b"\xab" * 32).decode()


@dataclass
class Broker:
    parts: KbsComponents
    server: VerdictdServer
    root: Path

    @property
    def port(self) -> int:
        assert self.server.address is not None
        return self.server.address[1]


def _policy_body(text: str) -> bytes:
    return json.dumps({"policy": base64.urlsafe_b64encode(text.encode()).decode()}).encode()


def _serve(parts: KbsComponents, root: Path, gate: VerdictdGate) -> VerdictdServer:
    settings = VerifierSettings(trust_root=root)
    identity = make_identity(EmulatedQuoter(root, "sgx"))
    server = VerdictdServer(
        VerdictdBroker.for_kbs(parts.service), identity, RatlsVerifier(settings, gate),
        host="127.0.0.1", port=0, idle_timeout=20,
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def kbs(tmp_path_factory: pytest.TempPathFactory, test_root: TestRoot) -> KbsComponents:
    data = tmp_path_factory.mktemp("verdictd")
    parts = build_kbs(KbsSettings(attestation=AsSettings(data_dir=data,
                                                         trust_root=test_root.directory)))
    parts.service.set_resource(KID.split("/"), KEK)  # the KBS admin operation
    parts.service.set_resource(["default", "sigstore-config", "test"], b"default:\n  sigstore: x\n")
    parts.service.set_resource_policy(_policy_body(ALLOW))
    return parts


@pytest.fixture(scope="module")
def broker(kbs: KbsComponents, test_root: TestRoot) -> Iterator[Broker]:
    server = _serve(kbs, test_root.directory, VerdictdGate())
    yield Broker(kbs, server, test_root.directory)
    server.stop()


@pytest.fixture(scope="module")
def strict_broker(kbs: KbsComponents, test_root: TestRoot) -> Iterator[Broker]:
    """A gate whose sgxData names another enclave."""
    gate = VerdictdGate(data={"mrEnclave": [OTHER_ENCLAVE], "mrSigner": [], "productId": 0,
                              "svn": 0})
    server = _serve(kbs, test_root.directory, gate)
    yield Broker(kbs, server, test_root.directory)
    server.stop()


def guest_identity(root: Path) -> RatlsIdentity:
    return make_identity(EmulatedQuoter(root, "sgx"))


def server_verifier(root: Path) -> RatlsVerifier:
    return RatlsVerifier(VerifierSettings(trust_root=root))


def connect(b: Broker, identity: RatlsIdentity | None) -> AttestedConnection:
    return connect_attested("127.0.0.1", b.port, client_context(identity),
                            server_verifier(b.root), timeout=20)


def everything_received(b: Broker, identity: RatlsIdentity | None, request: bytes) -> bytes:
    """Connect, send ``request`` and read until the broker closes; the bytes received."""
    received = b""
    try:
        conn = connect(b, identity)
    except VeriteeError:
        return received
    try:
        conn.send(request)
        while True:
            chunk = conn.recv()
            if not chunk:
                break
            received += chunk
    except VeriteeError:
        pass
    finally:
        conn.close()
    return received


def exchange(conn: AttestedConnection, doc: object) -> bytes:
    conn.send(json.dumps(doc).encode())
    return conn.recv()


# --- refusals first ----------------------------------------------------------------------------


def test_a_guest_outside_sgx_data_gets_no_byte(
    strict_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="veritee")
    identity = guest_identity(strict_broker.root)
    for request in (b'{"command":"version"}', json.dumps(
            {"command": "Get KEK", "kids": [KID]}).encode()):
        assert everything_received(strict_broker, identity, request) == b""
    refused = [r.getMessage() for r in caplog.records if "refused client" in r.getMessage()]
    assert refused
    assert "sgxPolicy.rego refused" in refused[0]
    assert base64.b64encode(KEK).decode() not in caplog.text


def test_the_same_guest_through_the_eaa_kbc_is_told_the_broker_closed(
    strict_broker: Broker,
) -> None:
    connector = ratls_connector(f"127.0.0.1:{strict_broker.port}",
                                guest_identity(strict_broker.root),
                                server_verifier(strict_broker.root), timeout=20)
    with pytest.raises((EaaClosed, EaaConnectError)), EaaKbc(connector) as kbc:
        kbc.get_kek([KID])


def test_a_client_without_a_certificate_is_refused(broker: Broker) -> None:
    assert everything_received(broker, None, b'{"command":"version"}') == b""


def test_a_plain_tls_certificate_is_refused(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="veritee")
    assert everything_received(broker, plain_identity(), b'{"command":"version"}') == b""
    assert any("refused client" in r.getMessage() for r in caplog.records)


def test_a_server_outside_the_guests_trust_is_refused_by_the_guest(
    broker: Broker, tmp_path: Path
) -> None:
    other = TestRoot.init(tmp_path / "other-root")
    connector = ratls_connector(f"127.0.0.1:{broker.port}", guest_identity(broker.root),
                                server_verifier(other.directory), timeout=20)
    with pytest.raises(EaaConnectError, match="no attested connection"), EaaKbc(connector) as kbc:
        kbc.check_version()


def test_a_port_in_use_is_a_config_error(broker: Broker) -> None:
    twin = VerdictdServer(broker.server.broker, broker.server.identity, broker.server.verifier,
                          host="127.0.0.1", port=broker.port)
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{broker.port}"):
        twin.start()


@pytest.mark.parametrize("request_bytes", [b"not json", b'{"command":"getKek"}', b"[]"])
def test_non_json_and_unknown_commands_close_without_reply(
    broker: Broker, request_bytes: bytes
) -> None:
    with connect(broker, guest_identity(broker.root)) as conn:
        assert exchange(conn, {"command": "version"}) == b'{"status":"OK","version":"v1"}'
        conn.send(request_bytes)
        assert conn.recv() == b""


def test_get_kek_of_an_unknown_kid_fails_and_the_session_goes_on(broker: Broker) -> None:
    with connect(broker, guest_identity(broker.root)) as conn:
        assert exchange(conn, {"command": "Get KEK", "kids": ["default/image-kek/none"]}) == (
            b'{"data":{},"error":"kid: default/image-kek/none\'s key not found","status":"Fail"}'
        )
        assert exchange(conn, {"command": "version"}) == b'{"status":"OK","version":"v1"}'


# --- the session ---------------------------------------------------------------------------------


def test_verdictd_session_version_get_kek_decrypt(broker: Broker) -> None:
    iv = secrets.token_bytes(12)
    sealed = AESGCM(KEK).encrypt(iv, b"the layer's private options", None)
    sent = base64.b64encode(sealed).decode()
    with connect(broker, guest_identity(broker.root)) as conn:
        assert conn.peer is not None
        assert conn.peer.tee == "sgx"
        assert exchange(conn, {"command": "version"}) == b'{"status":"OK","version":"v1"}'
        key = base64.b64encode(KEK).decode()
        assert exchange(conn, {"command": "Get KEK", "kids": [KID]}) == (
            f'{{"data":{{"{KID}":"{key}"}},"status":"OK"}}'.encode()
        )
        reply = exchange(conn, {"command": "Decrypt", "blobs": [{
            "kid": KID, "encrypted_data": sent, "algorithm": "AES", "key_length": 256,
            "iv": base64.b64encode(iv).decode()}]})
        plain = base64.b64encode(b"the layer's private options").decode()
        assert reply == f'{{"data":{{"{sent}":"{plain}"}},"status":"OK"}}'.encode()


def test_echo_replies_then_closes(broker: Broker) -> None:
    with connect(broker, guest_identity(broker.root)) as conn:
        assert exchange(conn, {"command": "echo", "data": "ping"}) == b"ping"
        assert conn.recv() == b""


def test_the_eaa_kbc_over_ra_tls(broker: Broker) -> None:
    connector = ratls_connector(f"127.0.0.1:{broker.port}", guest_identity(broker.root),
                                server_verifier(broker.root), timeout=20)
    iv = secrets.token_bytes(12)
    sealed = AESGCM(KEK).encrypt(iv, b"optsdata", None)
    with EaaKbc(connector) as kbc:
        assert kbc.check_version() == "v1"
        assert kbc.get_resource(KID) == KEK
        assert kbc.get_resource("default/sigstore-config/test") == b"default:\n  sigstore: x\n"
        assert kbc.get_kek([f"kbs:///{KID}"]) == {f"kbs:///{KID}": KEK}
        assert kbc.decrypt(f"kbs:///{KID}", sealed, iv) == b"optsdata"
        with pytest.raises(EaaRefused, match="not found"):
            kbc.get_resource("default/x/missing")


def test_the_resource_policy_is_the_kbss(broker: Broker) -> None:
    """The KBS's resource policy decides per resource, over the peer's EAR-shaped claims."""
    service = broker.parts.service
    only_emulated_sgx = (
        "package policy\n\nimport rego.v1\n\n"
        "allow if {\n"
        '    input["ear.veritee.emulated"] == true\n'
        '    input.submods.cpu0["ear.veraison.annotated-evidence"].sgx\n'
        '    input["ear.veritee.ratls"].tee == "sgx"\n'
        '    data["resource-path"][1] == "image-kek"\n'
        "}\n"
    )
    service.set_resource_policy(_policy_body(only_emulated_sgx))
    try:
        connector = ratls_connector(f"127.0.0.1:{broker.port}", guest_identity(broker.root),
                                    server_verifier(broker.root), timeout=20)
        with EaaKbc(connector) as kbc:
            assert kbc.get_resource(KID) == KEK
            with pytest.raises(EaaRefused, match="not released by the resource policy"):
                kbc.get_resource("default/sigstore-config/test")
    finally:
        service.set_resource_policy(_policy_body(ALLOW))
