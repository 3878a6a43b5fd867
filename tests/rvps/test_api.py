"""The RVPS REST API, served by a real uvicorn on loopback and called with httpx."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import psycopg
import pytest
from fastapi import FastAPI, HTTPException, Request
from live_server import serve_app

from veritee.errors import VeriteeError
from veritee.rvps.api import parse_direct_values, rvps_router
from veritee.rvps.model import InvalidReferenceValue, ReferenceValue
from veritee.rvps.store import ReferenceValueStore
from veritee.store.kv import Entry, MemoryStore
from veritee.store.postgres import PostgresStore

TOKEN = "good-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def authorize(request: Request) -> None:
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        raise HTTPException(status_code=401, detail="admin access denied")


def make_app(store: ReferenceValueStore, **options: object) -> FastAPI:
    app = FastAPI()
    app.include_router(rvps_router(store, authorize=authorize, **options))  # type: ignore[arg-type]
    return app


@dataclass
class Service:
    store: ReferenceValueStore
    client: httpx.Client


@pytest.fixture
def service() -> Iterator[Service]:
    store = ReferenceValueStore(MemoryStore())
    with (
        serve_app(make_app(store, max_body_bytes=64 * 1024)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        yield Service(store, client)


def sample_message(payload: Mapping[str, object]) -> dict[str, str]:
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    return {"version": "0.1.0", "type": "sample", "payload": encoded}


def future(days: int = 30) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=days)


def test_register_trustee_message_and_query(service: Service) -> None:
    body = json.dumps(sample_message({"svn": ["1"], "launch_digest": ["abc"]}))
    response = service.client.post("/rvps/reference-value", content=body, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"registered": ["svn", "launch_digest"]}
    got = service.client.get("/rvps/reference-value/svn", headers=AUTH)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.json() == ["1"]
    assert service.store.get("launch_digest") == ["abc"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "not valid JSON"),
        (b"\xff", "not UTF-8"),
        (b"[]", "must be a JSON object"),
        (b'{"type": "swid", "payload": ""}', "Could not find extractor for swid"),
        (b'{"version": "0.2.0", "type": "sample", "payload": "e30="}', "version"),
        (b'{"type": "sample", "payload": "%%%"}', "base64"),
        (b'{"type": "sample"}', "lacks 'payload'"),
    ],
)
def test_malformed_message_is_400(service: Service, body: bytes, detail: str) -> None:
    response = service.client.post("/rvps/reference-value", content=body, headers=AUTH)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "ExtractorError"
    assert detail in error["detail"]
    assert service.store.list(include_expired=True) == []


def test_register_direct_form(service: Service) -> None:
    one = {"name": "svn", "value": ["1"], "expiration": "2099-01-02T03:04:05Z"}
    response = service.client.post("/rvps/reference-values", json=one, headers=AUTH)
    assert (response.status_code, response.json()) == (200, {"registered": ["svn"]})
    many = [{"name": "a", "value": 1}, {"name": "b", "value": {"x": True}, "version": "0.1.0"}]
    response = service.client.post("/rvps/reference-values", json=many, headers=AUTH)
    assert response.json() == {"registered": ["a", "b"]}
    listed = service.client.get("/rvps/reference-values", headers=AUTH).json()
    assert listed[2] == {
        "version": "0.1.0",
        "name": "svn",
        "expiration": "2099-01-02T03:04:05Z",
        "value": ["1"],
    }
    assert [item["name"] for item in listed] == ["a", "b", "svn"]
    # No expiration: twelve months, as Trustee's sample extractor.
    stored = service.store.get_reference_value("a")
    assert stored is not None
    assert 364 <= (stored.expiration - dt.datetime.now(dt.UTC)).days <= 366
    # The list output can be posted back as it is.
    response = service.client.post("/rvps/reference-values", json=listed, headers=AUTH)
    assert response.json() == {"registered": ["a", "b", "svn"]}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"value": 1}, '"name" and "value"'),
        ({"name": "a"}, '"name" and "value"'),
        ({"name": "a", "value": None}, "null"),
        ({"name": "", "value": 1}, "name"),
        ({"name": 3, "value": 1}, "name must be a string"),
        ({"name": "a", "value": 1, "extra": 2}, "unknown member(s) extra"),
        ({"name": "a", "value": 1, "expiration": "2001-01-01T00:00:00Z"}, "in the past"),
        ({"name": "a", "value": 1, "expiration": "someday"}, "expiration"),
        ({"name": "a", "value": 1, "version": 2}, "version"),
        ([{"name": "ok", "value": 1}, "not an object"], "is an object"),
        ("text", "is an object"),
    ],
)
def test_malformed_direct_form_is_400(service: Service, body: object, detail: str) -> None:
    response = service.client.post("/rvps/reference-values", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["type"] == "InvalidReferenceValue"
    assert detail in response.json()["detail"]
    assert service.store.list(include_expired=True) == []


def test_direct_form_that_is_not_json_is_400(service: Service) -> None:
    for body in (b"{", b"NaN", b""):
        response = service.client.post("/rvps/reference-values", content=body, headers=AUTH)
        assert response.status_code == 400
        assert response.json() == {
            "type": "InvalidReferenceValue",
            "detail": "body is not valid JSON",
        }


def test_unknown_and_expired_are_404(service: Service) -> None:
    service.store.register(
        [ReferenceValue(name="old", value=1, expiration=dt.datetime(2001, 1, 1, tzinfo=dt.UTC))]
    )
    for name in ("unknown", "old"):
        response = service.client.get(f"/rvps/reference-value/{name}", headers=AUTH)
        assert response.status_code == 404
        assert response.json() == {
            "type": "ReferenceValueNotFound",
            "detail": f"no reference value named '{name}'",
        }
    assert service.client.get("/rvps/reference-values", headers=AUTH).json() == []
    everything = service.client.get(
        "/rvps/reference-values", params={"include_expired": "true"}, headers=AUTH
    ).json()
    assert everything == [
        {"version": "0.1.0", "name": "old", "expiration": "2001-01-01T00:00:00Z", "value": 1}
    ]


def test_names_with_slashes_and_odd_characters(service: Service) -> None:
    names = ["rvps:///ns/sub/x:tag", "a b", "ü/😀", "50%", "q?x=1#f"]
    service.store.register([ReferenceValue(name=n, value=n, expiration=future()) for n in names])
    for name in names:
        for safe in ("", "/:"):  # "/" escaped as %2F, or left as it is
            url = "/rvps/reference-value/" + quote(name, safe=safe)
            response = service.client.get(url, headers=AUTH)
            assert (response.status_code, response.json()) == (200, name), url
    response = service.client.delete("/rvps/reference-value/rvps:///ns/sub/x:tag", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"deleted": "rvps:///ns/sub/x:tag"}


def test_delete(service: Service) -> None:
    service.store.register([ReferenceValue(name="a", value=1, expiration=future())])
    response = service.client.delete("/rvps/reference-value/a", headers=AUTH)
    assert (response.status_code, response.json()) == (200, {"deleted": "a"})
    assert service.store.get("a") is None
    response = service.client.delete("/rvps/reference-value/a", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["type"] == "ReferenceValueNotFound"


def test_every_route_calls_authorize(service: Service) -> None:
    service.store.register([ReferenceValue(name="a", value=1, expiration=future())])
    message = json.dumps(sample_message({"b": 2}))
    calls = [
        ("POST", "/rvps/reference-value", message),
        ("POST", "/rvps/reference-values", '{"name": "b", "value": 2}'),
        ("DELETE", "/rvps/reference-value/a", None),
        ("GET", "/rvps/reference-value/a", None),
        ("GET", "/rvps/reference-values", None),
    ]
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        for method, path, body in calls:
            response = service.client.request(method, path, content=body, headers=headers)
            assert response.status_code == 401, (method, path)
    assert [v.name for v in service.store.list()] == ["a"]


def test_reads_can_be_left_open() -> None:
    store = ReferenceValueStore(MemoryStore())
    store.register([ReferenceValue(name="a", value=[1], expiration=future())])
    with (
        serve_app(make_app(store, protect_reads=False)) as url,
        httpx.Client(base_url=url) as client,
    ):
        assert client.get("/rvps/reference-value/a").json() == [1]
        assert [v["name"] for v in client.get("/rvps/reference-values").json()] == ["a"]
        assert client.delete("/rvps/reference-value/a").status_code == 401
        assert (
            client.post("/rvps/reference-values", json={"name": "b", "value": 1}).status_code == 401
        )


def test_body_over_the_limit_is_413(service: Service) -> None:
    big = json.dumps(sample_message({"a": "x" * 100_000}))
    for path in ("/rvps/reference-value", "/rvps/reference-values"):
        response = service.client.post(path, content=big, headers=AUTH)
        assert response.status_code == 413
        assert response.json()["type"] == "PayloadTooLarge"


class BrokenStore(MemoryStore):
    def items(self, namespace: str) -> list[Entry]:
        if namespace == "reference_value":
            raise VeriteeError("store postgresql://u:***@db/x: connection lost")
        return super().items(namespace)

    def items_page(self, namespace: str, *, after: str | None = None, limit: int) -> list[Entry]:
        if namespace == "reference_value":
            raise VeriteeError("store postgresql://u:***@db/x: connection lost")
        return super().items_page(namespace, after=after, limit=limit)

    def get(self, namespace: str, key: str) -> Entry | None:
        raise VeriteeError("store postgresql://u:***@db/x: connection lost")


def test_storage_failure_is_500() -> None:
    store = ReferenceValueStore(BrokenStore())
    with serve_app(make_app(store)) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        for response in (
            client.get("/rvps/reference-value/a"),
            client.get("/rvps/reference-values"),
        ):
            assert response.status_code == 500
            assert response.json() == {
                "type": "StorageError",
                "detail": "store postgresql://u:***@db/x: connection lost",
            }


def test_against_a_postgres_store(postgres_dsn: str) -> None:
    try:
        kv = PostgresStore(postgres_dsn, table=f"rvps_api_{uuid.uuid4().hex[:12]}")
    except VeriteeError as exc:
        pytest.fail(str(exc))
    try:
        store = ReferenceValueStore(kv)
        with serve_app(make_app(store)) as url, httpx.Client(base_url=url, headers=AUTH) as client:
            body = json.dumps(sample_message({"svn": ["1"]}))
            assert client.post("/rvps/reference-value", content=body).status_code == 200
            assert client.get("/rvps/reference-value/svn").json() == ["1"]
            assert client.delete("/rvps/reference-value/svn").status_code == 200
            assert client.get("/rvps/reference-value/svn").status_code == 404
    finally:
        kv.close()
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(kv.table)))


def test_parse_direct_values() -> None:
    now = dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC)
    (value,) = parse_direct_values({"name": "a", "value": 1}, now=now)
    assert value.expiration == dt.datetime(2027, 1, 31, 12, tzinfo=dt.UTC)
    (value,) = parse_direct_values(
        b'{"name": "a", "value": 1, "expiration": "2026-02-01"}', now=now
    )
    assert value.expiration == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    assert parse_direct_values("[]", now=now) == []
    with pytest.raises(InvalidReferenceValue):
        parse_direct_values('{"name": "a", "value": NaN}', now=now)
