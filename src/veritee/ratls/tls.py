"""RA-TLS connections: contexts, the peer-certificate rule, and attested streams.

Why pyOpenSSL and not Python's :mod:`ssl`: an RA-TLS certificate is self-signed, so
no chain to a CA exists, and ``ssl`` has no verify callback.  A client can still
switch verification off, but a server cannot *request* a client certificate in mutual
mode and then accept a self-signed one: ``CERT_REQUIRED`` demands a chain to a loaded
CA and ``CERT_OPTIONAL`` fails on an untrusted one the same way.  pyOpenSSL exposes
OpenSSL's verify callback, so both roles do what rats-tls does
(``src/tls_wrappers/openssl/un_negotiate.c``): every chain error is fatal except
``X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT`` (18); an expired or not-yet-valid
certificate is refused.  Both roles use pyOpenSSL, so RA-TLS has one code path; the
package never uses :mod:`ssl` for it.

The attestation check, :meth:`RatlsVerifier.verify_certificate` on the peer's
certificate, runs right after the handshake and before any application byte is read or
written.  On failure the connection is closed (no close_notify: it is an abort), the
reason is logged on ``veritee.ratls`` and :class:`~veritee.ratls.verify.RatlsError`
is raised.  Failures below attestation (refused, reset, timed out, a TLS alert) are
:class:`TlsError`.

Verify modes follow rats-tls (``src/tls_wrappers/openssl/negotiate.c``): a client
verifies the server (``VERIFY_PEER``); a server asks for a client certificate only in
mutual mode (``VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT``).  A client presents a
certificate only when given an identity.  TLS 1.2 and 1.3; no renegotiation, no
session resumption (every handshake shows the peer's evidence certificate).

TLS runs over memory BIOs (``SSL.Connection(ctx, None)``): :class:`_Engine` moves
bytes between OpenSSL and the caller, so the asyncio streams (:func:`accept_attested`,
:func:`open_attested`) and the blocking client (:func:`connect_attested`) share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from types import TracebackType
from typing import Final

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto

from veritee.errors import VeriteeError
from veritee.ratls.cert import RatlsIdentity
from veritee.ratls.verify import RatlsError, RatlsPeer, RatlsVerifier

__all__ = [
    "AttestedConnection",
    "AttestedStream",
    "TlsError",
    "accept_attested",
    "client_context",
    "connect_attested",
    "open_attested",
    "server_context",
]

log = logging.getLogger("veritee.ratls")

X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: Final = 18
_CHUNK: Final = 65536

#: OpenSSL's X509_V_ERR_* texts for the errors a self-signed peer certificate can meet.
_X509_ERRORS: Final[dict[int, str]] = {
    2: "unable to get issuer certificate",
    4: "unable to decrypt certificate signature",
    6: "unable to decode issuer public key",
    7: "certificate signature failure",
    9: "certificate is not yet valid (check the clocks of both hosts)",
    10: "certificate has expired",
    13: "format error in certificate's notBefore field",
    14: "format error in certificate's notAfter field",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    22: "certificate chain too long",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
    32: "key usage does not include certificate signing",
}


class TlsError(VeriteeError):
    """The connection failed below attestation: it could not be opened, was reset or closed
    during the handshake, timed out, or TLS itself failed (an alert, no shared protocol).
    The message names the peer and OpenSSL's reason."""


# --------------------------------------------------------------------------- contexts


def _chain_rule(conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
    """OpenSSL's verify callback: rats-tls's rule, only a self-signed leaf is tolerated."""
    if ok:
        return True
    if errnum == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT and depth == 0:
        return True
    engine = conn.get_app_data()
    if isinstance(engine, _Engine) and engine.chain_error is None:
        text = _X509_ERRORS.get(errnum, "certificate verification error")
        engine.chain_error = f"X509 error {errnum} at depth {depth}: {text}"
    return False


def _context(identity: RatlsIdentity | None) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    if identity is not None:
        ctx.use_certificate(identity.certificate)
        ctx.use_privatekey(identity.key)
        ctx.check_privatekey()
    return ctx


def server_context(identity: RatlsIdentity, *, mutual: bool) -> SSL.Context:
    """A server context presenting ``identity``; in mutual mode a client certificate is
    required (``VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT``), otherwise none is asked."""
    ctx = _context(identity)
    if mutual:
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _chain_rule)
    else:
        ctx.set_verify(SSL.VERIFY_NONE)
    return ctx


def client_context(identity: RatlsIdentity | None) -> SSL.Context:
    """A client context verifying the server (``VERIFY_PEER``); it presents ``identity``
    for mutual mode and no certificate at all without one."""
    ctx = _context(identity)
    ctx.set_verify(SSL.VERIFY_PEER, _chain_rule)
    return ctx


# --------------------------------------------------------------------------- the engine


def _reason(exc: SSL.Error) -> str:
    """OpenSSL's reason strings from a pyOpenSSL error (never key material)."""
    if isinstance(exc, SSL.SysCallError):
        return "the connection closed unexpectedly"
    parts = [str(item[2]) for item in exc.args[0] if isinstance(item, tuple) and len(item) == 3]
    return "; ".join(parts) if parts else "TLS error"


class _Engine:
    """One pyOpenSSL connection over memory BIOs; the caller moves the bytes."""

    def __init__(self, ctx: SSL.Context, *, server: bool, peer_name: str) -> None:
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_app_data(self)
        if server:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
        self.server = server
        self.peer_name = peer_name
        self.chain_error: str | None = None
        self.eof = False

    def pending_output(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self.conn.bio_read(_CHUNK)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def feed(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` is the end of its stream."""
        if data:
            self.conn.bio_write(data)
        else:
            self.eof = True
            self.conn.bio_shutdown()

    def handshake(self) -> bool:
        """One handshake step: True when done, False when it needs the peer's bytes."""
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            return False
        except SSL.Error as exc:
            raise self._handshake_error(exc) from None
        return True

    def _handshake_error(self, exc: SSL.Error) -> VeriteeError:
        if self.chain_error is not None:
            return RatlsError("certificate", f"{self.peer_name}: {self.chain_error}")
        reason = _reason(exc)
        if self.server and "peer did not return a certificate" in reason:
            return RatlsError("no_evidence", f"{self.peer_name} presented no certificate")
        return TlsError(f"TLS handshake with {self.peer_name} failed: {reason}")

    def recv(self, n: int) -> bytes | None:
        """Application bytes; None when more input is needed; ``b""`` at the end."""
        try:
            return self.conn.recv(n)
        except SSL.WantReadError:
            return None
        except (SSL.ZeroReturnError, SSL.SysCallError):
            return b""
        except SSL.Error as exc:
            reason = _reason(exc)
            if self.eof or "unexpected eof" in reason:
                return b""  # the peer closed without close_notify
            raise TlsError(f"TLS connection with {self.peer_name} failed: {reason}") from None

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self.conn.send(view) :]
        except SSL.Error as exc:
            raise TlsError(f"TLS send to {self.peer_name} failed: {_reason(exc)}") from None

    def shutdown(self) -> None:
        """Queue a close_notify (best effort)."""
        with contextlib.suppress(SSL.Error):
            self.conn.shutdown()

    def peer_der(self) -> bytes | None:
        cert = self.conn.get_peer_certificate(as_cryptography=True)
        return None if cert is None else cert.public_bytes(Encoding.DER)

    def attest(self, verifier: RatlsVerifier | None) -> RatlsPeer | None:
        """The attestation check of the peer certificate (None without a verifier)."""
        if verifier is None:
            return None
        der = self.peer_der()
        if der is None:
            raise RatlsError("no_evidence", f"{self.peer_name} presented no certificate")
        return verifier.verify_certificate(der)


def _refused(engine: _Engine, exc: RatlsError) -> None:
    role = "client" if engine.server else "server"
    log.warning("RA-TLS: refused %s %s: %s", role, engine.peer_name, exc)


# --------------------------------------------------------------------------- asyncio


class AttestedStream:
    """An attested TLS connection over asyncio streams.

    ``peer`` is the verified peer (None when no verifier was given).  One task may read
    while another writes (the proxy's two directions)."""

    def __init__(
        self,
        engine: _Engine,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: RatlsPeer | None,
    ) -> None:
        self._engine = engine
        self._reader = reader
        self._writer = writer
        self._closed = False
        self.peer = peer

    @property
    def peer_name(self) -> str:
        return self._engine.peer_name

    @property
    def peer_certificate_der(self) -> bytes | None:
        """The certificate the peer presented (DER), None when it sent none."""
        return self._engine.peer_der()

    async def _flush(self) -> None:
        out = self._engine.pending_output()
        if out:
            self._writer.write(out)
            await self._writer.drain()

    async def read(self, n: int = _CHUNK) -> bytes:
        """Up to ``n`` application bytes; ``b""`` at the end of the peer's stream."""
        try:
            while True:
                data = self._engine.recv(n)
                await self._flush()  # post-handshake messages, e.g. a TLS 1.3 key update
                if data is not None:
                    return data
                self._engine.feed(await self._reader.read(_CHUNK))
        except ConnectionError:  # reset by the peer: the end of its stream
            return b""

    async def write(self, data: bytes) -> None:
        self._engine.send(data)
        await self._flush()

    async def close(self) -> None:
        """Send close_notify and close the transport (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._engine.shutdown()
        with contextlib.suppress(ConnectionError, OSError):
            await self._flush()
        await _close_writer(self._writer)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


def _peername(writer: asyncio.StreamWriter) -> str:
    name = writer.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return str(name) if name else "peer"


async def _establish(
    engine: _Engine,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    verifier: RatlsVerifier | None,
    timeout: float,
) -> AttestedStream:
    try:
        async with asyncio.timeout(timeout):
            while not engine.handshake():
                out = engine.pending_output()
                if out:
                    writer.write(out)
                    await writer.drain()
                engine.feed(await reader.read(_CHUNK))
            out = engine.pending_output()
            if out:
                writer.write(out)
                await writer.drain()
            peer = None
            if verifier is not None:
                peer = await asyncio.to_thread(engine.attest, verifier)
    except RatlsError as exc:
        _refused(engine, exc)
        await _abort(engine, writer)
        raise
    except TlsError as exc:
        log.info("RA-TLS: %s", exc)
        await _abort(engine, writer)
        raise
    except TimeoutError:
        await _abort(engine, writer)
        message = f"TLS handshake with {engine.peer_name} timed out after {timeout:g} s"
        log.info("RA-TLS: %s", message)
        raise TlsError(message) from None
    except (ConnectionError, OSError) as exc:
        await _abort(engine, writer)
        message = f"TLS handshake with {engine.peer_name} failed: {exc.strerror or exc}"
        raise TlsError(message) from None
    except asyncio.CancelledError:
        writer.close()
        raise
    return AttestedStream(engine, reader, writer, peer)


async def _abort(engine: _Engine, writer: asyncio.StreamWriter) -> None:
    """Close without close_notify, after sending any alert OpenSSL queued."""
    out = engine.pending_output()
    if out and not writer.is_closing():
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(out)
    await _close_writer(writer)


async def accept_attested(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ctx: SSL.Context,
    verifier: RatlsVerifier | None,
    *,
    timeout: float = 30,
) -> AttestedStream:
    """The server side of an accepted connection: handshake, then the attestation check of
    the client's certificate when ``verifier`` is given (mutual mode)."""
    engine = _Engine(ctx, server=True, peer_name=_peername(writer))
    return await _establish(engine, reader, writer, verifier, timeout)


async def open_attested(
    host: str,
    port: int,
    ctx: SSL.Context,
    verifier: RatlsVerifier | None,
    *,
    timeout: float = 30,
) -> AttestedStream:
    """Connect to ``host:port``, handshake, and verify the server's certificate."""
    name = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        raise TlsError(f"cannot connect to {name}: timed out after {timeout:g} s") from None
    except OSError as exc:
        raise TlsError(f"cannot connect to {name}: {exc.strerror or exc}") from None
    engine = _Engine(ctx, server=False, peer_name=name)
    return await _establish(engine, reader, writer, verifier, timeout)


# --------------------------------------------------------------------------- blocking


class AttestedConnection:
    """A blocking attested TLS client connection (shelter, the EAA KBC)."""

    def __init__(self, engine: _Engine, sock: socket.socket, peer: RatlsPeer | None) -> None:
        self._engine = engine
        self._sock = sock
        self._closed = False
        self.peer = peer

    @property
    def peer_certificate_der(self) -> bytes | None:
        """The certificate the server presented (DER)."""
        return self._engine.peer_der()

    def _flush(self) -> None:
        out = self._engine.pending_output()
        if out:
            self._sock.sendall(out)

    def send(self, data: bytes) -> None:
        self._engine.send(data)
        try:
            self._flush()
        except TimeoutError:
            raise TlsError(f"sending to {self._engine.peer_name} timed out") from None
        except OSError as exc:
            raise TlsError(f"sending to {self._engine.peer_name}: {exc.strerror}") from None

    def recv(self, n: int = _CHUNK) -> bytes:
        """Up to ``n`` application bytes; ``b""`` at the end of the peer's stream."""
        try:
            while True:
                data = self._engine.recv(n)
                self._flush()
                if data is not None:
                    return data
                self._engine.feed(self._sock.recv(_CHUNK))
        except TimeoutError:
            raise TlsError(f"no answer from {self._engine.peer_name} in time") from None
        except OSError as exc:
            raise TlsError(f"reading from {self._engine.peer_name}: {exc.strerror}") from None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._engine.shutdown()
        with contextlib.suppress(OSError):
            self._flush()
        self._sock.close()

    def __enter__(self) -> AttestedConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect_attested(
    host: str,
    port: int,
    ctx: SSL.Context,
    verifier: RatlsVerifier | None,
    *,
    timeout: float = 30,
) -> AttestedConnection:
    """Connect to ``host:port``, handshake, and verify the server's certificate; ``timeout``
    bounds the connect and the handshake, and then each read and write."""
    name = f"{host}:{port}"
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise TlsError(f"cannot connect to {name}: timed out after {timeout:g} s") from None
    except OSError as exc:
        raise TlsError(f"cannot connect to {name}: {exc.strerror or exc}") from None
    engine = _Engine(ctx, server=False, peer_name=name)
    try:
        while not engine.handshake():
            out = engine.pending_output()
            if out:
                sock.sendall(out)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            engine.feed(sock.recv(_CHUNK))
        out = engine.pending_output()
        if out:
            sock.sendall(out)
        sock.settimeout(timeout)
        peer = engine.attest(verifier)
    except RatlsError as exc:
        _refused(engine, exc)
        _abort_socket(engine, sock)
        raise
    except TlsError:
        _abort_socket(engine, sock)
        raise
    except TimeoutError:
        _abort_socket(engine, sock)
        raise TlsError(f"TLS handshake with {name} timed out after {timeout:g} s") from None
    except OSError as exc:
        _abort_socket(engine, sock)
        raise TlsError(f"TLS handshake with {name} failed: {exc.strerror or exc}") from None
    return AttestedConnection(engine, sock, peer)


def _abort_socket(engine: _Engine, sock: socket.socket) -> None:
    out = engine.pending_output()
    if out:
        with contextlib.suppress(OSError):
            sock.sendall(out)
    sock.close()
