"""Attestation Service settings: defaults, Trustee's as-config.json, and our own keys.

Trustee keys understood (everything else is ignored, as Trustee ignores it):
``attestation_token_broker`` {duration_min, issuer_name, developer_name, build_name,
profile_name, verbose_token, signer {key_path, cert_path}}, ``verifier_config``
{dcap_verifier {collateral_service: URL | file://PATH}, snp_verifier {vcek_sources:
[{type: "KDS", base_url}]}}, ``rvps_config`` {type: "BuiltIn"}, ``storage_backend``
{storage_type: Memory | LocalFs | LocalJson | Postgres, backends...}.  Features we do
not have (a gRPC RVPS, an offline VCEK store, Redis for AS data) are a clear
ConfigError, never silently dropped.  Our own keys live under ``"veritee"``:
``trust_root``, ``allow_sample``, ``allow_debug``, ``policy_dir``, ``store``,
``token_alg`` (ES256 | RS256), ``pccs_url``, ``kds_url``, ``body_limit``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from veritee.errors import ConfigError


@dataclass(frozen=True)
class AsSettings:
    data_dir: Path
    store: str | None = None  # a path or postgresql:// URL; default data_dir/veritee.db
    trust_root: Path | None = None
    allow_sample: bool = False
    allow_debug: bool = False
    policy_dir: Path | None = None
    token_alg: str = "ES256"  # noqa: S105 (an algorithm name)
    token_key: Path | None = None
    token_cert_chain: Path | None = None
    duration_s: int = 300
    issuer: str = "CoCo-Attestation-Service"
    developer: str = "https://confidentialcontainers.org"
    build: str | None = None
    profile: str = "tag:github.com,2024:confidential-containers/Trustee"
    verbose_token: bool = True
    pccs_url: str | None = None
    collateral_file: Path | None = None
    kds_url: str | None = None
    body_limit: int = 2 * 1024 * 1024
    notes: tuple[str, ...] = field(default=())

    def store_url(self) -> str:
        return self.store or str(self.data_dir / "veritee.db")


def _get(doc: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = doc.get(key)
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"{where}.{key} must be a {kind.__name__}")
    return value


def load_as_config(path: Path, base: AsSettings) -> AsSettings:
    """Read a Trustee as-config.json (plus our ``veritee`` keys) over ``base``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} is not a JSON object")
    s = base
    broker = _get(doc, "attestation_token_broker", dict, "") or {}
    if broker:
        duration = _get(broker, "duration_min", int, "attestation_token_broker")
        signer = _get(broker, "signer", dict, "attestation_token_broker") or {}
        s = replace(
            s,
            duration_s=duration * 60 if duration else s.duration_s,
            issuer=broker.get("issuer_name", s.issuer),
            developer=broker.get("developer_name", s.developer),
            build=broker.get("build_name", s.build),
            profile=broker.get("profile_name", s.profile),
            verbose_token=bool(broker.get("verbose_token", s.verbose_token)),
            token_key=Path(signer["key_path"]) if "key_path" in signer else s.token_key,
            token_cert_chain=(Path(signer["cert_path"]) if "cert_path" in signer
                              else s.token_cert_chain),
        )
    s = _verifier_config(doc.get("verifier_config") or {}, s)
    rvps = _get(doc, "rvps_config", dict, "") or {}
    if rvps.get("type", "BuiltIn") != "BuiltIn":
        raise ConfigError(f"rvps_config.type {rvps.get('type')!r} is not supported: veritee runs "
                          "its RVPS built in (remove rvps_config or set type BuiltIn)")
    s = _storage(doc.get("storage_backend") or {}, s)
    ours = _get(doc, "veritee", dict, "") or {}
    s = replace(
        s,
        trust_root=Path(ours["trust_root"]) if "trust_root" in ours else s.trust_root,
        policy_dir=Path(ours["policy_dir"]) if "policy_dir" in ours else s.policy_dir,
        allow_sample=bool(ours.get("allow_sample", s.allow_sample)),
        allow_debug=bool(ours.get("allow_debug", s.allow_debug)),
        store=str(ours["store"]) if "store" in ours else s.store,
        token_alg=str(ours.get("token_alg", s.token_alg)),
        pccs_url=str(ours["pccs_url"]) if "pccs_url" in ours else s.pccs_url,
        kds_url=str(ours["kds_url"]) if "kds_url" in ours else s.kds_url,
        body_limit=int(ours.get("body_limit", s.body_limit)),
    )
    if s.token_alg not in ("ES256", "RS256"):
        raise ConfigError("veritee.token_alg must be ES256 or RS256")
    return s


def _verifier_config(doc: dict[str, Any], s: AsSettings) -> AsSettings:
    dcap = doc.get("dcap_verifier") or {}
    service = dcap.get("collateral_service")
    if isinstance(service, str):
        if service.startswith("file://"):
            s = replace(s, collateral_file=Path(service.removeprefix("file://")))
        else:
            s = replace(s, pccs_url=service)
    snp = doc.get("snp_verifier") or {}
    for source in snp.get("vcek_sources") or []:
        if not isinstance(source, dict) or source.get("type") != "KDS":
            raise ConfigError("verifier_config.snp_verifier.vcek_sources: only type KDS is "
                              "supported (OfflineStore is not)")
        s = replace(s, kds_url=source.get("base_url", "https://kdsintf.amd.com"))
    return s


def _storage(doc: dict[str, Any], s: AsSettings) -> AsSettings:
    kind = str(doc.get("storage_type", "")).lower().replace("_", "")
    backends = doc.get("backends") or {}
    if kind in ("", "memory"):
        return s if not kind else replace(s, store=":memory:")
    if kind in ("localfs", "localjson"):
        sub = backends.get("local_fs" if kind == "localfs" else "local_json") or {}
        directory = sub.get("dir_path") or sub.get("file_dir_path")
        if directory:
            return replace(s, store=str(Path(directory) / "veritee.db"),
                           notes=(*s.notes, f"{doc['storage_type']} storage is kept as SQLite "
                                  f"in {directory}/veritee.db"))
        return s
    if kind == "postgres":
        pg = backends.get("postgres") or {}
        password = f":{pg['password']}" if pg.get("password") else ""
        url = (f"postgresql://{pg.get('username', 'postgres')}{password}@"
               f"{pg.get('host', 'localhost')}:{pg.get('port', 5432)}/{pg.get('db', 'postgres')}")
        return replace(s, store=url)
    raise ConfigError(f"storage_backend.storage_type {doc.get('storage_type')!r} is not "
                      "supported for Attestation Service data (use Memory, LocalFs, LocalJson "
                      "or Postgres)")
