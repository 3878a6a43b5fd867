"""cdh.toml: refusals first (each naming the file and the key), then guest-components' own
example and test config load with upstream's meaning.

The fixtures are guest-components' (tests/data/SOURCES.md).  Upstream's example has a
quirk TOML makes real: ``extra_root_certificates`` and ``work_dir`` come after the
last ``[[image.registry_config.registry.mirror]]`` header, so they belong to that mirror
table and upstream ignores them there; we load the same meaning and list both keys as
warnings.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datadir import GUEST_COMPONENTS

from veritee.errors import ConfigError
from veritee.guest.cdh_config import (
    CREDENTIALS_ROOT,
    DEFAULT_AA_SOCKET,
    DEFAULT_SOCKET,
    CdhConfig,
    credential_relative_path,
    load_cdh_config,
)

CDH = GUEST_COMPONENTS / "confidential-data-hub"
KBC = '[kbc]\nname = "cc_kbc"\nurl = "http://kbs:8080"\n'
ROOT = str(CREDENTIALS_ROOT)


def credential(uri: str, path: str) -> str:
    return f'{KBC}[[credentials]]\nresource_uri = "{uri}"\npath = "{path}"\n'


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as error:
        CdhConfig.from_text(text, "cdh.toml")
    message = str(error.value)
    assert message.startswith("cdh.toml: ")
    return message


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/shadow", f"must be a file below {ROOT}"),
        ("/run/confidential-containers/cdh/kbsx/a", f"must be a file below {ROOT}"),
        ("/run/confidential-containers/cdh", f"must be a file below {ROOT}"),
        (ROOT, f"must be a file below {ROOT}"),
        (f"{ROOT}/", "empty, '.' or '..' segment"),
        (f"{ROOT}/../../../etc/passwd", "empty, '.' or '..' segment"),
        (f"{ROOT}/a/../b", "empty, '.' or '..' segment"),
        (f"{ROOT}/./a", "empty, '.' or '..' segment"),
        (f"{ROOT}//a", "empty, '.' or '..' segment"),
        (f"{ROOT}/a/..", "empty, '.' or '..' segment"),
        ("run/confidential-containers/cdh/kbs/a", "absolute path"),
        (f"{ROOT}/a\\u0000b", "control character"),
    ],
)
def test_credential_paths_outside_the_root_are_refused(path: str, reason: str) -> None:
    message = refused(credential("kbs:///default/test/file", path))
    assert message.startswith("cdh.toml: credentials[0].path: ")
    assert reason in message


def test_the_entry_at_fault_is_named() -> None:
    text = (
        credential("kbs:///default/a/1", f"{ROOT}/ok")
        + f'[[credentials]]\nresource_uri = "kbs:///default/a/2"\npath = "{ROOT}/x/../y"\n'
    )
    message = refused(text)
    assert "credentials[1].path" in message
    assert "credentials[0]" not in message


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("kbs:///default/../etc", "segment 2 is '..'"),
        ("http://kbs/default/a/b", "scheme must be 'kbs'"),
        ("kbs:///a%2Fb", "encodes a slash"),
    ],
)
def test_credential_resource_uris_are_checked(uri: str, reason: str) -> None:
    message = refused(credential(uri, f"{ROOT}/file"))
    assert "credentials[0].resource_uri" in message
    assert reason in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "kbc: missing (required)"),
        ('socket = "unix:///x"\n', "kbc: missing (required)"),
        ('kbc = "cc_kbc"\n', "kbc: expected a table"),
        ("[kbc]\n", "kbc.name: missing (required)"),
        (
            '[kbc]\nname = "eaa_kbc"\nurl = "http://kbs"\n',
            "kbc.url: eaa_kbc needs the broker's IP:PORT (no scheme)",
        ),
        ('[kbc]\nname = "eaa_kbc"\n', "kbc.url: eaa_kbc needs the broker's IP:PORT"),
        ('[kbc]\nname = "eaa_kbc"\nurl = "10.0.0.1:0"\n', "kbc.url: eaa_kbc needs"),
        (
            '[kbc]\nname = "sample_kbc"\n',
            "kbc.name: Input should be 'cc_kbc', 'offline_fs_kbc' or 'eaa_kbc'; got 'sample_kbc'",
        ),
        ('[kbc]\nname = "cc_kbc"\n', "kbc.url: cc_kbc needs the KBS's http:// or https:// URL"),
        ('[kbc]\nname = "cc_kbc"\nurl = "kbs:8080"\n', "kbc.url: cc_kbc needs"),
        ("skip_sealed_secret_verification = 1\n" + KBC, "skip_sealed_secret_verification: "),
        (KBC + '[image]\nmax_concurrent_layer_downloads_per_image = "3"\n', "valid integer"),
        (KBC + "[image]\nmax_concurrent_layer_downloads_per_image = 0\n", "greater than"),
        (
            KBC + '[image]\nimage_security_policy_uri = "https://x/policy.json"\n',
            "image.image_security_policy_uri: expected a kbs:/// resource URI or a file:/// path",
        ),
        (
            KBC + '[image]\nsigstore_config_uri = "kbs:///a/../b"\n',
            "image.sigstore_config_uri: resource uri",
        ),
        (KBC + '[image]\nextra_root_certificates = "PEM"\n', "image.extra_root_certificates"),
        (
            KBC + '[image.registry_config]\n[[image.registry_config.registry]]\nblocked = "yes"\n',
            "image.registry_config.registry[0].blocked",
        ),
        (KBC + '[log]\nlevel = "loud"\n', "log.level"),
        (KBC + "[aa]\naa_socket = 5\n", "aa.aa_socket"),
        ('[kbc\nname = "cc_kbc"\n', "not TOML"),
    ],
)
def test_bad_values_name_the_key(text: str, expected: str) -> None:
    assert expected in refused(text)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_cdh_config(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"bin\.toml: cannot read"):
        load_cdh_config(tmp_path / "bin.toml")


def test_unknown_keys_are_warnings_not_errors() -> None:
    config = CdhConfig.from_text(
        f'socket = "unix:///s"\nverbose = true\n{KBC}retries = 3\n'
        f'[[credentials]]\nresource_uri = "kbs:///a/b/c"\npath = "{ROOT}/c"\nmode = "0600"\n'
        '[image]\nwork_dir = "/w"\npull_timeout = 5\n'
        '[log]\nlevel = "debug"\nformat = "json"\n',
        "cdh.toml",
    )
    assert config.warnings == [
        "verbose",
        "kbc.retries",
        "credentials[0].mode",
        "image.pull_timeout",
        "log.format",
    ]
    assert config.socket == "unix:///s"
    assert config.log.level == "debug"


def test_upstream_example() -> None:
    config = load_cdh_config(CDH / "example.config.toml")
    assert config.source == str(CDH / "example.config.toml")
    assert config.socket == DEFAULT_SOCKET
    assert config.skip_sealed_secret_verification is False
    assert config.aa.aa_socket == DEFAULT_AA_SOCKET
    assert config.kbc.name == "cc_kbc"
    assert config.kbc.url == "http://example.io:8080"
    assert config.kbc.kbs_cert is not None
    assert config.kbc.kbs_cert.strip().startswith("-----BEGIN CERTIFICATE-----")
    assert [(c.resource_uri, c.path) for c in config.credentials] == [
        (
            "kbs:///default/aliyun/ecs_ram_role",
            f"{ROOT}/kms-credential/aliyun/ecsRamRole.json",
        ),
        ("kbs:///default/test/file", f"{ROOT}/test/file"),
    ]
    assert str(config.credentials[0].relative_path) == "kms-credential/aliyun/ecsRamRole.json"
    image = config.image
    assert image is not None
    assert image.max_concurrent_layer_downloads_per_image == 3
    assert image.sigstore_config_uri == "kbs:///default/sigstore-config/test"
    assert image.image_security_policy_uri == "kbs:///default/security-policy/test"
    assert image.image_security_policy is None  # commented out upstream
    assert image.authenticated_registry_credentials_uri == "kbs:///default/credential/test"
    assert image.registry_configuration_uri == "kbs:///default/registry-configuration/test"
    registries = image.registry_config
    assert registries is not None
    assert registries.unqualified_search_registries == ["docker.io", "example1.com"]
    banned, foo, docker = registries.registry
    assert (banned.prefix, banned.blocked, banned.mirror) == ("example.com/banned", True, [])
    assert (foo.prefix, foo.location, foo.insecure, foo.blocked) == (
        "example.com/foo",
        "internal-registry-for-example.com/bar",
        False,
        False,
    )
    assert [(m.location, m.insecure) for m in foo.mirror] == [
        ("example-mirror-0.local/mirror-for-foo", False),
        ("example-mirror-1.local/mirrors/foo", True),
    ]
    assert docker.location == "docker.io"
    assert [m.location for m in docker.mirror] == ["123456.mirror.aliyuncs.com"]
    proxy = image.image_pull_proxy
    assert proxy is not None
    assert proxy.https_proxy == proxy.http_proxy == "http://127.0.0.1:5432"
    assert proxy.no_proxy == "192.168.0.1,localhost"
    assert config.log.level == "info"
    # the quirk: these two keys sit in the last mirror table, where upstream ignores them
    assert image.work_dir == "/run/kata-containers/image"
    assert image.extra_root_certificates == []
    assert config.warnings == [
        "image.registry_config.registry[2].mirror[0].extra_root_certificates",
        "image.registry_config.registry[2].mirror[0].work_dir",
    ]


def test_upstream_test_config() -> None:
    config = load_cdh_config(CDH / "hub" / "tests" / "cdh.toml")
    assert config.socket == DEFAULT_SOCKET
    assert config.aa.aa_socket == DEFAULT_AA_SOCKET  # no [aa] table: the default
    assert config.kbc.name == "offline_fs_kbc"
    assert config.kbc.url == "null"  # offline_fs_kbc ignores it
    assert config.credentials == []
    assert config.image is not None
    assert config.image.image_security_policy_uri == "kbs:///default/security-policy/test"
    assert config.image.authenticated_registry_credentials_uri == "kbs:///default/credential/test"
    assert config.image.max_concurrent_layer_downloads_per_image == 4
    assert config.image.registry_config is None
    assert config.warnings == []


def test_small_configs() -> None:
    # what the agent's bootstrap writes when there is only an aa.toml
    config = CdhConfig.from_text('[kbc]\nname = "cc_kbc"\nurl = "https://kbs:8080/"\n', "defaults")
    assert config.kbc.url == "https://kbs:8080"
    assert config.image is None
    assert config.credentials == []
    inline = CdhConfig.from_text(
        KBC + "skip_sealed_secret_verification = true\n", "initdata cdh.toml"
    )
    assert inline.warnings == ["kbc.skip_sealed_secret_verification"]  # TOML: it is in [kbc]
    top = CdhConfig.from_text("skip_sealed_secret_verification = true\n" + KBC, "x")
    assert top.skip_sealed_secret_verification is True
    policy = CdhConfig.from_text(
        KBC + "[image]\nimage_security_policy = '''{\"default\":[{\"type\":\"reject\"}]}'''\n"
        'image_security_policy_uri = "file:///etc/image-policy.json"\n',
        "x",
    )
    assert policy.image is not None
    assert policy.image.image_security_policy_uri == "file:///etc/image-policy.json"


def test_credential_relative_path() -> None:
    assert str(credential_relative_path(f"{ROOT}/a/b.json")) == "a/b.json"
    with pytest.raises(ValueError, match="below"):
        credential_relative_path("/run/confidential-containers/cdh/kbs2/a")
