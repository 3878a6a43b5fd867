"""aa.toml: guest-components' own example and parser fixtures load with upstream's meaning.

The fixtures are guest-components' (tests/data/SOURCES.md); upstream's config tests
expect exactly these values: config5 is empty, config6 holds only [eventlog_config]
(defaults init_pcr 17, enable_eventlog false), config4 has an empty [token_configs].
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datadir import GUEST_COMPONENTS

from veritee.errors import ConfigError
from veritee.guest.aa_config import AaConfig, load_aa_config

AA = GUEST_COMPONENTS / "attestation-agent" / "attestation-agent"


def test_upstream_example() -> None:
    config = load_aa_config(AA / "config.example.toml")
    assert config.kbs is not None
    assert config.kbs.url == "https://127.0.0.1:8080"
    assert config.kbs.tee_key_algorithm == "ECDH-ES+A256KW-P256"
    assert config.kbs.cert is not None
    assert config.kbs.cert.strip().startswith("-----BEGIN CERTIFICATE-----")
    assert config.coco_as is not None
    assert config.coco_as.url == "http://127.0.0.1:8000"
    assert config.eventlog_config.init_pcr == 17
    assert config.eventlog_config.enable_eventlog is False
    assert config.log.level == "info"
    assert config.warnings == []


@pytest.mark.parametrize(
    ("name", "kbs", "cert", "coco_as"),
    [
        ("config1.toml", "https://127.0.0.1:8080", "cert", "http://127.0.0.1:8000"),
        ("config2.toml", "https://127.0.0.1:8080", "cert", None),
        ("config3.toml", "https://127.0.0.1:8080", None, "http://127.0.0.1:8000"),
        ("config4.toml", None, None, None),
        ("config5.toml", None, None, None),
        ("config6.toml", None, None, None),
    ],
)
def test_upstream_parser_fixtures(
    name: str, kbs: str | None, cert: str | None, coco_as: str | None
) -> None:
    config = load_aa_config(AA / "test" / name)
    assert (config.kbs.url if config.kbs else None) == kbs
    assert (config.kbs.cert if config.kbs else None) == cert
    assert (config.coco_as.url if config.coco_as else None) == coco_as
    assert config.eventlog_config.init_pcr == 17
    assert config.eventlog_config.enable_eventlog is False


def test_trailing_slash_is_dropped_and_unknown_keys_are_reported() -> None:
    config = AaConfig.from_text(
        '[token_configs.kbs]\nurl = "http://kbs:8080/"\nretries = 3\n[eventlog_config]\n'
        "enable_eventlog = true\ninit_pcr = 17\n[extra]\nx = 1\n",
        "aa.toml",
    )
    assert config.kbs is not None
    assert config.kbs.url == "http://kbs:8080"
    assert config.eventlog_config.enable_eventlog is True
    assert sorted(config.warnings) == ["extra", "token_configs.kbs.retries"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[token_configs.kbs]\n", "aa.toml: token_configs.kbs.url: missing (required)"),
        (
            '[token_configs.kbs]\nurl = "kbs:8080"\n',
            "token_configs.kbs.url: expected an http:// or https:// URL; got 'kbs:8080'",
        ),
        ("[eventlog_config]\ninit_pcr = 99\n", "eventlog_config.init_pcr"),
        ('[eventlog_config]\nenable_eventlog = "yes"\n', "eventlog_config.enable_eventlog"),
        (
            '[token_configs.kbs]\nurl = "http://k"\ntee_key_algorithm = "ECDH-ES+A256KW-P521"\n',
            "token_configs.kbs.tee_key_algorithm",
        ),
        ("[token_configs\n", "aa.toml: not TOML"),
    ],
)
def test_bad_configs_name_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^aa\.toml: ") as caught:
        AaConfig.from_text(text, "aa.toml")
    assert message in str(caught.value)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_aa_config(tmp_path / "missing.toml")


def test_kbs_url_from_aa_kbc_params_as_upstream() -> None:
    config = AaConfig.from_environment({"AA_KBC_PARAMS": "cc_kbc::http://10.0.0.1:8080"})
    assert config.kbs is not None
    assert config.kbs.url == "http://10.0.0.1:8080"
    assert AaConfig.from_environment({"AA_KBC_PARAMS": "offline_fs_kbc::null"}).kbs is None
    assert AaConfig.from_environment({}).kbs is None
