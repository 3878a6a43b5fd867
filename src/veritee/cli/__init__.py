"""The ``veritee`` command line."""

from __future__ import annotations

import typer

from veritee.cli import collateral, emulator, verify

app = typer.Typer(
    name="veritee",
    help="Remote attestation and key brokering for confidential containers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(name="verify")(verify.verify)
app.add_typer(collateral.app, name="collateral", help="Fetch, cache and show TEE collateral.")
app.add_typer(emulator.app, name="emulator", help="Emulated TEEs under a generated test root.")


def main() -> None:
    app()


__all__ = ["app", "main"]
