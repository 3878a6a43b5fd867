"""containers-registries.conf(5) as a pull applies it: blocked registries, plain-HTTP
(``insecure``) registries, and ``prefix`` → ``location`` remapping.

The document is what the CDH's ``registry_configuration_uri`` names (TOML), or the
inline ``[image.registry_config]`` table of ``cdh.toml``.  The ``[[registry]]`` entry
whose ``prefix`` (else ``location``) is the longest match of the image's
``registry/repository`` — whole path components only — applies.  Mirrors are not
tried: the pull goes to the primary location (a mirror is a trust decision the policy
does not cover).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from pydantic import ValidationError

from veritee.errors import ConfigError, VeriteeError
from veritee.guest.cdh_config import Registry, RegistryConfig
from veritee.image.reference import ImageReference, parse_reference

__all__ = ["RegistryBlocked", "RegistryRoute", "parse_registries_conf", "route"]


class RegistryBlocked(VeriteeError):
    """registries.conf blocks pulls from this registry or namespace."""


@dataclass(frozen=True)
class RegistryRoute:
    """Where a pull of an image goes: the (possibly remapped) reference, and whether its
    registry is spoken to over plain HTTP."""

    reference: ImageReference
    plain_http: bool
    entry: str | None  # the prefix that matched, for the log


def parse_registries_conf(data: bytes, *, source: str) -> RegistryConfig:
    try:
        document = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: not TOML ({exc})") from None
    try:
        return RegistryConfig.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def _covers(prefix: str, name: str) -> bool:
    prefix = prefix.rstrip("/")
    return name == prefix or name.startswith(prefix + "/") or name.startswith(prefix + ":")


def _matching(config: RegistryConfig, name: str) -> Registry | None:
    best: tuple[int, Registry] | None = None
    for entry in config.registry:
        prefix = entry.prefix or entry.location
        if prefix and _covers(prefix, name) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), entry)
    return best[1] if best else None


def route(config: RegistryConfig | None, reference: ImageReference) -> RegistryRoute:
    """Apply ``config`` to ``reference`` (no config: the reference as it is, HTTPS)."""
    if config is None:
        return RegistryRoute(reference, False, None)
    entry = _matching(config, reference.name)
    if entry is None:
        return RegistryRoute(reference, False, None)
    prefix = (entry.prefix or entry.location or "").rstrip("/")
    if entry.blocked:
        raise RegistryBlocked(f"{reference.whole()}: registries.conf blocks {prefix}")
    remapped = reference
    if entry.location and entry.prefix and entry.location.rstrip("/") != prefix:
        rest = reference.whole()[len(prefix):]
        remapped = parse_reference(entry.location.rstrip("/") + rest)
    return RegistryRoute(remapped, entry.insecure, prefix)
