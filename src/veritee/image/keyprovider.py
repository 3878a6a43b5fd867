"""The ocicrypt key provider ``attestation-agent``: CoCo's coco_keyprovider and the CDH's
UnWrapKey, as ocicrypt's key-provider *command* protocol.

**Protocol.** ocicrypt runs the command with one JSON document on stdin and reads one
from stdout (Go ``[]byte`` fields are standard base64; guest-components' ttRPC variant
sends integer arrays, also accepted here):

- ``{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"attestation-agent":["<b64
  params>"]},"DecryptConfig":{…}},"optsdata":"<b64>"}}`` →
  ``{"keywrapresults":{"annotation":"<b64 AnnotationPacket JSON>"}}``;
- ``{"op":"keyunwrap","keyunwrapparams":{"dc":{…},"annotation":"<b64 AnnotationPacket
  JSON>"}}`` → ``{"keyunwrapresults":{"optsdata":"<b64>"}}``.

``optsdata`` is the layer's private options JSON (see :mod:`veritee.image.ocicrypt`).

**Wrap parameters** (``--encryption-key provider:attestation-agent:<params>``) are
parsed by :func:`parse_wrap_params`: a bare ``kbs:///<repository>/<type>/<tag>`` or
coco_keyprovider's ``keyid=…::keypath=…::algorithm=A256GCM`` (``veritee keyprovider
--help`` and docs/ARCHITECTURE.md document them).

**Wrapping** (what coco_keyprovider does): the optsdata is sealed with AES-256-GCM under
the KEK (random 12-byte IV, the tag appended) into an AnnotationPacket
``{"version":"0.1.0","kid":…,"wrapped_data":…,"iv":…,"wrap_type":"A256GCM",
"provider":"kbs","provider_settings":{},"annotations":{}}``.  **Unwrapping** (what the
guest does) reads V2 and V1 packets (V1 lacks version, provider and the two maps), gets
the KEK through a resource getter (the CDH in the guest) and opens the seal.  Every check
that needs no key comes first; messages never carry key bytes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from veritee.errors import ParseError, VeriteeError
from veritee.guest.resource_uri import DEFAULT_PLUGIN, ResourceUri, parse_resource_uri

__all__ = [
    "DEFAULT_KEK_REPOSITORY",
    "KEK_SIZE",
    "PACKET_VERSION",
    "PROVIDER",
    "WRAP_TYPE",
    "AnnotationPacket",
    "AnnotationPacketError",
    "KekSource",
    "KekStore",
    "KeyProvider",
    "KeyProviderError",
    "KeyProviderInput",
    "KeyProviderRequestError",
    "KeyUnwrapError",
    "KeyWrapError",
    "ResourceGetter",
    "UnknownWrapType",
    "WrapParams",
    "key_unwrapper",
    "parse_annotation_packet",
    "parse_protocol_input",
    "parse_wrap_params",
    "read_kek",
    "unwrap_key",
    "wrap_optsdata",
]

PROVIDER = "attestation-agent"
PACKET_VERSION = "0.1.0"
WRAP_TYPE = "A256GCM"
KEK_SIZE = 32
IV_SIZE = 12
TAG_SIZE = 16
DEFAULT_KEK_REPOSITORY = "kbs:///default/image-kek"
_PLACEHOLDER = "Enabled"  # what ocicrypt passes for provider:<name> without parameters

ResourceGetter = Callable[[str], bytes]
"""A resource URI (``kbs:///repo/type/tag``) in, the resource's bytes out."""
KekStore = Callable[[str, bytes], None]
"""Keep a KEK in the KBS under ``repo/type/tag`` (the admin API)."""
KekSource = Callable[[ResourceUri], bytes]
"""The KEK for a given key id, the same on every call (one per image, not per layer)."""


class KeyProviderError(VeriteeError):
    """A key-provider request that could not be served."""


class KeyProviderRequestError(KeyProviderError):
    """A protocol document or wrap parameters that are malformed or unsupported."""


class AnnotationPacketError(KeyProviderError):
    """An AnnotationPacket that is malformed or that this provider cannot open."""


class UnknownWrapType(AnnotationPacketError):
    """A ``wrap_type`` other than ``A256GCM``."""


class KeyUnwrapError(KeyProviderError):
    """The KEK was refused or does not open ``wrapped_data``."""


class KeyWrapError(KeyProviderError):
    """The KEK could not be made, read or stored."""


# --- wire documents ----------------------------------------------------------------------------


def _go_bytes(value: object) -> object:
    """Go's ``[]byte`` in JSON: standard base64; serde's ``Vec<u8>``: an integer array."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not standard base64") from None
    if isinstance(value, list):
        if not all(type(item) is int and 0 <= item < 256 for item in value):
            raise ValueError("an integer array must hold bytes (0..255)")
        return bytes(value)
    return value


GoBytes = Annotated[bytes, BeforeValidator(_go_bytes)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class EncryptConfig(_Wire):
    """ocicrypt's ``EncryptConfig``; its ``DecryptConfig`` (and the unwrap's ``dc``) are not
    used: the KEK's release is the KBS's decision, not the caller's."""

    parameters: dict[str, list[GoBytes]] | None = Field(default=None, alias="Parameters")


class KeyWrapParams(_Wire):
    ec: EncryptConfig | None = None
    optsdata: GoBytes | None = None


class KeyUnwrapParams(_Wire):
    annotation: GoBytes | None = None


class KeyProviderInput(_Wire):
    """ocicrypt's ``KeyProviderKeyWrapProtocolInput``."""

    op: Literal["keywrap", "keyunwrap"]
    keywrapparams: KeyWrapParams | None = None
    keyunwrapparams: KeyUnwrapParams | None = None


class AnnotationPacket(_Wire):
    """The AnnotationPacket (V2; a V1 packet reads with the defaults)."""

    version: str = PACKET_VERSION
    kid: str
    wrapped_data: str
    iv: str | None = None
    wrap_type: str | None = None
    provider: str = "kbs"
    provider_settings: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def _problems(exc: ValidationError) -> str:
    # the messages only: pydantic's own text would repeat the input, key material included
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(document)'}: {error['msg']}"
        for error in exc.errors()
    )


def parse_protocol_input(data: bytes) -> KeyProviderInput:
    """The request ocicrypt writes to the provider's stdin."""
    try:
        return KeyProviderInput.model_validate_json(data)
    except ValidationError as exc:
        raise KeyProviderRequestError(f"key-provider request: {_problems(exc)}") from None


def parse_annotation_packet(data: bytes) -> AnnotationPacket:
    """An AnnotationPacket's JSON (V1 or V2); nothing about its key is checked here."""
    try:
        return AnnotationPacket.model_validate_json(data)
    except ValidationError as exc:
        raise AnnotationPacketError(f"AnnotationPacket: {_problems(exc)}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AnnotationPacketError(f"AnnotationPacket: {what} is not standard base64") from None


# --- wrap parameters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WrapParams:
    """What ``provider:attestation-agent:<params>`` asked for."""

    kid: ResourceUri
    keypath: Path | None = None
    generated: bool = False  # no key id was given: a fresh one per layer


def _kek_id(value: str) -> ResourceUri:
    text = f"kbs://{value}" if value.startswith("/") else value  # coco's /<repo>/<type>/<tag>
    try:
        kid = parse_resource_uri(text)
    except ParseError as exc:
        raise KeyProviderRequestError(f"keyid: {exc}") from None
    if kid.plugin != DEFAULT_PLUGIN or len(kid.segments) != 3 or kid.query is not None:
        raise KeyProviderRequestError(
            f"keyid {value[:120]!r}: a KEK is a KBS resource, kbs:///<repository>/<type>/<tag>"
        )
    return kid


def parse_wrap_params(params: Sequence[bytes]) -> WrapParams:
    """The parameters ocicrypt passed for this provider (see the module doc)."""
    if len(params) != 1:
        raise KeyProviderRequestError(
            f"expected one provider:{PROVIDER}:<parameters> encryption key, got {len(params)}"
        )
    try:
        text = params[0].decode()
    except UnicodeDecodeError:
        raise KeyProviderRequestError("the provider parameters are not UTF-8") from None
    fields: dict[str, str] = {}
    if text.startswith(("kbs://", "kbs+")):
        fields["keyid"] = text
    elif text not in ("", _PLACEHOLDER):
        for item in text.split("::"):
            name, sep, value = item.partition("=")
            if not sep or name not in ("keyid", "keypath", "algorithm", "sample"):
                raise KeyProviderRequestError(
                    f"parameter {item[:60]!r}: expected kbs:///<repository>/<type>/<tag> or "
                    "keyid=…, keypath=…, algorithm=A256GCM joined by '::'"
                )
            if name in fields:
                raise KeyProviderRequestError(f"parameter {name} is given twice")
            fields[name] = value
    if fields.get("sample", "false") != "false":
        raise KeyProviderRequestError("sample=true (a hard-coded, public KEK) is refused")
    if fields.get("algorithm", WRAP_TYPE) != WRAP_TYPE:
        raise KeyProviderRequestError(
            f"algorithm {fields['algorithm'][:40]!r}: only {WRAP_TYPE} (AES-256-GCM) wraps keys"
        )
    keypath = Path(fields["keypath"]) if fields.get("keypath") else None
    if "keyid" in fields:
        return WrapParams(_kek_id(fields["keyid"]), keypath)
    generated = parse_resource_uri(f"{DEFAULT_KEK_REPOSITORY}/{uuid.uuid4()}")
    return WrapParams(generated, keypath, generated=True)


# --- wrap and unwrap ---------------------------------------------------------------------------


def wrap_optsdata(optsdata: bytes, kid: ResourceUri, kek: bytes) -> AnnotationPacket:
    """Seal ``optsdata`` under ``kek`` (AES-256-GCM, a fresh IV) as an AnnotationPacket."""
    if len(kek) != KEK_SIZE:
        raise KeyWrapError(f"the KEK for {kid} has {len(kek)} bytes, expected {KEK_SIZE}")
    iv = secrets.token_bytes(IV_SIZE)
    sealed = AESGCM(kek).encrypt(iv, optsdata, None)
    return AnnotationPacket(
        kid=kid.uri, wrapped_data=_b64(sealed), iv=_b64(iv), wrap_type=WRAP_TYPE
    )


def unwrap_key(annotation: bytes, get_resource: ResourceGetter) -> bytes:
    """The optsdata an AnnotationPacket seals, its KEK got through ``get_resource``."""
    packet = parse_annotation_packet(annotation)
    if packet.version != PACKET_VERSION:
        raise AnnotationPacketError(
            f"AnnotationPacket: version {packet.version[:40]!r} is not {PACKET_VERSION!r}"
        )
    if packet.provider != "kbs":
        raise AnnotationPacketError(
            f"AnnotationPacket: provider {packet.provider[:40]!r} needs a KMS that is not "
            "available here (only 'kbs')"
        )
    if packet.wrap_type is None or packet.iv is None:
        raise AnnotationPacketError("AnnotationPacket: a kbs packet needs wrap_type and iv")
    if packet.wrap_type != WRAP_TYPE:
        raise UnknownWrapType(
            f"AnnotationPacket: wrap_type {packet.wrap_type[:40]!r} is not supported (only "
            f"{WRAP_TYPE}; A256CTR is not authenticated)"
        )
    iv = _unb64(packet.iv, "iv")
    if len(iv) != IV_SIZE:
        raise AnnotationPacketError(f"AnnotationPacket: iv has {len(iv)} bytes, not {IV_SIZE}")
    sealed = _unb64(packet.wrapped_data, "wrapped_data")
    if len(sealed) < TAG_SIZE:
        raise AnnotationPacketError("AnnotationPacket: wrapped_data is shorter than a GCM tag")
    try:
        kid = parse_resource_uri(packet.kid)
    except ParseError as exc:
        raise AnnotationPacketError(f"AnnotationPacket: kid: {exc}") from None
    try:
        kek = get_resource(kid.uri)
    except VeriteeError as exc:
        raise KeyUnwrapError(f"the KEK {kid} was not released: {exc}") from exc
    if len(kek) != KEK_SIZE:
        raise KeyUnwrapError(f"the KEK {kid} has {len(kek)} bytes, expected {KEK_SIZE}")
    try:
        return AESGCM(kek).decrypt(iv, sealed, None)
    except InvalidTag:
        raise KeyUnwrapError(
            f"the KEK {kid} does not open wrapped_data (another key, or altered data)"
        ) from None


def key_unwrapper(get_resource: ResourceGetter) -> Callable[[bytes], bytes]:
    """The unwrapper :func:`veritee.image.ocicrypt.decrypt_layer` takes, over a getter."""
    return functools.partial(unwrap_key, get_resource=get_resource)


def read_kek(path: Path, what: str) -> bytes:
    """A 32-byte KEK from a file; :class:`KeyWrapError` names the file otherwise."""
    try:
        kek = path.read_bytes()
    except OSError as exc:
        raise KeyWrapError(f"cannot read {what} ({path}): {exc.strerror}") from exc
    if len(kek) != KEK_SIZE:
        raise KeyWrapError(f"{what} ({path}) has {len(kek)} bytes, expected {KEK_SIZE}")
    return kek


# --- the provider ------------------------------------------------------------------------------


class KeyProvider:
    """Serves ocicrypt's requests: ``store_kek`` keeps new KEKs in the KBS (wrap),
    ``get_resource`` releases them (unwrap), ``kek_for`` gives the one KEK of a key id."""

    def __init__(
        self,
        *,
        name: str = PROVIDER,
        store_kek: KekStore | None = None,
        get_resource: ResourceGetter | None = None,
        kek_for: KekSource | None = None,
    ) -> None:
        self.name = name
        self.store_kek = store_kek
        self.get_resource = get_resource
        self.kek_for = kek_for

    def wrap(self, params: Sequence[bytes], optsdata: bytes) -> AnnotationPacket:
        wanted = parse_wrap_params(params)
        if wanted.keypath is not None:
            kek = read_kek(wanted.keypath, "the KEK file")
        elif self.store_kek is None:
            raise KeyWrapError(
                f"no KBS to keep a new KEK for {wanted.kid}: configure the KBS URL and admin "
                "token, or give keypath=<32-byte KEK file>"
            )
        elif wanted.generated or self.kek_for is None:
            kek = secrets.token_bytes(KEK_SIZE)
        else:
            kek = self.kek_for(wanted.kid)
        packet = wrap_optsdata(optsdata, wanted.kid, kek)
        if self.store_kek is not None:
            try:
                self.store_kek(wanted.kid.resource_path, kek)
            except VeriteeError as exc:
                raise KeyWrapError(f"the KBS did not keep the KEK {wanted.kid}: {exc}") from exc
        return packet

    def unwrap(self, annotation: bytes) -> bytes:
        if self.get_resource is None:
            raise KeyUnwrapError("no resource getter (CDH) to release the KEK")
        return unwrap_key(annotation, self.get_resource)

    def handle(self, request: bytes) -> bytes:
        """One protocol request in, its JSON answer out."""
        message = parse_protocol_input(request)
        if message.op == "keywrap":
            wrap = message.keywrapparams
            parameters = wrap.ec.parameters if wrap is not None and wrap.ec is not None else None
            if wrap is None or wrap.optsdata is None or not parameters:
                raise KeyProviderRequestError("keywrap: no keywrapparams.ec and optsdata")
            if self.name not in parameters:
                raise KeyProviderRequestError(f"keywrap: no parameters for {self.name!r}")
            packet = self.wrap(parameters[self.name], wrap.optsdata)
            body: dict[str, Any] = {"keywrapresults": {"annotation": _b64(packet.to_json())}}
        else:
            unwrap = message.keyunwrapparams
            if unwrap is None or unwrap.annotation is None:
                raise KeyProviderRequestError("keyunwrap: no keyunwrapparams.annotation")
            body = {"keyunwrapresults": {"optsdata": _b64(self.unwrap(unwrap.annotation))}}
        return json.dumps(body, separators=(",", ":")).encode()
