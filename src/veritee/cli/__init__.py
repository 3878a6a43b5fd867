"""The ``veritee`` command line."""

from __future__ import annotations

import typer

from veritee.cli import (
    agent,
    client,
    collateral,
    demo,
    emulator,
    image,
    initdata,
    keyprovider,
    ratls,
    rvps,
    secret,
    serve,
    shelter,
    token,
    verify,
)

app = typer.Typer(
    name="veritee",
    help="Remote attestation and key brokering for confidential containers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(name="demo")(demo.demo)
app.command(name="verify")(verify.verify)
app.add_typer(collateral.app, name="collateral", help="Fetch, cache and show TEE collateral.")
app.add_typer(emulator.app, name="emulator", help="Emulated TEEs under a generated test root.")
app.add_typer(serve.app, name="serve", help="Run veritee services.")
app.add_typer(token.app, name="token", help="Verify EAR attestation tokens.")
app.add_typer(rvps.app, name="rvps", help="Register, list and delete reference values.")
app.add_typer(client.app, name="client", help="A KBS client compatible with Trustee's kbs-client.")
app.add_typer(initdata.app, name="initdata", help="Encode, decode and digest initdata.")
app.add_typer(secret.app, name="secret", help="Seal, unseal and make keys for sealed secrets.")
app.add_typer(agent.app, name="agent", help="The guest's Attestation Agent, CDH and REST API.")
app.command(name="keyprovider")(keyprovider.keyprovider)
app.add_typer(image.app, name="image", help="Pull images behind attestation; encrypt their layers.")
app.add_typer(ratls.app, name="ratls", help="RA-TLS: the Inclavared-style attested proxy.")
app.add_typer(shelter.app, name="shelter", help="Shelter: attest an RA-TLS endpoint; mrverify.")


def main() -> None:
    app()


__all__ = ["app", "main"]
