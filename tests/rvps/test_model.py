"""ReferenceValue and Trustee's stored JSON form, both ways."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from veritee.errors import VeriteeError
from veritee.rvps.model import (
    InvalidReferenceValue,
    ReferenceValue,
    RvpsError,
    format_expiration,
    parse_expiration,
)

# The example of Trustee's digest (§i), byte for byte.
TRUSTEE = (
    '{"version": "0.1.0", "name": "svn", "expiration": "2027-08-21T10:00:00Z", "value": ["1"]}'
)
EXPIRES = dt.datetime(2027, 8, 21, 10, 0, 0, tzinfo=dt.UTC)


def test_parses_trustee_stored_form() -> None:
    value = ReferenceValue.loads(TRUSTEE)
    assert value == ReferenceValue(name="svn", value=["1"], expiration=EXPIRES)
    assert value.version == "0.1.0"


def test_serialises_to_trustee_stored_form() -> None:
    value = ReferenceValue(name="svn", value=["1"], expiration=EXPIRES)
    assert value.to_json() == json.loads(TRUSTEE)
    assert list(value.to_json()) == ["version", "name", "expiration", "value"]
    assert json.loads(value.dumps()) == json.loads(TRUSTEE)
    assert ReferenceValue.loads(value.dumps()) == value


@pytest.mark.parametrize(
    "payload",
    [["1"], "text", 3, 2.5, True, False, {"a": [1, {"b": None}]}, [], {}, "ü😀"],
)
def test_any_json_value_round_trips(payload: object) -> None:
    value = ReferenceValue(name="n", value=payload, expiration=EXPIRES)  # type: ignore[arg-type]
    assert ReferenceValue.loads(value.dumps()).value == payload


def test_expiration_is_utc_whole_seconds() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    value = ReferenceValue(
        name="n", value=1, expiration=dt.datetime(2027, 8, 21, 12, 0, 0, 999_999, tzinfo=plus2)
    )
    assert value.expiration == EXPIRES
    assert value.to_json()["expiration"] == "2027-08-21T10:00:00Z"
    naive = ReferenceValue(name="n", value=1, expiration=dt.datetime(2027, 8, 21, 10))
    assert naive.expiration == EXPIRES


def test_expired_is_after_the_expiration() -> None:
    value = ReferenceValue(name="n", value=1, expiration=EXPIRES)
    assert not value.expired(EXPIRES - dt.timedelta(seconds=1))
    assert not value.expired(EXPIRES)
    assert value.expired(EXPIRES + dt.timedelta(seconds=1))
    assert value.expired(dt.datetime(2027, 8, 21, 10, 0, 1))  # naive = UTC
    assert not ReferenceValue(name="n", value=1, expiration=dt.datetime(9999, 1, 1)).expired()


def test_version_defaults_and_is_kept() -> None:
    data = {"name": "n", "expiration": "2027-08-21T10:00:00Z", "value": 1}
    assert ReferenceValue.from_json(data).version == "0.1.0"
    other = ReferenceValue.from_json({**data, "version": "0.2.0"})
    assert other.version == "0.2.0"
    assert other.to_json()["version"] == "0.2.0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-08-21T10:00:00Z", EXPIRES),
        ("2027-08-21T10:00:00+00:00", EXPIRES),
        ("2027-08-21T12:00:00+02:00", EXPIRES),
        ("2027-08-21T10:00:00", EXPIRES),
        ("2027-08-21T10:00:00.75Z", EXPIRES),
        ("2027-08-21", dt.datetime(2027, 8, 21, tzinfo=dt.UTC)),
    ],
)
def test_parse_expiration(text: str, expected: dt.datetime) -> None:
    assert parse_expiration(text) == expected


@pytest.mark.parametrize("text", ["", "tomorrow", "2027-13-01T00:00:00Z", "2027-02-30T00:00:00Z"])
def test_bad_expiration(text: str) -> None:
    with pytest.raises(InvalidReferenceValue, match="expiration"):
        parse_expiration(text)


def test_format_expiration_pads_years() -> None:
    assert format_expiration(dt.datetime(999, 1, 2, 3, 4, 5)) == "0999-01-02T03:04:05Z"
    assert parse_expiration("0999-01-02T03:04:05Z") == dt.datetime(
        999, 1, 2, 3, 4, 5, tzinfo=dt.UTC
    )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([], "JSON object"),
        ("x", "JSON object"),
        ({"expiration": "2027-08-21T10:00:00Z", "value": 1}, "lacks name"),
        ({"name": "n", "value": 1}, "lacks expiration"),
        ({"name": "n", "expiration": "2027-08-21T10:00:00Z"}, "lacks value"),
        ({"name": 1, "expiration": "2027-08-21T10:00:00Z", "value": 1}, "name"),
        ({"name": "", "expiration": "2027-08-21T10:00:00Z", "value": 1}, "name"),
        ({"name": "a\x00b", "expiration": "2027-08-21T10:00:00Z", "value": 1}, "NUL"),
        ({"name": "\ud800", "expiration": "2027-08-21T10:00:00Z", "value": 1}, "surrogate"),
        ({"name": "n", "expiration": 5, "value": 1}, "expiration must be a string"),
        ({"name": "n", "expiration": "2027-08-21T10:00:00Z", "value": None}, "null"),
        ({"name": "n", "expiration": "2027-08-21T10:00:00Z", "value": float("nan")}, "finite"),
        ({"name": "n", "expiration": "2027-08-21T10:00:00Z", "value": {1: 2}}, "non-string"),
        ({"name": "n", "expiration": "2027-08-21T10:00:00Z", "value": b"x"}, "not JSON"),
        ({"name": "n", "expiration": "2027-08-21T10:00:00Z", "value": ["\udc80"]}, "surrogate"),
        ({"name": "n", "expiration": "2027-08-21T10:00:00Z", "value": 1, "version": 1}, "version"),
    ],
)
def test_malformed_stored_form(data: object, match: str) -> None:
    with pytest.raises(InvalidReferenceValue, match=match):
        ReferenceValue.from_json(data)


def test_too_deep_value_is_refused() -> None:
    deep: object = 1
    for _ in range(200):
        deep = [deep]
    with pytest.raises(InvalidReferenceValue, match="deeper"):
        ReferenceValue(name="n", value=deep, expiration=EXPIRES)  # type: ignore[arg-type]
    with pytest.raises(InvalidReferenceValue, match="not JSON"):
        ReferenceValue.loads("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("text", ["", "{", "NaN", b"\xff\xfe", '{"a": Infinity}'])
def test_loads_refuses_non_json(text: str | bytes) -> None:
    with pytest.raises(InvalidReferenceValue):
        ReferenceValue.loads(text)


def test_errors_are_veritee_errors_with_stable_type_names() -> None:
    assert issubclass(InvalidReferenceValue, RvpsError)
    assert issubclass(RvpsError, VeriteeError)
    assert InvalidReferenceValue.type_name == "InvalidReferenceValue"
