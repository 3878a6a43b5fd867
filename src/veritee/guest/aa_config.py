"""The Attestation Agent's configuration: guest-components' ``aa.toml``, key for key.

```toml
[token_configs.kbs]        # optional: the KBS the agent attests to
url = "http://kbs:8080"    # a trailing "/" is dropped
cert = "PEM"               # optional extra root for HTTPS
tee_key_algorithm = "ECDH-ES+A256KW-P256"   # or "RSA-OAEP-256"
[token_configs.coco_as]    # optional: an Attestation Service for coco_as tokens
url = "http://as:50005"
[eventlog_config]
init_pcr = 17              # the register AAEL events extend (17 -> TDX RTMR3)
enable_eventlog = false
[log]
level = "info"
```

Every key is optional, as upstream; an empty file is valid.  Without a file,
the KBS URL comes from ``AA_KBC_PARAMS`` (``cc_kbc::<url>``), as upstream.
Keys upstream does not know are ignored, as upstream ignores them, and listed
in :attr:`AaConfig.warnings`.  Anything of the wrong type is a
:class:`~veritee.errors.ConfigError` naming the file, the key and what was expected.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from veritee.errors import ConfigError

__all__ = ["AaConfig", "CocoAsConfig", "EventlogConfig", "KbsTokenConfig", "load_aa_config"]

TeeKeyAlgorithm = Literal["ECDH-ES+A256KW-P256", "RSA-OAEP-256"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


class KbsTokenConfig(_Section):
    url: str
    cert: str | None = None
    tee_key_algorithm: TeeKeyAlgorithm = "ECDH-ES+A256KW-P256"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")


class CocoAsConfig(_Section):
    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")


class TokenConfigs(_Section):
    kbs: KbsTokenConfig | None = None
    coco_as: CocoAsConfig | None = None


class EventlogConfig(_Section):
    init_pcr: int = Field(default=17, ge=0, le=23)
    enable_eventlog: bool = False


class LogConfig(_Section):
    level: Literal["trace", "debug", "info", "warn", "error", "off"] = "info"


class AaConfig(_Section):
    token_configs: TokenConfigs = TokenConfigs()
    eventlog_config: EventlogConfig = EventlogConfig()
    log: LogConfig = LogConfig()
    source: str = Field(default="defaults", exclude=True)

    @property
    def kbs(self) -> KbsTokenConfig | None:
        return self.token_configs.kbs

    @property
    def coco_as(self) -> CocoAsConfig | None:
        return self.token_configs.coco_as

    @property
    def warnings(self) -> list[str]:
        """Keys upstream does not know, as ``section.key`` (they are ignored)."""
        return _unknown(self, "")

    @classmethod
    def from_text(cls, text: str, source: str) -> AaConfig:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not TOML: {exc}") from exc
        return cls.from_mapping(doc, source)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], source: str) -> AaConfig:
        try:
            return cls.model_validate({**doc, "source": source})
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_first_problem(exc)}") from None

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> AaConfig:
        """Upstream's fallback without a file: ``AA_KBC_PARAMS=cc_kbc::<KBS URL>``."""
        params = env.get("AA_KBC_PARAMS", "")
        name, sep, url = params.partition("::")
        if not sep or name != "cc_kbc" or not url:
            return cls()
        return cls.from_mapping({"token_configs": {"kbs": {"url": url}}}, "AA_KBC_PARAMS")


def load_aa_config(path: Path) -> AaConfig:
    """Read ``aa.toml`` (a ConfigError names the file when it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return AaConfig.from_text(text, str(path))


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    got = error.get("input")
    shown = f"; got {got!r}" if isinstance(got, str | int | float | bool) else ""
    return f"{where}: {error['msg']}{shown}"


def _unknown(model: BaseModel, prefix: str) -> list[str]:
    found = [f"{prefix}{key}" for key in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += _unknown(value, f"{prefix}{name}.")
    return found
