"""Reference values as Trustee's RVPS stores them, and the RVPS error types.

A :class:`ReferenceValue` serialises to exactly Trustee's stored JSON::

    {"version": "0.1.0", "name": "svn", "expiration": "2027-08-21T10:00:00Z", "value": ["1"]}

``expiration`` is always written as ``%Y-%m-%dT%H:%M:%SZ`` (UTC, whole seconds);
the expiration given to the constructor is converted to UTC (a naive datetime
is taken to be UTC) and truncated to whole seconds, so a value round-trips
through JSON unchanged.  A value is *expired* once the current time is after
its expiration (Trustee's ``now > expiration``).

``value`` is any JSON value except ``null``: ``query_reference_value`` in a
Trustee policy already answers ``null`` for an unknown name, so a stored
``null`` could not be told from a missing value.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeAlias, cast

from veritee.errors import VeriteeError

__all__ = [
    "DEFAULT_VERSION",
    "EXPIRATION_FORMAT",
    "JSON",
    "InvalidPageToken",
    "InvalidReferenceValue",
    "ReferenceValue",
    "ReferenceValueNotFound",
    "RvpsError",
    "check_json",
    "format_expiration",
    "parse_expiration",
]

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None

DEFAULT_VERSION = "0.1.0"
EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TRUSTEE_EXPIRATION = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_MAX_DEPTH = 128  # serde_json's recursion limit


class RvpsError(VeriteeError):
    """Base of the RVPS errors; ``type_name`` is the stable name the REST API reports."""

    type_name: ClassVar[str] = "RvpsError"


class InvalidReferenceValue(RvpsError):
    """A reference value that is malformed (name, value, expiration or version)."""

    type_name: ClassVar[str] = "InvalidReferenceValue"


class InvalidPageToken(RvpsError):
    """A listing page token (cursor) that this service did not hand out, or a bad page size."""

    type_name: ClassVar[str] = "InvalidPageToken"


class ReferenceValueNotFound(RvpsError):
    """No reference value of that name, or only an expired one."""

    type_name: ClassVar[str] = "ReferenceValueNotFound"


def format_expiration(when: dt.datetime) -> str:
    """``when`` in Trustee's expiration format, ``%Y-%m-%dT%H:%M:%SZ`` (UTC)."""
    utc = _normalize(when)
    # Not strftime: its %Y does not zero-pad years before 1000 on every platform.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"
    )


def parse_expiration(text: str) -> dt.datetime:
    """An aware UTC datetime from Trustee's format or any ISO 8601 date-time.

    A date-time without an offset is taken to be UTC.  Raises
    :class:`InvalidReferenceValue`.
    """
    if not isinstance(text, str):
        raise InvalidReferenceValue(f"expiration must be a string, not {_kind(text)}")
    try:
        if _TRUSTEE_EXPIRATION.match(text):
            parsed = dt.datetime.strptime(text, EXPIRATION_FORMAT)
        else:
            parsed = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidReferenceValue(
            f"expiration {text[:64]!r} is not {EXPIRATION_FORMAT} or ISO 8601"
        ) from exc
    return _normalize(parsed)


def check_json(value: object, *, what: str = "value") -> JSON:
    """``value`` if it is plain JSON (finite numbers, string keys), else raise.

    Raises :class:`InvalidReferenceValue`.
    """
    _check_json(value, what, 0)
    return cast(JSON, value)


def _check_json(value: object, what: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidReferenceValue(f"{what} is nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        _check_text(value, what)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidReferenceValue(f"{what} holds a non-finite number")
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, what, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidReferenceValue(f"{what} has a non-string object key")
            _check_text(key, what)
            _check_json(item, what, depth + 1)
        return
    raise InvalidReferenceValue(f"{what} is not JSON ({_kind(value)})")


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidReferenceValue(f"{what} holds a lone surrogate, not valid Unicode") from exc


@dataclass(frozen=True)
class ReferenceValue:
    """One named reference value with its expiration (UTC, whole seconds)."""

    name: str
    value: JSON
    expiration: dt.datetime
    version: str = DEFAULT_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidReferenceValue("reference value name must be a non-empty string")
        if "\x00" in self.name:
            raise InvalidReferenceValue("reference value name must not contain NUL")
        _check_text(self.name, "reference value name")
        if not isinstance(self.version, str) or not self.version:
            raise InvalidReferenceValue(f"reference value {self.name!r}: version must be a string")
        if not isinstance(self.expiration, dt.datetime):
            raise InvalidReferenceValue(
                f"reference value {self.name!r}: expiration must be a datetime"
            )
        if self.value is None:
            raise InvalidReferenceValue(f"reference value {self.name!r}: value must not be null")
        check_json(self.value, what=f"reference value {self.name!r}")
        object.__setattr__(self, "expiration", _normalize(self.expiration))

    def expired(self, at: dt.datetime | None = None) -> bool:
        """Whether the value is past its expiration at ``at`` (default: now)."""
        when = dt.datetime.now(dt.UTC) if at is None else _utc(at)
        return when > self.expiration

    def to_json(self) -> dict[str, JSON]:
        """Trustee's stored form: ``{"version", "name", "expiration", "value"}``."""
        return {
            "version": self.version,
            "name": self.name,
            "expiration": format_expiration(self.expiration),
            "value": self.value,
        }

    def dumps(self) -> str:
        """:meth:`to_json` as compact JSON text."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: object) -> ReferenceValue:
        """Parse Trustee's stored form (``version`` defaults to ``0.1.0``).

        Raises :class:`InvalidReferenceValue`.
        """
        if not isinstance(data, Mapping):
            raise InvalidReferenceValue(f"a reference value is a JSON object, not {_kind(data)}")
        missing = [k for k in ("name", "expiration", "value") if k not in data]
        if missing:
            raise InvalidReferenceValue(f"reference value lacks {', '.join(missing)}")
        name = data["name"]
        if not isinstance(name, str):
            raise InvalidReferenceValue("reference value name must be a string")
        version = data.get("version", DEFAULT_VERSION)
        if not isinstance(version, str):
            raise InvalidReferenceValue(f"reference value {name!r}: version must be a string")
        return cls(
            name=name,
            value=check_json(data["value"], what=f"reference value {name!r}"),
            expiration=parse_expiration(data["expiration"]),
            version=version,
        )

    @classmethod
    def loads(cls, text: str | bytes) -> ReferenceValue:
        """Parse the JSON text of Trustee's stored form.  Raises :class:`InvalidReferenceValue`."""
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise InvalidReferenceValue(f"reference value is not JSON: {exc}") from exc
        return cls.from_json(data)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _normalize(value: dt.datetime) -> dt.datetime:
    try:
        return _utc(value).replace(microsecond=0)
    except OverflowError as exc:
        raise InvalidReferenceValue(f"expiration {value!r} is out of range") from exc


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
