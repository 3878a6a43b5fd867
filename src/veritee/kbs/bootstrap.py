"""Assemble a KBS (with its in-process Attestation Service) from settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI

from veritee.as_.bootstrap import AsComponents, build_attestation_service
from veritee.as_.config import AsSettings
from veritee.auth.admin import AdminAuth
from veritee.errors import ConfigError
from veritee.kbs.app import create_kbs_app
from veritee.kbs.resources import KvResourceBackend, LocalFsBackend, ResourceBackend
from veritee.kbs.service import KbsService
from veritee.kbs.session import MemorySessionStore, RedisSessionStore, SessionStore
from veritee.store.kv import KeyValueStore


@dataclass(frozen=True)
class KbsSettings:
    """What a KBS needs beyond its Attestation Service's settings."""

    attestation: AsSettings
    sessions: str = "memory"  # "memory" or a redis:// URL
    session_timeout_s: int = 300
    resources_dir: Path | None = None  # LocalFs; None = the key-value store
    resources_layout: Literal["nested", "flat"] = "nested"
    # From a kbs-config.toml: the resource backend over the opened store (None: no plugin).
    resource_factory: Callable[[KeyValueStore], ResourceBackend | None] | None = None
    admin: AdminAuth | None = None  # None = our default (Ed25519 key in the data dir)
    trusted_token_keys: tuple[Any, ...] = ()
    extra_teekey_paths: tuple[str, ...] = ()
    body_limit: int = 2 * 1024 * 1024
    legacy_policy_data: bool = False
    resource_policy_file: Path | None = None
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class KbsComponents:
    app: FastAPI
    service: KbsService
    attestation: AsComponents
    sessions: SessionStore
    admin: AdminAuth


def _sessions(spec: str) -> SessionStore:
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisSessionStore(spec)
    return MemorySessionStore()


def _read_policy(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the resource policy {path}: {exc.strerror}") from exc


def build_kbs(settings: KbsSettings) -> KbsComponents:
    parts = build_attestation_service(settings.attestation)
    resources: ResourceBackend | None
    if settings.resource_factory is not None:
        resources = settings.resource_factory(parts.store)
    elif settings.resources_dir is not None:
        resources = LocalFsBackend(settings.resources_dir, layout=settings.resources_layout)
    else:
        resources = KvResourceBackend(parts.store)
    service = KbsService(
        attestation=parts.service,
        rvps=parts.rvps,
        resources=resources,
        store=parts.store,
        trusted_token_keys=settings.trusted_token_keys,
        extra_teekey_paths=settings.extra_teekey_paths,
    )
    sessions = _sessions(settings.sessions)
    admin = settings.admin if settings.admin is not None else parts.admin.auth
    app = create_kbs_app(
        service,
        sessions=sessions,
        admin=admin,
        timeout_s=settings.session_timeout_s,
        body_limit=settings.body_limit,
    )
    return KbsComponents(app, service, parts, sessions, admin)
