"""``veritee serve --workers N``: what the serving parent decides, and each worker rebuilds.

The parent (:mod:`veritee.cli.serve`) turns its command line into a :class:`ServeSpec`,
resolves it into a :class:`ServePlan` (configuration read and checked, worker count,
where sessions live) and does the first start once (:func:`first_start`: token-signing
key, admin credentials, database schema, ``--policy-dir``), before any worker runs, so
workers never race to create keys.  It then hands the spec to uvicorn's multi-process
supervisor through the environment (:data:`SPEC_ENV`, JSON); every worker process calls
:func:`create_app`, which resolves the same plan and builds its own app over the shared
state: the data directory's files, the SQLite or PostgreSQL store, and the session
store every worker sees (SQLite ``<data dir>/sessions.db``, or Redis when the
configuration names it).

With one worker nothing is shared between processes and the sessions stay in memory
(the fastest store); with several, a private in-memory store (Trustee's ``Memory``
storage type) cannot be shared, so a configuration naming it is served by one worker
(or refused when ``--workers`` asked for more).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from veritee.as_.bootstrap import AsComponents, build_attestation_service
from veritee.as_.config import AsSettings
from veritee.errors import ConfigError
from veritee.kbs.bootstrap import KbsComponents, KbsSettings, build_kbs
from veritee.kbs.config import KbsConfig, load_kbs_config
from veritee.kbs.session_sqlite import SqliteSessionStore
from veritee.kbs.settings import SESSIONS_FILE, kbs_settings_from_config

#: The environment variable through which the parent hands its :class:`ServeSpec` to
#: the workers uvicorn spawns.
SPEC_ENV = "VERITEE_SERVE_WORKER_SPEC"
#: uvicorn's import strings for :func:`create_app` and :func:`create_as_worker_app`.
FACTORY = "veritee.kbs.worker:create_app"
FACTORY_AS = "veritee.kbs.worker:create_as_worker_app"

_PRIVATE_STORES = frozenset({"sqlite://", "sqlite:///", "sqlite:///:memory:", ":memory:"})
_MEMORY_SESSIONS = frozenset({"memory", "sqlite://", "sqlite:///:memory:", ":memory:"})


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class ServeSpec:
    """The serve command's arguments that shape the app (JSON-able, for the workers)."""

    data_dir: Path
    config: Path | None = None
    trust_root: Path | None = None
    allow_sample: bool = False
    policy_dir: Path | None = None
    with_as_api: bool = False
    workers: int | None = None  # None: the config's worker_count, else available_cpus()
    role: str = "kbs"  # "kbs" (with or without the AS API) or "as" (the AS alone)

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()
        }
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> ServeSpec:
        try:
            doc = json.loads(text)
            return cls(
                data_dir=Path(doc["data_dir"]),
                config=_path(doc.get("config")),
                trust_root=_path(doc.get("trust_root")),
                allow_sample=bool(doc.get("allow_sample", False)),
                policy_dir=_path(doc.get("policy_dir")),
                with_as_api=bool(doc.get("with_as_api", False)),
                workers=int(doc["workers"]) if doc.get("workers") is not None else None,
                role=str(doc.get("role", "kbs")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"bad {SPEC_ENV}: {exc}") from exc


def _path(value: object) -> Path | None:
    return Path(str(value)) if value is not None else None


@dataclass(frozen=True)
class ServePlan:
    """A spec resolved: settings, the parsed configuration, the worker count, and notes
    for the operator."""

    spec: ServeSpec
    settings: KbsSettings
    config: KbsConfig | None
    workers: int
    notes: tuple[str, ...] = ()

    @property
    def sessions_where(self) -> str:
        """Where RCAR sessions live, for the start-up message."""
        spec = self.settings.sessions
        if spec in _MEMORY_SESSIONS:
            return "in memory"
        if spec.startswith(("redis://", "rediss://", "unix://")):
            return "in Redis"
        return f"in {spec.removeprefix('sqlite:///')}"


def resolve(spec: ServeSpec) -> ServePlan:
    """Read the configuration and decide the worker count and the session store.

    Raises :class:`ConfigError` for a bad configuration, or when ``--workers`` > 1 is
    asked of a configuration whose data store is private to one process."""
    base = AsSettings(
        data_dir=spec.data_dir,
        trust_root=spec.trust_root,
        allow_sample=spec.allow_sample,
        policy_dir=spec.policy_dir,
    )
    loaded = load_kbs_config(spec.config) if spec.config is not None else None
    settings = kbs_settings_from_config(loaded, base) if loaded else KbsSettings(attestation=base)
    configured = loaded.http_server.worker_count if loaded is not None else None
    workers, notes = _worker_count(spec, configured, settings.attestation.store_url())
    if workers > 1 and settings.sessions in _MEMORY_SESSIONS:
        settings = replace(settings, sessions=str(spec.data_dir / SESSIONS_FILE))
    return ServePlan(replace(spec, workers=workers), settings, loaded, workers, notes)


def _worker_count(
    spec: ServeSpec, configured: int | None, store_url: str
) -> tuple[int, tuple[str, ...]]:
    """``--workers``, else the configured count, else the CPUs; one worker (with a note)
    when the data store is private to a process, or ConfigError if more were asked."""
    workers = spec.workers or configured or available_cpus()
    if workers == 1 or store_url.strip() not in _PRIVATE_STORES:
        return workers, ()
    if spec.workers is not None and spec.workers > 1:
        raise ConfigError(
            f"--workers {spec.workers}: the configured data store (storage_type Memory) "
            "lives in one process's memory and cannot be shared by workers; use "
            "LocalFs, LocalJson or Postgres, or --workers 1"
        )
    return 1, (
        "one worker: the data store (storage_type Memory) lives in one process's "
        "memory (use LocalFs, LocalJson or Postgres to serve with several workers)",
    )


def build(plan: ServePlan) -> KbsComponents:
    """The KBS of ``plan`` (with the AS REST API mounted when the spec asks for it)."""
    parts = build_kbs(plan.settings)
    if plan.spec.with_as_api:
        from veritee.as_.api import create_app as create_as_app

        as_app = create_as_app(
            parts.attestation.service,
            admin=parts.admin,
            rvps=parts.attestation.rvps,
            body_limit=plan.settings.attestation.body_limit,
        )
        parts.app.mount("/", as_app)  # after the KBS's own routes, which match first
    return parts


def first_start(plan: ServePlan) -> KbsComponents:
    """Build once in the parent: keys, admin credentials and schema are created here, and
    unfinished handshakes of an earlier run are dropped from a SQLite session store (a
    power loss may have rolled back a claim: the challenge must not be usable again)."""
    parts = build(plan)
    if isinstance(parts.sessions, SqliteSessionStore):
        parts.sessions.drop_unfinished()
    return parts


def worker_plan(spec: ServeSpec) -> ServePlan:
    """The plan a worker builds: the parent's, minus ``--policy-dir``, which the parent
    already stored (reloading it on a worker's restart would undo the admin's changes)."""
    return resolve(replace(spec, policy_dir=None))


def _spec_from_env() -> ServeSpec:
    text = os.environ.get(SPEC_ENV)
    if text is None:
        raise ConfigError(f"{SPEC_ENV} is not set: workers are started by `veritee serve`")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("veritee").setLevel(logging.INFO)
    return ServeSpec.from_json(text)


def create_app() -> FastAPI:
    """uvicorn's app factory in each worker process: the app for the parent's spec."""
    return build(worker_plan(_spec_from_env())).app


# --------------------------------------------------------------------------- serve as


@dataclass(frozen=True)
class AsPlan:
    """``veritee serve as``: the Attestation Service alone, resolved like a ServePlan."""

    spec: ServeSpec
    settings: AsSettings
    workers: int
    notes: tuple[str, ...] = ()


def resolve_as(spec: ServeSpec) -> AsPlan:
    """The AS settings (an as-config.json over the data directory) and the worker count."""
    from veritee.as_.config import load_as_config

    settings = AsSettings(data_dir=spec.data_dir)
    if spec.config is not None:
        settings = load_as_config(spec.config, settings)
    if spec.trust_root is not None:
        settings = replace(settings, trust_root=spec.trust_root)
    if spec.allow_sample:
        settings = replace(settings, allow_sample=True)
    if spec.policy_dir is not None:
        settings = replace(settings, policy_dir=spec.policy_dir)
    workers, notes = _worker_count(spec, None, settings.store_url())
    return AsPlan(replace(spec, workers=workers, role="as"), settings, workers, notes)


def build_as(plan: AsPlan) -> tuple[AsComponents, FastAPI]:
    """The Attestation Service of ``plan`` and its REST app (keys created on first start)."""
    from veritee.as_.api import create_app as create_as_app

    parts = build_attestation_service(plan.settings)
    application = create_as_app(
        parts.service, admin=parts.admin.auth, rvps=parts.rvps,
        body_limit=plan.settings.body_limit,
    )
    return parts, application


def create_as_worker_app() -> FastAPI:
    """uvicorn's app factory for a worker of ``veritee serve as``."""
    spec = _spec_from_env()
    return build_as(resolve_as(replace(spec, policy_dir=None)))[1]


__all__ = [
    "FACTORY",
    "FACTORY_AS",
    "SPEC_ENV",
    "AsPlan",
    "ServePlan",
    "ServeSpec",
    "available_cpus",
    "build",
    "build_as",
    "create_app",
    "create_as_worker_app",
    "first_start",
    "resolve",
    "resolve_as",
    "worker_plan",
]
