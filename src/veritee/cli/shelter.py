"""``veritee shelter``: Shelter's remote attestation of an RA-TLS endpoint, and mrverify."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from veritee.cli.ratls import (
    ATTESTER_HELP,
    EXIT_USAGE,
    EmulatedOption,
    KdsOption,
    PccsOption,
    PolicyOption,
    TrustRootOption,
    VerifierOption,
    check_names,
    collateral_settings,
)
from veritee.errors import VeriteeError

if TYPE_CHECKING:
    from OpenSSL import SSL

    from veritee.ratls.verify import RatlsPeer, RatlsVerifier

app = typer.Typer(no_args_is_help=True)

EXIT_OK, EXIT_FAILED = 0, 1
SUCCESS = "Remote attestation is successful."
FAILURE = "Remote attestation failed with err: "

AddrOption = Annotated[
    str, typer.Option(metavar="tcp://HOST:PORT", help="The RA-TLS endpoint (Inclavared).")
]
MutualOption = Annotated[
    bool, typer.Option(help="Present this side's RA-TLS certificate too (--attester).")
]
AttesterOption = Annotated[
    str | None,
    typer.Option(
        help=ATTESTER_HELP + " Mutual mode only; default: emulated-sgx with --emulated, "
        "else this guest's TEE."
    ),
]
TimeoutOption = Annotated[float, typer.Option(help="Seconds for connect, handshake, reply.")]
LogLevelOption = Annotated[
    str, typer.Option(help="debug, info, warn, error, fatal or off (as rats-tls's).")
]
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "off": logging.CRITICAL + 1,
}


def _log_level(value: str) -> None:
    level = _LEVELS.get(value.lower())
    if level is None:
        raise typer.BadParameter(
            f"expected one of {', '.join(_LEVELS)}, got {value!r}", param_hint="--log-level"
        )
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("veritee").setLevel(level)


def _address(addr: str) -> tuple[str, int]:
    from veritee.ratls.shelter import parse_addr

    try:
        return parse_addr(addr)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--addr") from None


def _default_attester(emulated: Path | None) -> str:
    if emulated is not None:
        return "emulated-sgx"
    from veritee.guest.attesters.detect import detect_tee, no_tee_error
    from veritee.guest.attesters.linux import LinuxKernel

    kernel = LinuxKernel()
    tee = detect_tee(kernel)
    if tee is None:
        raise no_tee_error(kernel)
    return {"sgx": "sgx_ecdsa", "tdx": "tdx", "snp": "snp"}[tee]


def _setup(
    *,
    verifier: str,
    policy: Path | None,
    trust_root: Path | None,
    emulated: Path | None,
    mutual: bool,
    attester: str | None,
    pccs: str | None,
    kds: str | None,
    with_policy: bool = True,
) -> tuple[SSL.Context, RatlsVerifier]:
    """The client context and the verifier; usage errors exit 2."""
    from veritee.ratls.proxy import attester_identity, peer_verifier
    from veritee.ratls.tls import client_context

    check_names(attester, verifier)
    if not mutual and (emulated is not None or attester is not None):
        raise typer.BadParameter("only used with --mutual", param_hint="--emulated/--attester")
    try:
        identity = (
            attester_identity(attester or _default_attester(emulated), emulated) if mutual else None
        )
        checker = peer_verifier(
            verifier,
            trust_root=trust_root,
            policy=policy if with_policy else None,
            settings=collateral_settings(pccs, kds),
        )
    except VeriteeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    return client_context(identity), checker


def _print_peer(peer: RatlsPeer) -> None:
    origin = "emulated" if peer.emulated else "hardware"
    typer.echo(f"Verified {peer.tee} evidence ({peer.fmt} certificate, {origin})")
    for key, value in peer.measurements.items():
        typer.echo(f"Verified {key}: {value}")


def _failed(reason: object) -> typer.Exit:
    typer.echo(f"{FAILURE}{reason}", err=True)
    return typer.Exit(EXIT_FAILED)


@app.command()
def remoteattestation(
    addr: AddrOption = "tcp://127.0.0.1:1234",
    verifier: VerifierOption = "auto",
    policy: PolicyOption = None,
    trust_root: TrustRootOption = None,
    pccs: PccsOption = None,
    kds: KdsOption = None,
    emulated: EmulatedOption = None,
    mutual: MutualOption = False,
    attester: AttesterOption = None,
    timeout: TimeoutOption = 30,
    log_level: LogLevelOption = "error",
) -> None:
    """Attest the RA-TLS endpoint at --addr and ask it GETENCLAVEINFO, as Shelter does.

    Exit 0: "Remote attestation is successful."  Exit 1: "Remote attestation failed with
    err: <reason>".  Exit 2: usage error.
    """
    from veritee.ratls.shelter import enclave_info, remote_attestation, reported

    _log_level(log_level)
    host, port = _address(addr)
    ctx, checker = _setup(
        verifier=verifier,
        policy=policy,
        trust_root=trust_root,
        emulated=emulated,
        mutual=mutual,
        attester=attester,
        pccs=pccs,
        kds=kds,
    )
    typer.echo(f"tcp sock address is {host}:{port}")
    try:
        peer, raw = remote_attestation(host, port, ctx, checker, timeout=timeout)
    except VeriteeError as exc:
        raise _failed(exc) from None
    _print_peer(peer)
    typer.echo("Server:")
    typer.echo(raw.decode("utf-8", "replace"))
    try:
        info = enclave_info(raw)
    except VeriteeError as exc:
        raise _failed(exc) from None
    typer.echo(f"App Enclave mrenclave: {reported(info, 'mrenclave')}")
    typer.echo(f"App Enclave mrsigner: {reported(info, 'mrsigner')}")
    typer.echo(SUCCESS)


@app.command()
def mrverify(
    reference: Annotated[
        Path,
        typer.Option(
            help="Reference file (JSON: mrenclave, mrsigner, isvprodid, isvsvn; or mrtd, "
            "rtmr0..3), or a Rego policy."
        ),
    ],
    addr: Annotated[
        str | None,
        typer.Option(metavar="tcp://HOST:PORT", help="Attest this endpoint (or give --cert)."),
    ] = None,
    cert: Annotated[
        Path | None, typer.Option(help="An RA-TLS certificate (PEM or DER) to check offline.")
    ] = None,
    verifier: VerifierOption = "auto",
    trust_root: TrustRootOption = None,
    pccs: PccsOption = None,
    kds: KdsOption = None,
    emulated: EmulatedOption = None,
    mutual: MutualOption = False,
    attester: AttesterOption = None,
    timeout: TimeoutOption = 30,
    log_level: LogLevelOption = "error",
) -> None:
    """Check a peer's verified measurements against a reference file.

    The peer is attested first (RA-TLS at --addr, or the certificate --cert); then its
    measurements are compared with --reference.  Exit 0: match.  Exit 1: mismatch or failed
    attestation.  Exit 2: usage error or an unusable reference file.
    """
    from veritee.ratls.policy import load_policy
    from veritee.ratls.tls import connect_attested

    _log_level(log_level)
    if (addr is None) == (cert is None):
        raise typer.BadParameter("give exactly one of --addr and --cert", param_hint="--addr")
    try:
        rules = load_policy(reference)
    except (VeriteeError, OSError) as exc:
        typer.echo(f"error: reference {reference}: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    ctx, checker = _setup(
        verifier=verifier,
        policy=None,
        trust_root=trust_root,
        emulated=emulated,
        mutual=mutual,
        attester=attester,
        pccs=pccs,
        kds=kds,
        with_policy=False,
    )
    try:
        if cert is not None:
            peer = checker.verify_certificate(_certificate_der(cert))
        else:
            host, port = _address(addr or "")
            with connect_attested(host, port, ctx, checker, timeout=timeout) as conn:
                attested = conn.peer
            assert attested is not None  # a verifier was given
            peer = attested
    except VeriteeError as exc:
        raise _failed(exc) from None
    _print_peer(peer)
    try:
        rules.check(peer)
    except VeriteeError as exc:
        typer.echo(f"Measurements mismatch with the reference {reference}: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"Measurements match the reference {reference}.")


def _certificate_der(path: Path) -> bytes:
    """The first certificate of a PEM file as DER (decoded as text: a legacy certificate's
    out-of-range version must reach the verifier), or the file itself as DER."""
    import base64
    import binascii

    try:
        data = path.read_bytes()
    except OSError as exc:
        message = f"cannot read {path}: {exc.strerror}"
        raise typer.BadParameter(message, param_hint="--cert") from None
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    if begin not in data:
        return data
    body = data.split(begin, 1)[1].split(end, 1)[0]
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except binascii.Error:
        raise typer.BadParameter(f"{path}: not PEM", param_hint="--cert") from None
