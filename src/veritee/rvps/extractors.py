"""Trustee RVPS messages and the extractors that turn them into reference values.

A message is ``{"version": "0.1.0", "type": "<extractor>", "payload": "<string>"}``
(``version`` defaults to ``0.1.0`` when absent and must then equal it exactly;
other members are ignored, as serde ignores them).  The ``sample`` extractor
reads ``payload`` as the standard, padded base64 of a JSON object and makes one
reference value of each member, expiring twelve calendar months from now
(whole seconds; the day is clamped to the target month's length, as chrono's
``checked_add_months`` does).

Every malformed message, and a type with no extractor (``Could not find
extractor for <type>``; Trustee's ``swid`` and ``corim`` are not implemented),
raises :class:`ExtractorError`, never ``KeyError``/``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from veritee.rvps.model import (
    DEFAULT_VERSION,
    JSON,
    InvalidReferenceValue,
    ReferenceValue,
    RvpsError,
)

__all__ = [
    "EXTRACTORS",
    "Extractor",
    "ExtractorError",
    "Message",
    "add_months",
    "extract",
    "parse_message",
    "sample_extractor",
]

MESSAGE_VERSION = DEFAULT_VERSION
SAMPLE_VALIDITY_MONTHS = 12


class ExtractorError(RvpsError):
    """A malformed RVPS message, or one whose type has no extractor."""

    type_name: ClassVar[str] = "ExtractorError"


Extractor: TypeAlias = Callable[[str, dt.datetime], list[ReferenceValue]]
"""``(payload, now) -> reference values``; raises :class:`ExtractorError`."""


@dataclass(frozen=True)
class Message:
    """A parsed RVPS message."""

    type: str
    payload: str
    version: str = MESSAGE_VERSION


def parse_message(message: bytes | str | Mapping[str, object]) -> Message:
    """Parse the JSON (text, UTF-8 bytes or already decoded) of an RVPS message."""
    data: object
    if isinstance(message, Mapping):
        data = message
    else:
        if isinstance(message, bytes | bytearray | memoryview):
            try:
                text = bytes(message).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ExtractorError("RVPS message is not UTF-8") from exc
        elif isinstance(message, str):
            text = message
        else:
            raise ExtractorError(f"RVPS message must be JSON text, not {type(message).__name__}")
        data = _loads(text, "RVPS message", unique_keys=True)
    if not isinstance(data, Mapping):
        raise ExtractorError("RVPS message must be a JSON object")
    version = data.get("version", MESSAGE_VERSION)
    if version != MESSAGE_VERSION or not isinstance(version, str):
        raise ExtractorError(
            f"RVPS message version {_short(version)} is not supported (only {MESSAGE_VERSION})"
        )
    kind, payload = _member(data, "type"), _member(data, "payload")
    return Message(type=kind, payload=payload, version=version)


def _member(data: Mapping[str, object], member: str) -> str:
    if member not in data:
        raise ExtractorError(f"RVPS message lacks {member!r}")
    value = data[member]
    if not isinstance(value, str):
        raise ExtractorError(f"RVPS message {member!r} must be a string")
    return value


def extract(
    message: bytes | str | Mapping[str, object] | Message,
    *,
    now: dt.datetime | None = None,
    extractors: Mapping[str, Extractor] | None = None,
) -> list[ReferenceValue]:
    """The reference values in ``message``, by the extractor its ``type`` names."""
    parsed = message if isinstance(message, Message) else parse_message(message)
    table = EXTRACTORS if extractors is None else extractors
    extractor = table.get(parsed.type)
    if extractor is None:
        raise ExtractorError(f"Could not find extractor for {parsed.type}")
    when = dt.datetime.now(dt.UTC) if now is None else now
    return extractor(parsed.payload, when)


def sample_extractor(payload: str, now: dt.datetime) -> list[ReferenceValue]:
    """Trustee's ``sample`` extractor: base64 (standard, padded) of ``{"name": value, ...}``."""
    try:
        encoded = payload.encode("ascii")
        raw = base64.b64decode(encoded, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise ExtractorError("sample payload is not standard base64") from exc
    if base64.b64encode(raw) != encoded:
        # Rust's STANDARD engine wants canonical padding and zero trailing bits.
        raise ExtractorError("sample payload is not canonical standard base64")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExtractorError("sample payload does not decode to UTF-8 JSON") from exc
    data = _loads(text, "sample payload", unique_keys=False)
    if not isinstance(data, dict):
        raise ExtractorError("sample payload must be a JSON object of name → value")
    expiration = add_months(now, SAMPLE_VALIDITY_MONTHS)
    values: list[ReferenceValue] = []
    for name, value in data.items():
        try:
            values.append(ReferenceValue(name=name, value=value, expiration=expiration))
        except InvalidReferenceValue as exc:
            raise ExtractorError(f"sample payload: {exc}") from exc
    return values


def add_months(when: dt.datetime, months: int) -> dt.datetime:
    """``when`` (as UTC, whole seconds) plus calendar ``months``, the day clamped."""
    utc = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    index = utc.year * 12 + (utc.month - 1) + months
    year, month = divmod(index, 12)
    if not dt.MINYEAR <= year <= dt.MAXYEAR:
        raise ExtractorError("expiration is out of range")
    day = min(utc.day, calendar.monthrange(year, month + 1)[1])
    return utc.replace(year=year, month=month + 1, day=day, microsecond=0)


EXTRACTORS: Mapping[str, Extractor] = {"sample": sample_extractor}


def _loads(text: str, what: str, *, unique_keys: bool) -> JSON:
    hook = _unique_object if unique_keys else None
    try:
        loaded: JSON = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=hook)
    except (ValueError, RecursionError) as exc:
        raise ExtractorError(f"{what} is not valid JSON: {_reason(exc)}") from exc
    return loaded


def _unique_object(pairs: list[tuple[str, JSON]]) -> dict[str, JSON]:
    result: dict[str, JSON] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key[:64]!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> JSON:
    raise ValueError(f"{name} is not JSON")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def _short(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else "?"
    return text if len(text) <= 40 else text[:37] + "..."
