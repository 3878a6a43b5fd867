"""Paged listing through the RVPS REST API, over memory, SQLite and PostgreSQL stores."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from fastapi import FastAPI, HTTPException, Request
from live_server import serve_app

from veritee.rvps.api import rvps_router
from veritee.rvps.model import ReferenceValue
from veritee.rvps.store import MAX_PAGE_SIZE, ReferenceValueStore
from veritee.store.kv import KeyValueStore, MemoryStore, SqliteStore
from veritee.store.postgres import PostgresStore

AUTH = {"Authorization": "Bearer t"}
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
PAST = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def authorize(request: Request) -> None:
    if request.headers.get("authorization") != AUTH["Authorization"]:
        raise HTTPException(status_code=401, detail="admin access denied")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyValueStore]:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        with SqliteStore(tmp_path / "rvps.db") as sqlite:
            yield sqlite
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        table = f"rvps_pages_{uuid.uuid4().hex[:16]}"
        with PostgresStore(dsn, table=table) as postgres:
            yield postgres
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(table)))


@pytest.fixture
def rvps(kv: KeyValueStore) -> ReferenceValueStore:
    return ReferenceValueStore(kv)


@pytest.fixture
def client(rvps: ReferenceValueStore) -> Iterator[httpx.Client]:
    app = FastAPI()
    app.include_router(rvps_router(rvps, authorize=authorize))
    with serve_app(app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
        yield http


def values(count: int, prefix: str = "v") -> list[ReferenceValue]:
    return [
        ReferenceValue(name=f"{prefix}{i:05d}", value=[str(i)], expiration=LATER)
        for i in range(count)
    ]


def test_pages_through_every_value(rvps: ReferenceValueStore, client: httpx.Client) -> None:
    rvps.register(values(25))
    seen: list[str] = []
    params: dict[str, str] = {"limit": "10"}
    while True:
        answer = client.get("/rvps/reference-values", params=params)
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"reference_values", "next_page_token"}
        seen += [v["name"] for v in body["reference_values"]]
        if body["next_page_token"] is None:
            break
        params = {"limit": "10", "page_token": body["next_page_token"]}
    assert seen == [v.name for v in values(25)]
    assert [len(p) for p in (seen[:10], seen[10:20], seen[20:])] == [10, 10, 5]
    first = client.get("/rvps/reference-values", params={"limit": "1"}).json()
    assert first["reference_values"][0] == values(1)[0].to_json()


def test_default_page_size_and_token_alone(rvps: ReferenceValueStore, client: httpx.Client) -> None:
    rvps.register(values(150))
    body = client.get("/rvps/reference-values", params={"limit": ""}).json()
    assert len(body["reference_values"]) == 100
    rest = client.get("/rvps/reference-values", params={"page_token": body["next_page_token"]})
    assert [v["name"] for v in rest.json()["reference_values"]] == [
        v.name for v in values(150)[100:]
    ]
    assert rest.json()["next_page_token"] is None


def test_expired_values_in_pages_only_when_asked(
    rvps: ReferenceValueStore, client: httpx.Client
) -> None:
    rvps.register([*values(3), ReferenceValue(name="v00001x", value=1, expiration=PAST)])
    body = client.get("/rvps/reference-values", params={"limit": "10"}).json()
    assert [v["name"] for v in body["reference_values"]] == ["v00000", "v00001", "v00002"]
    body = client.get(
        "/rvps/reference-values", params={"limit": "10", "include_expired": "true"}
    ).json()
    assert len(body["reference_values"]) == 4


def test_unpaged_form_answers_as_before(rvps: ReferenceValueStore, client: httpx.Client) -> None:
    rvps.register(values(5))
    answer = client.get("/rvps/reference-values")
    assert answer.json() == [v.to_json() for v in values(5)]
    assert "x-next-page-token" not in answer.headers
    assert "link" not in answer.headers


def test_unpaged_form_beyond_the_hard_maximum(
    rvps: ReferenceValueStore, client: httpx.Client
) -> None:
    rvps.register(values(MAX_PAGE_SIZE + 5))
    answer = client.get("/rvps/reference-values")
    assert [v["name"] for v in answer.json()] == [v.name for v in values(MAX_PAGE_SIZE)]
    token = answer.headers["x-next-page-token"]
    link, rel = answer.headers["link"].split("; ")
    assert rel == 'rel="next"'
    query = parse_qs(urlsplit(link.strip("<>")).query)
    assert query == {"limit": [str(MAX_PAGE_SIZE)], "page_token": [token]}
    rest = client.get(link.strip("<>")).json()
    assert [v["name"] for v in rest["reference_values"]] == [
        v.name for v in values(MAX_PAGE_SIZE + 5)[MAX_PAGE_SIZE:]
    ]


def test_limit_over_the_maximum_gets_the_largest_page(
    rvps: ReferenceValueStore, client: httpx.Client
) -> None:
    rvps.register(values(MAX_PAGE_SIZE + 1))
    body = client.get("/rvps/reference-values", params={"limit": "999999999"}).json()
    assert len(body["reference_values"]) == MAX_PAGE_SIZE
    assert body["next_page_token"] is not None


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"limit": "0"}, "limit must be a positive integer"),
        ({"limit": "-3"}, "limit must be a positive integer"),
        ({"limit": "ten"}, "limit must be a positive integer"),
        ({"limit": "1" * 5000}, "limit must be a positive integer"),
        ({"page_token": "not a token"}, "invalid page token"),
        ({"page_token": "!!", "limit": "5"}, "invalid page token"),
        ({"page_token": ""}, "invalid page token"),
    ],
)
def test_bad_paging_is_a_clear_400(
    client: httpx.Client, params: dict[str, str], detail: str
) -> None:
    answer = client.get("/rvps/reference-values", params=params)
    assert answer.status_code == 400
    assert answer.json()["type"] == "InvalidPageToken"
    assert detail in answer.json()["detail"]


def test_paged_listing_is_guarded(rvps: ReferenceValueStore, client: httpx.Client) -> None:
    rvps.register(values(2))
    answer = client.get(
        "/rvps/reference-values", params={"limit": "1"}, headers={"Authorization": "Bearer x"}
    )
    assert answer.status_code == 401
