"""``veritee rvps register|list|delete``: manage reference values.

By default the commands work on a store directly (``--store``: a path, or a
``sqlite:///…`` / ``postgresql://…`` URL; default ``$VERITEE_HOME/rvps.db``).
With ``--url`` they talk to a running service's RVPS REST API instead,
sending ``--token`` (or ``$VERITEE_ADMIN_TOKEN``) as a Bearer token.

``list`` shows one page of values by name (``--limit``, default 100, at most
1000); when more remain it prints on stderr the ``--page-token`` that lists the
next page.

Exit codes: 0 done, 1 failed (rejected value or message, unknown name,
unreachable store or service), 2 usage (conflicting or missing options,
an unreadable file, a ``--value`` that is not JSON).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from contextlib import closing
from pathlib import Path
from typing import Annotated, Protocol
from urllib.parse import quote, urlencode

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from veritee.errors import VeriteeError
from veritee.paths import veritee_home
from veritee.rvps.api import parse_direct_values
from veritee.rvps.model import JSON, ReferenceValue, format_expiration
from veritee.rvps.store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, ReferenceValueStore
from veritee.store.postgres import open_store

__all__ = ["app", "default_store_path"]

app = typer.Typer(
    help="Register, list and delete reference values (Trustee RVPS compatible).",
    no_args_is_help=True,
)

_TIMEOUT_S = 30.0
_VALUE_WIDTH = 60


def default_store_path() -> Path:
    return veritee_home() / "rvps.db"


StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store path or URL (sqlite:///…, postgresql://…) [default: $VERITEE_HOME/rvps.db]",
        show_default=False,
    ),
]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Use a running service's REST API at this base URL instead"),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="VERITEE_ADMIN_TOKEN",
        help="Bearer token for --url [env: VERITEE_ADMIN_TOKEN]",
        show_default=False,
        show_envvar=False,
    ),
]


class _Failure(Exception):
    """A failure to report on stderr with exit code 1."""


class _Backend(Protocol):
    def register_message(self, message: bytes) -> list[str]: ...

    def register_values(self, item: dict[str, JSON]) -> list[str]: ...

    def list(self, include_expired: bool, limit: int, token: str | None) -> Page: ...

    def delete(self, name: str) -> bool: ...

    def close(self) -> None: ...


class _Local:
    def __init__(self, target: str | None, *, create: bool) -> None:
        location: str | Path = default_store_path() if target is None else target
        self.kv = None
        if create or not _missing_file(location):
            self.kv = open_store(location)
        self.store = None if self.kv is None else ReferenceValueStore(self.kv)

    def register_message(self, message: bytes) -> list[str]:
        return [v.name for v in self._store().register_message(message)]

    def register_values(self, item: dict[str, JSON]) -> list[str]:
        return [v.name for v in self._store().register(parse_direct_values(item))]

    def _store(self) -> ReferenceValueStore:
        if self.store is None:
            raise _Failure("no store to register into")
        return self.store

    def list(self, include_expired: bool, limit: int, token: str | None) -> Page:
        if self.store is None:
            return Page([], None)
        return self.store.page(limit=limit, token=token, include_expired=include_expired)

    def delete(self, name: str) -> bool:
        return False if self.store is None else self.store.delete(name)

    def close(self) -> None:
        if self.kv is not None:
            self.kv.close()


class _Remote:
    def __init__(self, url: str, token: str | None) -> None:
        headers = {} if token is None else {"Authorization": f"Bearer {token.strip()}"}
        self.base = url.rstrip("/")
        self.client = httpx.Client(timeout=_TIMEOUT_S, headers=headers)

    def register_message(self, message: bytes) -> list[str]:
        answer = self._call(
            "POST",
            "/rvps/reference-value",
            content=message,
            headers={"Content-Type": "application/json"},
        )
        return _names(answer)

    def register_values(self, item: dict[str, JSON]) -> list[str]:
        return _names(self._call("POST", "/rvps/reference-values", payload=item))

    def list(self, include_expired: bool, limit: int, token: str | None) -> Page:
        params = {"limit": str(limit)}
        if token is not None:
            params["page_token"] = token
        if include_expired:
            params["include_expired"] = "true"
        answer = self._call("GET", "/rvps/reference-values?" + urlencode(params))
        if isinstance(answer, list):  # a service from before paging: every value
            answer = {"reference_values": answer, "next_page_token": None}
        items = answer.get("reference_values") if isinstance(answer, dict) else None
        following = answer.get("next_page_token") if isinstance(answer, dict) else None
        if not isinstance(items, list) or not isinstance(following, str | None):
            raise _Failure(f"{self.base}: unexpected answer to the list request")
        try:
            return Page([ReferenceValue.from_json(item) for item in items], following)
        except VeriteeError as exc:
            raise _Failure(f"{self.base}: {exc}") from exc

    def delete(self, name: str) -> bool:
        try:
            self._call("DELETE", f"/rvps/reference-value/{quote(name, safe='')}")
        except _NotFound:
            return False
        return True

    def close(self) -> None:
        self.client.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        payload: JSON = None,
        headers: dict[str, str] | None = None,
    ) -> JSON:
        url = self.base + path
        try:
            response = self.client.request(
                method, url, content=content, json=payload, headers=headers
            )
        except httpx.HTTPError as exc:
            raise _Failure(f"{method} {url}: {exc or type(exc).__name__}") from exc
        try:
            answer: JSON = response.json()
        except ValueError:
            answer = None
        if response.status_code == 404 and isinstance(answer, dict) and "type" in answer:
            raise _NotFound(str(answer.get("detail", "not found")))
        if response.is_error:
            if isinstance(answer, dict) and "detail" in answer:
                detail = answer["detail"]
                text = detail if isinstance(detail, str) else json.dumps(detail)
            else:
                text = response.text[:200] or response.reason_phrase
            raise _Failure(f"{method} {url}: HTTP {response.status_code}: {text}")
        return answer


class _NotFound(_Failure):
    pass


def _names(answer: JSON) -> list[str]:
    names = answer.get("registered") if isinstance(answer, dict) else None
    if not isinstance(names, list):
        raise _Failure("unexpected answer to the register request")
    return [str(name) for name in names]


def _missing_file(location: str | Path) -> bool:
    """Whether ``location`` is a plain path (not a URL) to no existing file."""
    if isinstance(location, str) and "://" in location:
        return False
    return not Path(location).expanduser().exists()


def _backend(store: str | None, url: str | None, token: str | None, *, create: bool) -> _Backend:
    if url is not None and store is not None:
        raise typer.BadParameter("give either --store or --url, not both", param_hint="--url")
    if token is not None and url is None:
        raise typer.BadParameter("--token only goes with --url", param_hint="--token")
    if url is not None:
        return _Remote(url, token)
    return _Local(store, create=create)


def _run_failing(err: Console, exc: BaseException) -> typer.Exit:
    err.print(f"error: {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(1)


@app.command()
def register(
    message: Annotated[
        Path | None,
        typer.Option(
            "--message",
            help="A Trustee RVPS message JSON file ('-' for stdin)",
            show_default=False,
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Reference value name")] = None,
    value: Annotated[
        str | None,
        typer.Option("--value", help="The value, as JSON (e.g. '[\"1\"]', '\"text\"', '3')"),
    ] = None,
    expiration: Annotated[
        str | None,
        typer.Option(
            "--expiration", help="ISO 8601 expiration (UTC if no offset) [default: in 12 months]"
        ),
    ] = None,
    store: StoreOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Register reference values from a Trustee message, or one --name/--value pair."""
    err = Console(stderr=True, highlight=False)
    direct = name is not None or value is not None or expiration is not None
    if message is not None and direct:
        raise typer.BadParameter("give --message or --name/--value, not both")
    if message is None and (name is None or value is None):
        raise typer.BadParameter("give --message FILE, or --name and --value")
    item: dict[str, JSON] = {}
    body = b""
    if message is not None:
        body = _read_message(message)
    else:
        item = {"name": name or "", "value": _parse_value(value or "")}
        if expiration is not None:
            item["expiration"] = expiration
    try:
        backend = _backend(store, url, token, create=True)
        with closing(backend):
            names = (
                backend.register_message(body)
                if message is not None
                else backend.register_values(item)
            )
    except (VeriteeError, _Failure) as exc:
        raise _run_failing(err, exc) from exc
    out = Console(highlight=False)
    listed = ", ".join(names) if names else "none"
    out.print(f"registered {len(names)} reference value(s): {escape(listed)}", soft_wrap=True)


@app.command(name="list")
def list_values(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    include_all: Annotated[
        bool, typer.Option("--all", help="Include expired values (never served)")
    ] = False,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=1, max=MAX_PAGE_SIZE, help=f"Values per page (at most {MAX_PAGE_SIZE})"
        ),
    ] = DEFAULT_PAGE_SIZE,
    page_token: Annotated[
        str | None,
        typer.Option(
            "--page-token", help="List the page after the one that printed this token",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List reference values by name, one page at a time: name, value, expiration and state."""
    err = Console(stderr=True, highlight=False)
    try:
        backend = _backend(store, url, token, create=False)
        with closing(backend):
            page = backend.list(include_all, limit, page_token)
    except (VeriteeError, _Failure) as exc:
        raise _run_failing(err, exc) from exc
    values = page.values
    if page.next_token is not None:
        err.print(
            f"more values: list the next page with --page-token {escape(page.next_token)}",
            soft_wrap=True,
        )
    if as_json:
        typer.echo(json.dumps([v.to_json() for v in values], indent=2, ensure_ascii=False))
        return
    out = Console(highlight=False)
    if not values:
        out.print("no reference values")
        return
    now = dt.datetime.now(dt.UTC)
    table = Table()
    table.add_column("name", overflow="fold")
    table.add_column("value", overflow="fold")
    table.add_column("expiration", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for item in values:
        text = json.dumps(item.value, separators=(",", ":"), ensure_ascii=False)
        if len(text) > _VALUE_WIDTH:
            text = text[: _VALUE_WIDTH - 1] + "…"
        expired = item.expired(now)
        state = "[red]expired[/red]" if expired else "[green]valid[/green]"
        table.add_row(escape(item.name), escape(text), format_expiration(item.expiration), state)
    out.print(table)


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Reference value name", show_default=False)],
    store: StoreOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete the reference value NAME."""
    err = Console(stderr=True, highlight=False)
    try:
        backend = _backend(store, url, token, create=False)
        with closing(backend):
            removed = backend.delete(name)
    except (VeriteeError, _Failure) as exc:
        raise _run_failing(err, exc) from exc
    if not removed:
        err.print(f"error: no reference value named {escape(name)!r}", soft_wrap=True)
        raise typer.Exit(1)
    Console(highlight=False).print(f"deleted {escape(name)}", soft_wrap=True)


def _read_message(path: Path) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {path}: {exc.strerror}", param_hint="--message"
        ) from exc


def _parse_value(text: str) -> JSON:
    try:
        parsed: JSON = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(
            "not JSON; quote a string as '\"text\"' or give a list like '[\"1\"]'",
            param_hint="--value",
        ) from exc
    return parsed
