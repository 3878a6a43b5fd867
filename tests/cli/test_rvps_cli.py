"""``veritee rvps register|list|delete`` on a store file and against a live service."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import typer
from fastapi import FastAPI, HTTPException, Request
from live_server import serve_app
from typer.testing import CliRunner, Result

from veritee.cli.rvps import app
from veritee.rvps.api import rvps_router
from veritee.rvps.model import ReferenceValue
from veritee.rvps.store import ReferenceValueStore
from veritee.store.kv import MemoryStore, SqliteStore

TOKEN = "cli-token"


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


def run(runner: CliRunner, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(cli(), ["rvps", *args], input=stdin)


def sample_message(payload: dict[str, object]) -> str:
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    return json.dumps({"version": "0.1.0", "type": "sample", "payload": encoded})


def listed(runner: CliRunner, *args: str) -> list[dict[str, object]]:
    result = run(runner, "list", "--json", *args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, list)
    return data


def test_register_list_delete_on_a_store_file(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "rv.db")
    result = run(
        runner,
        "register",
        "--name",
        "svn",
        "--value",
        '["1"]',
        "--expiration",
        "2099-01-02T03:04:05Z",
        "--store",
        db,
    )
    assert result.exit_code == 0, result.output
    assert "registered 1 reference value(s): svn" in result.stdout
    assert listed(runner, "--store", db) == [
        {"version": "0.1.0", "name": "svn", "expiration": "2099-01-02T03:04:05Z", "value": ["1"]}
    ]
    with SqliteStore(db) as kv:
        assert ReferenceValueStore(kv).get("svn") == ["1"]

    result = run(runner, "delete", "svn", "--store", db)
    assert result.exit_code == 0, result.output
    assert "deleted svn" in result.stdout
    assert listed(runner, "--store", db) == []
    result = run(runner, "delete", "svn", "--store", db)
    assert result.exit_code == 1
    assert "no reference value named 'svn'" in result.stderr


def test_register_trustee_message_file_and_stdin(runner: CliRunner, tmp_path: Path) -> None:
    db = str(tmp_path / "rv.db")
    message = tmp_path / "message.json"
    message.write_text(sample_message({"svn": ["1"], "digest": ["ab", "cd"]}))
    result = run(runner, "register", "--message", str(message), "--store", db)
    assert result.exit_code == 0, result.output
    assert "registered 2 reference value(s): svn, digest" in result.stdout
    result = run(
        runner, "register", "--message", "-", "--store", db, stdin=sample_message({"x": 1})
    )
    assert result.exit_code == 0, result.output
    names = [item["name"] for item in listed(runner, "--store", db)]
    assert names == ["digest", "svn", "x"]
    expiration = dt.datetime.fromisoformat(str(listed(runner, "--store", db)[0]["expiration"]))
    assert 364 <= (expiration - dt.datetime.now(dt.UTC)).days <= 366


def test_default_store_is_in_veritee_home(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run(runner, "list")
    assert result.exit_code == 0, result.output
    assert "no reference values" in result.stdout
    assert not (home / "rvps.db").exists()  # listing does not create the store
    assert run(runner, "delete", "x").exit_code == 1
    assert not (home / "rvps.db").exists()
    result = run(runner, "register", "--name", "a", "--value", "3")
    assert result.exit_code == 0, result.output
    assert (home / "rvps.db").exists()
    assert [item["value"] for item in listed(runner)] == [3]


def test_list_table_and_expired_values(runner: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "rv.db"
    with SqliteStore(db) as kv:
        ReferenceValueStore(kv).register(
            [
                ReferenceValue(name="old", value=["0"], expiration=dt.datetime(2001, 1, 1)),
                ReferenceValue(name="svn", value=["1"], expiration=dt.datetime(2099, 1, 1)),
                ReferenceValue(name="long", value="x" * 500, expiration=dt.datetime(2099, 1, 1)),
            ]
        )
    result = run(runner, "list", "--store", str(db))
    assert result.exit_code == 0, result.output
    for text in ("name", "value", "expiration", "state", "svn", '["1"]', "2099-01-01T00:00:00Z"):
        assert text in result.stdout
    assert "valid" in result.stdout
    assert "old" not in result.stdout
    assert "…" in result.stdout
    assert "x" * 100 not in result.stdout
    result = run(runner, "list", "--all", "--store", str(db))
    assert "old" in result.stdout
    assert "expired" in result.stdout
    assert [i["name"] for i in listed(runner, "--all", "--store", str(db))] == [
        "long",
        "old",
        "svn",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["register"], "--message FILE, or --name and --value"),
        (["register", "--name", "a"], "--message FILE, or --name and --value"),
        (["register", "--value", "1"], "--message FILE, or --name and --value"),
        (["register", "--message", "m.json", "--name", "a", "--value", "1"], "not both"),
        (["register", "--name", "a", "--value", "not json"], "not JSON"),
        (["register", "--message", "/nonexistent/m.json"], "cannot read"),
        (["list", "--store", "x.db", "--url", "http://127.0.0.1:1"], "not both"),
        (["list", "--token", "t"], "--token only goes with --url"),
        (["delete"], "Missing argument"),
        (["list", "--bogus"], "No such option"),
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    result = run(runner, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "a", "--value", "null"], "must not be null"),
        (["--name", "", "--value", "1"], "name"),
        (["--name", "a", "--value", "1", "--expiration", "2001-01-01"], "in the past"),
        (["--name", "a", "--value", "1", "--expiration", "soon"], "expiration"),
    ],
)
def test_rejected_values_exit_1(
    runner: CliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run(runner, "register", *args, "--store", str(tmp_path / "rv.db"))
    assert result.exit_code == 1, result.output
    assert message in result.stderr


def test_rejected_message_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    message = tmp_path / "m.json"
    message.write_text('{"version": "0.1.0", "type": "swid", "payload": ""}')
    result = run(runner, "register", "--message", str(message), "--store", str(tmp_path / "r.db"))
    assert result.exit_code == 1
    assert "error: Could not find extractor for swid" in result.stderr
    message.write_text("not json")
    result = run(runner, "register", "--message", str(message), "--store", str(tmp_path / "r.db"))
    assert result.exit_code == 1
    assert "not valid JSON" in result.stderr


def test_unusable_store_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    result = run(runner, "list", "--store", "mysql://h/db")
    assert result.exit_code == 1
    assert "unsupported store URL scheme" in result.stderr
    result = run(
        runner,
        "register",
        "--name",
        "a",
        "--value",
        "1",
        "--store",
        "postgresql://u:pw@127.0.0.1:1/x",
    )
    assert result.exit_code == 1
    assert "cannot open store postgresql://u:***@127.0.0.1:1/x" in result.stderr
    assert ":pw@" not in result.stderr


def test_postgres_store_url(runner: CliRunner, postgres_dsn: str) -> None:
    # A schema of its own, chosen through the URL: the default table lands there.
    schema = f"cli_test_{uuid.uuid4().hex[:12]}"
    ident = psycopg.sql.Identifier(schema)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(ident))
    url = postgres_dsn + ("&" if "?" in postgres_dsn else "?") + f"options=-csearch_path%3D{schema}"
    try:
        result = run(runner, "register", "--name", "svn", "--value", '["1"]', "--store", url)
        assert result.exit_code == 0, result.output
        assert [i["value"] for i in listed(runner, "--store", url)] == [["1"]]
        assert run(runner, "delete", "svn", "--store", url).exit_code == 0
        assert listed(runner, "--store", url) == []
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            found = conn.execute(
                "SELECT count(*) FROM information_schema.tables"
                " WHERE table_schema = %s AND table_name = 'veritee_kv'",
                (schema,),
            ).fetchone()
        assert found == (1,)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(ident))


# -- against a live service ---------------------------------------------------------


def authorize(request: Request) -> None:
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        raise HTTPException(status_code=401, detail="admin access denied")


@pytest.fixture
def live() -> Iterator[tuple[str, ReferenceValueStore]]:
    store = ReferenceValueStore(MemoryStore())
    service = FastAPI()
    service.include_router(rvps_router(store, authorize=authorize))
    with serve_app(service) as url:
        yield url, store


def test_against_a_live_service(
    runner: CliRunner, live: tuple[str, ReferenceValueStore], tmp_path: Path
) -> None:
    url, store = live
    remote = ["--url", url + "/", "--token", TOKEN]
    message = tmp_path / "m.json"
    message.write_text(sample_message({"svn": ["1"]}))
    result = run(runner, "register", "--message", str(message), *remote)
    assert result.exit_code == 0, result.output
    assert "registered 1 reference value(s): svn" in result.stdout
    result = run(runner, "register", "--name", "rvps:///a/b", "--value", '{"k": 1}', *remote)
    assert result.exit_code == 0, result.output
    assert store.get("rvps:///a/b") == {"k": 1}
    assert store.get("svn") == ["1"]
    assert [i["name"] for i in listed(runner, *remote)] == ["rvps:///a/b", "svn"]
    result = run(runner, "list", *remote)
    assert result.exit_code == 0, result.output
    assert "rvps:///a/b" in result.stdout
    result = run(runner, "delete", "rvps:///a/b", *remote)
    assert result.exit_code == 0, result.output
    assert store.get("rvps:///a/b") is None
    result = run(runner, "delete", "rvps:///a/b", *remote)
    assert result.exit_code == 1
    assert "no reference value named" in result.stderr


def test_live_service_expired_values_with_all(
    runner: CliRunner, live: tuple[str, ReferenceValueStore]
) -> None:
    url, store = live
    store.register([ReferenceValue(name="old", value=1, expiration=dt.datetime(2001, 1, 1))])
    assert listed(runner, "--url", url, "--token", TOKEN) == []
    assert [i["name"] for i in listed(runner, "--all", "--url", url, "--token", TOKEN)] == ["old"]


def test_token_from_the_environment(
    runner: CliRunner, live: tuple[str, ReferenceValueStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, store = live
    monkeypatch.setenv("VERITEE_ADMIN_TOKEN", TOKEN)
    result = run(runner, "register", "--name", "a", "--value", "1", "--url", url)
    assert result.exit_code == 0, result.output
    assert store.get("a") == 1


def test_live_service_errors_exit_1(
    runner: CliRunner, live: tuple[str, ReferenceValueStore], tmp_path: Path
) -> None:
    url, store = live
    result = run(runner, "register", "--name", "a", "--value", "1", "--url", url, "--token", "bad")
    assert result.exit_code == 1
    assert "HTTP 401: admin access denied" in result.stderr
    assert run(runner, "list", "--url", url).exit_code == 1
    message = tmp_path / "m.json"
    message.write_text('{"type": "corim", "payload": ""}')
    result = run(runner, "register", "--message", str(message), "--url", url, "--token", TOKEN)
    assert result.exit_code == 1
    assert "HTTP 400: Could not find extractor for corim" in result.stderr
    result = run(
        runner, "register", "--name", "a", "--value", "1", "--expiration", "2000-01-01",
        "--url", url, "--token", TOKEN,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "in the past" in result.stderr
    assert store.list(include_expired=True) == []


def test_unreachable_service_exits_1(runner: CliRunner) -> None:
    result = run(runner, "list", "--url", "http://127.0.0.1:1", "--token", TOKEN)
    assert result.exit_code == 1
    assert "GET http://127.0.0.1:1/rvps/reference-values" in result.stderr
