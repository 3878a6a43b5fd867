"""ratls/tls over loopback: rats-tls's verify modes and chain rule, the attestation check of
the peer certificate before any application byte, refusals closed and logged."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from OpenSSL import SSL
from ratls_live import FlippingQuoter, ca_issued_identity, serving, swapped_identity

from veritee.emulator.root import TestRoot
from veritee.ratls import tls
from veritee.ratls.cert import RatlsIdentity, make_identity, plain_identity
from veritee.ratls.policy import load_policy
from veritee.ratls.quoter import EmulatedQuoter
from veritee.ratls.tls import (
    TlsError,
    accept_attested,
    client_context,
    connect_attested,
    open_attested,
    server_context,
)
from veritee.ratls.verify import RatlsError, RatlsPeer, RatlsVerifier
from veritee.verifier.registry import VerifierSettings

SRC = Path(__file__).resolve().parents[2] / "src" / "veritee"


@pytest.fixture(scope="module")
def sgx(test_root: TestRoot) -> RatlsIdentity:
    return make_identity(EmulatedQuoter(test_root.directory, "sgx"))


@pytest.fixture(scope="module")
def tdx(test_root: TestRoot) -> RatlsIdentity:
    return make_identity(EmulatedQuoter(test_root.directory, "tdx"))


@pytest.fixture(scope="module")
def verifier(test_root: TestRoot) -> RatlsVerifier:
    return RatlsVerifier(VerifierSettings(trust_root=test_root.directory))


class Server:
    """An asyncio RA-TLS server on its own loop: records what each connection ended with
    and every application byte it read (it echoes them upper-cased)."""

    def __init__(self, ctx: SSL.Context, verifier: RatlsVerifier | None) -> None:
        self.ctx = ctx
        self.verifier = verifier
        self.outcomes: list[object] = []
        self.received = bytearray()
        self.done = threading.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            stream = await accept_attested(reader, writer, self.ctx, self.verifier, timeout=10)
        except (RatlsError, TlsError) as exc:
            self.outcomes.append(exc)
            self.done.set()
            return
        self.outcomes.append(stream.peer)
        try:
            while data := await stream.read():
                self.received.extend(data)
                await stream.write(data.upper())
        finally:
            await stream.close()
            self.done.set()


@pytest.fixture
def serve() -> Iterator[Callable[[Server], int]]:
    with ExitStack() as stack:
        yield lambda server: stack.enter_context(serving(server.handle))


def _refused(
    serve: object, server_identity: RatlsIdentity, verifier: RatlsVerifier
) -> tuple[RatlsError, Server]:
    server = Server(server_context(server_identity, mutual=False), None)
    port = serve(server)
    with pytest.raises(RatlsError) as caught:
        connect_attested("127.0.0.1", port, client_context(None), verifier, timeout=10)
    assert server.done.wait(10)
    assert server.received == b""  # no application byte crossed
    return caught.value, server


# --------------------------------------------------------------------------- refusals first


def test_client_refuses_a_plain_tls_certificate(serve, verifier) -> None:
    error, _ = _refused(serve, plain_identity(), verifier)
    assert error.step == "no_evidence"


def test_client_refuses_a_tampered_quote(serve, verifier, test_root) -> None:
    quoter = FlippingQuoter(EmulatedQuoter(test_root.directory, "sgx"), offset=112)  # MRENCLAVE
    error, _ = _refused(serve, make_identity(quoter), verifier)
    assert error.step == "evidence"


def test_client_refuses_evidence_bound_to_another_key(serve, verifier, sgx) -> None:
    error, _ = _refused(serve, swapped_identity(sgx), verifier)
    assert error.step == "binding"


def test_client_refuses_a_measurement_outside_the_policy(serve, test_root, sgx, tmp_path) -> None:
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"mrenclave": ["11" * 32]}))
    strict = RatlsVerifier(VerifierSettings(trust_root=test_root.directory), load_policy(reference))
    error, _ = _refused(serve, sgx, strict)
    assert error.step == "policy"


def test_client_refuses_a_test_root_it_was_not_given(serve, sgx) -> None:
    error, _ = _refused(serve, sgx, RatlsVerifier(VerifierSettings()))
    assert error.step == "evidence"


def test_chain_errors_other_than_a_self_signed_leaf_are_fatal(serve, verifier) -> None:
    error, _ = _refused(serve, ca_issued_identity(), verifier)
    assert error.step == "certificate"
    assert "X509 error 20" in error.detail  # unable to get local issuer certificate


def test_an_expired_certificate_is_fatal_in_the_handshake(serve, verifier, test_root) -> None:
    old = make_identity(
        EmulatedQuoter(test_root.directory, "sgx"),
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=400),
    )
    error, _ = _refused(serve, old, verifier)
    assert error.step == "certificate"
    assert "X509 error 10" in error.detail  # certificate has expired


def test_refusal_is_logged_on_veritee_ratls(serve, verifier, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="veritee.ratls"):
        _refused(serve, plain_identity(), verifier)
    records = [r for r in caplog.records if r.name == "veritee.ratls"]
    assert records
    assert "no_evidence" in records[-1].getMessage()
    assert "refused server 127.0.0.1:" in records[-1].getMessage()


def _mutual_refused(serve, sgx, verifier, client: RatlsIdentity | None) -> Server:
    """A mutual server refusing ``client``; the client sends right after its handshake (in
    TLS 1.3 it finishes before the server has checked it) and must get nothing back."""
    server = Server(server_context(sgx, mutual=True), verifier)
    port = serve(server)
    try:
        with connect_attested(
            "127.0.0.1", port, client_context(client), verifier, timeout=10
        ) as conn:
            conn.send(b"secret request")
            assert conn.recv() == b""
    except TlsError:
        pass  # TLS 1.2, or the alert arrived first
    assert server.done.wait(10)
    assert server.received == b""
    return server


def test_mutual_server_refuses_a_client_without_certificate(serve, sgx, verifier) -> None:
    server = _mutual_refused(serve, sgx, verifier, None)
    (outcome,) = server.outcomes
    assert isinstance(outcome, RatlsError)
    assert outcome.step == "no_evidence"


def test_mutual_server_refuses_a_plain_client_certificate(serve, sgx, verifier) -> None:
    (outcome,) = _mutual_refused(serve, sgx, verifier, plain_identity()).outcomes
    assert isinstance(outcome, RatlsError)
    assert outcome.step == "no_evidence"


def test_mutual_server_refuses_a_tampered_client(serve, sgx, verifier, test_root) -> None:
    quoter = FlippingQuoter(EmulatedQuoter(test_root.directory, "tdx"), offset=100)
    (outcome,) = _mutual_refused(serve, sgx, verifier, make_identity(quoter)).outcomes
    assert isinstance(outcome, RatlsError)
    assert outcome.step == "evidence"


def test_mutual_server_refuses_a_swapped_client(serve, sgx, tdx, verifier) -> None:
    (outcome,) = _mutual_refused(serve, sgx, verifier, swapped_identity(tdx)).outcomes
    assert isinstance(outcome, RatlsError)
    assert outcome.step == "binding"


def test_connection_refused_is_a_tls_error(verifier) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TlsError, match="cannot connect"):
        connect_attested("127.0.0.1", port, client_context(None), verifier, timeout=5)


def test_handshake_timeout_is_a_tls_error(serve, sgx, verifier) -> None:
    import socket

    with socket.socket() as silent:  # accepts (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(TlsError, match="timed out"):
            connect_attested("127.0.0.1", port, client_context(None), verifier, timeout=0.5)


# --------------------------------------------------------------------------- modes


def test_verify_modes_follow_rats_tls(sgx) -> None:
    assert server_context(sgx, mutual=False).get_verify_mode() == SSL.VERIFY_NONE
    assert server_context(sgx, mutual=True).get_verify_mode() == (
        SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    )
    assert client_context(None).get_verify_mode() == SSL.VERIFY_PEER


def test_no_python_ssl_in_the_ratls_package() -> None:
    for path in (SRC / "ratls").glob("*.py"):
        text = path.read_text()
        assert "import ssl" not in text, path
        assert "from ssl" not in text, path


# --------------------------------------------------------------------------- success


def test_blocking_client_and_asyncio_server(serve, sgx, verifier) -> None:
    server = Server(server_context(sgx, mutual=False), None)
    port = serve(server)
    with connect_attested("127.0.0.1", port, client_context(None), verifier, timeout=10) as conn:
        assert isinstance(conn.peer, RatlsPeer)
        assert conn.peer.tee == "sgx"
        assert conn.peer.emulated
        conn.send(b"hello")
        assert conn.recv() == b"HELLO"
    assert server.done.wait(10)
    assert server.outcomes == [None]  # no verifier: the client was not asked to attest


def test_mutual_both_sides_attested(serve, sgx, tdx, verifier) -> None:
    server = Server(server_context(sgx, mutual=True), verifier)
    port = serve(server)

    async def client() -> tuple[RatlsPeer | None, bytes]:
        stream = await open_attested("127.0.0.1", port, client_context(tdx), verifier)
        await stream.write(b"x" * 200_000)
        got = bytearray()
        while len(got) < 200_000:
            chunk = await stream.read()
            assert chunk
            got.extend(chunk)
        await stream.close()
        return stream.peer, bytes(got)

    peer, echoed = asyncio.run(client())
    assert peer is not None
    assert peer.tee == "sgx"
    assert echoed == b"X" * 200_000
    assert server.done.wait(10)
    (client_peer,) = server.outcomes
    assert isinstance(client_peer, RatlsPeer)
    assert client_peer.tee == "tdx"
    assert set(client_peer.measurements) >= {"mrtd", "rtmr0"}


def test_tls_versions_are_12_and_up(serve, sgx, verifier) -> None:
    ctx = client_context(None)
    ctx.set_max_proto_version(SSL.TLS1_1_VERSION)
    server = Server(server_context(sgx, mutual=False), None)
    port = serve(server)
    with pytest.raises(TlsError):
        connect_attested("127.0.0.1", port, ctx, verifier, timeout=10)
    assert server.done.wait(10)
    assert isinstance(server.outcomes[0], TlsError)
    assert tls.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT == 18
