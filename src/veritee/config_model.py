"""What every TOML configuration model shares: pydantic sections that keep unknown keys
(upstream ignores them; we list them as warnings), strict types, and errors that name the
file, the key and what was expected as one :class:`~veritee.errors.ConfigError`."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, PrivateAttr, ValidationError

from veritee.errors import ConfigError

__all__ = ["ConfigSection", "HttpUrl", "LogConfig", "TomlConfig", "problems", "unknown_keys"]


class ConfigSection(BaseModel):
    """One table: unknown keys kept (see :attr:`TomlConfig.warnings`), strict types."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]
"""An http(s) URL, its trailing ``/`` dropped."""


class LogConfig(ConfigSection):
    level: Literal["trace", "debug", "info", "warn", "error", "off"] = "info"


class TomlConfig(ConfigSection):
    """A whole configuration document, remembering where it was read from."""

    _source: str = PrivateAttr(default="defaults")

    @property
    def source(self) -> str:
        """The file (or other origin) the config was read from, for messages."""
        return self._source

    @property
    def warnings(self) -> list[str]:
        """Keys upstream does not know, as ``section.key`` (they are ignored)."""
        return unknown_keys(self, "")

    @classmethod
    def from_text(cls, text: str, source: str) -> Self:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not TOML: {exc}") from exc
        return cls.from_mapping(doc, source)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any], source: str) -> Self:
        try:
            config = cls.model_validate(dict(doc))
        except ValidationError as exc:
            raise ConfigError(f"{source}: {problems(exc)}") from None
        config._source = source
        return config

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a file (a ConfigError names the file when it cannot be read)."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
        return cls.from_text(text, str(path))


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def problems(exc: ValidationError) -> str:
    """Every validation problem as ``key.path: what was expected; got …``."""
    found = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "missing (required)"
        elif error["type"] in ("model_type", "dict_type"):
            message = "expected a table"
        got = error.get("input")
        shown = f"; got {got!r}" if isinstance(got, str | int | float | bool) else ""
        if shown and repr(got) in message:
            shown = ""
        found.append(f"{_where(error['loc'])}: {message}{shown}")
    return "; ".join(found)


def unknown_keys(model: BaseModel, prefix: str) -> list[str]:
    """The keys of ``model`` and its sections that no field declares."""
    found = [f"{prefix}{key}" for key in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += unknown_keys(value, f"{prefix}{name}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found += unknown_keys(item, f"{prefix}{name}[{index}].")
    return found
