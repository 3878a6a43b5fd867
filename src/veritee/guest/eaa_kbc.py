"""The EAA KBC: the guest's client of a Verdictd-style key broker over mutual RA-TLS.

What attestation-agent's ``eaa_kbc`` does (RA-TLS digest §3.2), over R2's blocking
:func:`~veritee.ratls.tls.connect_attested`:

* the guest presents its own RA-TLS certificate (``make_identity`` over the TEE's
  quoter) and verifies the broker's certificate with a :class:`RatlsVerifier`;
* the first request after the handshake is ``version`` (``v1`` expected);
* :meth:`EaaKbc.get_resource` sends ``Get Resource Info`` (``name`` = the resource path)
  and then ``Get Resource`` (``optional.resource_path``), the CC-branch spelling, and
  reads the base64 reply until ``base64size`` bytes; a reply that decodes to
  ``{"status":"Fail","error":…}`` is the broker's refusal;
* :meth:`EaaKbc.decrypt` sends ``Decrypt`` with one blob (``kid`` = the KBS resource
  path of the key id, the host of a ``kbs://`` URI dropped; ``key_length`` 256) and
  picks the plaintext under the ``encrypted_data`` it sent; :meth:`EaaKbc.get_kek` sends
  ``Get KEK``;
* replies are read in chunks of ``MAX_FRAG_LENGTH`` (16384) until the expected size (a
  resource), or for the other replies until a chunk is shorter than that (AA's rule) or
  the bytes form one JSON document.

Selected in the CDH by ``cdh.toml`` ``[kbc] name = "eaa_kbc"``, ``url = "IP:PORT"``;
:func:`eaa_resource_getter` is the CDH's resource getter then, so everything that asks
the CDH (credentials, sealed secrets, the image key provider's KEKs) goes through it.
Each getter call is one attested connection.

Failures: :class:`EaaConnectError` (no connection, or the attested handshake failed),
:class:`EaaClosed` (the broker closed without a reply: it refused this guest's
attestation or the request), :class:`EaaReplyError` (a reply that is not what the
protocol says), :class:`EaaRefused` (the broker's ``Fail`` with its error text).
Messages never carry key bytes or resource contents.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from veritee.errors import ConfigError, ParseError, VeriteeError
from veritee.guest.resource_uri import parse_resource_uri

if TYPE_CHECKING:
    from pathlib import Path

    from veritee.guest.attesters.base import Attester
    from veritee.ratls.cert import RatlsIdentity
    from veritee.ratls.verify import RatlsVerifier

__all__ = [
    "MAX_FRAG_LENGTH",
    "Channel",
    "EaaClosed",
    "EaaConnectError",
    "EaaKbc",
    "EaaKbcError",
    "EaaRefused",
    "EaaReplyError",
    "attested_resource_getter",
    "eaa_resource_getter",
    "parse_address",
    "ratls_connector",
]

log = logging.getLogger("veritee.guest.eaa_kbc")

MAX_FRAG_LENGTH: Final = 16384
PROTOCOL_VERSION: Final = "v1"
#: A reply larger than this is refused (a resource is sized by ``base64size``).
MAX_JSON_REPLY: Final = 16 * 1024 * 1024


class EaaKbcError(VeriteeError):
    """The EAA KBC could not get what it asked for."""


class EaaConnectError(EaaKbcError):
    """No attested connection to the broker (TCP, TLS or the broker's attestation)."""


class EaaClosed(EaaKbcError):
    """The broker closed the connection without a reply."""


class EaaReplyError(EaaKbcError):
    """A reply that does not follow the protocol."""


class EaaRefused(EaaKbcError):
    """The broker answered ``Fail``; the message carries its error text."""


class Channel(Protocol):
    """One attested connection (R2's ``AttestedConnection``)."""

    def send(self, data: bytes) -> None: ...

    def recv(self, n: int = 65536) -> bytes: ...

    def close(self) -> None: ...


Connector = Callable[[], Channel]


def parse_address(text: str) -> tuple[str, int]:
    """``IP:PORT`` (``[v6]:PORT`` for IPv6; a host name is accepted too)."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"eaa_kbc: {text[:80]!r} is not an IP:PORT address")
    return host, int(port)


def ratls_connector(
    address: str,
    identity: RatlsIdentity,
    verifier: RatlsVerifier | None,
    *,
    timeout: float = 30,
) -> Connector:
    """Open mutual RA-TLS connections to ``address`` with R2's blocking client."""
    from veritee.ratls.tls import client_context, connect_attested

    host, port = parse_address(address)
    context = client_context(identity)

    def connect() -> Channel:
        try:
            return connect_attested(host, port, context, verifier, timeout=timeout)
        except VeriteeError as exc:
            raise EaaConnectError(f"eaa_kbc: no attested connection to {address}: {exc}") from exc
        except OSError as exc:
            raise EaaConnectError(
                f"eaa_kbc: cannot connect to {address}: {exc.strerror or type(exc).__name__}"
            ) from exc

    return connect


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _kid_path(kid: str) -> str:
    """A key id as the broker wants it: the KBS resource path (a ``kbs://`` URI's host
    is dropped, as the EAA KBC does; a malformed URI is a ParseError)."""
    return parse_resource_uri(kid).resource_path if kid.startswith("kbs") else kid


class EaaKbc:
    """One session with the broker: connected (and ``version`` checked) on first use,
    closed by :meth:`close` or the ``with`` block.  Not for concurrent use."""

    def __init__(self, connect: Connector) -> None:
        self._connect = connect
        self._channel: Channel | None = None
        self.version: str | None = None

    def __enter__(self) -> EaaKbc:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            try:
                channel.close()
            except (OSError, VeriteeError) as exc:
                log.debug("closing the broker connection: %s", exc)

    # -- transport -------------------------------------------------------------------------

    def _open(self) -> Channel:
        if self._channel is None:
            self._channel = self._connect()
            reply = self._exchange_json({"command": "version"}, opening=True)
            if reply.get("status") != "OK" or reply.get("version") != PROTOCOL_VERSION:
                self.close()
                raise EaaReplyError(
                    f"eaa_kbc: the broker speaks {str(reply.get('version'))[:20]!r}, "
                    f"not {PROTOCOL_VERSION!r}"
                )
            self.version = PROTOCOL_VERSION
        return self._channel

    def _send(self, doc: Any, *, opening: bool = False) -> Channel:
        channel = self._channel if opening else self._open()
        assert channel is not None
        try:
            channel.send(_dumps(doc))
        except (OSError, VeriteeError) as exc:
            self.close()
            raise EaaClosed(f"eaa_kbc: the broker connection failed: {exc}") from exc
        return channel

    def _chunks(
        self, channel: Channel, done: Callable[[bytes, bytes], bool], limit: int
    ) -> bytes:
        buffer = b""
        while True:
            try:
                chunk = channel.recv(MAX_FRAG_LENGTH)
            except (OSError, VeriteeError) as exc:
                self.close()
                raise EaaClosed(f"eaa_kbc: the broker connection failed: {exc}") from exc
            if not chunk:
                self.close()
                if not buffer:
                    raise EaaClosed(
                        "eaa_kbc: the broker closed the connection without a reply (it "
                        "refused this guest's attestation, or the request)"
                    )
                return buffer
            buffer += chunk
            if done(buffer, chunk):
                return buffer
            if len(buffer) > limit:
                self.close()
                raise EaaReplyError(f"eaa_kbc: the reply is longer than {limit} bytes")

    def _exchange_json(self, doc: Any, *, opening: bool = False) -> dict[str, Any]:
        channel = self._send(doc, opening=opening)
        raw = self._chunks(channel, _json_done, MAX_JSON_REPLY)
        try:
            reply = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self.close()
            raise EaaReplyError(f"eaa_kbc: the {doc['command']} reply is not JSON") from None
        if not isinstance(reply, dict):
            raise EaaReplyError(f"eaa_kbc: the {doc['command']} reply is not a JSON object")
        return reply

    def _exchange_sized(self, doc: Any, size: int) -> bytes:
        channel = self._send(doc)
        raw = self._chunks(channel, lambda buffer, _chunk: len(buffer) >= size, size)
        if len(raw) != size:
            self.close()
            raise EaaReplyError(
                f"eaa_kbc: the {doc['command']} reply has {len(raw)} bytes, not {size}"
            )
        return raw

    # -- the protocol ----------------------------------------------------------------------

    def check_version(self) -> str:
        """Connect (if not yet) and return the broker's protocol version."""
        self._open()
        return PROTOCOL_VERSION

    def get_resource(self, path: str) -> bytes:
        """The resource ``<repo>/<type>/<tag>``: ``Get Resource Info``, then ``Get Resource``."""
        info = self._exchange_json({"command": "Get Resource Info", "name": path})
        _raise_fail(info, f"Get Resource Info {path}")
        data = info.get("data")
        size = data.get("base64size") if isinstance(data, dict) else None
        if not isinstance(size, str) or not size.isdigit():
            raise EaaReplyError(f"eaa_kbc: Get Resource Info {path}: no base64size")
        request = {"command": "Get Resource", "optional": {"resource_path": path}}
        encoded = self._exchange_sized(request, int(size))
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise EaaReplyError(f"eaa_kbc: Get Resource {path}: not base64") from None
        refusal = _fail_document(content)
        if refusal is not None:
            raise EaaRefused(f"eaa_kbc: Get Resource {path}: {refusal}")
        return content

    def get_kek(self, kids: Sequence[str]) -> dict[str, bytes]:
        """``Get KEK``: each key id (a KBS resource path or ``kbs://`` URI) to its key."""
        sent = [_kid_path(kid) for kid in kids]
        reply = self._exchange_json({"command": "Get KEK", "kids": sent})
        _raise_fail(reply, "Get KEK")
        data = reply.get("data")
        if not isinstance(data, dict):
            raise EaaReplyError("eaa_kbc: Get KEK: no data")
        out: dict[str, bytes] = {}
        for kid, path in zip(kids, sent, strict=True):
            out[kid] = _decode(data.get(path), f"Get KEK {path}")
        return out

    def decrypt(
        self, kid: str, wrapped_data: bytes, iv: bytes, *, algorithm: str = "A256GCM"
    ) -> bytes:
        """``Decrypt`` one blob sealed with AES-256-GCM under the key ``kid``."""
        encrypted = base64.b64encode(wrapped_data).decode()
        blob = {
            "kid": _kid_path(kid),
            "encrypted_data": encrypted,
            "algorithm": algorithm,
            "key_length": 256,
            "iv": base64.b64encode(iv).decode(),
        }
        reply = self._exchange_json({"command": "Decrypt", "blobs": [blob]})
        _raise_fail(reply, "Decrypt")
        data = reply.get("data")
        if not isinstance(data, dict):
            raise EaaReplyError("eaa_kbc: Decrypt: no data")
        return _decode(data.get(encrypted), f"Decrypt {blob['kid']}")


def _json_done(buffer: bytes, chunk: bytes) -> bool:
    """A JSON reply is complete when it parses, or (AA's rule) when a chunk is shorter than
    a full fragment."""
    if len(chunk) < MAX_FRAG_LENGTH:
        return True
    try:
        json.loads(buffer)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _raise_fail(reply: dict[str, Any], what: str) -> None:
    if reply.get("status") == "OK":
        return
    error = reply.get("error")
    text = error[:300] if isinstance(error, str) else "no reason given"
    raise EaaRefused(f"eaa_kbc: {what}: the broker refused: {text}")


def _fail_document(content: bytes) -> str | None:
    """The error text of a ``{"status":"Fail","error":…}`` reply, else None."""
    if not content.startswith(b"{"):
        return None
    try:
        doc = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(doc, dict) and set(doc) == {"status", "error"} and doc["status"] == "Fail":
        error = doc["error"]
        return f"the broker refused: {error[:300] if isinstance(error, str) else '?'}"
    return None


def _decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise EaaReplyError(f"eaa_kbc: {what}: missing from the reply")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EaaReplyError(f"eaa_kbc: {what}: not base64") from None


def eaa_resource_getter(connect: Connector) -> Callable[[str], bytes]:
    """The CDH's resource getter over the EAA KBC: ``kbs:///repo/type/tag`` in, bytes out,
    one attested connection per call (serialised)."""
    lock = threading.Lock()

    def get(uri: str) -> bytes:
        parsed = parse_resource_uri(uri)
        if parsed.plugin != "resource" or parsed.query is not None or len(parsed.segments) != 3:
            raise ParseError(
                "resource uri",
                f"{parsed}: the EAA KBC serves KBS resources <repository>/<type>/<tag> only",
            )
        with lock, EaaKbc(connect) as kbc:
            return kbc.get_resource(parsed.resource_path)

    return get


def attested_resource_getter(
    address: str, attester: Attester, *, trust_root: Path | None = None, timeout: float = 30
) -> Callable[[str], bytes]:
    """The CDH's getter for ``[kbc] name = "eaa_kbc"``: the guest's RA-TLS identity over
    its attester (made on first use, kept for the agent's life), the broker's certificate
    verified with the default verifier settings (``trust_root``: an emulator test root
    whose evidence is accepted, for an emulated guest)."""
    from veritee.ratls.cert import make_identity
    from veritee.ratls.quoter import AttesterQuoter
    from veritee.ratls.verify import RatlsVerifier
    from veritee.verifier.registry import VerifierSettings

    parse_address(address)
    verifier = RatlsVerifier(VerifierSettings(trust_root=trust_root))
    made: list[Connector] = []
    lock = threading.Lock()

    def connect() -> Channel:
        with lock:
            if not made:
                try:
                    identity = make_identity(AttesterQuoter(attester))
                except VeriteeError as exc:
                    raise EaaConnectError(
                        f"eaa_kbc: cannot make this guest's RA-TLS certificate: {exc}"
                    ) from exc
                made.append(ratls_connector(address, identity, verifier, timeout=timeout))
        return made[0]()

    return eaa_resource_getter(connect)
