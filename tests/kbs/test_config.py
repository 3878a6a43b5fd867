"""kbs-config.toml: every upstream sample loads with the expected values, or fails with the
precise ConfigError for a feature veritee does not have."""

from __future__ import annotations

import copy
import datetime as dt
import json
import ssl
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from datadir import TRUSTEE

from veritee.as_.config import AsSettings
from veritee.auth.admin import Ed25519AdminAuth, InsecureAllowAll
from veritee.auth.trustee import BearerJwtAdminAuth, LegacyEd25519AdminAuth, TrusteeDenyAll
from veritee.errors import ConfigError, VeriteeError
from veritee.kbs.config import (
    KbsConfig,
    PostgresConfig,
    ResourcePluginConfig,
    SamplePluginConfig,
    TlsConfig,
    load_kbs_config,
    parse_kbs_config,
    storage_kind,
)
from veritee.kbs.resources import KvResourceBackend, LocalFsBackend
from veritee.store.kv import MemoryStore

CONFIGS = TRUSTEE / "kbs" / "test_data" / "configs"

GRPC = (
    "attestation_service.type = 'coco_as_grpc' (a remote gRPC Attestation Service) is not "
    "supported: veritee runs its Attestation Service built in; use [attestation_service] type = "
    '"coco_as_builtin"'
)
INTEL_TA = (
    "attestation_service.type = 'intel_ta' (Intel Trust Authority) is not supported: veritee "
    'runs its Attestation Service built in; use [attestation_service] type = "coco_as_builtin"'
)
GRPC_RVPS = (
    "attestation_service.rvps_config.type 'GrpcRemote' is not supported: veritee runs its RVPS "
    'built in (type = "BuiltIn")'
)

UNSUPPORTED = {
    "kbs/config/docker-compose/kbs-config.toml": GRPC,
    "kbs/config/kbs-config-grpc.toml": GRPC,
    "kbs/config/kbs-config-intel-trust-authority.toml": INTEL_TA,
    "kbs/test_data/configs/coco-as-builtin-1.toml": GRPC_RVPS,
    "kbs/test_data/configs/coco-as-grpc-1.toml": GRPC,
    "kbs/test_data/configs/coco-as-grpc-2.toml": GRPC,
    "kbs/test_data/configs/coco-as-grpc-3.toml": GRPC,
    "kbs/test_data/configs/intel-ta-1.toml": INTEL_TA,
    "kbs/test_data/configs/intel-ta-2.toml": INTEL_TA,
    "kbs/test_data/configs/intel-ta-3.toml": INTEL_TA,
    "kbs/test_data/configs/tls-profile-custom-pqc.toml": GRPC,
    "kbs/test_data/configs/tls-profile-custom.toml": GRPC,
    "kbs/test_data/configs/tls-profile-intermediate.toml": GRPC,
    "kbs/test_data/configs/tls-profile-modern.toml": GRPC,
    "kbs/test_data/configs/tls-profile-old.toml": GRPC,
    "legacy-v0.15.0/kbs/config/docker-compose/kbs-config.toml": GRPC,
}
LOADING = [
    "kbs/config/kbs-config.toml",
    "kbs/config/kubernetes/base/kbs-config.toml",
    "kbs/test/config/kbs.toml",
    "kbs/test/config/resource-kbs.toml",
    "kbs/test_data/configs/coco-as-builtin-2.toml",
    "kbs/test_data/configs/coco-as-builtin-3.toml",
    "legacy-v0.15.0/kbs/config/kbs-config.toml",
]


def sample(rel: str) -> Path:
    path = TRUSTEE / rel
    if not path.is_file():
        pytest.fail(f"Trustee fixture {path} not found")
    return path


def doc_of(rel: str) -> dict[str, Any]:
    return tomllib.loads(sample(rel).read_text())


def test_every_upstream_sample_is_covered() -> None:
    found = {
        str(p.relative_to(TRUSTEE))
        for p in TRUSTEE.rglob("*.toml")
        if "kbs" in p.parts and p.parent.name != "tests"
    }
    assert found == set(UNSUPPORTED) | set(LOADING)


@pytest.mark.parametrize(("rel", "message"), sorted(UNSUPPORTED.items()))
def test_unsupported_samples_fail_precisely(rel: str, message: str) -> None:
    path = sample(rel)
    with pytest.raises(ConfigError) as info:
        load_kbs_config(path)
    assert str(info.value) == f"{path}: {message}"
    assert isinstance(info.value, VeriteeError)


def test_kbs_config_toml() -> None:
    c = load_kbs_config(sample("kbs/config/kbs-config.toml"))
    assert c.path == sample("kbs/config/kbs-config.toml")
    assert c.http_server.insecure_http is True
    assert c.http_server.sockets == ("127.0.0.1:8080",)
    assert c.http_server.addresses() == [("127.0.0.1", 8080)]
    assert c.http_server.payload_request_size == 2
    assert c.http_server.body_limit == 2 * 1024 * 1024
    assert c.attestation_token.insecure_header_jwk is True
    assert c.attestation_service.type == "coco_as_builtin"
    assert c.attestation_service.timeout == 5
    assert c.attestation_service.timeout_s == 300
    assert c.attestation_service.attestation_token_broker.duration_min == 5
    assert c.attestation_service.rvps_config.type == "BuiltIn"
    assert (c.admin.generation, c.admin.mode) == ("head", "InsecureAllowAll")
    assert c.storage_backend.storage_type == "LocalFs"
    assert c.storage_backend.local_fs_dir == Path("/opt/confidential-containers/storage")
    assert c.session_storage_type is None
    assert c.resource_plugin == ResourcePluginConfig("kvstorage")
    assert c.sample_plugin is None
    assert c.store_url() == "/opt/confidential-containers/storage/veritee.db"
    assert c.session_store_url() == c.store_url()
    backend = c.resource_backend(MemoryStore())
    assert isinstance(backend, LocalFsBackend)
    assert backend.layout == "flat"
    assert backend.directory == Path("/opt/confidential-containers/storage/repository")
    auth, warnings = c.admin_auth(None)
    assert isinstance(auth, InsecureAllowAll)
    assert warnings[0].startswith("INSECURE")
    assert not c.legacy_policy_data
    assert c.notes == ()


def test_kubernetes_base() -> None:
    c = load_kbs_config(sample("kbs/config/kubernetes/base/kbs-config.toml"))
    assert c.http_server.sockets == ("0.0.0.0:8080",)
    assert c.admin.mode == "AuthenticatedAuthorization"
    assert c.admin.identity_providers == ({"public_key_uri": "/kbs/kbs.pem"},)
    assert c.admin.acls == (("admin", "^/kbs/.+$"),)
    assert c.storage_backend.local_fs_dir == Path("/opt/confidential-containers/kbs")
    backend = c.resource_backend(MemoryStore())
    assert isinstance(backend, LocalFsBackend)
    # the same directory the ≤ v0.18 nested layout used: both generations are served
    assert backend.directory == Path("/opt/confidential-containers/kbs/repository")
    with pytest.raises(ConfigError, match=r"Invalid admin token verifier config: /kbs/kbs.pem"):
        c.admin_auth(None)


def test_e2e_kbs_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = load_kbs_config(sample("kbs/test/config/kbs.toml"))
    assert c.http_server.insecure_http is False
    assert c.http_server.tls == TlsConfig(Path("./work/https.key"), Path("./work/https.crt"))
    assert c.attestation_token.trusted_certs_paths == ("./work/ca-cert.pem",)
    broker = c.attestation_service.attestation_token_broker
    assert broker.signer is not None
    assert broker.signer.key_path == Path("./work/token.key")
    assert broker.signer.cert_path == Path("./work/token-cert-chain.pem")
    assert c.attestation_service.verifier_config == {
        "tpm_verifier": {
            "trusted_ak_keys_dir": "./work/attestation-service/tpm_trusted_keys",
            "max_trusted_ak_keys": 100,
        }
    }
    assert c.notes == (
        "attestation_service.verifier_config.tpm_verifier is not used by veritee's verifiers",
    )
    assert c.admin.identity_providers == (
        {"issuer": "issuer", "audience": "kbs", "public_key_uri": "./work/kbs.pem"},
    )
    settings = c.attestation_service.as_settings(AsSettings(data_dir=tmp_path))
    assert settings.duration_s == 300
    assert settings.token_key == Path("./work/token.key")
    assert settings.token_cert_chain == Path("./work/token-cert-chain.pem")
    # relative paths are Trustee's: from the working directory
    work = tmp_path / "work"
    work.mkdir()
    key = ed25519.Ed25519PrivateKey.generate()
    (work / "kbs.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    monkeypatch.chdir(tmp_path)
    auth, warnings = c.admin_auth(None)
    assert isinstance(auth, BearerJwtAdminAuth)
    assert warnings == []


def test_resource_kbs_toml() -> None:
    c = load_kbs_config(sample("kbs/test/config/resource-kbs.toml"))
    assert c.http_server.sockets == ("127.0.0.1:50002",)
    assert c.attestation_service == type(c.attestation_service)()  # all defaults: built-in
    assert c.storage_backend.local_fs_dir == Path("./work/storage")


def test_coco_as_builtin_2() -> None:
    c = load_kbs_config(sample("kbs/test_data/configs/coco-as-builtin-2.toml"))
    assert c.session_storage_type == "Memory"
    assert c.storage_backend.storage_type == "Memory"
    assert c.http_server.sockets == ("0.0.0.0:8080",)
    assert c.http_server.payload_request_size == 2
    assert c.attestation_token.insecure_header_jwk is False
    assert c.admin.mode == "InsecureAllowAll"
    assert c.resource_plugin is None
    assert c.resource_backend(MemoryStore()) is None  # Trustee: PluginNotFound
    assert c.store_url() == "sqlite://"


def test_coco_as_builtin_3_loads_but_its_admin_cannot_be_built() -> None:
    c = load_kbs_config(sample("kbs/test_data/configs/coco-as-builtin-3.toml"))
    assert c.storage_backend.storage_type == "LocalJson"
    assert c.storage_backend.local_json_dir == Path("/opt/confidential-containers/trustee")
    assert c.store_url() == "/opt/confidential-containers/trustee/veritee.db"
    assert isinstance(c.resource_backend(MemoryStore()), KvResourceBackend)
    assert c.admin.mode == "AuthenticatedAuthorization"
    assert c.admin.identity_providers == ()
    with pytest.raises(ConfigError, match="requires at least one `identity_providers` entry"):
        c.admin_auth(None)


def test_legacy_v015_kbs_config() -> None:
    c = load_kbs_config(sample("legacy-v0.15.0/kbs/config/kbs-config.toml"))
    assert c.attestation_token.insecure_header_jwk is True  # insecure_key
    assert c.policy_engine.policy_path == Path("/opa/confidential-containers/kbs/policy.rego")
    assert c.legacy_policy_data
    assert (c.admin.generation, c.admin.mode) == ("legacy", "InsecureAllowAll")
    assert c.resource_plugin == ResourcePluginConfig(
        "LocalFs", Path("/opt/confidential-containers/kbs/repository")
    )
    backend = c.resource_backend(MemoryStore())
    assert isinstance(backend, LocalFsBackend)
    assert backend.layout == "nested"
    assert c.notes == (
        "attestation_token.insecure_key (≤ v0.16) is read as insecure_header_jwk",
        "ignored attestation_service.work_dir (≤ v0.16 key, gone from Trustee)",
        "ignored attestation_service.policy_engine (≤ v0.16 key, gone from Trustee)",
        'ignored attestation_service.attestation_token_broker.type = "Ear" (EAR is the only '
        "token veritee issues)",
    )


# -- TLS ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "profile", "min_v", "max_v", "ciphers", "groups"),
    [
        ("tls-profile-old.toml", "old", None, None, None, None),
        ("tls-profile-intermediate.toml", "intermediate", None, None, None, None),
        ("tls-profile-modern.toml", "modern", None, None, None, None),
        (
            "tls-profile-custom.toml",
            "custom",
            "1.3",
            None,
            "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
            "X25519:secp384r1",
        ),
        (
            "tls-profile-custom-pqc.toml",
            "custom",
            "1.3",
            "1.3",
            "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
            "X25519MLKEM768:X25519:secp256r1",
        ),
    ],
)
def test_tls_profile_samples_with_a_builtin_as(
    name: str,
    profile: str,
    min_v: str | None,
    max_v: str | None,
    ciphers: str | None,
    groups: str | None,
) -> None:
    """The TLS samples use the gRPC AS; with it replaced by the built-in one they load."""
    doc = doc_of(f"kbs/test_data/configs/{name}")
    doc["attestation_service"] = {"type": "coco_as_builtin"}
    c = parse_kbs_config(doc)
    tls = c.http_server.tls
    assert (tls.profile, tls.min_version, tls.max_version) == (profile, min_v, max_v)
    assert (tls.ciphers, tls.groups) == (ciphers, groups)
    assert tls.private_key == Path("/etc/kbs-private.key")
    assert tls.certificate == Path("/etc/kbs-cert.pem")
    assert c.storage_backend.storage_type == "Memory"
    assert isinstance(c.admin_auth(None)[0], TrusteeDenyAll)
    if groups:
        assert any("tls_groups" in n for n in c.notes)


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kbs.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "https.key", directory / "https.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.mark.parametrize(
    ("kwargs", "minimum", "maximum"),
    [
        ({"profile": "old"}, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED),
        ({"profile": "intermediate"}, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED),
        ({"profile": "modern"}, ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.MAXIMUM_SUPPORTED),
        (
            {
                "profile": "custom",
                "min_version": "1.2",
                "max_version": "1.2",
                "ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384",
            },
            ssl.TLSVersion.TLSv1_2,
            ssl.TLSVersion.TLSv1_2,
        ),
        (
            {
                "profile": "custom",
                "min_version": "1.3",
                "ciphers": "TLS_AES_256_GCM_SHA384",
                "groups": "X25519",
            },
            ssl.TLSVersion.TLSv1_3,
            ssl.TLSVersion.MAXIMUM_SUPPORTED,
        ),
    ],
)
def test_ssl_context(
    cert_pair: tuple[Path, Path],
    kwargs: dict[str, Any],
    minimum: ssl.TLSVersion,
    maximum: ssl.TLSVersion,
) -> None:
    key, cert = cert_pair
    ctx = TlsConfig(private_key=key, certificate=cert, **kwargs).ssl_context()
    assert ctx.minimum_version == minimum
    assert ctx.maximum_version == maximum
    if "ciphers" in kwargs and kwargs.get("max_version") == "1.2":
        tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12 == ["ECDHE-ECDSA-AES256-GCM-SHA384"]


def test_ssl_context_errors(cert_pair: tuple[Path, Path], tmp_path: Path) -> None:
    key, cert = cert_pair
    with pytest.raises(ConfigError, match="certificate is required"):
        TlsConfig(private_key=key).ssl_context()
    with pytest.raises(ConfigError, match="private_key is required"):
        TlsConfig(certificate=cert).ssl_context()
    with pytest.raises(ConfigError, match="cannot load"):
        TlsConfig(private_key=tmp_path / "nope", certificate=cert).ssl_context()
    with pytest.raises(ConfigError, match="tls_ciphers"):
        TlsConfig(key, cert, "custom", ciphers="NOT-A-CIPHER").ssl_context()


def test_tls_version_order_is_checked() -> None:
    doc = doc_of("kbs/test_data/configs/tls-profile-custom.toml")
    doc["attestation_service"] = {"type": "coco_as_builtin"}
    doc["http_server"]["tls_max_version"] = "1.2"
    with pytest.raises(ConfigError, match=r"tls_min_version \(1.3\) cannot be greater"):
        parse_kbs_config(doc)
    doc["http_server"]["tls_max_version"] = "1.1"
    with pytest.raises(ConfigError, match="tls_max_version"):
        parse_kbs_config(doc)
    doc["http_server"]["tls_profile"] = "paranoid"
    with pytest.raises(ConfigError, match="tls_profile"):
        parse_kbs_config(doc)


# -- keys one by one ----------------------------------------------------------


BASE = {"http_server": {"insecure_http": True}, "admin": {"authorization_mode": "DenyAll"}}


def cfg(**sections: Any) -> KbsConfig:
    doc = copy.deepcopy(BASE)
    doc.update(sections)
    return parse_kbs_config(doc)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"plugins": [{"name": "nebula-ca"}]}, "plugins[0].name = 'nebula-ca' is not supported"),
        ({"plugins": [{"name": "pkcs11"}]}, "plugins[0].name = 'pkcs11' is not supported"),
        ({"plugins": [{"name": "external"}]}, "plugins[0].name = 'external' is not supported"),
        ({"plugins": [{"name": "provisioner"}]}, "'provisioner' is not supported"),
        ({"plugins": [{"name": "teapot"}]}, "plugins[0].name 'teapot' is unknown"),
        ({"plugins": [{"name": "sample"}]}, "plugins[0].item is required"),
        (
            {"plugins": [{"name": "resource", "storage_backend_type": "Vault"}]},
            "plugins[0].storage_backend_type = 'Vault' is not supported",
        ),
        (
            {"plugins": [{"name": "resource", "storage_backend_type": "aws"}]},
            "storage_backend_type = 'aws' is not supported",
        ),
        (
            {"plugins": [{"name": "resource", "type": "Aliyun"}]},
            "plugins[0].type = 'Aliyun' is not supported",
        ),
        ({"plugins": [{"name": "resource", "storage_backend_type": "Gcp"}]}, "'Gcp'"),
        ({"plugins": [{"name": "resource"}, {"name": "resource"}]}, "a second"),
        ({"attestation_service": {"type": "CoCoASGrpc"}}, "'CoCoASGrpc'"),
        ({"attestation_service": {"type": "IntelTA"}}, "'IntelTA' (Intel Trust Authority)"),
        ({"attestation_service": {"type": "magic"}}, "type 'magic' is unknown"),
        (
            {"attestation_service": {"attestation_token_broker": {"type": "Simple"}}},
            "attestation_token_broker.type 'Simple' is not supported",
        ),
        (
            {"attestation_service": {"attestation_token_broker": {"signer": {"cert_url": "x"}}}},
            "signer.cert_url is not supported",
        ),
        ({"storage_backend": {"storage_type": "Etcd"}}, "storage_backend.storage_type 'Etcd'"),
        ({"session_storage_type": "mongo"}, "session_storage_type 'mongo' is not supported"),
        ({"http_server": {"sockets": ["localhost:8080"]}}, "an IP literal is needed"),
        ({"http_server": {"sockets": ["::1:8080"]}}, "write IPv6 addresses as [addr]:port"),
        ({"http_server": {"sockets": ["127.0.0.1:99999"]}}, "is not an ip:port address"),
        ({"http_server": {"payload_request_size": 0}}, "payload_request_size must be"),
        ({"http_server": {"insecure_http": "yes"}}, "insecure_http must be true or false"),
        ({"grpc_config": {"as_addr": "http://as:50004"}}, "grpc_config"),
        ({"attestation_token": {"trusted_certs_paths": "/etc/ca"}}, "must be an array"),
        ({"admin": {"authorization_mode": "DenyAll", "insecure_api": False}}, "unknown key"),
    ],
)
def test_precise_config_errors(sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(**sections)
    assert message in str(info.value)


def test_sockets_and_workers() -> None:
    c = cfg(
        http_server={
            "sockets": ["[::]:8443", "10.0.0.1:80"],
            "worker_count": 4,
            "payload_request_size": 8,
        }
    )
    assert c.http_server.addresses() == [("::", 8443), ("10.0.0.1", 80)]
    assert c.http_server.worker_count == 4
    assert c.http_server.body_limit == 8 * 1024 * 1024


def test_storage_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTGRES_URL", raising=False)
    c = cfg(
        storage_backend={
            "storage_type": "postgres",
            "backends": {
                "postgres": {
                    "host": "db",
                    "port": 5433,
                    "db": "kbs",
                    "username": "trustee",
                    "password": "p@ss",
                }
            },
        },
        session_storage_type="Redis",
    )
    assert c.storage_backend.storage_type == "Postgres"
    assert c.store_url() == "postgresql://trustee:p%40ss@db:5433/kbs"
    assert "p@ss" not in repr(c.storage_backend.postgres)
    assert c.session_store_url() == "redis://127.0.0.1:6379"
    assert c.resource_backend(MemoryStore()) is None  # no [[plugins]] resource
    monkeypatch.setenv("POSTGRES_URL", "postgresql://env@host/db")
    assert PostgresConfig().dsn() == "postgresql://env@host/db"
    c = cfg(storage_backend={"storage_type": "redis", "backends": {"redis": {"url": "redis://r"}}})
    assert c.store_url() == "redis://r"
    assert storage_kind("local_fs") == "LocalFs"
    with pytest.raises(ConfigError):
        storage_kind("tape")


def test_resource_plugin_forms(tmp_path: Path) -> None:
    c = cfg(plugins=[{"name": "resource", "type": "LocalFs", "dir_path": str(tmp_path)}])
    backend = c.resource_backend(MemoryStore())
    assert isinstance(backend, LocalFsBackend)
    assert (backend.directory, backend.layout) == (tmp_path, "nested")
    c = cfg(
        plugins=[
            {"name": "resource", "storage_backend_type": "KvStorage"},
            {"name": "sample", "item": "value1"},
        ]
    )
    assert c.sample_plugin == SamplePluginConfig("value1")
    store = MemoryStore()
    kv = c.resource_backend(store)
    assert isinstance(kv, KvResourceBackend)
    assert kv.store is store


def test_v09_era_top_level_keys(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pub = tmp_path / "public.pub"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    doc = {
        "sockets": ["0.0.0.0:8080"],
        "insecure_http": True,
        "timeout": 7,
        "auth_public_key": str(pub),
        "insecure_api": False,
        "repository_config": {"type": "LocalFs", "dir_path": str(tmp_path / "repo")},
        "as_config": {"work_dir": "/var/lib/as", "attestation_token_broker": {"duration_min": 9}},
        "attestation_token_config": {
            "attestation_token_type": "CoCo",
            "trusted_certs_paths": ["/etc/ca"],
        },
        "policy_engine_config": {"policy_path": "/opa/policy.rego"},
    }
    c = parse_kbs_config(doc)
    assert c.http_server.sockets == ("0.0.0.0:8080",)
    assert c.http_server.insecure_http is True
    assert c.attestation_service.timeout == 7
    assert c.attestation_service.attestation_token_broker.duration_min == 9
    assert c.attestation_token.trusted_certs_paths == ("/etc/ca",)
    assert c.policy_engine.policy_path == Path("/opa/policy.rego")
    assert (c.admin.generation, c.admin.mode) == ("legacy", "Ed25519")
    assert c.resource_plugin == ResourcePluginConfig("LocalFs", tmp_path / "repo")
    auth, _ = c.admin_auth(None)
    assert isinstance(auth, LegacyEd25519AdminAuth)
    del doc["repository_config"]
    assert parse_kbs_config(doc).resource_plugin == ResourcePluginConfig(
        "LocalFs", Path("/opt/confidential-containers/kbs/repository")
    )


def test_no_admin_section_is_our_authenticated_default(tmp_path: Path) -> None:
    c = parse_kbs_config({"http_server": {"insecure_http": True}})
    assert c.admin.generation == "default"
    auth, warnings = c.admin_auth(tmp_path)
    assert isinstance(auth, Ed25519AdminAuth)
    assert warnings


def test_unknown_keys_are_noted_not_fatal() -> None:
    c = cfg(colour="blue", http_server={"insecure_http": True, "tls_everything": True})
    assert "ignored unknown top-level key 'colour' (Trustee ignores it too)" in c.notes
    assert "ignored unknown key http_server.tls_everything (Trustee ignores it too)" in c.notes


def test_json_and_yaml_files(tmp_path: Path) -> None:
    path = tmp_path / "kbs-config.json"
    path.write_text(json.dumps(BASE))
    assert load_kbs_config(path).http_server.insecure_http is True
    yaml = tmp_path / "kbs-config.yaml"
    yaml.write_text("http_server: {}\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_kbs_config(yaml)
    bad = tmp_path / "bad.toml"
    bad.write_text("[http_server\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_kbs_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_kbs_config(tmp_path / "missing.toml")


def test_as_settings_from_broker_and_verifier_config(tmp_path: Path) -> None:
    c = cfg(
        attestation_service={
            "type": "CoCoASBuiltIn",
            "timeout": 10,
            "attestation_token_broker": {
                "duration_min": 3,
                "issuer_name": "my-as",
                "developer_name": "dev",
                "build_name": "b1",
                "profile_name": "p",
                "verbose_token": False,
            },
            "verifier_config": {
                "dcap_verifier": {"collateral_service": "https://pccs.local/"},
                "snp_verifier": {"vcek_sources": [{"type": "KDS", "base_url": "https://kds"}]},
            },
            "rvps_config": {"type": "BuiltIn", "storage_type": "local_fs"},
            "storage_type": "memory",
        }
    )
    service = c.attestation_service
    assert service.timeout_s == 600
    assert service.rvps_config.storage_type == "LocalFs"
    assert service.storage_type == "Memory"
    s = service.as_settings(AsSettings(data_dir=tmp_path))
    assert (s.duration_s, s.issuer, s.developer, s.build, s.profile, s.verbose_token) == (
        180,
        "my-as",
        "dev",
        "b1",
        "p",
        False,
    )
    assert (s.pccs_url, s.kds_url) == ("https://pccs.local/", "https://kds")
