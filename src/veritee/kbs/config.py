"""Trustee's ``kbs-config.toml``, read unchanged into typed settings.

:func:`load_kbs_config` reads the file with :mod:`tomllib` (``.json`` files with
:mod:`json`, as Trustee's ``config`` crate would) and :func:`parse_kbs_config` turns the
document into a :class:`KbsConfig`.  Every key of every Trustee generation is understood:
HEAD (v0.21+), v0.17 – v0.20 and the legacy ≤ v0.16 / v0.9-era layouts.  Keys naming a
feature veritee does not have raise :class:`veritee.errors.ConfigError` naming the key and
what we support; keys Trustee itself ignores are ignored too and listed in ``KbsConfig.notes``.

Keys
----

=====================================================  ==========================================
Key (Trustee default)                                  veritee
=====================================================  ==========================================
``[http_server] sockets`` (``["127.0.0.1:8080"]``)     same; ``ip:port`` literals, IPv6 in ``[]``
``insecure_http`` (false)                              same: false needs ``private_key`` and
                                                       ``certificate`` (checked when serving)
``private_key``, ``certificate``                       PEM paths, see :meth:`TlsConfig.ssl_context`
``payload_request_size`` (2 MiB)                       same (``HttpServerConfig.body_limit``)
``worker_count`` (#CPUs)                               kept; the server decides how to use it
``tls_profile`` (intermediate), ``tls_min_version``,   old/intermediate: TLS 1.2+; modern: TLS 1.3;
``tls_max_version``, ``tls_ciphers``, ``tls_groups``   custom: min/max honoured, ``tls_ciphers``
                                                       sets the TLS 1.2 suites (see differences)
``[attestation_token] trusted_certs_paths``,           same fields (``AttestationTokenConfig``)
``trusted_jwk_sets``, ``extra_teekey_paths``,
``insecure_header_jwk``
``[attestation_token] insecure_key`` (≤ v0.16)         read as ``insecure_header_jwk``
``[attestation_service] type``                         ``coco_as_builtin``/``CoCoASBuiltIn`` only;
                                                       ``coco_as_grpc``, ``intel_ta`` → ConfigError
``[attestation_service] timeout`` (5 min)              RCAR session lifetime, same
``attestation_service.attestation_token_broker``       ``duration_min``, ``issuer_name``,
                                                       ``developer_name``, ``build_name``,
                                                       ``profile_name``, ``verbose_token``,
                                                       ``signer.key_path``/``cert_path``;
                                                       ``signer.cert_url`` → ConfigError;
                                                       legacy ``type = "Ear"`` ignored,
                                                       ``type = "Simple"`` → ConfigError
``attestation_service.rvps_config``                    ``type = "BuiltIn"`` (+ ``extractors``,
                                                       ``storage_type``); ``GrpcRemote`` →
                                                       ConfigError
``attestation_service.verifier_config``                passed to the AS (``dcap_verifier``,
                                                       ``snp_verifier``; others ignored by it)
``attestation_service.storage_type``                   kept (AS data store override)
``attestation_service.work_dir``, ``.policy_engine``   (≤ v0.16) ignored, noted
``[admin]``                                            all three generations, see
                                                       :mod:`veritee.auth.trustee`
``[storage_backend] storage_type`` (Memory)            Memory, LocalFs, LocalJson, Postgres,
                                                       Redis (and lower/snake aliases)
``backends.local_fs.dir_path``                         resources: flat files in
(``/opt/confidential-containers/storage/local_fs``)    ``<dir_path>/repository`` (Trustee's
                                                       layout, nested files read too); other
                                                       data: SQLite ``<dir_path>/veritee.db``
``backends.local_json.file_dir_path``                  SQLite ``<file_dir_path>/veritee.db``
``backends.postgres`` host, port, db, username,        a ``postgresql://`` URL (``POSTGRES_URL``
password                                               overrides, as in Trustee)
``backends.redis.url``                                 kept (``store_url`` returns it)
``session_storage_type``                               same (``session_store_url``)
``[[plugins]] name = "resource"``                      ``storage_backend_type = "kvstorage"``
                                                       (default) or legacy ``type = "LocalFs"``
                                                       + ``dir_path`` (nested files);
                                                       Aliyun/Aws/Gcp/Vault → ConfigError
``[[plugins]] name = "sample"`` ``item``               same
``nebula-ca``, ``pkcs11``, ``external``,               ConfigError
``provisioner`` plugins
``[policy_engine] policy_path`` (≤ v0.16)              ``PolicyEngineConfig.policy_path``; such a
                                                       policy sees the legacy ``data``
                                                       (``KbsConfig.legacy_policy_data``)
``[ratls]`` (veritee only; Trustee ignores it)         the RA-TLS key broker (Verdictd's
                                                       protocol), see
                                                       :mod:`veritee.kbs.verdictd_config`
v0.9-era top level: ``sockets``, ``insecure_http``,    read as the HEAD keys they became;
``private_key``, ``certificate``, ``timeout``,         ``grpc_config`` and
``auth_public_key``, ``insecure_api``,                 ``intel_trust_authority_config`` →
``[repository_config] type = "LocalFs"``,              ConfigError
``dir_path``, ``[as_config]``,
``[attestation_token_config]``,
``[policy_engine_config] policy_path``
=====================================================  ==========================================

Differences from Trustee
------------------------

* No gRPC AS, no Intel Trust Authority, no gRPC RVPS, no KMS/Vault resource backends,
  no nebula-ca/pkcs11/external/provisioner plugins: ConfigError instead.
* ``[http_server]`` and ``[admin]`` may be absent (Trustee ≥ v0.17 requires both): the
  HTTP defaults apply, and without ``[admin]`` veritee's generated Ed25519 admin
  credentials protect the admin API (never an open API by default).
* YAML config files are not read (TOML and JSON are).
* TLS: Python's :mod:`ssl` cannot restrict TLS 1.3 cipher suites nor choose key-exchange
  groups, so ``tls_groups`` and the TLS 1.3 names in ``tls_ciphers`` are not applied
  (noted); OpenSSL's defaults are used for them.  Trustee's "old" profile is TLS 1.2+,
  like ours.
* LocalJson data is kept in SQLite next to where Trustee would write its JSON files;
  Redis is parsed but only usable where the service has a Redis store.
* Unknown keys are ignored as Trustee ignores them, and listed in ``notes``; unknown
  ``[admin]`` keys are rejected, as in Trustee.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote

from veritee.as_ import config as as_config
from veritee.as_.config import AsSettings
from veritee.auth.admin import AdminAuth
from veritee.auth.trustee import AdminSpec, build_from_spec, parse_admin_section
from veritee.errors import ConfigError
from veritee.kbs.resources import KvResourceBackend, LocalFsBackend, ResourceBackend
from veritee.kbs.verdictd_config import RatlsServerConfig, parse_ratls_section
from veritee.store.kv import KeyValueStore

__all__ = [
    "AttestationServiceConfig",
    "AttestationTokenConfig",
    "ConfigError",
    "HttpServerConfig",
    "KbsConfig",
    "PolicyEngineConfig",
    "PostgresConfig",
    "ResourcePluginConfig",
    "RvpsConfig",
    "SamplePluginConfig",
    "SignerConfig",
    "StorageBackendConfig",
    "TlsConfig",
    "TokenBrokerConfig",
    "load_kbs_config",
    "parse_kbs_config",
]

StorageType = Literal["Memory", "LocalFs", "LocalJson", "Postgres", "Redis"]
TlsProfile = Literal["old", "intermediate", "modern", "custom"]
TlsVersion = Literal["1.2", "1.3"]

DEFAULT_SOCKET = "127.0.0.1:8080"
DEFAULT_PAYLOAD_MIB = 2
DEFAULT_TIMEOUT_MIN = 5
DEFAULT_LOCAL_FS_DIR = Path("/opt/confidential-containers/storage/local_fs")
DEFAULT_LOCAL_JSON_DIR = Path("/opt/confidential-containers/storage/local_json")
DEFAULT_LEGACY_REPO_DIR = Path("/opt/confidential-containers/kbs/repository")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
#: Trustee's storage namespace of the resource plugin (the LocalFs sub-directory).
RESOURCE_NAMESPACE = "repository"

_STORAGE_TYPES: dict[str, StorageType] = {
    "memory": "Memory",
    "localfs": "LocalFs",
    "localjson": "LocalJson",
    "postgres": "Postgres",
    "redis": "Redis",
}
_STORAGE_SPELLINGS = {
    "Memory": "Memory",
    "memory": "Memory",
    "LocalFs": "LocalFs",
    "local_fs": "LocalFs",
    "LocalJson": "LocalJson",
    "local_json": "LocalJson",
    "Postgres": "Postgres",
    "postgres": "Postgres",
    "Redis": "Redis",
    "redis": "Redis",
}
_AS_BUILTIN = ("coco_as_builtin", "CoCoASBuiltIn")
_AS_UNSUPPORTED = {
    "coco_as_grpc": "a remote gRPC Attestation Service",
    "CoCoASGrpc": "a remote gRPC Attestation Service",
    "intel_ta": "Intel Trust Authority",
    "IntelTA": "Intel Trust Authority",
}
_UNSUPPORTED_PLUGINS = ("nebula-ca", "pkcs11", "external", "provisioner")
_UNSUPPORTED_RESOURCE_BACKENDS = ("aliyun", "aws", "gcp", "vault")

# Mozilla "intermediate" v5 TLS 1.2 suites (what openssl's mozilla_intermediate_v5 sets).
_INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


# -- settings -----------------------------------------------------------------


@dataclass(frozen=True)
class TlsConfig:
    private_key: Path | None = None
    certificate: Path | None = None
    profile: TlsProfile = "intermediate"
    min_version: TlsVersion | None = None
    max_version: TlsVersion | None = None
    ciphers: str | None = None
    groups: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A server :class:`ssl.SSLContext` for this profile, with the key and certificate."""
        if self.certificate is None:
            raise ConfigError("http_server.certificate is required unless insecure_http = true")
        if self.private_key is None:
            raise ConfigError("http_server.private_key is required unless insecure_http = true")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if self.profile == "modern" else ssl.TLSVersion.TLSv1_2
        )
        ctx.set_ciphers(_INTERMEDIATE_CIPHERS)
        versions = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
        if self.min_version is not None:
            ctx.minimum_version = versions[self.min_version]
        if self.max_version is not None:
            ctx.maximum_version = versions[self.max_version]
        tls12_enabled = not (self.min_version == "1.3" or self.profile == "modern")
        if self.ciphers and tls12_enabled:
            tls12 = ":".join(c for c in self.ciphers.split(":") if not c.startswith("TLS_"))
            try:
                ctx.set_ciphers(tls12 or _INTERMEDIATE_CIPHERS)
            except ssl.SSLError as exc:
                raise ConfigError(f"http_server.tls_ciphers {self.ciphers!r}: {exc}") from exc
        try:
            ctx.load_cert_chain(self.certificate, self.private_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load http_server.certificate {self.certificate} / "
                f"private_key {self.private_key}: {exc}"
            ) from exc
        return ctx


@dataclass(frozen=True)
class HttpServerConfig:
    sockets: tuple[str, ...] = (DEFAULT_SOCKET,)
    insecure_http: bool = False
    payload_request_size: int = DEFAULT_PAYLOAD_MIB  # MiB
    worker_count: int | None = None
    tls: TlsConfig = field(default_factory=TlsConfig)

    @property
    def body_limit(self) -> int:
        """``payload_request_size`` in bytes."""
        return self.payload_request_size * 1024 * 1024

    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every socket (IPv6 hosts without brackets)."""
        return [_split_socket(s) for s in self.sockets]


@dataclass(frozen=True)
class AttestationTokenConfig:
    trusted_certs_paths: tuple[str, ...] = ()
    trusted_jwk_sets: tuple[str, ...] = ()
    extra_teekey_paths: tuple[str, ...] = ()
    insecure_header_jwk: bool = False


@dataclass(frozen=True)
class SignerConfig:
    key_path: Path | None = None
    cert_path: Path | None = None


@dataclass(frozen=True)
class TokenBrokerConfig:
    duration_min: int = 5
    issuer_name: str | None = None
    developer_name: str | None = None
    build_name: str | None = None
    profile_name: str | None = None
    verbose_token: bool | None = None
    signer: SignerConfig | None = None


@dataclass(frozen=True)
class RvpsConfig:
    type: Literal["BuiltIn"] = "BuiltIn"
    extractors: Mapping[str, Any] | None = None
    storage_type: StorageType | None = None


@dataclass(frozen=True)
class AttestationServiceConfig:
    type: Literal["coco_as_builtin"] = "coco_as_builtin"
    timeout: int = DEFAULT_TIMEOUT_MIN  # minutes: RCAR session lifetime
    attestation_token_broker: TokenBrokerConfig = field(default_factory=TokenBrokerConfig)
    rvps_config: RvpsConfig = field(default_factory=RvpsConfig)
    verifier_config: Mapping[str, Any] | None = None
    storage_type: StorageType | None = None

    @property
    def timeout_s(self) -> int:
        return self.timeout * 60

    def as_settings(self, base: AsSettings) -> AsSettings:
        """``base`` with the built-in AS's token broker and verifier settings applied.

        The AS data store is left to the caller (see :meth:`KbsConfig.store_url`).
        """
        broker = self.attestation_token_broker
        signer = broker.signer or SignerConfig()
        s = replace(
            base,
            duration_s=broker.duration_min * 60,
            issuer=broker.issuer_name or base.issuer,
            developer=broker.developer_name or base.developer,
            build=broker.build_name or base.build,
            profile=broker.profile_name or base.profile,
            verbose_token=base.verbose_token
            if broker.verbose_token is None
            else broker.verbose_token,
            token_key=signer.key_path or base.token_key,
            token_cert_chain=signer.cert_path or base.token_cert_chain,
        )
        return as_config._verifier_config(dict(self.verifier_config or {}), s)


@dataclass(frozen=True)
class PostgresConfig:
    host: str = "localhost"
    port: int = 5432
    db: str = "postgres"
    username: str = "postgres"
    password: str | None = field(default=None, repr=False)

    def dsn(self) -> str:
        """Trustee's URL: ``$POSTGRES_URL`` if set, else ``postgresql://user[:pw]@host:port/db``."""
        env = os.environ.get("POSTGRES_URL")
        if env:
            return env
        user = quote(self.username, safe="")
        secret = f":{quote(self.password, safe='')}" if self.password else ""
        return f"postgresql://{user}{secret}@{self.host}:{self.port}/{quote(self.db, safe='')}"


@dataclass(frozen=True)
class StorageBackendConfig:
    storage_type: StorageType = "Memory"
    local_fs_dir: Path = DEFAULT_LOCAL_FS_DIR
    local_json_dir: Path = DEFAULT_LOCAL_JSON_DIR
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    redis_url: str = DEFAULT_REDIS_URL

    def store_url(self, storage_type: StorageType | None = None) -> str:
        """What :func:`veritee.store.postgres.open_store` opens for ``storage_type``."""
        kind = storage_type or self.storage_type
        if kind == "Memory":
            return "sqlite://"
        if kind == "LocalFs":
            return str(self.local_fs_dir / "veritee.db")
        if kind == "LocalJson":
            return str(self.local_json_dir / "veritee.db")
        if kind == "Postgres":
            return self.postgres.dsn()
        return self.redis_url


@dataclass(frozen=True)
class ResourcePluginConfig:
    #: ``kvstorage``: the unified storage backend; ``LocalFs``: legacy nested files.
    backend: Literal["kvstorage", "LocalFs"] = "kvstorage"
    dir_path: Path | None = None


@dataclass(frozen=True)
class SamplePluginConfig:
    item: str


@dataclass(frozen=True)
class PolicyEngineConfig:
    policy_path: Path | None = None


@dataclass(frozen=True)
class KbsConfig:
    http_server: HttpServerConfig = field(default_factory=HttpServerConfig)
    admin: AdminSpec = field(default_factory=lambda: AdminSpec("default", "Default"))
    attestation_token: AttestationTokenConfig = field(default_factory=AttestationTokenConfig)
    attestation_service: AttestationServiceConfig = field(default_factory=AttestationServiceConfig)
    storage_backend: StorageBackendConfig = field(default_factory=StorageBackendConfig)
    session_storage_type: StorageType | None = None
    resource_plugin: ResourcePluginConfig | None = None
    sample_plugin: SamplePluginConfig | None = None
    policy_engine: PolicyEngineConfig = field(default_factory=PolicyEngineConfig)
    #: veritee's RA-TLS key broker (:mod:`veritee.kbs.verdictd_config`); Trustee has none.
    ratls: RatlsServerConfig | None = None
    path: Path | None = None
    notes: tuple[str, ...] = ()

    @property
    def legacy_policy_data(self) -> bool:
        """True for a ≤ v0.16 file: its resource policy expects the string ``resource-path``."""
        return self.policy_engine.policy_path is not None or self.admin.generation == "legacy"

    def admin_auth(self, data_dir: Path | None) -> tuple[AdminAuth, list[str]]:
        """The admin authenticator (reads key files, may fetch JWKS) and warnings to log."""
        return build_from_spec(self.admin, data_dir=data_dir)

    def store_url(self) -> str:
        """The store for KBS data (policies, RVPS, AS data) under ``[storage_backend]``."""
        return self.storage_backend.store_url()

    def session_store_url(self) -> str:
        """The store for RCAR sessions (``session_storage_type`` or ``storage_type``)."""
        return self.storage_backend.store_url(self.session_storage_type)

    def resource_backend(self, store: KeyValueStore) -> ResourceBackend | None:
        """Where resources live; None when no ``resource`` plugin is configured (Trustee
        then answers ``PluginNotFound`` for ``/kbs/v0/resource/...``)."""
        plugin = self.resource_plugin
        if plugin is None:
            return None
        if plugin.backend == "LocalFs":
            return LocalFsBackend(plugin.dir_path or DEFAULT_LEGACY_REPO_DIR, layout="nested")
        if self.storage_backend.storage_type == "LocalFs":
            return LocalFsBackend(
                self.storage_backend.local_fs_dir / RESOURCE_NAMESPACE, layout="flat"
            )
        return KvResourceBackend(store)


# -- loading ------------------------------------------------------------------


def load_kbs_config(path: Path) -> KbsConfig:
    """Read a Trustee KBS configuration file (TOML, or JSON by extension)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            doc = json.loads(raw)
        elif suffix in (".yaml", ".yml"):
            raise ConfigError(f"{path}: YAML configuration files are not supported (use TOML)")
        else:
            doc = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} is not a table of settings")
    try:
        return replace(parse_kbs_config(doc), path=path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


_TOP_KEYS = frozenset(
    {
        "http_server",
        "admin",
        "attestation_token",
        "attestation_service",
        "storage_backend",
        "session_storage_type",
        "plugins",
        "policy_engine",
        "ratls",
    }
)
_V09_KEYS = frozenset(
    {
        "sockets",
        "insecure_http",
        "private_key",
        "certificate",
        "timeout",
        "auth_public_key",
        "insecure_api",
        "repository_config",
        "as_config",
        "attestation_token_config",
        "policy_engine_config",
        "grpc_config",
        "intel_trust_authority_config",
    }
)


def parse_kbs_config(doc: Mapping[str, Any]) -> KbsConfig:
    """A :class:`KbsConfig` from the parsed document of a kbs-config file."""
    notes: list[str] = []
    for key in sorted(set(doc) - _TOP_KEYS - _V09_KEYS):
        notes.append(f"ignored unknown top-level key {key!r} (Trustee ignores it too)")
    for key in ("grpc_config", "intel_trust_authority_config"):
        if key in doc:
            raise ConfigError(_as_unsupported_message(key, key))

    http = _http_server(doc, notes)
    token = _attestation_token(doc, notes)
    service = _attestation_service(doc, notes)
    storage = _storage_backend(_opt_table(doc, "storage_backend", ""))
    session = _storage_type(doc.get("session_storage_type"), "session_storage_type")
    resource, sample = _plugins(doc, notes)
    policy = _policy_engine(doc)
    ratls, ratls_notes = parse_ratls_section(doc)
    notes.extend(ratls_notes)

    legacy_key = _opt_str(doc, "auth_public_key", "")
    insecure = _opt_bool(doc, "insecure_api", "")
    admin_raw = doc.get("admin")
    if admin_raw is not None and not isinstance(admin_raw, Mapping):
        raise ConfigError("[admin] must be a table")
    admin = parse_admin_section(
        admin_raw,
        legacy_public_key=Path(legacy_key) if legacy_key else None,
        insecure_api=bool(insecure),
    )
    return KbsConfig(
        http_server=http,
        admin=admin,
        attestation_token=token,
        attestation_service=service,
        storage_backend=storage,
        session_storage_type=session,
        resource_plugin=resource,
        sample_plugin=sample,
        policy_engine=policy,
        ratls=ratls,
        notes=tuple(notes),
    )


# -- small typed readers ------------------------------------------------------


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _opt_table(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_name(where, key)} must be a table")
    return value


def _opt_str(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{_name(where, key)} must be a string")
    return value


def _opt_bool(doc: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{_name(where, key)} must be true or false")
    return value


def _opt_int(doc: Mapping[str, Any], key: str, where: str, *, minimum: int = 0) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{_name(where, key)} must be an integer ≥ {minimum}")
    return value


def _str_list(doc: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{_name(where, key)} must be an array of strings")
    return tuple(value)


def _note_unknown(
    doc: Mapping[str, Any], known: Sequence[str], where: str, notes: list[str]
) -> None:
    for key in sorted(set(doc) - set(known)):
        notes.append(f"ignored unknown key {where}.{key} (Trustee ignores it too)")


def _split_socket(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"http_server.sockets: {text!r} is not an ip:port address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        version = 6
    else:
        version = 4
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ConfigError(
            f"http_server.sockets: {text!r} is not an ip:port address (an IP literal is needed)"
        ) from exc
    if address.version != version:
        raise ConfigError(f"http_server.sockets: {text!r}: write IPv6 addresses as [addr]:port")
    return host, int(port)


# -- sections -----------------------------------------------------------------

_TLS_KEYS = ("tls_profile", "tls_min_version", "tls_max_version", "tls_ciphers", "tls_groups")
_HTTP_KEYS = (
    "sockets",
    "insecure_http",
    "payload_request_size",
    "worker_count",
    "private_key",
    "certificate",
    *_TLS_KEYS,
)


def _http_server(doc: Mapping[str, Any], notes: list[str]) -> HttpServerConfig:
    if "http_server" in doc:
        section = _opt_table(doc, "http_server", "")
        where = "http_server"
        _note_unknown(section, _HTTP_KEYS, where, notes)
    else:  # v0.9-era: the same keys at the top level
        section = {
            k: doc[k]
            for k in ("sockets", "insecure_http", "private_key", "certificate")
            if k in doc
        }
        where = ""
    sockets = _str_list(section, "sockets", where) or (DEFAULT_SOCKET,)
    for socket in sockets:
        _split_socket(socket)
    payload = _opt_int(section, "payload_request_size", where, minimum=1)
    workers = _opt_int(section, "worker_count", where, minimum=1)
    key = _opt_str(section, "private_key", where)
    cert = _opt_str(section, "certificate", where)
    profile = _opt_str(section, "tls_profile", where) or "intermediate"
    if profile not in ("old", "intermediate", "modern", "custom"):
        raise ConfigError(
            f"http_server.tls_profile {profile!r}: use old, intermediate, modern or custom"
        )
    versions: list[TlsVersion | None] = []
    for name in ("tls_min_version", "tls_max_version"):
        value = _opt_str(section, name, where)
        if value is not None and value not in ("1.2", "1.3"):
            raise ConfigError(f'http_server.{name} {value!r}: use "1.2" or "1.3"')
        versions.append(cast("TlsVersion | None", value))
    min_v, max_v = versions
    if min_v == "1.3" and max_v == "1.2":
        raise ConfigError(
            "TLS configuration error: tls_min_version (1.3) cannot be greater "
            "than tls_max_version (1.2)"
        )
    ciphers = _opt_str(section, "tls_ciphers", where)
    groups = _opt_str(section, "tls_groups", where)
    if groups is not None:
        notes.append(
            f"http_server.tls_groups {groups!r} is not applied: Python's ssl module "
            "cannot choose key-exchange groups (OpenSSL's defaults are used)"
        )
    if ciphers and any(c.startswith("TLS_") for c in ciphers.split(":")):
        notes.append(
            "the TLS 1.3 suites in http_server.tls_ciphers are not applied: Python's "
            "ssl module keeps OpenSSL's TLS 1.3 defaults"
        )
    tls = TlsConfig(
        private_key=Path(key) if key else None,
        certificate=Path(cert) if cert else None,
        profile=cast("TlsProfile", profile),
        min_version=min_v,
        max_version=max_v,
        ciphers=ciphers,
        groups=groups,
    )
    insecure = _opt_bool(section, "insecure_http", where)
    return HttpServerConfig(
        sockets=sockets,
        insecure_http=bool(insecure),
        payload_request_size=payload or DEFAULT_PAYLOAD_MIB,
        worker_count=workers,
        tls=tls,
    )


def _attestation_token(doc: Mapping[str, Any], notes: list[str]) -> AttestationTokenConfig:
    where = "attestation_token" if "attestation_token" in doc else "attestation_token_config"
    section = _opt_table(doc, where, "")
    known = (
        "trusted_certs_paths",
        "trusted_jwk_sets",
        "extra_teekey_paths",
        "insecure_header_jwk",
        "insecure_key",
        "attestation_token_type",
    )
    _note_unknown(section, known, where, notes)
    header_jwk = _opt_bool(section, "insecure_header_jwk", where)
    legacy = _opt_bool(section, "insecure_key", where)
    if legacy is not None:
        notes.append(f"{where}.insecure_key (≤ v0.16) is read as insecure_header_jwk")
    kind = _opt_str(section, "attestation_token_type", where)
    if kind is not None and kind not in ("CoCo", "Ear", "Jwk"):
        raise ConfigError(
            f"{where}.attestation_token_type {kind!r} is not supported "
            "(veritee verifies EAR/CoCo JWTs)"
        )
    return AttestationTokenConfig(
        trusted_certs_paths=_str_list(section, "trusted_certs_paths", where),
        trusted_jwk_sets=_str_list(section, "trusted_jwk_sets", where),
        extra_teekey_paths=_str_list(section, "extra_teekey_paths", where),
        insecure_header_jwk=bool(header_jwk or legacy),
    )


def _as_unsupported_message(key: str, value: str) -> str:
    what = _AS_UNSUPPORTED.get(value, value)
    return (
        f"{key} = {value!r} ({what}) is not supported: veritee runs its Attestation "
        'Service built in; use [attestation_service] type = "coco_as_builtin"'
    )


_AS_KEYS = (
    "type",
    "timeout",
    "attestation_token_broker",
    "rvps_config",
    "verifier_config",
    "storage_type",
    "work_dir",
    "policy_engine",
)


def _attestation_service(doc: Mapping[str, Any], notes: list[str]) -> AttestationServiceConfig:
    if "attestation_service" in doc:
        where = "attestation_service"
        section = _opt_table(doc, where, "")
        kind = _opt_str(section, "type", where) or "coco_as_builtin"
        if kind in _AS_UNSUPPORTED:
            raise ConfigError(_as_unsupported_message("attestation_service.type", kind))
        if kind not in _AS_BUILTIN:
            raise ConfigError(
                f"attestation_service.type {kind!r} is unknown: veritee supports "
                '"coco_as_builtin" (alias "CoCoASBuiltIn")'
            )
        _note_unknown(section, _AS_KEYS, where, notes)
        timeout = _opt_int(section, "timeout", where, minimum=1)
    else:  # v0.9-era: [as_config] and a top-level timeout
        where = "as_config"
        section = _opt_table(doc, where, "")
        timeout = _opt_int(doc, "timeout", "", minimum=1)
    for legacy in ("work_dir", "policy_engine"):
        if legacy in section:
            notes.append(f"ignored {where}.{legacy} (≤ v0.16 key, gone from Trustee)")
    verifiers = _opt_table(section, "verifier_config", where)
    for key in sorted(set(verifiers) - {"dcap_verifier", "snp_verifier"}):
        notes.append(f"{where}.verifier_config.{key} is not used by veritee's verifiers")
    return AttestationServiceConfig(
        timeout=timeout or DEFAULT_TIMEOUT_MIN,
        attestation_token_broker=_token_broker(section, where, notes),
        rvps_config=_rvps(section, where),
        verifier_config=verifiers or None,
        storage_type=_storage_type(section.get("storage_type"), f"{where}.storage_type"),
    )


def _token_broker(section: Mapping[str, Any], where: str, notes: list[str]) -> TokenBrokerConfig:
    here = f"{where}.attestation_token_broker"
    broker = _opt_table(section, "attestation_token_broker", where)
    kind = _opt_str(broker, "type", here)
    if kind is not None:
        if kind != "Ear":
            raise ConfigError(
                f"{here}.type {kind!r} is not supported: veritee issues EAR "
                'tokens only (type = "Ear", or leave type out)'
            )
        notes.append(f'ignored {here}.type = "Ear" (EAR is the only token veritee issues)')
    known = (
        "type",
        "duration_min",
        "issuer_name",
        "developer_name",
        "build_name",
        "profile_name",
        "verbose_token",
        "signer",
        "policy_dir",
    )
    _note_unknown(broker, known, here, notes)
    signer: SignerConfig | None = None
    if "signer" in broker:
        table = _opt_table(broker, "signer", here)
        if "cert_url" in table:
            raise ConfigError(
                f"{here}.signer.cert_url is not supported: give the certificate "
                "chain as signer.cert_path"
            )
        key = _opt_str(table, "key_path", f"{here}.signer")
        cert = _opt_str(table, "cert_path", f"{here}.signer")
        signer = SignerConfig(Path(key) if key else None, Path(cert) if cert else None)
    return TokenBrokerConfig(
        duration_min=_opt_int(broker, "duration_min", here, minimum=1) or 5,
        issuer_name=_opt_str(broker, "issuer_name", here),
        developer_name=_opt_str(broker, "developer_name", here),
        build_name=_opt_str(broker, "build_name", here),
        profile_name=_opt_str(broker, "profile_name", here),
        verbose_token=_opt_bool(broker, "verbose_token", here),
        signer=signer,
    )


def _rvps(section: Mapping[str, Any], where: str) -> RvpsConfig:
    here = f"{where}.rvps_config"
    rvps = _opt_table(section, "rvps_config", where)
    kind = _opt_str(rvps, "type", here) or "BuiltIn"
    if kind != "BuiltIn":
        raise ConfigError(
            f"{here}.type {kind!r} is not supported: veritee runs its RVPS "
            'built in (type = "BuiltIn")'
        )
    extractors = _opt_table(rvps, "extractors", here) or None
    return RvpsConfig(
        extractors=extractors,
        storage_type=_storage_type(rvps.get("storage_type"), f"{here}.storage_type"),
    )


def _storage_type(value: object, where: str) -> StorageType | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in _STORAGE_SPELLINGS:
        raise ConfigError(
            f"{where} {value!r} is not supported: use Memory, LocalFs, LocalJson, Postgres or Redis"
        )
    return cast("StorageType", _STORAGE_SPELLINGS[value])


def _storage_backend(section: Mapping[str, Any]) -> StorageBackendConfig:
    where = "storage_backend"
    kind = _storage_type(section.get("storage_type"), f"{where}.storage_type") or "Memory"
    backends = _opt_table(section, "backends", where)
    here = f"{where}.backends"
    local_fs = _opt_table(backends, "local_fs", here)
    local_json = _opt_table(backends, "local_json", here)
    pg = _opt_table(backends, "postgres", here)
    redis = _opt_table(backends, "redis", here)
    fs_dir = _opt_str(local_fs, "dir_path", f"{here}.local_fs")
    json_dir = _opt_str(local_json, "file_dir_path", f"{here}.local_json")
    pw = f"{here}.postgres"
    postgres = PostgresConfig(
        host=_opt_str(pg, "host", pw) or "localhost",
        port=_opt_int(pg, "port", pw, minimum=1) or 5432,
        db=_opt_str(pg, "db", pw) or "postgres",
        username=_opt_str(pg, "username", pw) or "postgres",
        password=_opt_str(pg, "password", pw),
    )
    return StorageBackendConfig(
        storage_type=kind,
        local_fs_dir=Path(fs_dir) if fs_dir else DEFAULT_LOCAL_FS_DIR,
        local_json_dir=Path(json_dir) if json_dir else DEFAULT_LOCAL_JSON_DIR,
        postgres=postgres,
        redis_url=_opt_str(redis, "url", f"{here}.redis") or DEFAULT_REDIS_URL,
    )


def _resource_plugin(entry: Mapping[str, Any], where: str) -> ResourcePluginConfig:
    key = "storage_backend_type" if "storage_backend_type" in entry else "type"
    kind = _opt_str(entry, key, where) or "kvstorage"
    if kind.lower() in _UNSUPPORTED_RESOURCE_BACKENDS:
        raise ConfigError(
            f"{where}.{key} = {kind!r} is not supported: veritee keeps resources "
            'in its storage backend (storage_backend_type = "kvstorage") or in '
            'files (type = "LocalFs")'
        )
    if kind in ("kvstorage", "KvStorage"):
        return ResourcePluginConfig("kvstorage")
    if kind in ("LocalFs", "local_fs"):
        dir_path = _opt_str(entry, "dir_path", where)
        return ResourcePluginConfig("LocalFs", Path(dir_path) if dir_path else None)
    raise ConfigError(f'{where}.{key} {kind!r} is unknown: use "kvstorage" or "LocalFs"')


def _plugins(
    doc: Mapping[str, Any], notes: list[str]
) -> tuple[ResourcePluginConfig | None, SamplePluginConfig | None]:
    resource: ResourcePluginConfig | None = None
    sample: SamplePluginConfig | None = None
    raw = doc.get("plugins", [])
    if not isinstance(raw, list):
        raise ConfigError("plugins must be an array of tables ([[plugins]])")
    for i, entry in enumerate(raw):
        where = f"plugins[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a table")
        name = _opt_str(entry, "name", where)
        if name in _UNSUPPORTED_PLUGINS:
            raise ConfigError(
                f"{where}.name = {name!r} is not supported: veritee has the "
                '"resource" and "sample" plugins'
            )
        if name in ("resource", "ResourceStorage"):
            if resource is not None:
                raise ConfigError(f'{where}: a second "resource" plugin')
            resource = _resource_plugin(entry, where)
        elif name in ("sample", "Sample"):
            item = _opt_str(entry, "item", where)
            if item is None:
                raise ConfigError(f'{where}.item is required for the "sample" plugin')
            sample = SamplePluginConfig(item)
        else:
            raise ConfigError(
                f'{where}.name {name!r} is unknown: veritee has the "resource" and "sample" plugins'
            )
    repository = doc.get("repository_config")
    if repository is not None:  # v0.9-era
        if resource is not None:
            raise ConfigError("repository_config and a [[plugins]] resource entry both given")
        if not isinstance(repository, Mapping):
            raise ConfigError("repository_config must be a table")
        kind = _opt_str(repository, "type", "repository_config") or "LocalFs"
        if kind != "LocalFs":
            raise ConfigError(f'repository_config.type {kind!r} is not supported: use "LocalFs"')
        resource = _resource_plugin(repository, "repository_config")
    elif resource is None and (set(doc) & _V09_KEYS) and "http_server" not in doc:
        # v0.9-era files always had the resource repository (LocalFs by default).
        resource = ResourcePluginConfig("LocalFs", DEFAULT_LEGACY_REPO_DIR)
        notes.append(f"v0.9-era configuration: resources are files under {DEFAULT_LEGACY_REPO_DIR}")
    return resource, sample


def _policy_engine(doc: Mapping[str, Any]) -> PolicyEngineConfig:
    for key in ("policy_engine", "policy_engine_config"):
        if key in doc:
            section = _opt_table(doc, key, "")
            path = _opt_str(section, "policy_path", key)
            return PolicyEngineConfig(Path(path) if path else None)
    return PolicyEngineConfig()


def storage_kind(value: str) -> StorageType:
    """Normalise a storage type spelling (``local_fs``, ``LocalFs``, ...)."""
    found = _STORAGE_TYPES.get(value.lower().replace("_", ""))
    if found is None:
        raise ConfigError(f"unknown storage type {value!r}")
    return found
