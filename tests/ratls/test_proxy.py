"""ratls/proxy over loopback: a failed attestation, on either side, closes the connection
before any byte reaches the upstream (a server that records every byte it receives); then
forwarding, mutual mode, Inclavared's own protocol without --xfer, and concurrency."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ratls_live import (
    FlippingQuoter,
    Recorder,
    recording_upstream,
    running_proxy,
    swapped_identity,
)

from veritee.emulator.machine import MR_ENCLAVE, EmulatedMachine
from veritee.emulator.root import TestRoot
from veritee.guest.attesters.base import AttesterError
from veritee.ratls.cert import RatlsIdentity, make_identity, plain_identity
from veritee.ratls.proxy import (
    REPLY_INFO,
    REPLY_OTHER,
    RatlsProxy,
    attester_identity,
    peer_verifier,
)
from veritee.ratls.quoter import EmulatedQuoter
from veritee.ratls.tls import (
    TlsError,
    client_context,
    connect_attested,
    open_attested,
)
from veritee.ratls.verify import RatlsError, RatlsVerifier

REQUEST = b'{"type":"GETENCLAVEINFO"}'


@pytest.fixture(scope="module")
def root(test_root: TestRoot) -> Path:
    return test_root.directory


@pytest.fixture(scope="module")
def sgx(root: Path) -> RatlsIdentity:
    return make_identity(EmulatedQuoter(root, "sgx"))


@pytest.fixture(scope="module")
def tdx(root: Path) -> RatlsIdentity:
    return make_identity(EmulatedQuoter(root, "tdx"))


@pytest.fixture(scope="module")
def verifier(root: Path) -> RatlsVerifier:
    return peer_verifier(trust_root=root)


@pytest.fixture
def upstream() -> Iterator[tuple[tuple[str, int], Recorder]]:
    with recording_upstream() as served:
        yield served


def _nothing_forwarded(record: Recorder) -> None:
    with record.lock:
        assert bytes(record.received) == b""


# --------------------------------------------------------------------------- the client refuses


@pytest.mark.parametrize("flaw", ["plain", "tampered", "swapped", "policy"])
def test_client_refuses_the_proxy_and_nothing_is_forwarded(
    flaw, root, sgx, verifier, upstream, tmp_path
) -> None:
    xfer, record = upstream
    check = verifier
    if flaw == "plain":
        identity, step = plain_identity(), "no_evidence"
    elif flaw == "tampered":
        identity = make_identity(FlippingQuoter(EmulatedQuoter(root, "sgx"), offset=112))
        step = "evidence"
    elif flaw == "swapped":
        identity, step = swapped_identity(sgx), "binding"
    else:
        reference = tmp_path / "reference.json"
        reference.write_text(json.dumps({"mrenclave": ["ab" * 32]}))
        identity, step = sgx, "policy"
        check = peer_verifier(trust_root=root, policy=reference)
    with (
        running_proxy(RatlsProxy(identity, xfer=xfer)) as port,
        pytest.raises(RatlsError) as caught,
    ):
        connect_attested("127.0.0.1", port, client_context(None), check, timeout=10)
    assert caught.value.step == step
    _nothing_forwarded(record)


# --------------------------------------------------------------------------- the proxy refuses


def _client_refused(port: int, identity: RatlsIdentity | None) -> None:
    """A client that does not check the proxy and sends at once after its handshake (in
    TLS 1.3 it is done before the proxy has checked it): it must get the connection closed."""
    try:
        with connect_attested(
            "127.0.0.1", port, client_context(identity), None, timeout=10
        ) as conn:
            conn.send(REQUEST + b" and a secret")
            assert conn.recv() == b""
    except TlsError:
        pass  # the alert came first


@pytest.mark.parametrize("flaw", ["none", "plain", "tampered", "swapped", "policy", "tee"])
def test_mutual_proxy_refuses_the_client_before_any_byte_is_forwarded(
    flaw, root, sgx, tdx, upstream, tmp_path, caplog
) -> None:
    xfer, record = upstream
    check = peer_verifier(trust_root=root)
    client: RatlsIdentity | None
    if flaw == "none":
        client, step = None, "no_evidence"
    elif flaw == "plain":
        client, step = plain_identity(), "no_evidence"
    elif flaw == "tampered":
        client = make_identity(FlippingQuoter(EmulatedQuoter(root, "tdx"), offset=100))
        step = "evidence"
    elif flaw == "swapped":
        client, step = swapped_identity(tdx), "binding"
    elif flaw == "policy":
        reference = tmp_path / "reference.json"
        reference.write_text(json.dumps({"mrtd": ["cd" * 48]}))
        client, step = tdx, "policy"
        check = peer_verifier(trust_root=root, policy=reference)
    else:
        client, step = tdx, "evidence"
        check = peer_verifier("sgx_ecdsa", trust_root=root)
    with running_proxy(RatlsProxy(sgx, xfer=xfer, verifier=check)) as port:
        _client_refused(port, client)
    with record.lock:
        assert record.connections == 0  # the upstream was never even connected
    _nothing_forwarded(record)
    refusals = [r.getMessage() for r in caplog.records if r.name == "veritee.ratls"]
    assert any(f"RA-TLS {step}" in message for message in refusals), refusals


def test_a_client_that_never_finishes_its_handshake_is_dropped(sgx, upstream) -> None:
    import socket

    xfer, record = upstream
    with (
        running_proxy(RatlsProxy(sgx, xfer=xfer, handshake_timeout=0.3)) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
    ):
        raw.sendall(b"\x16\x03\x01")  # the start of a ClientHello, and then nothing
        assert raw.recv(100) == b""  # closed by the proxy after its handshake timeout
    assert record.connections == 0
    _nothing_forwarded(record)


# --------------------------------------------------------------------------- success


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_proxy_forwards_after_attestation(tee, root, verifier, upstream) -> None:
    xfer, record = upstream
    identity = make_identity(EmulatedQuoter(root, tee))
    with (
        running_proxy(RatlsProxy(identity, xfer=xfer)) as port,
        connect_attested("127.0.0.1", port, client_context(None), verifier, timeout=10) as conn,
    ):
        assert conn.peer is not None
        assert conn.peer.tee == tee
        conn.send(REQUEST)
        assert conn.recv() == REQUEST  # the upstream echoes
    with record.lock:
        assert bytes(record.received) == REQUEST


def test_mutual_succeeds_when_both_sides_attest(root, sgx, tdx, verifier, upstream) -> None:
    xfer, record = upstream
    with (
        running_proxy(RatlsProxy(sgx, xfer=xfer, verifier=verifier)) as port,
        connect_attested("127.0.0.1", port, client_context(tdx), verifier, timeout=10) as conn,
    ):
        assert conn.peer is not None
        assert conn.peer.tee == "sgx"
        conn.send(b"ping")
        assert conn.recv() == b"ping"
    with record.lock:
        assert bytes(record.received) == b"ping"


def test_large_transfer_both_ways_and_many_concurrent_clients(sgx, verifier, upstream) -> None:
    xfer, record = upstream
    payload = bytes(range(256)) * 4096  # 1 MiB per client

    async def one(port: int) -> bytes:
        stream = await open_attested("127.0.0.1", port, client_context(None), verifier)
        sender = asyncio.create_task(stream.write(payload))
        got = bytearray()
        while len(got) < len(payload):
            chunk = await stream.read()
            assert chunk
            got.extend(chunk)
        await sender
        await stream.close()
        return bytes(got)

    async def many(port: int) -> list[bytes]:
        return await asyncio.gather(*(one(port) for _ in range(16)))

    with running_proxy(RatlsProxy(sgx, xfer=xfer)) as port:
        results = asyncio.run(many(port))
    assert all(result == payload for result in results)
    with record.lock:
        assert record.connections == 16
        assert len(record.received) == 16 * len(payload)


def test_upstream_closing_first_closes_the_client(sgx, verifier) -> None:
    with (
        recording_upstream(lambda data: b"bye", close_after_answer=True) as (xfer, _),
        running_proxy(RatlsProxy(sgx, xfer=xfer)) as port,
        connect_attested("127.0.0.1", port, client_context(None), verifier, timeout=10) as conn,
    ):
        conn.send(b"hello")
        assert conn.recv() == b"bye"
        assert conn.recv() == b""  # the proxy closed the TLS side


def test_unreachable_upstream_closes_the_client(sgx, verifier) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = ("127.0.0.1", probe.getsockname()[1])
    with (
        running_proxy(RatlsProxy(sgx, xfer=dead)) as port,
        connect_attested("127.0.0.1", port, client_context(None), verifier, timeout=10) as conn,
    ):
        conn.send(REQUEST)
        assert conn.recv() == b""


# --------------------------------------------------------------------------- no --xfer


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (REQUEST, REPLY_INFO),
        (b'{"type":"OTHER"}', REPLY_OTHER),
        (b"[1, 2]", REPLY_OTHER),
        (b"not json", b""),
    ],
)
def test_without_xfer_the_proxy_speaks_inclavared(request_bytes, reply, sgx, verifier) -> None:
    with (
        running_proxy(RatlsProxy(sgx, xfer=None)) as port,
        connect_attested("127.0.0.1", port, client_context(None), verifier, timeout=10) as conn,
    ):
        conn.send(request_bytes)
        assert conn.recv() == reply
    assert REPLY_INFO == b"reply from inclavared!\n"
    assert REPLY_OTHER == b"hello from inclavared!\n"


# --------------------------------------------------------------------------- setup


def test_real_tee_attesters_over_an_emulated_machine(test_root, root) -> None:
    """The guest's own attesters (AttesterQuoter) as on hardware, over the emulator's
    machine behind the Kernel interface."""
    check = peer_verifier(trust_root=root)
    tdx_guest = EmulatedMachine.launch(test_root, "tdx")
    peer = check.verify_certificate(attester_identity("tdx", None, kernel=tdx_guest).cert_der)
    assert peer.tee == "tdx"
    sgx_guest = EmulatedMachine.launch(test_root, "sgx")
    peer = check.verify_certificate(attester_identity("sgx_ecdsa", None, kernel=sgx_guest).cert_der)
    assert peer.measurements["mrenclave"] == MR_ENCLAVE.hex()
    with pytest.raises(AttesterError, match="needs a sgx guest; this guest is tdx"):
        attester_identity("sgx_ecdsa", None, kernel=tdx_guest)
    with pytest.raises(AttesterError, match="no TEE found"):
        attester_identity("snp", None, kernel=EmulatedMachine())


def test_attester_names(root) -> None:
    identity = attester_identity("emulated-tdx", root)
    assert peer_verifier(trust_root=root).verify_certificate(identity.cert_der).tee == "tdx"
    with pytest.raises(AttesterError, match="--emulated"):
        attester_identity("emulated-sgx", None)
    with pytest.raises(AttesterError, match="unknown attester"):
        attester_identity("sgx_la", root)
    with pytest.raises(ValueError, match="unknown verifier"):
        peer_verifier("nullverifier")
