"""Shelter's verifier side: attest a remote RA-TLS endpoint and ask it for its enclave info.

``remote_attestation`` is Shelter's ``remoteattestation`` (``SH:racommand.go``,
``SH:utils/manageprotocol.go``): an RA-TLS client handshake (mutual when given an
identity), the attestation check of the server's certificate, then
``{"type":"GETENCLAVEINFO"}`` (compact JSON) and one read of at most 2047 bytes, which must
be a JSON object (``id``, ``message``, ``mrenclave``, ``mrsigner``, ``version``; absent
fields read as empty, as Go's decoder leaves them).  Unlike Shelter, the measurements
that count are the ones verified in the certificate's evidence; the reply's are printed
as the server states them.

``check_reference`` is our ``mrverify``: Shelter's rebuilt a sample enclave from source and
compared its MRENCLAVE with the SIGSTRUCT beside it, which has no counterpart for a running
peer.  Ours compares a verified peer's measurements with a reference file
(:func:`veritee.ratls.policy.load_policy`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from OpenSSL import SSL

from veritee.errors import VeriteeError
from veritee.ratls.policy import load_policy
from veritee.ratls.tls import connect_attested
from veritee.ratls.verify import RatlsError, RatlsPeer, RatlsVerifier

__all__ = [
    "GETENCLAVEINFO_REQUEST",
    "REPLY_MAX",
    "ShelterError",
    "check_reference",
    "enclave_info",
    "parse_addr",
    "remote_attestation",
    "reported",
]

GETENCLAVEINFO_REQUEST: Final = json.dumps({"type": "GETENCLAVEINFO"}, separators=(",", ":"))
REPLY_MAX: Final = 2047
_INFO_FIELDS: Final = ("id", "message", "mrenclave", "mrsigner", "version")


class ShelterError(VeriteeError):
    """The exchange after the handshake failed: no reply, or a reply that is not Shelter's
    JSON; the message is Shelter's own where it has one."""


def parse_addr(addr: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (Shelter's form; ``unix://`` is not supported here)."""
    parts = urlsplit(addr)
    if parts.scheme != "tcp" or not parts.hostname:
        raise ValueError(f"expected tcp://HOST:PORT, got {addr!r}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or parts.path not in ("", "/"):
        raise ValueError(f"expected tcp://HOST:PORT, got {addr!r}")
    return parts.hostname, port


def remote_attestation(
    host: str,
    port: int,
    ctx: SSL.Context,
    verifier: RatlsVerifier,
    *,
    timeout: float = 30,
) -> tuple[RatlsPeer, bytes]:
    """Attest ``host:port``, send GETENCLAVEINFO, and return the verified peer and the raw
    reply (at most 2047 bytes); RatlsError, TlsError or ShelterError say why not."""
    with connect_attested(host, port, ctx, verifier, timeout=timeout) as conn:
        peer = conn.peer
        if peer is None:  # connect_attested verified with a verifier, so never
            raise RatlsError("no_evidence", f"{host}:{port} was not attested")
        conn.send(GETENCLAVEINFO_REQUEST.encode())
        raw = conn.recv(REPLY_MAX)
    if not raw:
        raise ShelterError(
            "the server closed the connection without a reply "
            "(in mutual mode, it may have refused this client's attestation)"
        )
    return peer, raw


def enclave_info(raw: bytes) -> dict[str, Any]:
    """Decode a GETENCLAVEINFO reply as Shelter does: a JSON object; only Shelter's fields
    are kept; ShelterError (Shelter's message) otherwise."""
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise ShelterError(f"parse receiver message failed with err {exc}.") from None
    if not isinstance(decoded, dict):
        raise ShelterError(
            f"parse receiver message failed with err a JSON {type(decoded).__name__}, "
            "not an object."
        )
    return {key: decoded[key] for key in _INFO_FIELDS if key in decoded}


def reported(info: dict[str, Any], key: str) -> str:
    """A field as Shelter prints it: absent is empty."""
    value = info.get(key)
    return "" if value is None else str(value)


def check_reference(peer: RatlsPeer, reference: Path) -> None:
    """Raise RatlsError("policy", why) unless the peer's verified measurements meet the
    reference file."""
    load_policy(reference).check(peer)
