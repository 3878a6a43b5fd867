"""The Confidential Data Hub's configuration: guest-components' ``cdh.toml``, key for key.

```toml
socket = "unix:///run/confidential-containers/cdh.sock"
skip_sealed_secret_verification = false   # true: unsigned (pre-v0.18) sealed secrets pass
[aa]
aa_socket = "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock"
[kbc]                        # required
name = "cc_kbc"              # or "offline_fs_kbc", or "eaa_kbc" (Verdictd over RA-TLS)
url = "http://kbs:8080"      # cc_kbc: the KBS; eaa_kbc: "IP:PORT"; offline_fs_kbc ignores it
kbs_cert = "PEM"             # optional extra root for HTTPS to the KBS
[[credentials]]              # fetched at start; any failure stops the start
resource_uri = "kbs:///default/aliyun/ecs_ram_role"
path = "/run/confidential-containers/cdh/kbs/kms-credential/aliyun/ecsRamRole.json"
[image]                      # image-rs's ImageConfig (kept and typed; image pulls are not ours)
[log]
level = "info"
```

Each credential ``path`` must lie below ``/run/confidential-containers/cdh/kbs`` and
have no empty, ``.`` or ``..`` segment; a config that breaks the rule is refused at
load, naming the entry.  Keys upstream does not know are ignored, as upstream ignores
them, and listed in :attr:`CdhConfig.warnings`.  Anything else wrong is a
:class:`~veritee.errors.ConfigError` naming the file, the key and what was expected.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from veritee.config_model import ConfigSection, LogConfig, TomlConfig
from veritee.errors import ParseError
from veritee.guest.resource_uri import parse_resource_uri

__all__ = [
    "CREDENTIALS_ROOT",
    "DEFAULT_AA_SOCKET",
    "DEFAULT_SOCKET",
    "AaSection",
    "CdhConfig",
    "Credential",
    "ImageConfig",
    "ImagePullProxy",
    "KbcConfig",
    "KbcName",
    "LogConfig",
    "Registry",
    "RegistryConfig",
    "RegistryMirror",
    "credential_relative_path",
    "load_cdh_config",
]

CREDENTIALS_ROOT = PurePosixPath("/run/confidential-containers/cdh/kbs")
DEFAULT_SOCKET = "unix:///run/confidential-containers/cdh.sock"
DEFAULT_AA_SOCKET = "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock"
DEFAULT_IMAGE_WORK_DIR = "/run/kata-containers/image"

KbcName = Literal["cc_kbc", "offline_fs_kbc", "eaa_kbc"]


def credential_relative_path(path: str) -> PurePosixPath:
    """Where ``path`` lies below :data:`CREDENTIALS_ROOT` (ValueError when it does not)."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise ValueError("contains a control character")
    if not path.startswith("/"):
        raise ValueError(f"must be an absolute path below {CREDENTIALS_ROOT}")
    parts = path[1:].split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("must not have an empty, '.' or '..' segment")
    root = CREDENTIALS_ROOT.parts[1:]
    if tuple(parts[: len(root)]) != root or len(parts) == len(root):
        raise ValueError(f"must be a file below {CREDENTIALS_ROOT}")
    return PurePosixPath(*parts[len(root) :])


def _resource_or_file_uri(value: str | None) -> str | None:
    if value is None or value.startswith("file:///"):
        return value
    if value.lower().startswith("kbs"):
        try:
            parse_resource_uri(value)
        except ParseError as exc:
            raise ValueError(str(exc)) from None
        return value
    raise ValueError("expected a kbs:/// resource URI or a file:/// path")


def _eaa_address(value: str) -> None:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("eaa_kbc needs the broker's IP:PORT (no scheme)")


class AaSection(ConfigSection):
    aa_socket: str = DEFAULT_AA_SOCKET


class KbcConfig(ConfigSection):
    name: KbcName
    url: str = Field(default="", validate_default=True)
    kbs_cert: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("name") == "eaa_kbc":
            _eaa_address(value)
            return value.strip()
        if info.data.get("name") != "cc_kbc":
            return value  # offline_fs_kbc ignores it (upstream's own test sets "null")
        if not value.startswith(("http://", "https://")):
            raise ValueError("cc_kbc needs the KBS's http:// or https:// URL")
        return value.rstrip("/")


class Credential(ConfigSection):
    resource_uri: str
    path: str

    @field_validator("resource_uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        try:
            parse_resource_uri(value)
        except ParseError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        credential_relative_path(value)
        return value

    @property
    def relative_path(self) -> PurePosixPath:
        """The path below :data:`CREDENTIALS_ROOT`."""
        return credential_relative_path(self.path)


class ImagePullProxy(ConfigSection):
    https_proxy: str | None = None
    http_proxy: str | None = None
    no_proxy: str | None = None


class RegistryMirror(ConfigSection):
    location: str
    insecure: bool = False


class Registry(ConfigSection):
    prefix: str | None = None
    location: str | None = None
    insecure: bool = False
    blocked: bool = False
    mirror: list[RegistryMirror] = Field(default_factory=list)


class RegistryConfig(ConfigSection):
    """containers-registries.conf(5): search registries, blocking, mirrors, remapping."""

    unqualified_search_registries: list[str] = Field(
        default_factory=list, alias="unqualified-search-registries"
    )
    registry: list[Registry] = Field(default_factory=list)


class ImageConfig(ConfigSection):
    """image-rs's ImageConfig; an ``*_uri`` is a ``kbs:///`` URI or a ``file:///`` path,
    and wins over its inline twin when both are set."""

    work_dir: str = DEFAULT_IMAGE_WORK_DIR
    max_concurrent_layer_downloads_per_image: int = Field(default=3, ge=1)
    image_security_policy_uri: str | None = None
    image_security_policy: str | None = None
    sigstore_config_uri: str | None = None
    sigstore_config: str | None = None
    authenticated_registry_credentials_uri: str | None = None
    registry_configuration_uri: str | None = None
    registry_config: RegistryConfig | None = None
    extra_root_certificates: list[str] = Field(default_factory=list)
    image_pull_proxy: ImagePullProxy | None = None

    @field_validator(
        "image_security_policy_uri",
        "sigstore_config_uri",
        "authenticated_registry_credentials_uri",
        "registry_configuration_uri",
    )
    @classmethod
    def _uris(cls, value: str | None) -> str | None:
        return _resource_or_file_uri(value)


class CdhConfig(TomlConfig):
    socket: str = DEFAULT_SOCKET
    skip_sealed_secret_verification: bool = False
    aa: AaSection = AaSection()
    kbc: KbcConfig
    credentials: list[Credential] = Field(default_factory=list)
    image: ImageConfig | None = None
    log: LogConfig = LogConfig()


def load_cdh_config(path: Path) -> CdhConfig:
    """Read ``cdh.toml`` (a ConfigError names the file when it cannot be read)."""
    return CdhConfig.load(path)
