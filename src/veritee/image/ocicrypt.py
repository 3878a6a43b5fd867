"""Encrypted image layers as ocicrypt writes them, and how a pull decrypts one.

An encrypted layer's descriptor has a ``…+encrypted`` media type and two annotations:

- ``org.opencontainers.image.enc.keys.<scheme>`` — for a key provider, the scheme is
  ``provider.<name>`` (CoCo's is ``provider.attestation-agent``): standard base64 of what
  the provider returned at wrap time, several recipients separated by commas.  The
  provider's *unwrap* turns that back into the **private options** JSON
  ``{"symkey":"<b64>","digest":"sha256:…","cipheroptions":{"nonce":"<b64>"}}``.
- ``org.opencontainers.image.enc.pubopts`` — standard base64 of the **public options**
  JSON ``{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"<b64>","cipheroptions":{}}``.

(Go's JSON encodes ``[]byte`` as standard base64, hence every ``<b64>``.)  The cipher,
the only one ocicrypt has, is AES-256-CTR whose 16-byte nonce is the whole initial
counter block, with HMAC-SHA256 over the *ciphertext* (encrypt-then-MAC) keyed with the
same 32-byte ``symkey``.  ``digest`` is the digest of the plaintext blob (the layer as
it was before encryption, e.g. the ``tar+gzip`` bytes).

:func:`decrypt_layer` is what a pull calls: the key comes through a
:data:`KeyUnwrapper` (in the guest: the CDH, i.e. the KBS after attestation), the
plaintext is written to a temporary file while the HMAC and the digest are computed,
and only when both match is the file renamed to its destination.  A refused key, a bad
HMAC or a bad digest raises and leaves nothing behind.  Messages never carry key bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veritee.errors import VeriteeError

__all__ = [
    "AES_256_CTR_HMAC_SHA256",
    "DEFAULT_PROVIDER",
    "ENCRYPTED_MEDIA_TYPES",
    "KEYS_ANNOTATION_PREFIX",
    "PUBOPTS_ANNOTATION",
    "DecryptedLayer",
    "KeyUnwrapper",
    "LayerAnnotationError",
    "LayerEncryptionError",
    "LayerIntegrityError",
    "LayerKeyError",
    "PrivateOptions",
    "PublicOptions",
    "decrypt_layer",
    "decrypt_stream",
    "decrypted_media_type",
    "encrypt_stream",
    "is_encrypted",
    "parse_private_options",
    "parse_public_options",
    "provider_annotation",
    "unwrap_private_options",
]

KeyUnwrapper = Callable[[bytes], bytes]
"""What the provider returned at wrap time (the decoded annotation) in, private options
JSON out; it raises a :class:`~veritee.errors.VeriteeError` when the key is refused."""

AES_256_CTR_HMAC_SHA256 = "AES_256_CTR_HMAC_SHA256"
DEFAULT_PROVIDER = "attestation-agent"
KEYS_ANNOTATION_PREFIX = "org.opencontainers.image.enc.keys."
PUBOPTS_ANNOTATION = "org.opencontainers.image.enc.pubopts"
_OCI_LAYER = "application/vnd.oci.image.layer"
ENCRYPTED_MEDIA_TYPES: Mapping[str, str] = {
    f"{_OCI_LAYER}.{kind}{suffix}+encrypted": f"{_OCI_LAYER}.{kind}{suffix}"
    for kind in ("v1.tar", "nondistributable.v1.tar")
    for suffix in ("", "+gzip", "+zstd")
}
"""ocicrypt's encrypted layer media types and the plain ones they decrypt to."""

KEY_SIZE = 32
NONCE_SIZE = 16
HMAC_SIZE = 32
CHUNK_SIZE = 1 << 16
_DIGEST = re.compile(r"(?P<alg>sha256|sha384|sha512):(?P<hex>[0-9a-f]+)")
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class LayerEncryptionError(VeriteeError):
    """An encrypted layer that cannot be decrypted."""


class LayerAnnotationError(LayerEncryptionError):
    """A missing or malformed annotation, media type or options document."""


class LayerKeyError(LayerEncryptionError):
    """No key for the layer: no annotation for the provider, or every unwrap was refused."""


class LayerIntegrityError(LayerEncryptionError):
    """The ciphertext's HMAC or the plaintext's digest is not the one expected."""


# --- options -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicOptions:
    """ocicrypt's ``PublicLayerBlockCipherOptions`` (the pubopts annotation)."""

    hmac: bytes
    cipher: str = AES_256_CTR_HMAC_SHA256
    cipher_options: Mapping[str, bytes] = field(default_factory=dict)

    def annotation(self) -> str:
        doc = {
            "cipher": self.cipher,
            "hmac": _b64(self.hmac),
            "cipheroptions": {name: _b64(value) for name, value in self.cipher_options.items()},
        }
        return _b64(json.dumps(doc, separators=(",", ":")).encode())


@dataclass(frozen=True)
class PrivateOptions:
    """ocicrypt's ``PrivateLayerBlockCipherOptions``: the layer key, nonce and digest."""

    symkey: bytes = field(repr=False)
    nonce: bytes
    digest: str

    def to_json(self) -> bytes:
        doc = {
            "symkey": _b64(self.symkey),
            "digest": self.digest,
            "cipheroptions": {"nonce": _b64(self.nonce)},
        }
        return json.dumps(doc, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise LayerAnnotationError(f"{what}: expected a standard base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise LayerAnnotationError(f"{what}: not standard base64") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise LayerAnnotationError(f"{what}: not JSON") from None
    if not isinstance(doc, dict):
        raise LayerAnnotationError(f"{what}: not a JSON object")
    return doc


def _byte_map(value: object, what: str) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LayerAnnotationError(f"{what}: expected an object of base64 strings")
    return {str(name): _unb64(item, f"{what}.{name}") for name, item in value.items()}


def parse_public_options(annotation: str) -> PublicOptions:
    """The pubopts annotation (base64 JSON); only ocicrypt's one cipher is accepted."""
    what = PUBOPTS_ANNOTATION
    doc = _json_object(_unb64(annotation, what), what)
    cipher = doc.get("cipher")
    if cipher != AES_256_CTR_HMAC_SHA256:
        shown = repr(cipher)[:60]
        raise LayerAnnotationError(
            f"{what}: cipher {shown} is not supported (expected {AES_256_CTR_HMAC_SHA256})"
        )
    tag = _unb64(doc.get("hmac"), f"{what}: hmac")
    if len(tag) != HMAC_SIZE:
        raise LayerAnnotationError(f"{what}: hmac has {len(tag)} bytes, expected {HMAC_SIZE}")
    options = _byte_map(doc.get("cipheroptions"), f"{what}: cipheroptions")
    if "nonce" in options:
        # ocicrypt reads a public nonce before the private one; it never writes one, and the
        # HMAC does not cover it, so one here could only be someone else's.
        raise LayerAnnotationError(f"{what}: a nonce among the public options is refused")
    return PublicOptions(tag, cipher, options)


def parse_private_options(data: bytes) -> PrivateOptions:
    """The unwrapped private options JSON: a 32-byte key, a 16-byte nonce, the digest."""
    what = "the layer's private options"
    doc = _json_object(data, what)
    symkey = _unb64(doc.get("symkey"), f"{what}: symkey")
    if len(symkey) != KEY_SIZE:
        raise LayerAnnotationError(
            f"{what}: symkey has {len(symkey)} bytes, AES-256 needs {KEY_SIZE}"
        )
    options = _byte_map(doc.get("cipheroptions"), f"{what}: cipheroptions")
    nonce = options.get("nonce")
    if nonce is None or len(nonce) != NONCE_SIZE:
        raise LayerAnnotationError(f"{what}: cipheroptions.nonce must be {NONCE_SIZE} bytes")
    digest = doc.get("digest")
    if not isinstance(digest, str) or not _valid_digest(digest):
        raise LayerAnnotationError(
            f"{what}: digest {repr(digest)[:90]} is not sha256:/sha384:/sha512:<hex>"
        )
    return PrivateOptions(symkey, nonce, digest)


def _valid_digest(digest: str) -> bool:
    match = _DIGEST.fullmatch(digest)
    return match is not None and len(match["hex"]) == _HEX_LENGTHS[match["alg"]]


# --- media types and annotations ----------------------------------------------------------------


def is_encrypted(media_type: str) -> bool:
    """Whether ``media_type`` is one of ocicrypt's encrypted layer types."""
    return media_type in ENCRYPTED_MEDIA_TYPES


def decrypted_media_type(media_type: str) -> str:
    """The plain media type an encrypted layer type decrypts to."""
    try:
        return ENCRYPTED_MEDIA_TYPES[media_type]
    except KeyError:
        raise LayerAnnotationError(
            f"media type {media_type[:120]!r} is not an encrypted layer type"
        ) from None


def provider_annotation(provider: str = DEFAULT_PROVIDER) -> str:
    """The annotation that carries a key provider's wrapped keys."""
    return f"{KEYS_ANNOTATION_PREFIX}provider.{provider}"


def unwrap_private_options(
    annotations: Mapping[str, str],
    unwrap: KeyUnwrapper,
    *,
    key_annotation: str = "",
) -> PrivateOptions:
    """The layer's private options, from the first of the wrapped keys in
    ``key_annotation`` (the attestation-agent provider's unless named) that ``unwrap``
    opens; :class:`LayerKeyError` when there is none or all are refused."""
    name = key_annotation or provider_annotation()
    value = annotations.get(name)
    if not value:
        schemes = sorted(
            key.removeprefix(KEYS_ANNOTATION_PREFIX)
            for key in annotations
            if key.startswith(KEYS_ANNOTATION_PREFIX)
        )
        found = f"it has keys for {', '.join(schemes)} only" if schemes else "it has none"
        raise LayerKeyError(f"the layer has no {name} annotation ({found})")
    failures: list[str] = []
    last: VeriteeError | None = None
    for index, item in enumerate(value.split(","), start=1):
        try:
            packet = _unb64(item, f"{name} [{index}]")
            return parse_private_options(unwrap(packet))
        except VeriteeError as exc:
            failures.append(f"[{index}] {exc}")
            last = exc
    raise LayerKeyError(f"no key for the layer: {'; '.join(failures)}") from last


# --- the stream ----------------------------------------------------------------------------------


def decrypt_stream(
    ciphertext: BinaryIO, out: BinaryIO, private: PrivateOptions, public: PublicOptions
) -> tuple[int, str]:
    """Decrypt ``ciphertext`` into ``out`` chunk by chunk; returns the plaintext size and
    digest.

    The HMAC and the digest are checked at the end: on :class:`LayerIntegrityError` what
    was written to ``out`` must be thrown away (:func:`decrypt_layer` does that).
    """
    mac = hmac.HMAC(private.symkey, hashes.SHA256())
    decryptor = Cipher(algorithms.AES(private.symkey), modes.CTR(private.nonce)).decryptor()
    algorithm = private.digest.partition(":")[0]
    digest = hashlib.new(algorithm)
    size = 0
    while chunk := ciphertext.read(CHUNK_SIZE):
        mac.update(chunk)
        plain = decryptor.update(chunk)
        digest.update(plain)
        out.write(plain)
        size += len(plain)
    tail = decryptor.finalize()  # CTR keeps nothing back; kept for form
    digest.update(tail)
    out.write(tail)
    try:
        mac.verify(public.hmac)
    except InvalidSignature:
        raise LayerIntegrityError(
            "the layer's HMAC does not match: the ciphertext or its options were altered"
        ) from None
    actual = f"{algorithm}:{digest.hexdigest()}"
    if not secrets.compare_digest(actual, private.digest) and not secrets.compare_digest(
        _decompressed_digest(out, algorithm), private.digest
    ):
        raise LayerIntegrityError(
            f"the decrypted layer's digest is {actual}, its options say {private.digest}"
        )
    return size + len(tail), actual


def _decompressed_digest(out: BinaryIO, algorithm: str) -> str:
    """The digest of the gzip stream written to ``out``, decompressed; "" when ``out``
    cannot be read back or does not hold gzip.

    skopeo (containers/image) compresses an uncompressed layer before it encrypts it, but
    writes the digest of the layer it was given, the uncompressed tar, into the options;
    the HMAC has already vouched for the ciphertext, and the tar is what the image config's
    ``diff_ids`` name, so that digest is accepted for a gzip plaintext too.
    """
    try:
        out.flush()
        out.seek(0)
        if out.read(2) != b"\x1f\x8b":
            return ""
        out.seek(0)
        inflater = zlib.decompressobj(wbits=31)
        digest = hashlib.new(algorithm)
        while chunk := out.read(CHUNK_SIZE):
            digest.update(inflater.decompress(chunk))
        digest.update(inflater.flush())
    except (OSError, zlib.error):
        return ""
    finally:
        out.seek(0, os.SEEK_END)
    return f"{algorithm}:{digest.hexdigest()}"


def encrypt_stream(
    plaintext: BinaryIO, out: BinaryIO, *, digest: str
) -> tuple[PrivateOptions, PublicOptions]:
    """ocicrypt's writer: encrypt ``plaintext`` (whose blob digest is ``digest``) under a
    fresh key and nonce into ``out``; returns the options to wrap and to publish."""
    if not _valid_digest(digest):
        raise LayerAnnotationError(f"digest {digest[:90]!r} is not sha256:/sha384:/sha512:<hex>")
    private = PrivateOptions(secrets.token_bytes(KEY_SIZE), secrets.token_bytes(NONCE_SIZE), digest)
    encryptor = Cipher(algorithms.AES(private.symkey), modes.CTR(private.nonce)).encryptor()
    mac = hmac.HMAC(private.symkey, hashes.SHA256())
    while chunk := plaintext.read(CHUNK_SIZE):
        sealed = encryptor.update(chunk)
        mac.update(sealed)
        out.write(sealed)
    tail = encryptor.finalize()
    mac.update(tail)
    out.write(tail)
    return private, PublicOptions(mac.finalize())


# --- what a pull calls ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DecryptedLayer:
    """A verified plaintext layer at ``path``, with its plain media type and digest."""

    path: Path
    media_type: str
    digest: str
    size: int


def decrypt_layer(
    ciphertext: BinaryIO,
    *,
    media_type: str,
    annotations: Mapping[str, str],
    unwrap: KeyUnwrapper,
    dest: Path,
    key_annotation: str = "",
) -> DecryptedLayer:
    """Decrypt one layer blob (already checked against its descriptor's digest) to ``dest``.

    ``media_type`` and ``annotations`` are the descriptor's; ``unwrap`` opens the wrapped
    keys in ``key_annotation`` (by default the attestation-agent provider's).  Everything
    is checked before the key is asked for; the plaintext goes to a private temporary file
    beside ``dest`` and is renamed to ``dest`` only once its HMAC and digest match.  Any
    failure raises a :class:`LayerEncryptionError` (a refused key: :class:`LayerKeyError`)
    and leaves no file.
    """
    plain_type = decrypted_media_type(media_type)
    pubopts = annotations.get(PUBOPTS_ANNOTATION)
    if not pubopts:
        raise LayerAnnotationError(f"the layer has no {PUBOPTS_ANNOTATION} annotation")
    public = parse_public_options(pubopts)
    private = unwrap_private_options(annotations, unwrap, key_annotation=key_annotation)
    handle, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "w+b") as out:
            size, digest = decrypt_stream(ciphertext, out, private, public)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, dest)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return DecryptedLayer(dest, plain_type, digest, size)
