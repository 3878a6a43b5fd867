"""An Inclavared-style attested proxy: RA-TLS outside, plaintext to a local server inside.

Each accepted connection is an RA-TLS handshake under the proxy's identity (a fresh key and
evidence binding it, made once at start-up as rats-tls does).  In mutual mode the client's
RA-TLS certificate is verified before anything else happens: a client that fails
attestation is disconnected before the upstream (``--xfer``) server is even connected, so
no byte of it ever reaches that server.  Then:

- with an upstream (the primary mode) the proxy forwards plaintext both ways until either
  side ends: the client's end of stream half-closes the upstream connection, the upstream's
  end closes the TLS connection (TLS has no half-close);
- without one it answers Inclavared's own protocol (``INC:app/src/main.rs``
  ``handle_client``): one TLS read of at most 512 bytes holding JSON; not JSON drops the
  connection; ``{"type":"GETENCLAVEINFO"}`` is answered ``reply from inclavared!\\n`` and
  any other JSON ``hello from inclavared!\\n``.

Inclavared with ``--xfer`` instead spoke its own upstream protocol to an enclave-tls server
(``hello from inclavared``, 32-byte MRENCLAVE and MRSIGNER back); the proxy forwards
whatever the client says, so any TCP service can sit behind it.

The TEE names follow rats-tls's instances: ``sgx_ecdsa``, ``tdx``/``tdx_ecdsa``,
``snp``/``sev_snp``, and ``emulated-sgx|tdx|snp`` for the emulator's test root.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from OpenSSL import SSL

from veritee.guest.attesters.base import AttesterError, Kernel
from veritee.ratls.cert import RatlsIdentity, make_identity
from veritee.ratls.policy import RatlsPolicy, load_policy
from veritee.ratls.quoter import AttesterQuoter, EmulatedQuoter, Quoter
from veritee.ratls.tls import AttestedStream, TlsError, accept_attested, server_context
from veritee.ratls.verify import RatlsError, RatlsPeer, RatlsVerifier
from veritee.verifier.registry import VerifierSettings

__all__ = [
    "ATTESTERS",
    "GETENCLAVEINFO",
    "REPLY_INFO",
    "REPLY_OTHER",
    "VERIFIERS",
    "RatlsProxy",
    "attester_identity",
    "attester_quoter",
    "peer_verifier",
]

log = logging.getLogger("veritee.ratls")

#: ``--attester`` names and the TEE each attests as.
ATTESTERS: Final[dict[str, str]] = {
    "sgx_ecdsa": "sgx",
    "tdx": "tdx",
    "tdx_ecdsa": "tdx",
    "snp": "snp",
    "sev_snp": "snp",
    "emulated-sgx": "sgx",
    "emulated-tdx": "tdx",
    "emulated-snp": "snp",
}
#: ``--verifier`` names and the TEE they accept (None: whichever the evidence is).
VERIFIERS: Final[dict[str, str | None]] = {
    "auto": None,
    "sgx_ecdsa": "sgx",
    "sgx_ecdsa_qve": "sgx",
    "tdx_ecdsa": "tdx",
    "tdx": "tdx",
    "sev_snp": "snp",
    "snp": "snp",
}
GETENCLAVEINFO: Final = "GETENCLAVEINFO"
REPLY_INFO: Final = b"reply from inclavared!\n"
REPLY_OTHER: Final = b"hello from inclavared!\n"
_REQUEST_MAX: Final = 512  # Inclavared's read buffer
_CHUNK: Final = 65536


def attester_quoter(
    name: str, emulated_root: Path | None, *, kernel: Kernel | None = None
) -> Quoter:
    """The quoter for ``--attester name``: the emulator's under ``emulated_root`` for
    ``emulated-*``, otherwise the guest's attester over ``kernel`` (Linux by default), which
    must be the TEE named."""
    tee = ATTESTERS.get(name)
    if tee is None:
        raise AttesterError(f"unknown attester {name!r}; known: {', '.join(ATTESTERS)}")
    if name.startswith("emulated-"):
        if emulated_root is None:
            raise AttesterError(f"attester {name} needs the emulator's test root (--emulated)")
        return EmulatedQuoter(emulated_root, tee)
    from veritee.guest.attesters.detect import attester_for, detect_tee, no_tee_error
    from veritee.guest.attesters.linux import LinuxKernel

    if kernel is None:
        kernel = LinuxKernel()
    found = detect_tee(kernel)
    if found is None:
        raise no_tee_error(kernel)
    if found != tee:
        raise AttesterError(f"attester {name} needs a {tee} guest; this guest is {found}")
    return AttesterQuoter(attester_for(tee, kernel))


def attester_identity(
    name: str, emulated_root: Path | None, *, kernel: Kernel | None = None
) -> RatlsIdentity:
    """A fresh RA-TLS identity (DICE format) from ``--attester name``."""
    return make_identity(attester_quoter(name, emulated_root, kernel=kernel))


@dataclass(frozen=True)
class _RequireTee:
    """``--verifier`` naming one TEE: evidence of another is refused, then ``inner``."""

    tee: str
    name: str
    inner: RatlsPolicy | None

    def check(self, peer: RatlsPeer) -> None:
        if peer.tee != self.tee:
            raise RatlsError(
                "evidence",
                f"the peer's evidence is {peer.tee}; verifier {self.name} takes {self.tee}",
            )
        if self.inner is not None:
            self.inner.check(peer)


def peer_verifier(
    name: str = "auto",
    *,
    trust_root: Path | None = None,
    policy: Path | None = None,
    settings: VerifierSettings | None = None,
) -> RatlsVerifier:
    """The verifier of a peer's RA-TLS certificate for ``--verifier name``: the evidence
    verified to its vendor root (or ``trust_root``), then ``policy`` (Rego or a reference
    file) when given."""
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; known: {', '.join(VERIFIERS)}")
    rules = load_policy(policy) if policy is not None else None
    tee = VERIFIERS[name]
    if tee is not None:
        rules = _RequireTee(tee, name, rules)
    base = settings or VerifierSettings()
    if trust_root is not None:
        base = dataclasses.replace(base, trust_root=trust_root)
    return RatlsVerifier(base, rules)


class RatlsProxy:
    """The proxy's connection handler; :meth:`start` binds it, :meth:`aclose` ends its
    connections."""

    def __init__(
        self,
        identity: RatlsIdentity,
        *,
        xfer: tuple[str, int] | None,
        verifier: RatlsVerifier | None = None,
        handshake_timeout: float = 30,
    ) -> None:
        """``verifier`` given means mutual mode: clients must present an RA-TLS certificate
        that it accepts."""
        self.xfer = xfer
        self.verifier = verifier
        self.handshake_timeout = handshake_timeout
        self.context: SSL.Context = server_context(identity, mutual=verifier is not None)
        self._connections: set[asyncio.Task[object]] = set()

    async def start(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self.handle, host, port, backlog=1024)

    async def aclose(self) -> None:
        """End every open connection (the listening server is the caller's to close)."""
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection, from the handshake to the end of forwarding."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._connection(reader, writer)
        except asyncio.CancelledError:
            writer.close()  # the proxy is stopping; the task ends quietly
        finally:
            self._connections.discard(task)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            stream = await accept_attested(
                reader, writer, self.context, self.verifier, timeout=self.handshake_timeout
            )
        except (RatlsError, TlsError):
            return  # closed and logged by accept_attested
        try:
            if stream.peer is not None:
                log.info(
                    "RA-TLS: attested client %s (%s, %s)",
                    stream.peer_name,
                    stream.peer.tee,
                    ", ".join(f"{k}={v}" for k, v in stream.peer.measurements.items()),
                )
            if self.xfer is None:
                await self._inclavared(stream)
            else:
                await self._forward(stream, self.xfer)
        except (TlsError, ConnectionError, OSError) as exc:
            log.info("RA-TLS: connection from %s ended: %s", stream.peer_name, exc)
        finally:
            await stream.close()

    async def _inclavared(self, stream: AttestedStream) -> None:
        request = await stream.read(_REQUEST_MAX)
        if not request:
            return
        try:
            message = json.loads(request)
        except ValueError:
            log.info("RA-TLS: %s sent no JSON; connection dropped", stream.peer_name)
            return
        kind = message.get("type") if isinstance(message, dict) else None
        await stream.write(REPLY_INFO if kind == GETENCLAVEINFO else REPLY_OTHER)

    async def _forward(self, stream: AttestedStream, xfer: tuple[str, int]) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*xfer)
        except OSError as exc:
            log.warning(
                "RA-TLS: upstream %s:%d unreachable (%s); closing %s",
                xfer[0],
                xfer[1],
                exc.strerror or exc,
                stream.peer_name,
            )
            return
        to_upstream = asyncio.create_task(_client_to_upstream(stream, up_writer))
        to_client = asyncio.create_task(_upstream_to_client(up_reader, stream))
        try:
            await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
            if to_upstream.done() and not to_client.done() and to_upstream.exception() is None:
                await asyncio.wait({to_client})  # the client is done sending; the answer may follow
        finally:
            for task in (to_upstream, to_client):
                task.cancel()
            up_writer.close()  # before any await: this also runs when the proxy stops
            results = await asyncio.gather(to_upstream, to_client, return_exceptions=True)
            with contextlib.suppress(ConnectionError, OSError):
                await up_writer.wait_closed()
        for result in results:
            if isinstance(result, Exception):
                raise result


async def _client_to_upstream(stream: AttestedStream, up_writer: asyncio.StreamWriter) -> None:
    while True:
        data = await stream.read(_CHUNK)
        if not data:
            if up_writer.can_write_eof():
                up_writer.write_eof()  # the upstream may still answer
            return
        up_writer.write(data)
        await up_writer.drain()


async def _upstream_to_client(up_reader: asyncio.StreamReader, stream: AttestedStream) -> None:
    while True:
        data = await up_reader.read(_CHUNK)
        if not data:
            return
        await stream.write(data)
