"""``veritee serve …``: run the services.  Every serve command takes the same common flags."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from veritee.errors import ConfigError, VeriteeError
from veritee.paths import veritee_home
from veritee.serving import server_options

if TYPE_CHECKING:
    from veritee.as_.config import AsSettings
    from veritee.kbs.bootstrap import KbsComponents
    from veritee.kbs.config import KbsConfig
    from veritee.kbs.verdictd_server import VerdictdServer
    from veritee.kbs.worker import ServeSpec

app = typer.Typer(help="Run veritee services.  With no role: KBS, AS and RVPS in one process.")
console = Console()

Host = Annotated[str, typer.Option(help="Address to bind (default loopback).")]
DataDir = Annotated[
    Path | None,
    typer.Option(help="State directory: stores, keys, admin token (default $VERITEE_HOME)."),
]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="Configuration file.")]
TrustRoot = Annotated[
    Path | None,
    typer.Option(help="Also trust this emulator test root; its evidence is marked emulated."),
]


Port = Annotated[int | None, typer.Option(help="TCP port (default: the role's upstream port).")]
Workers = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Worker processes on the one port (default: the config's worker_count, else "
        "the CPUs available). With more than one, RCAR sessions live in <data dir>/"
        "sessions.db (SQLite, WAL) unless the config names Redis.",
    ),
]
RatlsListen = Annotated[
    str | None,
    typer.Option(
        "--ratls-listen",
        metavar="HOST:PORT",
        help="Also serve Verdictd's key-broker protocol over mutual RA-TLS here (the "
        "[ratls] section of the --config file gives the broker's own certificate).",
    ),
]


def _fail(exc: Exception) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(2)


def _run_kbs(
    host: str,
    port: int | None,
    data_dir: Path | None,
    config: Path | None,
    trust_root: Path | None,
    allow_sample: bool,
    policy_dir: Path | None,
    what: str,
    *,
    with_as_api: bool = False,
    ratls_listen: str | None = None,
    workers: int | None = None,
) -> None:
    """Serve the KBS; ``with_as_api`` also serves the AS REST API (``/attestation``,
    ``/policy``, ``/rvps``, the JWKS) on the same port, as the all-in-one does.  With
    several workers the first start happens here, once, then uvicorn's supervisor runs
    the workers (:mod:`veritee.kbs.worker`); the RA-TLS broker runs in this process."""
    from veritee.kbs.worker import ServeSpec, first_start, resolve

    spec = ServeSpec(
        data_dir=data_dir or veritee_home(),
        config=config,
        trust_root=trust_root,
        allow_sample=allow_sample,
        policy_dir=policy_dir,
        with_as_api=with_as_api,
        workers=workers,
    )
    listen_host, listen_port, ssl = host, port or 8080, None
    try:
        plan = resolve(spec)
        loaded = plan.config
        if loaded is not None:
            if port is None and loaded.http_server.sockets:
                listen_host, listen_port = loaded.http_server.addresses()[0]
            if not loaded.http_server.insecure_http and loaded.http_server.tls.certificate:
                ssl = loaded.http_server.tls
        parts = first_start(plan)
        ratls = _ratls_broker(loaded, ratls_listen, parts, plan.settings.attestation)
    except VeriteeError as exc:
        raise _fail(exc) from exc
    from veritee.as_.bootstrap import describe_first_start

    lines = describe_first_start(parts.attestation, spec.data_dir)
    for line in (*lines, *plan.settings.warnings, *plan.notes):
        console.print(line)
    if trust_root is not None:
        console.print(
            f"[yellow]trusting the test root {trust_root}: evidence under it "
            "is marked emulated[/yellow]"
        )
    scheme = "https" if ssl is not None else "http"
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("veritee").setLevel(logging.INFO)
    if ratls is not None:
        try:
            bound = ratls.start()
        except VeriteeError as exc:
            raise _fail(exc) from exc
        console.print(f"RA-TLS key broker (Verdictd protocol, mutual) on {bound[0]}:{bound[1]}")
    console.print(f"{what} on {scheme}://{listen_host}:{listen_port}")
    plural = "s" if plan.workers > 1 else ""
    console.print(f"{plan.workers} worker{plural}, RCAR sessions {escape(plan.sessions_where)}")
    tls: dict[str, Any] = {
        "ssl_keyfile": str(ssl.private_key) if ssl and ssl.private_key else None,
        "ssl_certfile": str(ssl.certificate) if ssl and ssl.certificate else None,
    }
    if plan.workers == 1:
        import uvicorn

        uvicorn.run(parts.app, host=listen_host, port=listen_port, **tls, **server_options())
        return
    code = _supervise(plan.spec, listen_host, listen_port, tls)
    if code:
        raise typer.Exit(code)


def _supervise(
    spec: ServeSpec, host: str, port: int, tls: dict[str, Any], *, factory: str | None = None
) -> int:
    """Run ``spec.workers`` worker processes on one port under uvicorn's supervisor (it
    restarts a worker that dies); return non-zero when a worker could not start."""
    import os

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from veritee.kbs.worker import FACTORY, SPEC_ENV

    os.environ[SPEC_ENV] = spec.to_json()  # the spawned workers inherit it
    config = uvicorn.Config(
        factory or FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=spec.workers,
        **tls,
        **server_options(),
    )
    sock = config.bind_socket()  # a port in use exits here with STARTUP_FAILURE
    supervisor = Multiprocess(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        sock.close()
    failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
    if failed:
        Console(stderr=True).print("[red]error:[/red] a worker failed to start (see above)")
    return STARTUP_FAILURE if failed else 0


def _ratls_broker(
    loaded: KbsConfig | None, listen: str | None, parts: KbsComponents, attestation: AsSettings
) -> VerdictdServer | None:
    """The RA-TLS key broker when ``--ratls-listen`` or ``[ratls] listen`` asks for one."""
    section = loaded.ratls if loaded is not None else None
    if listen is None and (section is None or section.listen is None):
        return None
    if section is None:
        raise ConfigError(
            "--ratls-listen needs a [ratls] section in the --config file: attester = "
            "\"sgx_ecdsa\"|\"tdx\"|\"snp\"|\"emulated-sgx\"|… or certificate and private_key"
        )
    from veritee.as_.bootstrap import verifier_settings
    from veritee.kbs.verdictd import VerdictdBroker
    from veritee.kbs.verdictd_server import build_verdictd_server

    broker = VerdictdBroker.for_kbs(parts.service)
    return build_verdictd_server(
        section, broker, verifier_settings(attestation), listen=listen,
        allow_debug=attestation.allow_debug,
    )


@app.callback(invoke_without_command=True)
def serve_all(
    ctx: typer.Context,
    host: Host = "127.0.0.1",
    port: Port = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    trust_root: TrustRoot = None,
    allow_sample: Annotated[bool, typer.Option(help="Accept unsigned sample evidence.")] = False,
    policy_dir: Annotated[
        Path | None, typer.Option(help="Load every *.rego here as an attestation policy.")
    ] = None,
    ratls_listen: RatlsListen = None,
    workers: Workers = None,
) -> None:
    """All in one: the KBS on :8080 with the AS and RVPS in process, SQLite in the data dir;
    the AS REST API (``POST /attestation``, policies, reference values, JWKS) on the same port."""
    if ctx.invoked_subcommand is not None:
        return
    _run_kbs(
        host,
        port,
        data_dir,
        config,
        trust_root,
        allow_sample,
        policy_dir,
        "KBS (with the Attestation Service and RVPS in process, and their REST API)",
        with_as_api=True,
        ratls_listen=ratls_listen,
        workers=workers,
    )


@app.command("kbs")
def serve_kbs(
    host: Host = "127.0.0.1",
    port: Port = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    trust_root: TrustRoot = None,
    allow_sample: Annotated[bool, typer.Option(help="Accept unsigned sample evidence.")] = False,
    policy_dir: Annotated[
        Path | None, typer.Option(help="Load every *.rego here as an attestation policy.")
    ] = None,
    ratls_listen: RatlsListen = None,
    workers: Workers = None,
) -> None:
    """The KBS on :8080; its attestation runs in process (Trustee's coco_as_builtin)."""
    _run_kbs(
        host, port, data_dir, config, trust_root, allow_sample, policy_dir, "KBS",
        ratls_listen=ratls_listen, workers=workers,
    )


@app.command("rvps")
def serve_rvps(
    host: Host = "127.0.0.1",
    port: Port = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    trust_root: TrustRoot = None,
) -> None:
    """The RVPS alone on :50003 (its REST API; admin token from the data directory)."""
    import uvicorn
    from fastapi import FastAPI, Request

    from veritee.auth.admin import AdminAuthError, ensure_admin_credentials
    from veritee.rvps.api import rvps_router
    from veritee.rvps.store import ReferenceValueStore
    from veritee.store.postgres import open_store
    from veritee.web import install_error_handlers

    del trust_root  # accepted so that every serve command takes the same flags
    directory = data_dir or veritee_home()
    try:
        store_url = str(directory / "veritee.db")
        if config is not None:
            from veritee.as_.config import AsSettings, load_as_config

            store_url = load_as_config(config, AsSettings(data_dir=directory)).store_url()
        directory.mkdir(parents=True, exist_ok=True)
        store = ReferenceValueStore(open_store(store_url))
        creds = ensure_admin_credentials(directory)
    except VeriteeError as exc:
        raise _fail(exc) from exc

    def authorize(request: Request) -> None:
        from fastapi import HTTPException

        try:
            creds.auth.authorize(request.headers.get("authorization"), path=request.url.path)
        except AdminAuthError as exc:
            raise HTTPException(
                401,
                {
                    "type": "https://github.com/confidential-containers/kbs/errors/AdminAuthAccess",
                    "detail": str(exc),
                },
            ) from exc

    application = FastAPI(title="veritee RVPS")
    install_error_handlers(application)
    application.include_router(rvps_router(store, authorize=authorize))
    if creds.created:
        console.print(f"admin token (Bearer) written to: {creds.token_path}")
    console.print(f"RVPS on http://{host}:{port or 50003}")
    uvicorn.run(application, host=host, port=port or 50003, **server_options())


@app.command("as")
def serve_as(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 50005,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    trust_root: TrustRoot = None,
    allow_sample: Annotated[bool, typer.Option(help="Accept unsigned sample evidence.")] = False,
    policy_dir: Annotated[
        Path | None,
        typer.Option(
            help="Load every *.rego here as a policy (id = file name), like Trustee's "
            "attestation-service/policies/opa/."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes on the one port (default: the CPUs "
                     "available; one when the store is in memory)."),
    ] = None,
) -> None:
    """The Attestation Service (Trustee's restful-as API) on :50005."""
    from veritee.as_.bootstrap import describe_first_start
    from veritee.kbs.worker import FACTORY_AS, ServeSpec, build_as, resolve_as

    spec = ServeSpec(
        data_dir=data_dir or veritee_home(), config=config, trust_root=trust_root,
        allow_sample=allow_sample, policy_dir=policy_dir, workers=workers, role="as",
    )
    try:
        plan = resolve_as(spec)
        parts, application = build_as(plan)  # the first start, once, before any worker
    except VeriteeError as exc:
        raise _fail(exc) from exc
    settings = plan.settings
    for line in (*describe_first_start(parts, spec.data_dir), *settings.notes, *plan.notes):
        console.print(line)
    if settings.trust_root is not None:
        console.print(
            f"[yellow]trusting the test root {settings.trust_root}: evidence under it "
            "is marked emulated[/yellow]"
        )
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("veritee").setLevel(logging.INFO)
    console.print(f"Attestation Service on http://{host}:{port}")
    console.print(f"{plan.workers} worker{'s' if plan.workers > 1 else ''}")
    if plan.workers == 1:
        import uvicorn

        uvicorn.run(application, host=host, port=port, **server_options())
        return
    code = _supervise(plan.spec, host, port, {}, factory=FACTORY_AS)
    if code:
        raise typer.Exit(code)
