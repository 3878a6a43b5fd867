"""The Confidential Data Hub: refusals first (a credential that cannot be fetched stops the
start, naming the entry; malformed URIs never reach the getter; bad offline_fs_kbc files),
then credentials written 0600 under the root, offline_fs_kbc with upstream's key file, and
the whole path against a real KBS on loopback: upstream's example credentials and
upstream's vault payload, sealed with upstream's test key, unsealed through an attested
session (emulated TDX evidence)."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from datadir import GUEST_COMPONENTS
from kbs_live import ALLOW, Kbs, Wire, live_kbs
from resource_store import Store

from veritee.errors import ConfigError, ParseError, VeriteeError
from veritee.guest.cdh import (
    ConfidentialDataHub,
)
from veritee.guest.cdh_config import CdhConfig, load_cdh_config
from veritee.guest.cdh_errors import (
    CredentialError,
    ResourceNotFound,
    SealedSecretSignatureError,
)
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_http import KbsRequestError
from veritee.guest.resource_uri import parse_resource_uri
from veritee.guest.sealed_secret import (
    seal_secret,
)

CDH = GUEST_COMPONENTS / "confidential-data-hub"
SECRETS = CDH / "hub" / "src" / "secret" / "tests"
OFFLINE_KEYS = (
    GUEST_COMPONENTS
    / "attestation-agent"
    / "kbc"
    / "src"
    / "offline_fs_kbc"
    / "aa-offline_fs_kbc-keys.json"
)
ROOT = "/run/confidential-containers/cdh/kbs"
KBC = '[kbc]\nname = "cc_kbc"\nurl = "http://kbs:8080"\n'
KEY = json.loads((SECRETS / "test-key.json").read_text())
PUBLIC = {k: v for k, v in KEY.items() if k != "d"}
VAULT_2 = json.loads((SECRETS / "vault-2.json").read_text())
KEY_URI = "kbs:///default/sealed-secret-key/1"
TROIS = b"un, deux, trois"


def credentials(*entries: tuple[str, str]) -> CdhConfig:
    text = KBC + "".join(
        f'[[credentials]]\nresource_uri = "{uri}"\npath = "{ROOT}/{path}"\n'
        for uri, path in entries
    )
    return CdhConfig.from_text(text, "cdh.toml")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- refusals ------------------------------------------------------------------------------------


def test_a_credential_fetch_failure_aborts_start(tmp_path: Path) -> None:
    config = credentials(
        ("kbs:///default/a/1", "one.json"),
        ("kbs:///default/a/2", "sub/two.json"),
        ("kbs:///default/a/3", "three.json"),
    )
    store = Store({"kbs:///default/a/1": b"1", "kbs:///default/a/3": b"3"})
    hub = ConfidentialDataHub(config, store, credentials_root=tmp_path / "kbs")
    with pytest.raises(CredentialError) as error:
        hub.fetch_credentials()
    assert str(error.value) == (
        f"cdh.toml: credentials[1] (kbs:///default/a/2 -> {ROOT}/sub/two.json): "
        "cannot fetch: kbs:///default/a/2: no such resource"
    )
    assert isinstance(error.value.__cause__, ResourceNotFound)
    assert store.asked == ["kbs:///default/a/1", "kbs:///default/a/2"]  # stops at the failure
    assert not (tmp_path / "kbs" / "three.json").exists()
    assert not (tmp_path / "kbs" / "sub").exists()


def test_any_getter_error_aborts_start(tmp_path: Path) -> None:
    class Down(VeriteeError):
        pass

    def down(uri: str) -> bytes:
        raise Down("the KBS refused the attestation")

    hub = ConfidentialDataHub(
        credentials(("kbs:///default/a/1", "one")), down, credentials_root=tmp_path
    )
    with pytest.raises(CredentialError, match=r"credentials\[0\].*the KBS refused"):
        hub.fetch_credentials()


def test_a_credential_that_cannot_be_written(tmp_path: Path) -> None:
    store = Store({"kbs:///default/a/1": b"1"})
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    hub = ConfidentialDataHub(
        credentials(("kbs:///default/a/1", "x/one")), store, credentials_root=blocker
    )
    with pytest.raises(CredentialError, match=r"credentials\[0\].*cannot write"):
        hub.fetch_credentials()


def test_a_symlink_out_of_the_credentials_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "kbs"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "kms-credential").symlink_to(outside)
    store = Store({"kbs:///default/a/1": b"1"})
    hub = ConfidentialDataHub(
        credentials(("kbs:///default/a/1", "kms-credential/one")), store, credentials_root=root
    )
    with pytest.raises(CredentialError, match="leads out of the credentials root"):
        hub.fetch_credentials()
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    "uri",
    ["default/key/1", "kbs:///default/../key", "kbs:///a%2Fb", "kbs:///a//b", "http:///a/b/c"],
)
def test_malformed_uris_never_reach_the_getter(uri: str) -> None:
    store = Store({})
    hub = ConfidentialDataHub(CdhConfig.from_text(KBC, "t"), store)
    with pytest.raises(ParseError, match="resource uri"):
        hub.get_resource(uri)
    assert store.asked == []


OFFLINE = '[kbc]\nname = "offline_fs_kbc"\n'


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read offline_fs_kbc's file"),
        (b"{", "not JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"default/key/1": 3}', "default/key/1: expected a standard base64 string"),
        (b'{"default/key/1": "a_b-"}', "default/key/1: not standard base64"),
    ],
)
def test_bad_offline_files(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        ConfidentialDataHub(CdhConfig.from_text(OFFLINE, "t"), Store({}), offline_fs_files=[path])
    assert str(error.value).startswith(f"{path}: ")
    assert reason in str(error.value)


def test_offline_misses(tmp_path: Path) -> None:
    store = Store({})
    hub = ConfidentialDataHub(
        CdhConfig.from_text(OFFLINE, "t"), store, offline_fs_files=[OFFLINE_KEYS]
    )
    with pytest.raises(ResourceNotFound, match="not in the offline_fs_kbc files"):
        hub.get_resource("kbs:///default/key/key_id11")
    with pytest.raises(ResourceNotFound, match="serves only kbs:/// resources"):
        hub.get_resource("kbs+pkcs11:///default/key/key_id1")
    with pytest.raises(ResourceNotFound, match="serves only kbs:/// resources"):
        hub.get_resource("kbs:///default/key/key_id1?version=2")
    assert store.asked == []  # offline_fs_kbc never uses the getter


# --- what works ----------------------------------------------------------------------------------


def test_credentials_are_written_private_and_atomically(tmp_path: Path) -> None:
    root = tmp_path / "cdh" / "kbs"
    config = credentials(
        ("kbs:///default/aliyun/ecs_ram_role", "kms-credential/aliyun/ecsRamRole.json"),
        ("kbs://ignored.host:1/default/test/file", "test/file"),
    )
    store = Store(
        {"kbs:///default/aliyun/ecs_ram_role": b'{"r":1}', "kbs:///default/test/file": b""}
    )
    hub = ConfidentialDataHub(config, store, credentials_root=root)
    written = hub.fetch_credentials()
    assert written == [root / "kms-credential/aliyun/ecsRamRole.json", root / "test/file"]
    assert store.asked == ["kbs:///default/aliyun/ecs_ram_role", "kbs:///default/test/file"]
    assert written[0].read_bytes() == b'{"r":1}'
    assert written[1].read_bytes() == b""
    for path in written:
        assert mode(path) == 0o600
    for directory in (tmp_path / "cdh", root, root / "kms-credential", root / "test"):
        assert mode(directory) == 0o700
    # a second start replaces the files in one rename and leaves no temporary behind
    store.resources["kbs:///default/aliyun/ecs_ram_role"] = b'{"r":2}'
    hub.fetch_credentials()
    assert written[0].read_bytes() == b'{"r":2}'
    assert sorted(p.name for p in written[0].parent.iterdir()) == ["ecsRamRole.json"]


def test_get_resource_hands_the_canonical_uri_to_the_getter() -> None:
    store = Store({"kbs:///default/key/1": b"k", "kbs+pkcs11:///a/b?c=d": b"p"})
    hub = ConfidentialDataHub(CdhConfig.from_text(KBC, "t"), store)
    assert hub.get_resource("kbs://somewhere:8080/default/key/1") == b"k"
    assert hub.get_resource("KBS+pkcs11:///a/b?c=d") == b"p"
    assert store.asked == ["kbs:///default/key/1", "kbs+pkcs11:///a/b?c=d"]


def test_offline_fs_kbc_with_upstream_keys_and_a_sealed_secret(tmp_path: Path) -> None:
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            {"default/sealed-secret-key/1": base64.b64encode(json.dumps(PUBLIC).encode()).decode()}
        )
    )
    config = load_cdh_config(CDH / "hub" / "tests" / "cdh.toml")  # upstream's offline config
    hub = ConfidentialDataHub(config, Store({}), offline_fs_files=[OFFLINE_KEYS, extra])
    expected = json.loads(OFFLINE_KEYS.read_text())
    for name, value in expected.items():
        assert hub.get_resource(f"kbs:///{name}") == base64.b64decode(value)
        assert len(hub.get_resource(f"kbs:///{name}")) == 32
    sealed = seal_secret(dict(VAULT_2, name="kbs:///default/key/key_id3"), KEY, KEY_URI)
    assert hub.unseal_secret(sealed) == base64.b64decode(expected["default/key/key_id3"])


# --- against a real KBS --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kbs(test_root: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    with live_kbs(test_root.directory, tmp_path_factory.mktemp("kbs")) as server:
        server.set_policy(ALLOW)
        with server.admin() as admin:
            admin.set_resource("one/2/trois", TROIS)
            admin.set_resource("default/sealed-secret-key/1", json.dumps(PUBLIC).encode())
            admin.set_resource("default/aliyun/ecs_ram_role", b'{"RoleName":"ecs"}')
            admin.set_resource("default/test/file", b"test file\n")
        yield server


@dataclass
class Session:
    """The Attestation Agent's side, reduced to a getter over one attested KBS session."""

    get: Callable[[str], bytes]
    wire: Wire

    def requests_since(self, start: int) -> list[str]:
        return self.wire.names()[start:]


@pytest.fixture(scope="module")
def session(kbs: Kbs, test_root: Any) -> Iterator[Session]:
    wire = Wire()
    provider = EmulatedEvidenceProvider(test_root.directory)
    client: KbsClient = wire.client(kbs, evidence_provider=provider, tee="tdx")
    client.attest()  # one handshake (emulated TDX evidence) for the whole module
    assert wire.names() == ["auth", "attest"]

    def get(uri: str) -> bytes:
        return client.get_resource(parse_resource_uri(uri).resource_path)

    yield Session(get, wire)
    wire.http.close()


def test_upstream_example_credentials_from_a_real_kbs(session: Session, tmp_path: Path) -> None:
    start = len(session.wire.requests)
    config = load_cdh_config(CDH / "example.config.toml")
    hub = ConfidentialDataHub(config, session.get, credentials_root=tmp_path / "kbs")
    written = hub.fetch_credentials()
    assert written == [
        tmp_path / "kbs" / "kms-credential" / "aliyun" / "ecsRamRole.json",
        tmp_path / "kbs" / "test" / "file",
    ]
    assert written[0].read_bytes() == b'{"RoleName":"ecs"}'
    assert written[1].read_bytes() == b"test file\n"
    assert session.requests_since(start) == ["ecs_ram_role", "file"]


def test_a_missing_credential_on_a_real_kbs_aborts_start(session: Session, tmp_path: Path) -> None:
    config = credentials(("kbs:///default/test/file", "a"), ("kbs:///default/test/nope", "b"))
    hub = ConfidentialDataHub(config, session.get, credentials_root=tmp_path)
    with pytest.raises(
        CredentialError, match=r"credentials\[1\] \(kbs:///default/test/nope"
    ) as error:
        hub.fetch_credentials()
    assert isinstance(error.value.__cause__, KbsRequestError)  # the KBS's refusal, kept
    assert (tmp_path / "a").read_bytes() == b"test file\n"
    assert not (tmp_path / "b").exists()


def test_upstream_vault_secret_unsealed_through_a_real_kbs(session: Session) -> None:
    start = len(session.wire.requests)
    hub = ConfidentialDataHub(CdhConfig.from_text(KBC, "t"), session.get)
    sealed = seal_secret(VAULT_2, KEY, KEY_URI)
    assert hub.unseal_secret(sealed) == TROIS
    assert session.requests_since(start) == ["1", "trois"]  # the key, then the value
    # a forged secret: the key is fetched, the value never is
    forged = seal_secret(VAULT_2, json.loads((SECRETS / "test-key-2.json").read_text()), KEY_URI)
    with pytest.raises(SealedSecretSignatureError):
        hub.unseal_secret(forged)
    assert session.requests_since(start + 2) == ["1"]
    # a value the KBS does not have: the KBS's own refusal comes through
    missing = seal_secret(dict(VAULT_2, name="kbs:///one/2/quatre"), KEY, KEY_URI)
    with pytest.raises(KbsRequestError, match="one/2/quatre"):
        hub.unseal_secret(missing)
