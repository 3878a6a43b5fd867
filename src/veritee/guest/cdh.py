"""The Confidential Data Hub (CDH): resources, start-up credentials and sealed secrets.

The CDH never talks to a KBS itself.  It is given a *resource getter*, a callable
that takes a resource URI (``kbs:///repo/type/tag``) and returns the plaintext
bytes, raising a :class:`~veritee.errors.VeriteeError` when it cannot; the
Attestation Agent supplies one that goes through its attested KBS session.  With
``[kbc] name = "offline_fs_kbc"`` the getter is not used: resources come from
JSON files ``{"repo/type/tag": "<standard base64>"}`` read at construction.

:class:`ConfidentialDataHub` offers ``get_resource`` (the URI is checked first),
``fetch_credentials`` (every ``[[credentials]]`` entry written 0600 under the
credentials root, atomically; the first failure stops and names the entry) and
``unseal_secret``.

A sealed secret is ``"sealed." + <compact JWS>``: header ``{"alg":"ES256","kid":…}``,
the payload JSON (version ``0.1.0``, ``type`` vault or envelope).  ``kid`` is either a
resource URI, whose bytes are the public P-256 JWK, or a file name under the
sealed-secret key directory.  Only ES256 is accepted; all JOSE work is joserfc's.
With ``skip_sealed_secret_verification`` the signature is not checked and the old
unsigned 4-part form (``sealed.<junk>.<payload>.<junk>``) is read too.  A vault
secret's value is the resource its ``name`` names (provider ``kbs``); an envelope
secret needs a cloud KMS (aliyun, aws, ehsm), none of which is available here.

Failures are the precise types below; their messages name the step and the key id,
never key material or secret bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError, MissingAlgorithmError
from joserfc.jwk import ECKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from veritee.errors import ConfigError, ParseError, VeriteeError
from veritee.guest.cdh_config import CREDENTIALS_ROOT, CdhConfig, Credential
from veritee.guest.resource_uri import parse_resource_uri

__all__ = [
    "DEFAULT_CREDENTIALS_ROOT",
    "DEFAULT_SEALED_KEY_DIR",
    "MAX_SEALED_SECRET",
    "OFFLINE_FS_KBC_FILES",
    "SEALED_PREFIX",
    "SEALED_SECRET_ALG",
    "SEALED_SECRET_VERSION",
    "CdhError",
    "ConfidentialDataHub",
    "CredentialError",
    "EnvelopeSecret",
    "KeyResolver",
    "ResourceGetter",
    "ResourceNotFound",
    "SealedSecretError",
    "SealedSecretFormatError",
    "SealedSecretKeyError",
    "SealedSecretSignatureError",
    "SealedSecretVersionError",
    "SecretPayload",
    "UnsupportedSecretError",
    "UnsupportedSecretProvider",
    "UnsupportedSecretType",
    "VaultSecret",
    "load_offline_fs_resources",
    "load_signing_jwk",
    "load_verifying_jwk",
    "open_sealed_secret",
    "parse_secret_payload",
    "seal_secret",
]

ResourceGetter = Callable[[str], bytes]
KeyResolver = Callable[[str], ECKey]

DEFAULT_CREDENTIALS_ROOT = Path(str(CREDENTIALS_ROOT))
DEFAULT_SEALED_KEY_DIR = Path("/run/confidential-containers/cdh/sealed-secret")
OFFLINE_FS_KBC_FILES = (
    Path("/etc/aa-offline_fs_kbc-keys.json"),
    Path("/etc/aa-offline_fs_kbc-resources.json"),
)
SEALED_PREFIX = "sealed."
SEALED_SECRET_VERSION = "0.1.0"  # noqa: S105 (a format version, not a secret)
SEALED_SECRET_ALG = "ES256"  # noqa: S105 (an algorithm name)
MAX_SEALED_SECRET = 1 << 20  # a Kubernetes Secret's own limit
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


# --- errors ------------------------------------------------------------------------------------


class CdhError(VeriteeError):
    """A Confidential Data Hub failure."""


class ResourceNotFound(CdhError):
    """``offline_fs_kbc`` has no such resource."""


class CredentialError(CdhError):
    """A ``[[credentials]]`` entry could not be fetched or written; the message names it."""


class SealedSecretError(CdhError):
    """A sealed secret that cannot be unsealed."""


class SealedSecretFormatError(SealedSecretError):
    """Not ``sealed.`` + compact JWS, or a payload that is not the expected JSON."""


class SealedSecretVersionError(SealedSecretFormatError):
    """A payload whose ``version`` is not ``0.1.0``."""


class SealedSecretSignatureError(SealedSecretError):
    """Not signed with ES256, or the signature does not verify with the named key."""


class SealedSecretKeyError(SealedSecretError):
    """The ``kid`` is missing, unsafe or unknown, or its key is not a P-256 JWK."""


class UnsupportedSecretError(SealedSecretError):
    """A well-formed secret this hub cannot reveal."""


class UnsupportedSecretType(UnsupportedSecretError):
    """A ``type`` other than ``vault`` and ``envelope``."""


class UnsupportedSecretProvider(UnsupportedSecretError):
    """A provider (KMS) that is not available here."""


# --- the payload -------------------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class VaultSecret(_Payload):
    """The secret is stored elsewhere; ``name`` says where (a resource URI for ``kbs``)."""

    version: str = SEALED_SECRET_VERSION
    type: Literal["vault"] = "vault"
    name: str
    provider: str = "kbs"
    provider_settings: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)


class EnvelopeSecret(_Payload):
    """The secret travels encrypted under a data key that a KMS wraps."""

    version: str = SEALED_SECRET_VERSION
    type: Literal["envelope"] = "envelope"
    key_id: str
    encrypted_key: str
    encrypted_data: str
    wrap_type: Literal["A256GCM", "A256CTR"]
    iv: str
    provider: str
    provider_settings: dict[str, Any] = Field(default_factory=dict)
    annotations: dict[str, Any] = Field(default_factory=dict)


SecretPayload = VaultSecret | EnvelopeSecret
_PAYLOADS: dict[str, type[VaultSecret] | type[EnvelopeSecret]] = {
    "vault": VaultSecret,
    "envelope": EnvelopeSecret,
}


def _short(value: object, limit: int = 80) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "..."


def parse_secret_payload(data: bytes) -> SecretPayload:
    """The payload of a sealed secret: version ``0.1.0``, ``type`` vault or envelope."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise SealedSecretFormatError("the payload is not JSON") from None
    if not isinstance(doc, dict):
        raise SealedSecretFormatError("the payload is not a JSON object")
    version = doc.get("version")
    if version != SEALED_SECRET_VERSION:
        raise SealedSecretVersionError(
            f"payload version {_short(version)} is not supported (expected "
            f"{SEALED_SECRET_VERSION!r})"
        )
    kind = doc.get("type")
    if kind is None:
        raise SealedSecretFormatError("the payload has no 'type'")
    model = _PAYLOADS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise UnsupportedSecretType(
            f"secret type {_short(kind)} is not supported (vault or envelope)"
        )
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SealedSecretFormatError(f"the {kind} payload: {problems}") from None


# --- keys --------------------------------------------------------------------------------------


def _jwk_document(source: Mapping[str, Any] | str | bytes, what: str) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    try:
        doc = json.loads(source)
    except (ValueError, UnicodeDecodeError):
        raise SealedSecretKeyError(f"{what} is not JWK JSON") from None
    if not isinstance(doc, dict):
        raise SealedSecretKeyError(f"{what} is not a JWK (a JSON object)")
    return doc


def _import_p256(doc: dict[str, Any], what: str) -> ECKey:
    if doc.get("kty") != "EC" or doc.get("crv") != "P-256":
        raise SealedSecretKeyError(f"{what} is not an EC P-256 JWK")
    try:
        return ECKey.import_key(doc)
    except (JoseError, ValueError, TypeError, KeyError):
        raise SealedSecretKeyError(f"{what} is not a valid EC P-256 JWK") from None


def load_verifying_jwk(source: Mapping[str, Any] | str | bytes, what: str = "the key") -> ECKey:
    """The public P-256 key of a JWK (of a private JWK, only its public half is kept)."""
    key = _import_p256(_jwk_document(source, what), what)
    return ECKey.import_key(key.as_dict(private=False))


def load_signing_jwk(source: Mapping[str, Any] | str | bytes, what: str = "the key") -> ECKey:
    """A private P-256 JWK (the signer's)."""
    key = _import_p256(_jwk_document(source, what), what)
    if not key.is_private:
        raise SealedSecretKeyError(f"{what} is a public key; sealing needs the private key")
    return key


# --- sealing and opening -----------------------------------------------------------------------


def seal_secret(
    payload: SecretPayload | Mapping[str, Any],
    signing_key_jwk: Mapping[str, Any] | str | bytes | ECKey,
    kid: str,
) -> str:
    """``sealed.`` + a compact ES256 JWS of ``payload`` with header ``{"alg","kid"}``."""
    if isinstance(payload, VaultSecret | EnvelopeSecret):
        model: SecretPayload = payload
    else:
        model = parse_secret_payload(json.dumps(dict(payload)).encode())
    if model.version != SEALED_SECRET_VERSION:
        raise SealedSecretVersionError(
            f"payload version {_short(model.version)} is not supported "
            f"(expected {SEALED_SECRET_VERSION!r})"
        )
    if not kid or any(ord(ch) < 0x20 for ch in kid):
        raise SealedSecretKeyError("kid must be a non-empty string without control characters")
    if isinstance(signing_key_jwk, ECKey):
        key = signing_key_jwk
        if not key.is_private or key.curve_name != "P-256":
            raise SealedSecretKeyError("sealing needs a private EC P-256 key")
    else:
        key = load_signing_jwk(signing_key_jwk, "the signing key")
    header = {"alg": SEALED_SECRET_ALG, "kid": kid}
    body = model.model_dump_json().encode()
    return SEALED_PREFIX + jws.serialize_compact(header, body, key, algorithms=[SEALED_SECRET_ALG])


def _sealed_body(secret: bytes | str) -> str:
    if isinstance(secret, bytes):
        try:
            secret = secret.decode("utf-8")
        except UnicodeDecodeError:
            raise SealedSecretFormatError("a sealed secret is ASCII text") from None
    if len(secret) > MAX_SEALED_SECRET:
        raise SealedSecretFormatError(f"longer than {MAX_SEALED_SECRET} bytes")
    text = secret.strip()
    if not text.startswith(SEALED_PREFIX):
        raise SealedSecretFormatError(f"a sealed secret starts with {SEALED_PREFIX!r}")
    body = text[len(SEALED_PREFIX) :]
    if not body.isascii():
        raise SealedSecretFormatError("a sealed secret is ASCII text")
    return body


def _b64url_decode(part: str, what: str) -> bytes:
    if _B64URL.fullmatch(part) is None or len(part) % 4 == 1:
        raise SealedSecretFormatError(f"the {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise SealedSecretFormatError(f"the {what} is not base64url") from None


def open_sealed_secret(secret: bytes | str, resolve_key: KeyResolver | None) -> SecretPayload:
    """Check ``secret`` and return its payload.

    ``resolve_key`` maps the header's ``kid`` to the public key; ``None`` skips the
    signature (``skip_sealed_secret_verification``: any ``sealed.<a>.<payload>.<b>``).
    """
    body = _sealed_body(secret)
    parts = body.split(".")
    if len(parts) != 3:
        raise SealedSecretFormatError(
            "expected sealed.<header>.<payload>.<signature> (a compact JWS after 'sealed.')"
        )
    if resolve_key is None:
        return parse_secret_payload(_b64url_decode(parts[1], "payload"))
    try:
        header = jws.extract_compact(body.encode("ascii")).headers()
    except MissingAlgorithmError:
        raise SealedSecretSignatureError(
            f"the header names no 'alg': sealed secrets are signed with {SEALED_SECRET_ALG}"
        ) from None
    except (JoseError, ValueError):
        raise SealedSecretFormatError("not a compact JWS after 'sealed.'") from None
    alg = header.get("alg")
    if alg != SEALED_SECRET_ALG:
        raise SealedSecretSignatureError(
            f"alg {_short(alg)} is not accepted: sealed secrets are signed with "
            f"{SEALED_SECRET_ALG} only"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SealedSecretKeyError("the header names no key ('kid')")
    key = resolve_key(kid)
    try:
        verified = jws.deserialize_compact(body, key, algorithms=[SEALED_SECRET_ALG])
    except BadSignatureError:
        raise SealedSecretSignatureError(
            f"the signature does not verify with the key {_short(kid)}"
        ) from None
    except (JoseError, ValueError) as exc:
        reason = exc.error if isinstance(exc, JoseError) else "malformed"
        raise SealedSecretSignatureError(f"the JWS is refused ({reason})") from None
    return parse_secret_payload(verified.payload)


# --- offline_fs_kbc ----------------------------------------------------------------------------


def load_offline_fs_resources(paths: Sequence[Path]) -> dict[str, bytes]:
    """offline_fs_kbc's files: ``{"repo/type/tag": "<standard base64>"}`` each, merged."""
    resources: dict[str, bytes] = {}
    for path in paths:
        try:
            doc = json.loads(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read offline_fs_kbc's file: {exc.strerror}") from exc
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{path}: not JSON") from None
        if not isinstance(doc, dict):
            raise ConfigError(f'{path}: expected a JSON object {{"repo/type/tag": "<base64>"}}')
        for name, value in doc.items():
            if not isinstance(value, str):
                raise ConfigError(f"{path}: {name}: expected a standard base64 string")
            try:
                resources[name] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"{path}: {name}: not standard base64") from None
    return resources


# --- the hub -----------------------------------------------------------------------------------


class ConfidentialDataHub:
    """Resources, credentials and sealed secrets, over one resource getter.

    ``credentials_root`` stands for ``/run/confidential-containers/cdh/kbs``: each
    credential's configured path is written at its place below it.  ``sealed_key_dir``
    holds the public JWKs a file-name ``kid`` names.  ``offline_fs_files`` are read at
    construction when the KBC is ``offline_fs_kbc`` (a ConfigError names a bad one).
    """

    def __init__(
        self,
        config: CdhConfig,
        get_resource: ResourceGetter,
        *,
        credentials_root: Path = DEFAULT_CREDENTIALS_ROOT,
        sealed_key_dir: Path = DEFAULT_SEALED_KEY_DIR,
        offline_fs_files: Sequence[Path] = OFFLINE_FS_KBC_FILES,
    ) -> None:
        self.config = config
        self.credentials_root = credentials_root
        self.sealed_key_dir = sealed_key_dir
        self._getter = get_resource
        self._offline: dict[str, bytes] | None = None
        if config.kbc.name == "offline_fs_kbc":
            self._offline = load_offline_fs_resources(offline_fs_files)

    # resources

    def get_resource(self, uri: str) -> bytes:
        """The resource ``uri`` names (a ParseError when the URI is malformed)."""
        parsed = parse_resource_uri(uri)
        if self._offline is None:
            return self._getter(parsed.uri)
        if parsed.plugin != "resource" or parsed.query is not None:
            raise ResourceNotFound(f"{parsed.uri}: offline_fs_kbc serves only kbs:/// resources")
        try:
            return self._offline[parsed.resource_path]
        except KeyError:
            raise ResourceNotFound(f"{parsed.uri}: not in the offline_fs_kbc files") from None

    # credentials

    def credential_target(self, credential: Credential) -> Path:
        """Where ``credential`` is written: its path re-rooted under ``credentials_root``."""
        return self.credentials_root.joinpath(*credential.relative_path.parts)

    def fetch_credentials(self) -> list[Path]:
        """Fetch and write every ``[[credentials]]`` entry, in order; the first failure
        raises a :class:`CredentialError` naming the entry.  Returns the files written."""
        written = []
        for index, credential in enumerate(self.config.credentials):
            entry = (
                f"{self.config.source}: credentials[{index}] "
                f"({credential.resource_uri} -> {credential.path})"
            )
            try:
                data = self.get_resource(credential.resource_uri)
            except VeriteeError as exc:
                raise CredentialError(f"{entry}: cannot fetch: {exc}") from exc
            target = self.credential_target(credential)
            try:
                _write_private(self.credentials_root, target, data)
            except OSError as exc:
                raise CredentialError(f"{entry}: cannot write {target}: {exc.strerror}") from exc
            written.append(target)
        return written

    # sealed secrets

    def unseal_secret(self, secret: bytes | str) -> bytes:
        """The plaintext a sealed secret stands for (checked first; see the module doc)."""
        skip = self.config.skip_sealed_secret_verification
        payload = open_sealed_secret(secret, None if skip else self._sealing_key)
        if isinstance(payload, EnvelopeSecret):
            raise UnsupportedSecretProvider(
                f"envelope secrets need the {_short(payload.provider)} KMS to unwrap their "
                "data key; no KMS provider (aliyun, aws, ehsm) is available here"
            )
        if payload.provider != "kbs":
            raise UnsupportedSecretProvider(
                f"vault provider {_short(payload.provider)} is not available here (only 'kbs')"
            )
        try:
            parse_resource_uri(payload.name)
        except ParseError as exc:
            raise SealedSecretFormatError(f"the vault name is not a resource URI: {exc}") from None
        return self.get_resource(payload.name)

    def _sealing_key(self, kid: str) -> ECKey:
        what = f"the key {_short(kid)}"
        if "://" in kid:
            try:
                parse_resource_uri(kid)
            except ParseError as exc:
                raise SealedSecretKeyError(f"kid is not a valid resource URI: {exc}") from None
            try:
                data = self.get_resource(kid)
            except VeriteeError as exc:
                raise SealedSecretKeyError(f"cannot fetch {what}: {exc}") from exc
        else:
            path = self._key_file(kid)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise SealedSecretKeyError(
                    f"unknown key {_short(kid)}: no such file in {self.sealed_key_dir}"
                ) from None
            except OSError as exc:
                raise SealedSecretKeyError(f"cannot read {what}: {exc.strerror}") from exc
        return load_verifying_jwk(data, what)

    def _key_file(self, kid: str) -> Path:
        segments = kid.split("/")
        if (
            any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in kid)
            or "\\" in kid
            or any(segment in ("", ".", "..") for segment in segments)
        ):
            raise SealedSecretKeyError(
                f"kid {_short(kid)} is neither a resource URI nor a file name under "
                f"{self.sealed_key_dir} (no leading '/', no empty, '.' or '..' segment)"
            )
        root = self.sealed_key_dir.resolve()
        path = root.joinpath(*segments).resolve()
        if not path.is_relative_to(root):
            raise SealedSecretKeyError(f"kid {_short(kid)} leads out of {self.sealed_key_dir}")
        return path


def _write_private(root: Path, target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` (mode 0600) through a temporary file and a rename;
    directories created on the way are 0700, and none may lead out of ``root``."""
    missing = []
    directory = target.parent
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700)
        directory.chmod(0o700)
    parent = target.parent.resolve()
    if not parent.is_relative_to(root.resolve()):
        raise OSError(0, "its directory leads out of the credentials root")
    handle, temporary = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, parent / target.name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
