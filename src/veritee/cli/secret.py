"""``veritee secret``: guest-components' sealed secrets, made and checked off the guest.

``keygen OUT`` writes a new private EC P-256 JWK to OUT (mode 0600) and its public JWK
beside it (``key.jwk`` gives ``key.pub.jwk``).
``seal --type vault --name kbs:///repo/type/tag --signing-key key.jwk --kid KID`` prints
``sealed.<compact ES256 JWS>``.  KID is what the guest's CDH resolves to the public key:
a resource URI (``kbs:///default/sealed-secret-key/1``) whose bytes are the public JWK,
or a file name under ``/run/confidential-containers/cdh/sealed-secret``.
``unseal SEALED|- --public-key key.pub.jwk`` verifies the signature and prints the
payload JSON; it fetches nothing (a vault secret prints its name: fetching the value is
the CDH's job, inside the attested guest).

Exit codes: 0 done, 1 a bad secret (format, signature, version, type), 2 usage (bad
options, an unreadable or unusable key file, an existing output file).
"""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from joserfc.jwk import ECKey
from rich.console import Console
from rich.markup import escape

from veritee.errors import ParseError
from veritee.guest.cdh_errors import (
    SealedSecretError,
)
from veritee.guest.resource_uri import parse_resource_uri
from veritee.guest.sealed_secret import (
    SEALED_SECRET_ALG,
    VaultSecret,
    load_signing_jwk,
    load_verifying_jwk,
    open_sealed_secret,
    seal_secret,
)

__all__ = ["app", "public_key_path"]

EXIT_OK, EXIT_BAD, EXIT_USAGE = 0, 1, 2
STDIN_MARK = "-"

app = typer.Typer(
    help="Seal, unseal and make signing keys for sealed secrets (the CDH's format).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class SecretType(enum.StrEnum):
    VAULT = "vault"


def _fail(message: str, code: int) -> NoReturn:
    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def _read_key_file(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=option) from exc


def public_key_path(private: Path) -> Path:
    """Where ``keygen`` puts the public JWK: key.jwk → key.pub.jwk, key → key.pub."""
    if private.suffix:
        return private.with_name(f"{private.stem}.pub{private.suffix}")
    return private.with_name(f"{private.name}.pub")


def _write_new(path: Path, text: str, mode: int, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        handle = os.open(path, flags, mode)
    except FileExistsError:
        _fail(f"{path} exists (--force replaces it)", EXIT_USAGE)
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror}", EXIT_USAGE)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), mode)
        file.write(text)


@app.command()
def keygen(
    out: Annotated[Path, typer.Argument(help="The private JWK to write (mode 0600).")],
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Write a new EC P-256 signing key as a private JWK, and its public JWK beside it."""
    parameters: Any = {"alg": SEALED_SECRET_ALG, "use": "sig"}
    key = ECKey.generate_key("P-256", parameters)
    public = public_key_path(out)
    _write_new(out, json.dumps(key.as_dict(private=True), indent=2) + "\n", 0o600, force)
    _write_new(public, json.dumps(key.as_dict(private=False), indent=2) + "\n", 0o644, force)
    typer.echo(f"private key: {out}\npublic key:  {public}")


@app.command()
def seal(
    name: Annotated[str, typer.Option("--name", help="Where the secret is: kbs:///repo/type/tag.")],
    signing_key: Annotated[
        Path, typer.Option("--signing-key", help="The private P-256 JWK that signs.")
    ],
    kid: Annotated[
        str,
        typer.Option(
            "--kid",
            help="The key id the guest resolves: a kbs:/// URI or a file name under "
            "/run/confidential-containers/cdh/sealed-secret.",
        ),
    ],
    secret_type: Annotated[
        SecretType, typer.Option("--type", help="The secret type (vault).")
    ] = SecretType.VAULT,
    provider: Annotated[
        str, typer.Option("--provider", help="Who holds the secret (kbs is the one we serve).")
    ] = "kbs",
) -> None:
    """Print a sealed secret (sealed.<JWS>) that points to NAME, signed with SIGNING_KEY."""
    if provider == "kbs":
        try:
            parse_resource_uri(name)
        except ParseError as exc:
            raise typer.BadParameter(str(exc), param_hint="--name") from exc
    data = _read_key_file(signing_key, "--signing-key")
    try:
        key = load_signing_jwk(data, str(signing_key))
    except SealedSecretError as exc:
        _fail(str(exc), EXIT_USAGE)
    try:
        sealed = seal_secret(VaultSecret(name=name, provider=provider), key, kid)
    except SealedSecretError as exc:
        _fail(str(exc), EXIT_USAGE)
    typer.echo(sealed)


@app.command()
def unseal(
    secret: Annotated[str, typer.Argument(help="The sealed secret, or - to read it from stdin.")],
    public_key: Annotated[
        Path, typer.Option("--public-key", help="The signer's public P-256 JWK.")
    ],
) -> None:
    """Verify SECRET with PUBLIC_KEY and print its payload JSON (nothing is fetched)."""
    data = _read_key_file(public_key, "--public-key")
    try:
        key = load_verifying_jwk(data, str(public_key))
    except SealedSecretError as exc:
        _fail(str(exc), EXIT_USAGE)
    text = sys.stdin.read() if secret == STDIN_MARK else secret
    try:
        payload = open_sealed_secret(text, lambda _kid: key)
    except SealedSecretError as exc:
        _fail(str(exc), EXIT_BAD)
    typer.echo(payload.model_dump_json())
