"""``veritee token``: check an EAR attestation token and show what it says."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from veritee.token.ear import EMULATED, STATUS, TRUST_CLAIMS, TRUST_VECTOR, VERIFIER_ID, tier
from veritee.token.verify import DEFAULT_LEEWAY, JwksError, TokenError, load_jwks, verify_token

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
JWKS_ENV = "VERITEE_TOKEN_JWKS"
STDIN_MARK = "-"
TIER_STYLE = {
    "none": "dim",
    "affirming": "green",
    "warning": "yellow",
    "contraindicated": "red",
}

app = typer.Typer(
    help="Verify and show EAR attestation tokens.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _read_token(token: str) -> str:
    """The JWT text: ``-`` reads stdin, an existing file is read, anything else is the JWT."""
    if token == STDIN_MARK:
        return sys.stdin.read().strip()
    path = Path(token)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a JWT is longer than any file name: it is the text
        is_file = False
    if not is_file:
        return token.strip()
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {token}: {exc}", param_hint="TOKEN") from exc


def _usage(message: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"valid": False, "error": message, "claims": None}))
    else:
        Console(stderr=True).print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(EXIT_USAGE)


@app.command()
def verify(
    token: Annotated[str, typer.Argument(help="The JWT itself, a file holding it, or - (stdin).")],
    jwks: Annotated[
        str | None,
        typer.Option(
            "--jwks",
            envvar=JWKS_ENV,
            help="Trusted keys: a JWKS file or http(s) URL (e.g. the AS /.well-known/jwks.json).",
        ),
    ] = None,
    leeway: Annotated[
        int, typer.Option(min=0, help="Clock skew allowed on exp/iat/nbf, in seconds.")
    ] = DEFAULT_LEEWAY,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"valid", "error", "claims"}.')
    ] = False,
) -> None:
    """Verify TOKEN's signature against trusted keys, its times and its EAR profile.

    The token's own header jwk is never trusted: keys come only from --jwks.
    Exit 0: valid.  Exit 1: invalid (the failing check is named).  Exit 2: usage error,
    unreadable token or unusable keys.
    """
    if jwks is None:
        _usage(f"no trusted keys: pass --jwks FILE|URL (or set {JWKS_ENV})", as_json)
        return
    text = _read_token(token)
    try:
        keys = load_jwks(jwks)
    except JwksError as exc:
        _usage(str(exc), as_json)
        return
    try:
        claims = verify_token(text, keys, leeway=leeway)
    except JwksError as exc:
        _usage(str(exc), as_json)
        return
    except TokenError as exc:
        if as_json:
            typer.echo(json.dumps({"valid": False, "error": str(exc), "claims": None}))
        else:
            Console().print(f"[red]invalid[/red] [bold]{exc.kind}[/bold]: {escape(exc.detail)}")
        raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        typer.echo(json.dumps({"valid": True, "error": None, "claims": claims}))
    else:
        console = Console()
        console.print(summary_table(claims))
        for table in submod_tables(claims):
            console.print(table)
    raise typer.Exit(EXIT_VALID)


def _time(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        when = dt.datetime.fromtimestamp(value, dt.UTC)
        return f"{when.isoformat().replace('+00:00', 'Z')} ({int(value)})"
    return "-" if value is None else str(value)


def _styled_tier(name: str) -> str:
    style = TIER_STYLE.get(name, "")
    return f"[{style}]{name}[/{style}]" if style else escape(name)


def summary_table(claims: dict[str, Any]) -> Table:
    emulated = claims.get(EMULATED) is True
    title = "[green]valid[/green] EAR token"
    if emulated:
        title += " [bold yellow](EMULATED evidence)[/bold yellow]"
    table = Table(title=title, show_header=False, expand=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("issuer", str(claims.get("iss", "-")))
    table.add_row("profile", str(claims.get("eat_profile", "-")))
    verifier = claims.get(VERIFIER_ID)
    if isinstance(verifier, dict):
        table.add_row(
            "verifier", f"{verifier.get('build', '-')} ({verifier.get('developer', '-')})"
        )
    table.add_row("issued at", _time(claims.get("iat")))
    table.add_row("expires", _time(claims.get("exp")))
    table.add_row("emulated", "[bold yellow]yes[/bold yellow]" if emulated else "no")
    return table


def submod_tables(claims: dict[str, Any]) -> list[Table]:
    submods = claims.get("submods")
    if not isinstance(submods, dict):
        return []
    tables = []
    for name, appraisal in sorted(submods.items()):
        if not isinstance(appraisal, dict):
            continue
        status = str(appraisal.get(STATUS, "none"))
        title = f"{escape(str(name))}: {_styled_tier(status)}"
        if appraisal.get(EMULATED) is True:
            title += " [bold yellow](emulated)[/bold yellow]"
        table = Table(title=title, expand=False)
        table.add_column("trust claim", style="bold")
        table.add_column("value", justify="right")
        table.add_column("tier")
        vector = appraisal.get(TRUST_VECTOR)
        vector = vector if isinstance(vector, dict) else {}
        names = [c for c in TRUST_CLAIMS if c in vector] + sorted(set(vector) - set(TRUST_CLAIMS))
        for claim in names:
            value = vector[claim]
            try:
                claim_tier = tier(value)
            except (TypeError, ValueError):
                claim_tier = "?"
            table.add_row(escape(str(claim)), escape(str(value)), _styled_tier(claim_tier))
        policy = appraisal.get("ear.appraisal-policy-id")
        if policy is not None:
            table.caption = f"policy {escape(str(policy))}"
        tables.append(table)
    return tables


__all__ = ["app", "submod_tables", "summary_table", "verify"]
