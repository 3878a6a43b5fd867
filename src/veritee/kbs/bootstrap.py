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
from veritee.kbs.session_sqlite import SqliteSessionStore
from veritee.store.kv import KeyValueStore


@dataclass(frozen=True)
class KbsSettings:
    """What a KBS needs beyond its Attestation Service's settings."""

    attestation: AsSettings
    #: "memory"; a redis:// URL; or a SQLite file (a path or sqlite:///path) shared by
    #: every process on the machine (see :func:`session_store`).
    sessions: str = "memory"
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


_MEMORY = frozenset({"memory", "sqlite://", "sqlite:///:memory:", ":memory:"})
_SQLITE_URL = "sqlite:///"


def session_store(spec: str) -> SessionStore:
    """The session store ``spec`` names: ``memory`` (also ``sqlite://``, a private
    in-memory database), ``redis://…``/``rediss://…``/``unix://…``, or a SQLite file
    (``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a plain path).  A
    ``postgresql://`` URL (Trustee's Postgres session storage) keeps sessions in memory."""
    text = spec.strip()
    if text.startswith(("redis://", "rediss://", "unix://")):
        return RedisSessionStore(text)
    if text in _MEMORY or text.startswith(("postgres://", "postgresql://")):
        return MemorySessionStore()
    if text.startswith(_SQLITE_URL):
        return SqliteSessionStore(text[len(_SQLITE_URL) :])
    if "://" in text or not text:
        raise ConfigError(
            f"unsupported session store {spec!r}: use memory, redis://…, or a SQLite file"
        )
    return SqliteSessionStore(text)


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
    sessions = session_store(settings.sessions)
    admin = settings.admin if settings.admin is not None else parts.admin.auth
    app = create_kbs_app(
        service,
        sessions=sessions,
        admin=admin,
        timeout_s=settings.session_timeout_s,
        body_limit=settings.body_limit,
    )
    return KbsComponents(app, service, parts, sessions, admin)
