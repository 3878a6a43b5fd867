"""``veritee ratls proxy``: an Inclavared-style RA-TLS terminating proxy."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from veritee.errors import VeriteeError

if TYPE_CHECKING:
    from veritee.ratls.proxy import RatlsProxy
    from veritee.verifier.registry import VerifierSettings

app = typer.Typer(no_args_is_help=True)

EXIT_FAILED, EXIT_USAGE = 1, 2

ATTESTER_HELP = (
    "sgx_ecdsa, tdx (tdx_ecdsa), snp (sev_snp): this guest's TEE; "
    "emulated-sgx, emulated-tdx, emulated-snp: the emulator under --emulated."
)
VERIFIER_HELP = "auto (by the evidence), sgx_ecdsa, sgx_ecdsa_qve, tdx_ecdsa, sev_snp."

VerifierOption = Annotated[str, typer.Option(help=VERIFIER_HELP)]
PolicyOption = Annotated[
    Path | None,
    typer.Option(help="Rego policy or JSON reference file for the peer's verified claims."),
]
TrustRootOption = Annotated[
    Path | None,
    typer.Option(help="Also trust this emulator test root (as in veritee verify)."),
]
PccsOption = Annotated[
    str | None,
    typer.Option(
        help="PCCS or Intel PCS base URL: SGX/TDX collateral (cached, as veritee verify)."
    ),
]
KdsOption = Annotated[
    str | None, typer.Option(help="AMD KDS base URL: SNP VCEKs (cached, as veritee verify).")
]
EmulatedOption = Annotated[
    Path | None,
    typer.Option(help="The emulator test root that an emulated-* attester signs under."),
]


def host_port(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise typer.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint=flag)
    return host.strip("[]"), int(port)


def collateral_settings(pccs: str | None, kds: str | None) -> VerifierSettings:
    """Where the verifier gets collateral for hardware evidence; a test root brings its own."""
    from veritee.paths import default_cache_path
    from veritee.verifier.registry import VerifierSettings

    uses_network = pccs is not None or kds is not None
    return VerifierSettings(
        pccs_url=pccs, kds_url=kds, cache_path=default_cache_path() if uses_network else None
    )


def check_names(attester: str | None, verifier: str) -> None:
    from veritee.ratls.proxy import ATTESTERS, VERIFIERS

    if attester is not None and attester not in ATTESTERS:
        raise typer.BadParameter(
            f"expected one of {', '.join(ATTESTERS)}, got {attester!r}", param_hint="--attester"
        )
    if verifier not in VERIFIERS:
        raise typer.BadParameter(
            f"expected one of {', '.join(VERIFIERS)}, got {verifier!r}", param_hint="--verifier"
        )


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    Console(stderr=True, highlight=False).print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


@app.command()
def proxy(
    listen: Annotated[
        str, typer.Option(metavar="HOST:PORT", help="Where to accept RA-TLS (port 0: any free).")
    ],
    attester: Annotated[str, typer.Option(help=ATTESTER_HELP)],
    xfer: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="The local server to forward plaintext to; without it the proxy answers "
            "Inclavared's GETENCLAVEINFO itself.",
        ),
    ] = None,
    verifier: VerifierOption = "auto",
    mutual: Annotated[
        bool, typer.Option(help="Require and verify the client's RA-TLS certificate.")
    ] = False,
    policy: PolicyOption = None,
    emulated: EmulatedOption = None,
    trust_root: TrustRootOption = None,
    pccs: PccsOption = None,
    kds: KdsOption = None,
    handshake_timeout: Annotated[
        float, typer.Option(help="Seconds for a client's handshake and attestation.")
    ] = 30,
) -> None:
    """Terminate RA-TLS on --listen and forward plaintext to --xfer, like Inclavared.

    In --mutual mode a client whose attestation fails is disconnected before the --xfer
    server is connected, so it never sees a byte from that client.
    """
    from veritee.ratls.proxy import RatlsProxy, attester_identity, peer_verifier

    host, port = host_port(listen, "--listen")
    upstream = host_port(xfer, "--xfer") if xfer is not None else None
    check_names(attester, verifier)
    if not mutual and any(v is not None for v in (policy, trust_root, pccs, kds)):
        raise typer.BadParameter(
            "only used with --mutual", param_hint="--policy/--trust-root/--pccs/--kds"
        )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("veritee.ratls").setLevel(logging.INFO)
    try:
        identity = attester_identity(attester, emulated)
        checker = (
            peer_verifier(
                verifier,
                trust_root=trust_root,
                policy=policy,
                settings=collateral_settings(pccs, kds),
            )
            if mutual
            else None
        )
    except VeriteeError as exc:
        raise fail(str(exc)) from None
    server = RatlsProxy(
        identity, xfer=upstream, verifier=checker, handshake_timeout=handshake_timeout
    )
    mode = f"mutual, clients verified by {verifier}" if mutual else "server-only"
    target = (
        f"forwarding to {upstream[0]}:{upstream[1]}" if upstream else "answering GETENCLAVEINFO"
    )
    try:
        asyncio.run(_serve(server, host, port, f"(RA-TLS {attester}, {mode}); {target}"))
    except OSError as exc:
        raise fail(f"cannot listen on {listen}: {exc.strerror or exc}") from None


async def _serve(proxy: RatlsProxy, host: str, port: int, what: str) -> None:
    server = await proxy.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = ", ".join(_address(sock.getsockname()) for sock in server.sockets)
    typer.echo(f"veritee ratls proxy listening on {bound} {what}")
    async with server:
        await stop.wait()
        server.close()
        await proxy.aclose()


def _address(name: object) -> str:
    if isinstance(name, tuple) and len(name) >= 2:
        host = str(name[0])
        return f"[{host}]:{name[1]}" if ":" in host else f"{host}:{name[1]}"
    return str(name)
