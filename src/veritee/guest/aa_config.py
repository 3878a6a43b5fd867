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

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field

from veritee.config_model import ConfigSection, HttpUrl, LogConfig, TomlConfig

__all__ = ["AaConfig", "CocoAsConfig", "EventlogConfig", "KbsTokenConfig", "load_aa_config"]

TeeKeyAlgorithm = Literal["ECDH-ES+A256KW-P256", "RSA-OAEP-256"]


class KbsTokenConfig(ConfigSection):
    url: HttpUrl
    cert: str | None = None
    tee_key_algorithm: TeeKeyAlgorithm = "ECDH-ES+A256KW-P256"


class CocoAsConfig(ConfigSection):
    url: HttpUrl


class TokenConfigs(ConfigSection):
    kbs: KbsTokenConfig | None = None
    coco_as: CocoAsConfig | None = None


class EventlogConfig(ConfigSection):
    init_pcr: int = Field(default=17, ge=0, le=23)
    enable_eventlog: bool = False


class AaConfig(TomlConfig):
    token_configs: TokenConfigs = TokenConfigs()
    eventlog_config: EventlogConfig = EventlogConfig()
    log: LogConfig = LogConfig()

    @property
    def kbs(self) -> KbsTokenConfig | None:
        return self.token_configs.kbs

    @property
    def coco_as(self) -> CocoAsConfig | None:
        return self.token_configs.coco_as

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
    return AaConfig.load(path)
