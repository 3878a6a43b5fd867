"""The Verdictd-style key broker's transport: mutual RA-TLS on its own asyncio loop.

:class:`VerdictdServer` accepts TCP connections, runs R2's
:func:`~veritee.ratls.tls.accept_attested` in mutual mode (the client must present an
RA-TLS certificate) with R1's :class:`~veritee.ratls.verify.RatlsVerifier`, whose policy
is Verdictd's gate (:class:`~veritee.kbs.verdictd_policy.VerdictdGate`).  A client that
fails the handshake, its attestation or the gate is closed before a byte of application
data is read or written; the reason is logged on ``veritee.ratls``.  Then each TLS read
(up to 16384 bytes, one record) is one request for the connection's
:class:`~veritee.kbs.verdictd.VerdictdSession`, whose reply is written back, and the
connection is closed when the protocol says so, when the client closes, or after
``idle_timeout`` seconds without a request.

:meth:`VerdictdServer.start` runs the loop in a daemon thread, so ``veritee serve`` keeps
uvicorn in the main thread and the broker shares the KBS's resource store and policy in
the same process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from veritee.errors import ConfigError, VeriteeError
from veritee.kbs.verdictd import VerdictdBroker
from veritee.kbs.verdictd_config import RatlsServerConfig, parse_listen
from veritee.kbs.verdictd_policy import VerdictdGate, load_gate
from veritee.ratls.cert import RatlsIdentity
from veritee.ratls.tls import TlsError, accept_attested, server_context
from veritee.ratls.verify import RatlsError, RatlsVerifier
from veritee.verifier.registry import VerifierSettings

__all__ = ["MAX_REQUEST", "VerdictdServer", "build_verdictd_server"]

log = logging.getLogger("veritee.kbs.verdictd")

#: One TLS record's plaintext: Verdictd reads one request per TLS read.
MAX_REQUEST = 16384


@dataclass(frozen=True)
class _Timeouts:
    handshake: float = 30
    idle: float = 300


class VerdictdServer:
    """The broker on ``host:port`` (port 0: any free port, see :attr:`address`)."""

    def __init__(
        self,
        broker: VerdictdBroker,
        identity: RatlsIdentity,
        verifier: RatlsVerifier,
        *,
        host: str = "127.0.0.1",
        port: int = 1234,
        handshake_timeout: float = 30,
        idle_timeout: float = 300,
    ) -> None:
        self.broker = broker
        self.identity = identity
        self.verifier = verifier
        self.host = host
        self.port = port
        self._timeouts = _Timeouts(handshake_timeout, idle_timeout)
        self._context = server_context(identity, mutual=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.address: tuple[str, int] | None = None

    # -- the thread ----------------------------------------------------------------------

    def start(self, timeout: float = 10) -> tuple[str, int]:
        """Bind and serve in a daemon thread; return the bound address.  A bind failure
        is a ConfigError naming the address."""
        self._thread = threading.Thread(target=self._run, name="verdictd", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"the RA-TLS listener on {self.host}:{self.port} did not start")
        if self._failure is not None or self.address is None:
            reason = self._failure
            detail = reason.strerror if isinstance(reason, OSError) else reason
            raise ConfigError(f"cannot listen on {self.host}:{self.port} (RA-TLS): {detail}")
        return self.address

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._bind())
        except OSError as exc:
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _bind(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def stop(self, timeout: float = 10) -> None:
        """Stop accepting and end the loop (open connections are dropped)."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)

    # -- one connection --------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            stream = await accept_attested(
                reader, writer, self._context, self.verifier,
                timeout=self._timeouts.handshake,
            )
        except (RatlsError, TlsError):
            return  # closed and logged by the TLS layer
        peer = stream.peer
        if peer is None:  # cannot happen with a verifier; never serve an unverified peer
            await stream.close()
            return
        session = self.broker.session(peer)
        try:
            while True:
                try:
                    async with asyncio.timeout(self._timeouts.idle):
                        request = await stream.read(MAX_REQUEST)
                except TimeoutError:
                    log.info("RA-TLS client %s idle; closed", stream.peer_name)
                    break
                if not request:
                    break
                reply = await asyncio.to_thread(session.handle, request)
                if reply.data:
                    await stream.write(reply.data)
                if reply.close:
                    break
        except (TlsError, ConnectionError, OSError) as exc:
            log.info("RA-TLS client %s: %s", stream.peer_name, exc)
        finally:
            await stream.close()


def build_verdictd_server(
    config: RatlsServerConfig,
    broker: VerdictdBroker,
    verifier_settings: VerifierSettings,
    *,
    listen: str | None = None,
    identity: RatlsIdentity | None = None,
    gate: VerdictdGate | None = None,
    allow_debug: bool = False,
) -> VerdictdServer:
    """The server ``[ratls]`` describes; ``listen`` (``--ratls-listen``) wins over
    ``config.listen`` (default Verdictd's ``127.0.0.1:1234``).  Clients are verified with
    the KBS's verifier settings and its AS's ``allow_debug``."""
    address = listen or config.listen or "127.0.0.1:1234"
    host, port = parse_listen(address, "--ratls-listen" if listen else "ratls.listen")
    if gate is None:
        gate = load_gate(_path(config.sgx_policy), _path(config.sgx_data))
    try:
        own = identity or config.identity()
    except ConfigError:
        raise
    except VeriteeError as exc:
        raise ConfigError(f"ratls: {exc}") from exc
    verifier = RatlsVerifier(verifier_settings, gate, allow_debug=allow_debug)
    return VerdictdServer(
        broker, own, verifier, host=host, port=port,
        handshake_timeout=config.handshake_timeout, idle_timeout=config.idle_timeout,
    )


def _path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None
