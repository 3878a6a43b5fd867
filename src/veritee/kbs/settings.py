"""From Trustee's kbs-config.toml (see :mod:`veritee.kbs.config`) to KBS settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from veritee.as_.config import AsSettings
from veritee.kbs.bootstrap import KbsSettings
from veritee.kbs.config import KbsConfig
from veritee.token.verify import load_jwks


def kbs_settings_from_config(config: KbsConfig, base: AsSettings) -> KbsSettings:
    """Settings for a KBS whose built-in AS starts from ``base`` (data dir, trust root)."""
    attestation = replace(config.attestation_service.as_settings(base), store=config.store_url())
    admin, warnings = config.admin_auth(base.data_dir)
    keys: list[object] = []
    for source in config.attestation_token.trusted_jwk_sets:
        keys.extend(load_jwks(source).get("keys", []))
    return KbsSettings(
        attestation=attestation,
        sessions=config.session_store_url(),
        session_timeout_s=config.attestation_service.timeout_s,
        resource_factory=config.resource_backend,
        admin=admin,
        trusted_token_keys=tuple(keys),
        extra_teekey_paths=tuple(config.attestation_token.extra_teekey_paths),
        body_limit=config.http_server.body_limit,
        legacy_policy_data=config.legacy_policy_data,
        resource_policy_file=config.policy_engine.policy_path,
        warnings=(*warnings, *config.notes),
    )


def default_settings(data_dir: Path, **overrides: object) -> KbsSettings:
    """The embedded default: everything in ``data_dir`` (SQLite), sessions in memory."""
    return KbsSettings(attestation=AsSettings(data_dir=data_dir, **overrides))  # type: ignore[arg-type]
