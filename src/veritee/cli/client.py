"""``veritee client``: Trustee's ``kbs-client``, flag for flag.

``veritee client [--url URL] [--cert-file PEM] attest|get-resource|config …``
talks to a KBS (Trustee or ``veritee serve``).  Evidence comes from the TEE this host
runs in (TDX, SNP or SGX, detected as guest-components detects it), from Trustee's
sample attester (``--tee sample``), or from the emulator (``--emulated ROOTDIR``, a
test root made by ``veritee emulator init``).  On a host with no TEE and neither
option, it says so and exits 1.

Output is kbs-client's: ``attest`` prints the token, ``get-resource`` the secret
in standard base64, the ``config`` commands kbs-client's success lines.  A
denial is printed the way kbs-client prints it (a ``WARN`` line with the
``ErrorInformation`` per refused attempt, then ``Error: request unauthorized``).

Exit codes: 0 done, 1 refused or failed (or no TEE on this host), 2 usage (bad or
missing options, unreadable files).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from rich.console import Console
from rich.markup import escape

from veritee.auth.admin import sign_admin_token
from veritee.errors import VeriteeError
from veritee.guest.attesters.detect import detect_attester, no_tee_error
from veritee.guest.attesters.linux import LinuxKernel
from veritee.guest.attesters.provider import AttesterEvidenceProvider
from veritee.guest.attesters.sample import SampleAttester, SampleDeviceAttester
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import ADMIN_TOKEN_LIFETIME_S, KbsClient, StaticTokenProvider
from veritee.guest.kbs_http import KbsRequestError
from veritee.guest.kbs_protocol import (
    EvidenceProvider,
    KbsClientError,
    TeeKey,
    generate_tee_key,
    load_tee_key,
    rust_debug_error_information,
    rust_debug_str,
    tee_key_pem,
)

__all__ = ["app", "config_app"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:8080"
RCAR_LOG_TARGET = "kbs_protocol::client::rcar_client"
SAMPLE_RV_VERSION = "0.1.0"

ALLOW_ALL_POLICY = """package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
}
"""
DENY_ALL_POLICY = """package policy

import rego.v1

default allow := false
"""
AFFIRMING_POLICY = """package policy

import rego.v1

default allow := false

allow if {
	count(input.submods) > 0
	every submod in input.submods {
		submod["ear.status"] == "affirming"
	}
}
"""
DEFAULT_POLICY = """package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
	not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}
"""

app = typer.Typer(
    help="A KBS client compatible with Trustee's kbs-client (attest, get resources, admin).",
    no_args_is_help=True,
)
config_app = typer.Typer(
    help="Admin calls: resources, policies and reference values.", no_args_is_help=True
)
app.add_typer(config_app, name="config")


@dataclass(frozen=True)
class _Target:
    url: str
    cert_file: Path | None


@dataclass(frozen=True)
class _Admin:
    target: _Target
    token: str | None


def _usage(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(EXIT_FAILED)


def _read_bytes(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=flag) from exc


def _read_text(path: Path, flag: str) -> str:
    try:
        return _read_bytes(path, flag).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"{path} is not UTF-8 text", param_hint=flag) from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _warn_unauthorized(error: KbsRequestError) -> None:
    typer.echo(
        f"WARN {RCAR_LOG_TARGET}: Authenticating with KBS failed. Perform a new RCAR handshake: "
        + rust_debug_error_information(error),
        err=True,
    )


def _report(error: VeriteeError) -> NoReturn:
    """Print a failure as kbs-client does and exit 1; never a token or key."""
    if not isinstance(error, KbsRequestError):
        _fail(str(error))
    path = error.path
    if path.endswith("/auth") and error.status == 401:
        _fail(f"KBS request unauthorized, ErrorInformation: {_debug(error, pretty=False)}")
    if path.endswith("/attest") and error.status == 401:
        _fail(f"KBS attest unauthorized, Error Info: {_debug(error, pretty=False)}")
    if "/resource/" in path and error.method == "GET":
        if error.status == 401:
            _fail("request unauthorized")
        if error.status == 404:
            _fail(f"KBS resource Not Found (Error 404): {_debug(error, pretty=True)}")
        _fail(f"KBS Server Internal Failed, Response: {_debug(error, pretty=True)}")
    _fail(f"Request Failed, Response: {rust_debug_str(_body_text(error))}")


def _debug(error: KbsRequestError, *, pretty: bool) -> str:
    if not error.type:
        return rust_debug_str(error.detail)
    return rust_debug_error_information(error, pretty=pretty)


def _body_text(error: KbsRequestError) -> str:
    if not error.type:
        return error.detail
    return json.dumps({"type": error.type, "detail": error.detail}, separators=(",", ":"))


def _tee_key(path: Path | None, *, create: bool) -> TeeKey | None:
    if path is None:
        return None
    if not path.exists():
        if not create:
            _usage(f"TEE key file {path} does not exist")
        key = generate_tee_key("EC")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(tee_key_pem(key))
        except OSError as exc:
            _usage(f"cannot write TEE key file {path}: {exc.strerror}")
        return key
    try:
        return load_tee_key(_read_bytes(path, "--tee-key-file"))
    except KbsClientError as exc:
        _usage(f"{path}: {exc}")


def _provider(
    tee: str | None, emulated: Path | None, devices: list[str] | None
) -> tuple[str, EvidenceProvider]:
    """The TEE and where its evidence comes from: the emulator under ``--emulated``, the
    sample attester for ``--tee sample``, else the TEE this host runs in (detected)."""
    if emulated is not None:
        unknown = [d for d in devices or () if d not in EmulatedEvidenceProvider.DEVICES]
        if unknown:
            raise typer.BadParameter(
                f"no emulated device {unknown[0]!r}; expected "
                f"{', '.join(EmulatedEvidenceProvider.DEVICES)}", param_hint="--device")
        return tee or "sample", EmulatedEvidenceProvider(emulated, devices=devices or ())
    if devices and any(d != "sampledevice" for d in devices):
        raise typer.BadParameter("without --emulated the one device is sampledevice "
                                 "(no GPU attester on this host)", param_hint="--device")
    extra = [SampleDeviceAttester()] if devices else []
    if tee == "sample":
        return tee, AttesterEvidenceProvider(SampleAttester(), extra)
    kernel = LinuxKernel()
    attester = detect_attester(kernel)
    if attester is None:
        error = no_tee_error(kernel)
        Console(stderr=True, highlight=False).print(
            f"error: {escape(str(error))}; pass --emulated ROOTDIR to attest with the "
            "emulator, or --tee sample for Trustee's sample evidence",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    if tee is not None and tee != attester.tee:
        _usage(f"--tee {tee}: this host runs in a {attester.tee} TEE")
    return attester.tee, AttesterEvidenceProvider(attester, extra)


def _client(target: _Target, **kwargs: Any) -> KbsClient:
    cert = target.cert_file
    cert_pem = None if cert is None else _read_bytes(cert, "--cert-file")
    try:
        return KbsClient(target.url, cert_pem=cert_pem, **kwargs)
    except KbsClientError as exc:
        _usage(f"{cert}: {exc}" if cert is not None else str(exc))


TeeOption = Annotated[
    str | None,
    typer.Option(
        "--tee",
        metavar="tdx|sgx|snp|sample",
        help="TEE of the evidence [default: the TEE this host runs in; sample with --emulated].",
        show_default=False,
    ),
]
EmulatedOption = Annotated[
    Path | None,
    typer.Option(
        "--emulated",
        help="Emulator test root (veritee emulator init) that produces the evidence.",
        exists=True,
        file_okay=False,
    ),
]
DeviceOption = Annotated[
    list[str] | None,
    typer.Option("--device", help="Add composite evidence from an emulated device "
                 "(nvidia with --emulated; sampledevice)."),
]


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", help="KBS base URL.")] = DEFAULT_URL,
    cert_file: Annotated[
        Path | None,
        typer.Option(
            "--cert-file",
            help="PEM root CA of the KBS's HTTPS certificate.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Talk to a KBS as Trustee's kbs-client does."""
    ctx.obj = _Target(url, cert_file)


@app.command()
def attest(
    ctx: typer.Context,
    tee: TeeOption = None,
    emulated: EmulatedOption = None,
    tee_key_file: Annotated[
        Path | None,
        typer.Option(
            "--tee-key-file",
            help="PEM private key of the TEE key pair (EC or RSA); created (0600) if absent.",
            dir_okay=False,
        ),
    ] = None,
    device: DeviceOption = None,
) -> None:
    """Run the RCAR handshake and print the attestation token."""
    target: _Target = ctx.obj
    _check_tee(tee)
    kind, provider = _provider(tee, emulated, device)
    key = _tee_key(tee_key_file, create=True)
    with _reporting(_client(target, evidence_provider=provider, tee=kind, tee_key=key)) as client:
        token = client.attest()
    typer.echo(token)


@app.command("get-resource")
def get_resource(
    ctx: typer.Context,
    path: Annotated[str, typer.Option("--path", help="Resource path <repo>/<type>/<tag>.")],
    tee: TeeOption = None,
    emulated: EmulatedOption = None,
    tee_key_file: Annotated[
        Path | None,
        typer.Option(
            "--tee-key-file",
            help="PEM private key of the TEE key pair (required with --attestation-token).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    attestation_token: Annotated[
        Path | None,
        typer.Option(
            "--attestation-token",
            help="File with a token from 'attest'; sent as a Bearer token, no handshake.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    device: DeviceOption = None,
) -> None:
    """Attest (or use a token) and print the resource, base64-encoded."""
    target: _Target = ctx.obj
    _check_tee(tee)
    if attestation_token is not None:
        if tee_key_file is None:
            _usage("--attestation-token needs --tee-key-file (the key the token was issued for)")
        token = _read_text(attestation_token, "--attestation-token").strip()
        key = _tee_key(tee_key_file, create=False)
        assert key is not None
        passport = StaticTokenProvider(token, key)
        with _reporting(_client(target, token_provider=passport, tee=tee or "sample")) as client:
            data = client.get_resource(path)
    else:
        kind, provider = _provider(tee, emulated, device)
        key = _tee_key(tee_key_file, create=False)
        guest = _client(target, evidence_provider=provider, tee=kind, tee_key=key)
        with _reporting(guest) as client:
            data = client.get_resource(path, on_unauthorized=_warn_unauthorized)
    typer.echo(_b64(data))


def _check_tee(tee: str | None) -> None:
    from veritee.emulator.evidence import EMULATED_TEES

    if tee is not None and tee not in EMULATED_TEES:
        raise typer.BadParameter(f"expected one of {', '.join(EMULATED_TEES)}", param_hint="--tee")


# --- config ------------------------------------------------------------------------------------


@config_app.callback()
def config(
    ctx: typer.Context,
    auth_private_key: Annotated[
        Path | None,
        typer.Option(
            "--auth-private-key",
            help="Ed25519 PEM private key; signs a 2-hour EdDSA admin token.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(
            "--admin-token-file",
            help="File with a ready admin token (e.g. the server's admin.token).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Admin calls, authenticated with a Bearer admin token (none: anonymous)."""
    target: _Target = ctx.obj
    if auth_private_key is not None and admin_token_file is not None:
        _usage("pass --auth-private-key or --admin-token-file, not both")
    token: str | None = None
    if auth_private_key is not None:
        pem = _read_bytes(auth_private_key, "--auth-private-key")
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            key = None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            _usage(f"{auth_private_key} is not an unencrypted Ed25519 PEM private key")
        token = sign_admin_token(key, lifetime_s=ADMIN_TOKEN_LIFETIME_S)
    elif admin_token_file is not None:
        token = _read_text(admin_token_file, "--admin-token-file").strip() or None
    ctx.obj = _Admin(target, token)


@contextlib.contextmanager
def _reporting(client: KbsClient) -> Iterator[KbsClient]:
    """Use ``client``; a refused or failed request is printed as kbs-client does (exit 1)."""
    with client:
        try:
            yield client
        except VeriteeError as exc:
            _report(exc)


def _admin_call(ctx: typer.Context) -> KbsClient:
    admin: _Admin = ctx.obj
    return _client(admin.target, admin_token=admin.token)


@config_app.command("set-resource")
def set_resource(
    ctx: typer.Context,
    path: Annotated[str, typer.Option("--path", help="Resource path <repo>/<type>/<tag>.")],
    resource_file: Annotated[
        Path, typer.Option("--resource-file", help="The secret.", exists=True, dir_okay=False)
    ],
) -> None:
    """Store a resource (POST /kbs/v0/resource/<path>)."""
    data = _read_bytes(resource_file, "--resource-file")
    with _reporting(_admin_call(ctx)) as client:
        client.set_resource(path, data)
    typer.echo(f"Set resource success \n resource: {_b64(data)}")


@config_app.command("delete-resource")
def delete_resource(
    ctx: typer.Context,
    path: Annotated[str, typer.Option("--path", help="Resource path <repo>/<type>/<tag>.")],
) -> None:
    """Delete a resource."""
    with _reporting(_admin_call(ctx)) as client:
        client.delete_resource(path)
    typer.echo("Delete resource success")


@config_app.command("set-resource-policy")
def set_resource_policy(
    ctx: typer.Context,
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy-file", help="Rego resource policy.", exists=True, dir_okay=False),
    ] = None,
    allow_all: Annotated[
        bool, typer.Option("--allow-all", help="Release every resource to any token.")
    ] = False,
    deny_all: Annotated[bool, typer.Option("--deny-all", help="Release nothing.")] = False,
    affirming: Annotated[
        bool, typer.Option("--affirming", help="Release when every submod is affirming.")
    ] = False,
    default: Annotated[
        bool, typer.Option("--default", help="Trustee's default: any TEE but sample.")
    ] = False,
) -> None:
    """Set the resource policy (POST /kbs/v0/resource-policy)."""
    presets = [
        text
        for chosen, text in (
            (allow_all, ALLOW_ALL_POLICY),
            (deny_all, DENY_ALL_POLICY),
            (affirming, AFFIRMING_POLICY),
            (default, DEFAULT_POLICY),
        )
        if chosen
    ]
    if len(presets) + (policy_file is not None) != 1:
        _usage("pass exactly one of --policy-file, --allow-all, --deny-all, --affirming, --default")
    text = presets[0] if policy_file is None else _read_text(policy_file, "--policy-file")
    with _reporting(_admin_call(ctx)) as client:
        client.set_resource_policy(text)
    typer.echo(f"Set resource policy success \n policy: {_b64(text.encode())}")


@config_app.command("get-resource-policy")
def get_resource_policy(ctx: typer.Context) -> None:
    """Print what GET /kbs/v0/resource-policy answers."""
    with _reporting(_admin_call(ctx)) as client:
        body = client.get_resource_policy()
    typer.echo(body)


@config_app.command("set-attestation-policy")
def set_attestation_policy(
    ctx: typer.Context,
    policy_file: Annotated[
        Path,
        typer.Option("--policy-file", help="Rego attestation policy.", exists=True, dir_okay=False),
    ],
    policy_type: Annotated[str, typer.Option("--type", help="Policy language.")] = "rego",
    policy_id: Annotated[
        str, typer.Option("--id", help="Policy id (default_cpu is what the KBS evaluates).")
    ] = "default_cpu",
) -> None:
    """Set an attestation policy (POST /kbs/v0/attestation-policy)."""
    text = _read_text(policy_file, "--policy-file")
    with _reporting(_admin_call(ctx)) as client:
        client.set_attestation_policy(text, policy_id, policy_type=policy_type)
    typer.echo(f"Set attestation policy success \n policy: {_b64(text.encode())}")


@config_app.command("set-sample-reference-value")
def set_sample_reference_value(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Reference value name.")],
    value: Annotated[str, typer.Argument(help="The value (a string unless told otherwise).")],
    as_integer: Annotated[bool, typer.Option("--as-integer", help="VALUE is an integer.")] = False,
    as_bool: Annotated[bool, typer.Option("--as-bool", help="VALUE is true or false.")] = False,
    as_single_value: Annotated[
        bool, typer.Option("--as-single-value", help="Store VALUE itself, not [VALUE].")
    ] = False,
) -> None:
    """Register a value through the sample extractor (POST /kbs/v0/reference-value)."""
    message = sample_reference_value_message(
        name, value, as_integer=as_integer, as_bool=as_bool, as_single_value=as_single_value
    )
    _post_reference_value(ctx, message)


@config_app.command("set-reference-value")
def set_reference_value(
    ctx: typer.Context,
    message_file: Annotated[
        Path,
        typer.Option(
            "--message-file",
            help='RVPS message JSON {"version","type","payload"}.',
            exists=True,
            dir_okay=False,
        ),
    ],
) -> None:
    """Register reference values from an RVPS message (POST /kbs/v0/reference-value)."""
    try:
        message = json.loads(_read_bytes(message_file, "--message-file"))
    except ValueError as exc:
        raise typer.BadParameter("not JSON", param_hint="--message-file") from exc
    if not isinstance(message, dict):
        raise typer.BadParameter("not a JSON object", param_hint="--message-file")
    _post_reference_value(ctx, message)


@config_app.command("get-reference-value")
def get_reference_value(
    ctx: typer.Context,
    id_: Annotated[str, typer.Option("--id", help="Reference value id.")],
) -> None:
    """Print one reference value (GET /kbs/v0/reference-value/<id>)."""
    with _reporting(_admin_call(ctx)) as client:
        value = client.get_reference_value(id_)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    typer.echo(rust_debug_str(text))


def _post_reference_value(ctx: typer.Context, message: dict[str, Any]) -> None:
    with _reporting(_admin_call(ctx)) as client:
        client.set_reference_value(message)
    typer.echo("Reference Values Updated")


def sample_reference_value_message(
    name: str,
    value: str,
    *,
    as_integer: bool = False,
    as_bool: bool = False,
    as_single_value: bool = False,
) -> dict[str, Any]:
    """kbs-client's sample-extractor message: payload = b64(``{name: [value]}``)."""
    if as_integer and as_bool:
        _usage("pass --as-integer or --as-bool, not both")
    typed: Any = value
    if as_integer:
        try:
            typed = int(value)
        except ValueError as exc:
            raise typer.BadParameter(f"{value!r} is not an integer", param_hint="VALUE") from exc
    elif as_bool:
        if value not in ("true", "false"):
            raise typer.BadParameter(f"{value!r} is not true or false", param_hint="VALUE")
        typed = value == "true"
    payload = {name: typed if as_single_value else [typed]}
    return {
        "version": SAMPLE_RV_VERSION,
        "type": "sample",
        "payload": _b64(json.dumps(payload, separators=(",", ":")).encode()),
    }
