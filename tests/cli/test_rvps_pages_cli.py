"""``veritee rvps list`` one page at a time: on a store file and against a live service."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi import FastAPI, HTTPException, Request
from live_server import serve_app
from typer.testing import CliRunner

from veritee.cli.rvps import app
from veritee.rvps.api import rvps_router
from veritee.rvps.model import ReferenceValue
from veritee.rvps.store import ReferenceValueStore
from veritee.store.kv import MemoryStore, SqliteStore

TOKEN = "admin-token"
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
NAMES = [f"rv/{i:03d}" for i in range(7)]


def cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(app, name="rvps")

    @root.callback()
    def main() -> None:
        """Root command (a group, so that 'rvps' is a subcommand)."""

    return root


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("VERITEE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    return CliRunner()


def authorize(request: Request) -> None:
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        raise HTTPException(status_code=401, detail="admin access denied")


def fill(store: ReferenceValueStore) -> None:
    store.register([ReferenceValue(name=n, value=[n], expiration=LATER) for n in NAMES])


@pytest.fixture
def local(tmp_path: Path) -> list[str]:
    with SqliteStore(tmp_path / "rv.db") as kv:
        fill(ReferenceValueStore(kv))
    return ["--store", str(tmp_path / "rv.db")]


@pytest.fixture
def remote() -> Iterator[list[str]]:
    store = ReferenceValueStore(MemoryStore())
    fill(store)
    service = FastAPI()
    service.include_router(rvps_router(store, authorize=authorize))
    with serve_app(service) as url:
        yield ["--url", url, "--token", TOKEN]


@pytest.fixture(params=["local", "remote"])
def target(request: pytest.FixtureRequest) -> list[str]:
    found: list[str] = request.getfixturevalue(request.param)
    return found


def pages(runner: CliRunner, target: list[str], limit: str) -> list[list[str]]:
    out: list[list[str]] = []
    extra: list[str] = []
    while True:
        result = runner.invoke(cli(), ["rvps", "list", "--json", "--limit", limit, *extra, *target])
        assert result.exit_code == 0, result.output
        out.append([item["name"] for item in json.loads(result.stdout)])
        hint = re.search(r"--page-token (\S+)", result.stderr)
        if hint is None:
            return out
        extra = ["--page-token", hint.group(1)]


def test_list_walks_pages(runner: CliRunner, target: list[str]) -> None:
    assert pages(runner, target, "3") == [NAMES[:3], NAMES[3:6], NAMES[6:]]
    assert pages(runner, target, "7") == [NAMES]
    assert pages(runner, target, "1000") == [NAMES]


def test_table_shows_one_page(runner: CliRunner, target: list[str]) -> None:
    result = runner.invoke(cli(), ["rvps", "list", "--limit", "2", *target])
    assert result.exit_code == 0, result.output
    assert "rv/001" in result.stdout
    assert "rv/002" not in result.stdout
    assert "more values: list the next page with --page-token" in result.stderr


def test_bad_page_token_fails_clearly(runner: CliRunner, target: list[str]) -> None:
    result = runner.invoke(cli(), ["rvps", "list", "--page-token", "@@", *target])
    assert result.exit_code == 1
    assert "invalid page token" in result.stderr


@pytest.mark.parametrize("limit", ["0", "1001"])
def test_limit_out_of_range_is_a_usage_error(runner: CliRunner, limit: str) -> None:
    result = runner.invoke(cli(), ["rvps", "list", "--limit", limit])
    assert result.exit_code == 2
