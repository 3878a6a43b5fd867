"""``veritee initdata``: the kata pod annotation and the launch digests of an initdata document.

``encode FILE`` prints the value of ``io.katacontainers.config.hypervisor.cc_init_data``
(base64 of gzip of the file's bytes; ``--annotation`` prints ``key=value``);
``decode VALUE|-`` prints the TOML an annotation value carries, byte for byte;
``digest FILE`` prints the document's digest and, per TEE, the launch field it is bound
into and the digest resized to that field.

Every document is checked first (version 0.1.0, a known algorithm, ``[data]`` of strings).
Exit codes: 0 done, 1 a bad document or annotation, 2 usage (bad options, unreadable file).
"""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from veritee.errors import ParseError
from veritee.initdata import (
    ANNOTATION,
    TEE_FIELDS,
    Initdata,
    decode_annotation,
    digest_for_tee,
    encode_annotation,
    parse_initdata,
)

__all__ = ["app"]

EXIT_OK, EXIT_BAD, EXIT_USAGE = 0, 1, 2
STDIN_MARK = "-"

app = typer.Typer(
    help="Encode, decode and digest initdata documents (kata's cc_init_data annotation).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Tee(enum.StrEnum):
    TDX = "tdx"
    SNP = "snp"
    SGX = "sgx"


FileArgument = Annotated[
    Path,
    typer.Argument(help="The initdata TOML document.", exists=True, dir_okay=False),
]


def _bad(message: str) -> NoReturn:
    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(EXIT_BAD)


def _document(text: str) -> Initdata:
    try:
        return parse_initdata(text)
    except ParseError as exc:
        _bad(str(exc))


def _read(path: Path) -> Initdata:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="FILE") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _bad(f"{path} is not UTF-8 text: {exc}")
    return _document(text)


@app.command()
def encode(
    file: FileArgument,
    annotation: Annotated[
        bool, typer.Option("--annotation", help=f"Print {ANNOTATION}=<value>.")
    ] = False,
) -> None:
    """Print the pod annotation value for FILE (base64 of gzip of its exact bytes)."""
    value = encode_annotation(_read(file).text)
    typer.echo(f"{ANNOTATION}={value}" if annotation else value)


@app.command()
def decode(
    value: Annotated[
        str,
        typer.Argument(help="The annotation value, key=value, or - (read it from stdin)."),
    ],
) -> None:
    """Print the initdata TOML an annotation value carries, exactly as it was encoded."""
    text = sys.stdin.read() if value == STDIN_MARK else value
    text = text.strip().removeprefix(f"{ANNOTATION}=")
    try:
        document = decode_annotation(text)
    except ParseError as exc:
        _bad(str(exc))
    typer.echo(_document(document).text, nl=False)


@app.command()
def digest(
    file: FileArgument,
    tee: Annotated[
        Tee | None,
        typer.Option("--tee", help="Only this TEE's launch field (default: tdx, snp and sgx)."),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print {"algorithm", "digest", "tees": {tee: {...}}}.'),
    ] = False,
) -> None:
    """Print FILE's digest and the value each TEE's launch field must hold for it."""
    document = _read(file)
    tees = [tee.value] if tee is not None else list(TEE_FIELDS)
    bound = {name: digest_for_tee(document, name) for name in tees}
    if as_json:
        report = {
            "algorithm": document.algorithm,
            "digest": document.digest.hex(),
            "tees": {name: {"field": f, "value": v.hex()} for name, (f, v) in bound.items()},
        }
        typer.echo(json.dumps(report))
        return
    # One line each, never wrapped: the hex values are there to be copied.
    console = Console(soft_wrap=True, highlight=False)
    console.print(f"[bold]{document.algorithm}[/bold] {document.digest.hex()}")
    for name, (field, value) in bound.items():
        console.print(f"{name}  {field:<10} {len(value):>2} bytes  {value.hex()}")
