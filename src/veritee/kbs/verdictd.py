"""Verdictd's EAA key-broker protocol as pure logic: one request in, one :class:`Reply` out.

No sockets here (the transport is :mod:`veritee.kbs.verdictd_server`).  One JSON object
per TLS read, with a string ``command``; replies are serde_json's: compact, keys sorted.
A request that is not a JSON object with a string ``command``, or an unknown command,
closes the connection without a reply, as Verdictd does.

=========================  ==================================================================
command                    reply
=========================  ==================================================================
``version``                ``{"status":"OK","version":"v1"}``
``echo`` (``data``)        the raw ``data`` (not JSON), then close; a missing or non-string
                           ``data``: the raw ``Echo parameters error``, then close
``Decrypt`` (``blobs``)    ``{"data":{"<encrypted_data as sent>":"<plaintext b64>"},
                           "status":"OK"}``; each blob ``{kid, encrypted_data, iv,
                           algorithm, key_length}``: ``algorithm`` ``AES`` (Verdictd
                           master) or ``A256GCM`` (the CC branch, and what the EAA KBC
                           sends: an AnnotationPacket's ``wrap_type``), ``key_length``
                           256, AES-256-GCM with the 16-byte tag at the end, no AAD.
                           Failure: ``{"data":{},"error":"…","status":"Fail"}``; any bad
                           blob fails the request with ``parameters error``
``Get KEK`` (``kids``)     ``{"data":{"<kid>":"<key b64>"},"status":"OK"}``; failure
                           ``{"data":{},"error":"kid: <kid>'s key not found",…}``
``Get Resource Info``      ``{"data":{"base64size":"<n>"},"status":"OK"}``; ``name`` is a
(``name``)                 named resource (below) or a resource path; failure
                           ``{"error":"…","status":"Fail"}`` (``file name error`` for a
                           name that is neither)
``Get Resource``           base64 of the resource ``optional.resource_path`` (the CC
                           branch); failure: base64 of ``{"error":"…","status":"Fail"}``
``Get Policy`` …           Verdictd master's named commands: base64 of the mapped resource;
                           failure: base64 of ``{"error":"Can't fetch <file> file,
                           error:…","status":"Fail"}``
=========================  ==================================================================

**Keys and resources** are the KBS's: a ``kid`` and a resource path are KBS resource paths
``<repo>/<type>/<tag>`` in the KBS's resource repository (a ``kbs://[host]/<path>`` URI is
read as its path, the host ignored, as the EAA KBC ignores it).  This is where the image
key provider keeps KEKs (``kbs:///default/image-kek/<uuid>``).  Every read goes through
the KBS's resource policy with the peer's claims as input
(:func:`veritee.kbs.verdictd_policy.peer_policy_input`).

**Named resources** (Verdictd master's commands and ``Get Resource Info`` names) map onto
the KBS paths Verdictd's CC branch seeds:

=====================  ==========================  ==================================
name                   Verdictd master's file      KBS resource
=====================  ==========================  ==================================
``Policy``             ``policy.json``             ``default/security-policy/test``
``Sigstore Config``    ``sigstore.yaml``           ``default/sigstore-config/test``
``GPG Keyring``        ``keyring.gpg``             ``default/gpg-public-config/test``
``Cosign Key``         ``cosign.key``              ``default/cosign-public-key/test``
``Credential``         ``auth.json``               ``default/credential/test``
=====================  ==========================  ==================================

Error texts name the key id or path and the reason, never key bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import VeriteeError
from veritee.kbs.errors import PluginInternalError
from veritee.kbs.resources import ResourceBackend, validate_resource_path
from veritee.kbs.verdictd_policy import PeerView, peer_policy_input
from veritee.policy.engine import JSON
from veritee.policy.resource import ResourcePolicy

if TYPE_CHECKING:
    from veritee.kbs.service import KbsService

__all__ = [
    "ALGORITHMS",
    "NAMED_RESOURCES",
    "VERSION",
    "BadResourcePath",
    "Reply",
    "ResourceDenied",
    "ResourceMissing",
    "ResourceUnavailable",
    "VerdictdBroker",
    "VerdictdSession",
    "compact",
    "resource_path_of",
]

log = logging.getLogger("veritee.kbs.verdictd")

VERSION: Final = "v1"
#: Decrypt's ``algorithm``: Verdictd master's and the CC branch's spelling.
ALGORITHMS: Final = frozenset({"AES", "A256GCM"})
KEY_LENGTH: Final = 256
KEY_SIZE: Final = 32

#: name -> (Verdictd master's file name, KBS resource path)
NAMED_RESOURCES: Final[Mapping[str, tuple[str, str]]] = {
    "Policy": ("policy.json", "default/security-policy/test"),
    "Sigstore Config": ("sigstore.yaml", "default/sigstore-config/test"),
    "GPG Keyring": ("keyring.gpg", "default/gpg-public-config/test"),
    "Cosign Key": ("cosign.key", "default/cosign-public-key/test"),
    "Credential": ("auth.json", "default/credential/test"),
}
_NAMED_COMMANDS: Final = {f"Get {name}": name for name in NAMED_RESOURCES}


@dataclass(frozen=True)
class Reply:
    """The bytes to send (none: send nothing) and whether to close afterwards."""

    data: bytes
    close: bool = False


_DROP: Final = Reply(b"", close=True)


# --- failures (one type per kind; never carried to the peer beyond their text) -----------------


class BrokerError(VeriteeError):
    """A key or resource the broker cannot hand out."""


class BadResourcePath(BrokerError):
    """Not a KBS resource path ``<repo>/<type>/<tag>``."""


class ResourceMissing(BrokerError):
    """No such resource (or key) in the KBS's repository."""


class ResourceDenied(BrokerError):
    """The KBS's resource policy does not release it to this peer."""


class ResourceUnavailable(BrokerError):
    """The repository or the resource policy failed (details in the server log)."""


def compact(doc: Any) -> bytes:
    """serde_json's output with a BTreeMap: no spaces, keys sorted, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def resource_path_of(text: str) -> tuple[str, str, str]:
    """``(repo, type, tag)`` of ``<repo>/<type>/<tag>`` or ``kbs://[host]/<repo>/<type>/<tag>``."""
    path = text
    if path.startswith("kbs://"):
        _host, _, path = path[len("kbs://") :].partition("/")
    try:
        return validate_resource_path(path.split("/"))
    except PluginInternalError:
        raise BadResourcePath(
            f"{text[:120]!r} is not a resource path <repo>/<type>/<tag>"
        ) from None


class VerdictdBroker:
    """The broker's state: the KBS's repository, its resource policy and how a peer's
    claims become that policy's input.  :meth:`session` serves one connection."""

    def __init__(
        self,
        *,
        resources: ResourceBackend | None,
        resource_policy: Callable[[], ResourcePolicy],
        policy_input: Callable[[PeerView], JSON],
    ) -> None:
        self.resources = resources
        self._policy = resource_policy
        self._input = policy_input

    @classmethod
    def for_kbs(cls, service: KbsService) -> VerdictdBroker:
        """The broker over a :class:`~veritee.kbs.service.KbsService`: the same repository,
        the same resource policy, the AS's attestation policy for the peer's appraisal."""
        attestation = service.attestation
        return cls(
            resources=service.resources,
            resource_policy=service.resource_policy,
            policy_input=lambda peer: peer_policy_input(peer, attestation),
        )

    def session(self, peer: PeerView) -> VerdictdSession:
        return VerdictdSession(self, peer)

    def handle(self, request: bytes, peer: PeerView) -> Reply:
        """One request from ``peer`` (a fresh session each call; a connection should keep
        one :meth:`session`, which appraises the peer once)."""
        return self.session(peer).handle(request)

    # -- the one rule for every read -------------------------------------------------------

    def release(self, path: tuple[str, str, str], claims: JSON) -> bytes:
        repo, type_, tag = path
        name = f"{repo}/{type_}/{tag}"
        try:
            allowed = self._policy().allows(claims, repository=repo, type_=type_, tag=tag)
        except VeriteeError as exc:  # PolicyError, the KBS's PolicyEngineError
            log.error("resource policy failed for %s: %s", name, exc)
            raise ResourceUnavailable(f"{name}: the resource policy failed") from None
        if not allowed:
            log.warning("resource policy denied %s to an RA-TLS peer", name)
            raise ResourceDenied(f"{name} is not released by the resource policy")
        if self.resources is None:
            raise ResourceMissing(f"{name} not found (the KBS has no resource plugin)")
        try:
            data = self.resources.get(repo, type_, tag)
        except PluginInternalError:
            raise ResourceUnavailable(f"{name}: the repository failed") from None
        if data is None:
            raise ResourceMissing(f"{name} not found")
        log.info("released %s over RA-TLS", name)
        return data


class VerdictdSession:
    """One attested connection: the peer's policy input is built on first need."""

    def __init__(self, broker: VerdictdBroker, peer: PeerView) -> None:
        self.broker = broker
        self.peer = peer
        self._claims: JSON | None = None

    def claims(self) -> JSON:
        if self._claims is None:
            try:
                self._claims = self.broker._input(self.peer)
            except VeriteeError as exc:
                log.error("cannot appraise the RA-TLS peer's claims: %s", exc)
                raise ResourceUnavailable("the peer's claims could not be appraised") from None
        return self._claims

    def _release(self, path: tuple[str, str, str]) -> bytes:
        return self.broker.release(path, self.claims())

    def handle(self, request: bytes) -> Reply:
        try:
            doc = json.loads(request)
        except (ValueError, UnicodeDecodeError):
            log.info("Verdictd request is not JSON; connection closed")
            return _DROP
        command = doc.get("command") if isinstance(doc, dict) else None
        if not isinstance(command, str):
            log.info("Verdictd request has no command; connection closed")
            return _DROP
        if command == "version":
            return Reply(compact({"status": "OK", "version": VERSION}))
        if command == "echo":
            data = doc.get("data")
            return Reply(
                data.encode() if isinstance(data, str) else b"Echo parameters error", close=True
            )
        if command == "Decrypt":
            return Reply(self._decrypt(doc.get("blobs")))
        if command == "Get KEK":
            return Reply(self._get_kek(doc.get("kids")))
        if command == "Get Resource Info":
            return Reply(self._resource_info(doc.get("name")))
        if command == "Get Resource":
            return Reply(self._get_resource(doc.get("optional")))
        if command in _NAMED_COMMANDS:
            return Reply(self._named(_NAMED_COMMANDS[command]))
        log.info("unknown Verdictd command %r; connection closed", command[:60])
        return _DROP

    # -- commands --------------------------------------------------------------------------

    def _key(self, kid: str) -> bytes:
        try:
            key = self._release(resource_path_of(kid))
        except (BadResourcePath, ResourceMissing):
            raise ResourceMissing(f"kid: {kid}'s key not found") from None
        except ResourceDenied:
            denied = f"kid: {kid}'s key is not released by the resource policy"
            raise ResourceDenied(denied) from None
        except ResourceUnavailable:
            failed = f"kid: {kid}'s key is unavailable (see the KBS log)"
            raise ResourceUnavailable(failed) from None
        return key

    def _get_kek(self, kids: object) -> bytes:
        if not isinstance(kids, list) or not all(isinstance(k, str) for k in kids):
            return _fail_with_data("parameters error")
        keys: dict[str, str] = {}
        for kid in kids:
            try:
                keys[kid] = _b64(self._key(kid))
            except BrokerError as exc:
                return _fail_with_data(str(exc))
        return compact({"data": keys, "status": "OK"})

    def _decrypt(self, blobs: object) -> bytes:
        parsed = _blobs(blobs)
        if parsed is None:
            return _fail_with_data("parameters error")
        out: dict[str, str] = {}
        for kid, sent, ciphertext, iv in parsed:
            try:
                key = self._key(kid)
            except BrokerError as exc:
                return _fail_with_data(str(exc))
            if len(key) != KEY_SIZE:
                return _fail_with_data(f"kid: {kid}'s key is not an AES-256 key")
            try:
                out[sent] = _b64(AESGCM(key).decrypt(iv, ciphertext, None))
            except InvalidTag:
                return _fail_with_data(f"kid: {kid}: decryption failed")
        return compact({"data": out, "status": "OK"})

    def _resolve(self, name: object) -> tuple[str, str, str]:
        if not isinstance(name, str):
            raise BadResourcePath("file name error")
        if name in NAMED_RESOURCES:
            name = NAMED_RESOURCES[name][1]
        try:
            return resource_path_of(name)
        except BadResourcePath:
            raise BadResourcePath("file name error") from None

    def _resource_info(self, name: object) -> bytes:
        try:
            data = self._release(self._resolve(name))
        except BrokerError as exc:
            return compact({"error": str(exc), "status": "Fail"})
        size = len(_b64(data))
        return compact({"data": {"base64size": str(size)}, "status": "OK"})

    def _get_resource(self, optional: object) -> bytes:
        path = optional.get("resource_path") if isinstance(optional, dict) else None
        try:
            data = self._release(self._resolve(path))
        except BrokerError as exc:
            return _b64(compact({"error": str(exc), "status": "Fail"})).encode()
        return _b64(data).encode()

    def _named(self, name: str) -> bytes:
        file_name, path = NAMED_RESOURCES[name]
        try:
            data = self._release(resource_path_of(path))
        except BrokerError as exc:
            error = f"Can't fetch {file_name} file, error:{exc}"
            return _b64(compact({"error": error, "status": "Fail"})).encode()
        return _b64(data).encode()


def _fail_with_data(error: str) -> bytes:
    return compact({"data": {}, "error": error, "status": "Fail"})


def _unb64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _blobs(value: object) -> list[tuple[str, str, bytes, bytes]] | None:
    """``(kid, encrypted_data as sent, ciphertext, iv)`` per blob; None if any is bad."""
    if not isinstance(value, list) or not value:
        return None
    out = []
    for blob in value:
        if not isinstance(blob, dict):
            return None
        kid, sent = blob.get("kid"), blob.get("encrypted_data")
        length = blob.get("key_length")
        ciphertext, iv = _unb64(sent), _unb64(blob.get("iv"))
        if (
            not isinstance(kid, str)
            or not isinstance(sent, str)
            or ciphertext is None
            or iv is None
            or not 8 <= len(iv) <= 128
            or len(ciphertext) < 16
            or blob.get("algorithm") not in ALGORITHMS
            or type(length) is not int
            or length != KEY_LENGTH
        ):
            return None
        out.append((kid, sent, ciphertext, iv))
    return out
