"""Trustee RVPS messages and the sample extractor."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping

import pytest

from veritee.errors import VeriteeError
from veritee.rvps.extractors import (
    Extractor,
    ExtractorError,
    Message,
    add_months,
    extract,
    parse_message,
)
from veritee.rvps.model import ReferenceValue, RvpsError

NOW = dt.datetime(2026, 3, 4, 5, 6, 7, 890_123, tzinfo=dt.UTC)
IN_A_YEAR = dt.datetime(2027, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def sample(payload: object, **extra: object) -> dict[str, object]:
    """A message as kbs-client set-sample-reference-value sends it."""
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    return {"version": "0.1.0", "type": "sample", "payload": encoded, **extra}


def test_kbs_client_sample_message() -> None:
    # kbs-client ... set-sample-reference-value svn 1  →  {"svn": ["1"]}
    message = json.dumps(sample({"svn": ["1"]}))
    assert extract(message, now=NOW) == [
        ReferenceValue(name="svn", value=["1"], expiration=IN_A_YEAR)
    ]


def test_standard_alphabet_payload() -> None:
    for raw in (b'{"a":"??>"}', b'{"?":1}'):  # base64 with "+" and "/"
        message = {"type": "sample", "payload": b64(raw)}
        assert [v.value for v in extract(message, now=NOW)] == list(json.loads(raw).values())


def test_every_member_becomes_a_value_of_any_json() -> None:
    payload = {"a": ["x", "y"], "b": 3, "c": True, "d": {"k": [1, 2]}, "rvps:///ns/x:tag": "s"}
    values = extract(sample(payload), now=NOW)
    assert {v.name: v.value for v in values} == payload
    assert {v.expiration for v in values} == {IN_A_YEAR}
    assert {v.version for v in values} == {"0.1.0"}


def test_message_forms_text_bytes_and_mapping() -> None:
    message = sample({"svn": ["1"]})
    text = json.dumps(message)
    for form in (text, text.encode(), message):
        assert [v.name for v in extract(form, now=NOW)] == ["svn"]


def test_version_defaults_when_absent_and_extra_members_are_ignored() -> None:
    message = sample({"svn": ["1"]})
    del message["version"]
    message["provenance"] = "ignored, as serde ignores unknown fields"
    assert parse_message(message).version == "0.1.0"
    assert [v.name for v in extract(message, now=NOW)] == ["svn"]


def test_parse_message() -> None:
    parsed = parse_message('{"version":"0.1.0","type":"t","payload":"p"}')
    assert parsed == Message(type="t", payload="p", version="0.1.0")


def test_empty_object_gives_no_values() -> None:
    assert extract(sample({}), now=NOW) == []


def test_expiration_is_twelve_calendar_months_whole_seconds() -> None:
    assert add_months(NOW, 12) == IN_A_YEAR
    leap = dt.datetime(2028, 2, 29, 23, 59, 59, 999_999, tzinfo=dt.UTC)
    assert add_months(leap, 12) == dt.datetime(2029, 2, 28, 23, 59, 59, tzinfo=dt.UTC)
    assert add_months(dt.datetime(2026, 1, 31), 1) == dt.datetime(2026, 2, 28, tzinfo=dt.UTC)
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert add_months(dt.datetime(2026, 1, 1, 1, tzinfo=plus2), 12) == dt.datetime(
        2026, 12, 31, 23, tzinfo=dt.UTC
    )
    with pytest.raises(ExtractorError, match="range"):
        add_months(dt.datetime(9999, 6, 1), 12)


def test_default_now_is_the_current_time() -> None:
    before = add_months(dt.datetime.now(dt.UTC), 12)
    (value,) = extract(sample({"svn": 1}))
    after = add_months(dt.datetime.now(dt.UTC), 12)
    assert before <= value.expiration <= after
    assert value.expiration.microsecond == 0


def test_unknown_extractor() -> None:
    for kind in ("swid", "corim", "in-toto", "", "Sample"):
        with pytest.raises(ExtractorError) as caught:
            extract({"type": kind, "payload": ""})
        assert str(caught.value) == f"Could not find extractor for {kind}"


def test_custom_extractor_table() -> None:
    def constant(payload: str, now: dt.datetime) -> list[ReferenceValue]:
        return [ReferenceValue(name=payload, value=1, expiration=now)]

    table: Mapping[str, Extractor] = {"const": constant}
    values = extract({"type": "const", "payload": "x"}, now=NOW, extractors=table)
    assert [v.name for v in values] == ["x"]
    with pytest.raises(ExtractorError, match="Could not find extractor for sample"):
        extract(sample({}), extractors={})


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


MALFORMED: list[tuple[object, str]] = [
    (b"\xff\xfe", "not UTF-8"),
    ("", "not valid JSON"),
    ("{", "not valid JSON"),
    ("[1]", "must be a JSON object"),
    ('"text"', "must be a JSON object"),
    ("null", "must be a JSON object"),
    ('{"type": "sample", "payload": "e30=", "payload": "e30="}', "duplicate"),
    ('{"version": "0.1.0", "type": "sample", "payload": NaN}', "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ({"version": "0.2.0", "type": "sample", "payload": "e30="}, "version"),
    ({"version": "0.1", "type": "sample", "payload": "e30="}, "version"),
    ({"version": None, "type": "sample", "payload": "e30="}, "version"),
    ({"version": 0.1, "type": "sample", "payload": "e30="}, "version"),
    ({"payload": "e30="}, "lacks 'type'"),
    ({"type": "sample"}, "lacks 'payload'"),
    ({"type": 1, "payload": "e30="}, "'type' must be a string"),
    ({"type": "sample", "payload": {"svn": ["1"]}}, "'payload' must be a string"),
    ({"type": "sample", "payload": None}, "'payload' must be a string"),
    # payload encodings
    ({"type": "sample", "payload": ""}, "not valid JSON"),
    ({"type": "sample", "payload": "not base64!"}, "not standard base64"),
    ({"type": "sample", "payload": "e30"}, "not standard base64"),  # unpadded
    ({"type": "sample", "payload": "e3 0="}, "not standard base64"),
    ({"type": "sample", "payload": "ü"}, "not standard base64"),
    ({"type": "sample", "payload": b64(b'{"a":"??>"}').replace("+", "-")}, "base64"),  # URL-safe
    ({"type": "sample", "payload": b64(b'{"?":1}').replace("/", "_")}, "base64"),
    ({"type": "sample", "payload": "e31="}, "canonical"),  # non-zero trailing bits
    ({"type": "sample", "payload": b64(b"\xff\xfe{}")}, "UTF-8"),
    ({"type": "sample", "payload": b64("{}".encode("utf-16"))}, "UTF-8"),
    ({"type": "sample", "payload": b64(b"\xef\xbb\xbf{}")}, "not valid JSON"),  # BOM
    ({"type": "sample", "payload": b64(b"[1, 2]")}, "JSON object"),
    ({"type": "sample", "payload": b64(b'"x"')}, "JSON object"),
    ({"type": "sample", "payload": b64(b"not json")}, "not valid JSON"),
    ({"type": "sample", "payload": b64(b'{"a": NaN}')}, "not valid JSON"),
    ({"type": "sample", "payload": b64(b'{"a": Infinity}')}, "not valid JSON"),
    ({"type": "sample", "payload": b64(b'{"a": 1e999}')}, "finite"),
    ({"type": "sample", "payload": b64(b'{"": 1}')}, "name"),
    ({"type": "sample", "payload": b64(b'{"a\\u0000": 1}')}, "NUL"),
    ({"type": "sample", "payload": b64(b'{"a": null}')}, "null"),
    ({"type": "sample", "payload": b64(b'{"\\ud800": 1}')}, "surrogate"),
    ({"type": "sample", "payload": b64(b'{"a": "\\udc00"}')}, "surrogate"),
    ({"type": "sample", "payload": b64(b'{"a": ' + b"[" * 200 + b"]" * 200 + b"}")}, "deeper"),
    ({"type": "sample", "payload": b64(b"[" * 100_000 + b"]" * 100_000)}, "not valid JSON"),
    (12, "JSON text"),
]


@pytest.mark.parametrize(("message", "match"), MALFORMED)
def test_every_malformed_message_is_an_extractor_error(message: object, match: str) -> None:
    with pytest.raises(ExtractorError, match=match):
        extract(message, now=NOW)  # type: ignore[arg-type]


def test_extractor_error_is_a_veritee_error_with_a_stable_type_name() -> None:
    assert issubclass(ExtractorError, RvpsError)
    assert issubclass(ExtractorError, VeriteeError)
    assert ExtractorError.type_name == "ExtractorError"
