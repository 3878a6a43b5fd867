"""The Confidential Data Hub (CDH): resources, start-up credentials and sealed secrets.

The CDH never talks to a KBS itself.  It is given a *resource getter*, a callable
that takes a resource URI (``kbs:///repo/type/tag``) and returns the plaintext
bytes, raising a :class:`~veritee.errors.VeriteeError` when it cannot; the
Attestation Agent supplies one that goes through its attested KBS session; with
``[kbc] name = "eaa_kbc"`` the agent's start-up gives the EAA KBC's instead
(:func:`veritee.guest.eaa_kbc.attested_resource_getter`: a Verdictd-style broker over
mutual RA-TLS, ``url = "IP:PORT"``).  With
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
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from joserfc.jwk import ECKey

from veritee.errors import ConfigError, ParseError, VeriteeError
from veritee.guest.cdh_config import CREDENTIALS_ROOT, CdhConfig, Credential
from veritee.guest.cdh_errors import (
    CredentialError,
    ResourceNotFound,
    SealedSecretFormatError,
    SealedSecretKeyError,
    UnsupportedSecretProvider,
    shorten,
)
from veritee.guest.resource_uri import parse_resource_uri
from veritee.guest.sealed_secret import (
    EnvelopeSecret,
    load_verifying_jwk,
    open_sealed_secret,
)

__all__ = [
    "DEFAULT_CREDENTIALS_ROOT",
    "DEFAULT_SEALED_KEY_DIR",
    "OFFLINE_FS_KBC_FILES",
    "ConfidentialDataHub",
    "ResourceGetter",
    "load_offline_fs_resources",
]

ResourceGetter = Callable[[str], bytes]

DEFAULT_CREDENTIALS_ROOT = Path(str(CREDENTIALS_ROOT))
DEFAULT_SEALED_KEY_DIR = Path("/run/confidential-containers/cdh/sealed-secret")
OFFLINE_FS_KBC_FILES = (
    Path("/etc/aa-offline_fs_kbc-keys.json"),
    Path("/etc/aa-offline_fs_kbc-resources.json"),
)


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
                f"envelope secrets need the {shorten(payload.provider)} KMS to unwrap their "
                "data key; no KMS provider (aliyun, aws, ehsm) is available here"
            )
        if payload.provider != "kbs":
            raise UnsupportedSecretProvider(
                f"vault provider {shorten(payload.provider)} is not available here (only 'kbs')"
            )
        try:
            parse_resource_uri(payload.name)
        except ParseError as exc:
            raise SealedSecretFormatError(f"the vault name is not a resource URI: {exc}") from None
        return self.get_resource(payload.name)

    def _sealing_key(self, kid: str) -> ECKey:
        what = f"the key {shorten(kid)}"
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
                    f"unknown key {shorten(kid)}: no such file in {self.sealed_key_dir}"
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
                f"kid {shorten(kid)} is neither a resource URI nor a file name under "
                f"{self.sealed_key_dir} (no leading '/', no empty, '.' or '..' segment)"
            )
        root = self.sealed_key_dir.resolve()
        path = root.joinpath(*segments).resolve()
        if not path.is_relative_to(root):
            raise SealedSecretKeyError(f"kid {shorten(kid)} leads out of {self.sealed_key_dir}")
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
