"""``veritee agent serve``: the guest's Attestation Agent, CDH and REST API on 127.0.0.1:8006."""

from __future__ import annotations

import logging
import socket
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from veritee.cli.guest_options import (
    AaConfigOption,
    CdhConfigOption,
    DeviceOption,
    EmulatedOption,
    EventlogOption,
    InitdataOption,
    TeeOption,
    agent_settings,
)
from veritee.errors import VeriteeError

app = typer.Typer(no_args_is_help=True)
console = Console(highlight=False)
DEFAULT_BIND = "127.0.0.1:8006"


def _bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint="--bind")
    return host.strip("[]"), int(port)


@app.command()
def serve(
    bind: Annotated[
        str, typer.Option(metavar="HOST:PORT", help="Where to listen (loopback callers only).")
    ] = DEFAULT_BIND,
    features: Annotated[
        str,
        typer.Option(
            metavar="resource|attestation|all",
            help="resource: /cdh only (the default, as upstream); attestation: /aa only; all.",
        ),
    ] = "resource",
    config: AaConfigOption = None,
    cdh_config: CdhConfigOption = None,
    initdata: InitdataOption = None,
    emulated: EmulatedOption = None,
    tee: TeeOption = "tdx",
    device: DeviceOption = None,
    eventlog: EventlogOption = None,
) -> None:
    """Serve the guest's local REST API (guest-components' api-server-rest, AA and CDH)."""
    from veritee.guest.api import FEATURES
    from veritee.guest.bootstrap import build_agent

    host, port = _bind(bind)
    if features not in FEATURES:
        raise typer.BadParameter(
            f"expected one of {', '.join(FEATURES)}, got {features!r}", param_hint="--features"
        )
    settings = agent_settings(
        features=features,
        config=config,
        cdh_config=cdh_config,
        initdata=initdata,
        emulated=emulated,
        tee=tee,
        eventlog=eventlog,
        devices=device,
    )
    try:
        parts = build_agent(settings)
    except VeriteeError as exc:
        Console(stderr=True, highlight=False).print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    for note in parts.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    if emulated is not None:
        console.print(
            f"[yellow]emulated {parts.aa.tee.upper()}"
            f"{''.join(' + ' + t for t in parts.aa.additional_tees)} under the test root "
            f"{emulated}: its evidence proves nothing about hardware[/yellow]"
        )
    _serve(parts.app, host, port, f"agent ({parts.aa.tee}, features {features})")


def _serve(app_: Any, host: str, port: int, what: str) -> None:
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        Console(stderr=True).print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{what} on http://{host}:{port}")
    logging.basicConfig(level=logging.WARNING)
    server = uvicorn.Server(uvicorn.Config(app_, log_level="warning", lifespan="off"))
    server.run(sockets=[sock])
