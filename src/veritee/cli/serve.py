"""``veritee serve …``: run the services.  Every serve command takes the same common flags."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from veritee.cli.paths import veritee_home
from veritee.errors import VeriteeError

app = typer.Typer(no_args_is_help=True, help="Run veritee services.")
console = Console()

Host = Annotated[str, typer.Option(help="Address to bind (default loopback).")]
DataDir = Annotated[Path | None, typer.Option(
    help="State directory: stores, keys, admin token (default $VERITEE_HOME).")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="Configuration file.")]
TrustRoot = Annotated[Path | None, typer.Option(
    help="Also trust this emulator test root; its evidence is marked emulated.")]


@app.command("as")
def serve_as(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 50005,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    trust_root: TrustRoot = None,
    allow_sample: Annotated[bool, typer.Option(help="Accept unsigned sample evidence.")] = False,
    policy_dir: Annotated[Path | None, typer.Option(
        help="Load every *.rego here as a policy (id = file name), like Trustee's "
             "attestation-service/policies/opa/.")] = None,
) -> None:
    """The Attestation Service (Trustee's restful-as API) on :50005."""
    import uvicorn

    from veritee.as_.api import create_app
    from veritee.as_.bootstrap import build_attestation_service, describe_first_start
    from veritee.as_.config import AsSettings, load_as_config

    directory = data_dir or veritee_home()
    settings = AsSettings(data_dir=directory)
    try:
        if config is not None:
            settings = load_as_config(config, settings)
        if trust_root is not None:
            settings = replace(settings, trust_root=trust_root)
        if allow_sample:
            settings = replace(settings, allow_sample=True)
        if policy_dir is not None:
            settings = replace(settings, policy_dir=policy_dir)
        parts = build_attestation_service(settings)
    except VeriteeError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    for line in (*describe_first_start(parts, directory), *settings.notes):
        console.print(line)
    if settings.trust_root is not None:
        console.print(f"[yellow]trusting the test root {settings.trust_root}: evidence under it "
                      "is marked emulated[/yellow]")
    logging.basicConfig(level=logging.WARNING)
    application = create_app(parts.service, admin=parts.admin.auth, rvps=parts.rvps,
                             body_limit=settings.body_limit)
    console.print(f"Attestation Service on http://{host}:{port}")
    uvicorn.run(application, host=host, port=port, log_level="warning")
