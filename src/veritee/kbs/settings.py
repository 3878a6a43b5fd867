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
    sessions, note = _session_spec(config.session_store_url())
    return KbsSettings(
        attestation=attestation,
        sessions=sessions,
        session_timeout_s=config.attestation_service.timeout_s,
        resource_factory=config.resource_backend,
        admin=admin,
        trusted_token_keys=tuple(keys),
        extra_teekey_paths=tuple(config.attestation_token.extra_teekey_paths),
        body_limit=config.http_server.body_limit,
        legacy_policy_data=config.legacy_policy_data,
        resource_policy_file=config.policy_engine.policy_path,
        warnings=(*warnings, *config.notes, *note),
    )


SESSIONS_FILE = "sessions.db"


def _session_spec(url: str) -> tuple[str, tuple[str, ...]]:
    """KbsSettings.sessions for ``session_store_url()``, and a note for the operator.

    LocalFs and LocalJson name the data store's SQLite file: sessions get their own file
    beside it (``sessions.db``), shared by every process on the machine.  Trustee's
    Postgres session storage is not implemented: sessions stay in memory (or, with
    several workers, in the data directory's SQLite file), which replicas on other
    machines do not see; Redis is what they share."""
    if url.startswith(("postgres://", "postgresql://")):
        return "memory", (
            "session_storage_type Postgres: RCAR sessions are kept on this machine "
            "(replicas on other machines need session_storage_type = \"Redis\")",
        )
    if "://" not in url and url.strip():
        return str(Path(url).expanduser().parent / SESSIONS_FILE), ()
    return url, ()


def default_settings(data_dir: Path, **overrides: object) -> KbsSettings:
    """The embedded default: everything in ``data_dir`` (SQLite), sessions in memory
    (``veritee serve --workers N`` with N > 1 puts them in ``data_dir/sessions.db``)."""
    return KbsSettings(attestation=AsSettings(data_dir=data_dir, **overrides))  # type: ignore[arg-type]
