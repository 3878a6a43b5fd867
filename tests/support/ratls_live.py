"""RA-TLS test helpers over loopback: identities that are wrong in one way each, an upstream
TCP server that records every byte it receives, and the proxy on its own event loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.ratls.cert import RatlsIdentity
from veritee.ratls.proxy import RatlsProxy
from veritee.ratls.quoter import Quoter

# --------------------------------------------------------------------------- bad identities


@dataclass
class FlippingQuoter:
    """A quoter whose quotes have one byte flipped at ``offset`` (a tampered quote)."""

    inner: Quoter
    offset: int

    @property
    def tee(self) -> str:
        return self.inner.tee

    def quote(self, report_data: bytes) -> bytes:
        raw = bytearray(self.inner.quote(report_data))
        raw[self.offset] ^= 0x01
        return bytes(raw)


def swapped_identity(evidence_from: RatlsIdentity) -> RatlsIdentity:
    """A fresh key in a self-signed certificate that carries ``evidence_from``'s evidence
    extensions verbatim: valid evidence, bound to another key (a cert swap)."""
    key = ec.generate_private_key(ec.SECP256R1())
    source = evidence_from.certificate
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(source.subject)
        .issuer_name(source.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
    )
    for ext in source.extensions:
        if isinstance(ext.value, x509.UnrecognizedExtension):
            builder = builder.add_extension(ext.value, critical=ext.critical)
    cert = builder.sign(key, hashes.SHA256())
    return RatlsIdentity(
        certificate=cert,
        key=key,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def ca_issued_identity() -> RatlsIdentity:
    """A leaf issued by a throwaway CA nobody trusts (a chain error other than 18)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "untrusted CA")])
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "leaf")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    return RatlsIdentity(
        certificate=cert,
        key=key,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=b"",
    )


# --------------------------------------------------------------------------- the upstream


def echo(data: bytes) -> bytes:
    return data


@dataclass
class Recorder:
    """What an upstream server saw: connections accepted and every byte received."""

    connections: int = 0
    received: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def recording_upstream(
    answer: Callable[[bytes], bytes] = echo,
    *,
    close_after_answer: bool = False,
) -> Iterator[tuple[tuple[str, int], Recorder]]:
    """A threaded TCP server on a free loopback port that records everything it receives and
    answers each chunk with ``answer(chunk)`` (then closes, with ``close_after_answer``)."""
    record = Recorder()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with record.lock:
                record.connections += 1
            while True:
                try:
                    data = self.request.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with record.lock:
                    record.received.extend(data)
                reply = answer(data)
                if reply:
                    self.request.sendall(reply)
                if close_after_answer:
                    return

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield ("127.0.0.1", server.server_address[1]), record
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------- the proxy


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextmanager
def serving(handler: Handler) -> Iterator[int]:
    """Serve ``handler`` on a free loopback port on its own event loop in a thread; yield the
    port.  On exit the server stops and its connections are cancelled."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(handler, "127.0.0.1", 0))
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the server did not start")
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


@contextmanager
def running_proxy(proxy: RatlsProxy) -> Iterator[int]:
    """The proxy's handler served on a free loopback port (see :func:`serving`)."""
    with serving(proxy.handle) as port:
        yield port


@contextmanager
def proxy_process(args: list[str], log: Path, *, timeout_s: float = 60) -> Iterator[int]:
    """Run ``veritee ratls proxy --listen 127.0.0.1:0 <args>`` as a process; yield the port
    it says it listens on.  Its output goes to ``log``."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "veritee", "ratls", "proxy", "--listen", "127.0.0.1:0", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            found = re.search(rb"listening on 127\.0\.0\.1:(\d+) ", log.read_bytes())
            if found:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(log.read_text())
            time.sleep(0.05)
        yield int(found.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
