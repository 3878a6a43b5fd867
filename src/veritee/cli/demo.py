"""``veritee demo``: the seeds' flows end to end on an emulated TEE, on loopback.

1. A test root of trust is generated; the KBS (with the AS and RVPS in process) and the
   AS REST API are served on free 127.0.0.1 ports, with real HTTP.
2. Seed 000: emulated TDX evidence is POSTed to ``/attestation`` with the seed's
   ``client`` policy; the EAR token is verified through the JWKS and its trust vector shown.
3. Seed 002: a resource is set through the authenticated admin API; the guest attests
   and is denied under the default policy (PolicyDeny); an allow policy is set; the
   resource is released and decrypted with the guest's key.
4. Seed 000, use case 1 (:mod:`veritee.cli.demo_images`): a real registry, images pushed
   with skopeo, pulled in the emulated guest behind attestation: insecure-accept-all, a
   signed image accepted and an unsigned one refused, an encrypted image decrypted only
   once the KBS releases its key.
5. Seed 002, confidential AI (:mod:`veritee.cli.demo_gpu`): the TDX guest with an emulated
   H100; the AS gives ``cpu0`` and ``gpu0``; a policy needing both releases the model key,
   and a GPU whose measurement differs from its RIM is refused.
"""

from __future__ import annotations

import base64
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from veritee.cli.demo_gpu import run_gpu_demo
from veritee.cli.demo_images import run_image_demo

SEED_CLIENT_POLICY = """package policy

import rego.v1

default executables := 32
default hardware := 97
default configuration := 32
default file_system := 32

executables := 3 if { input.tdx }

hardware := 2 if {
\tinput.tdx.quote.header.tee_type == "81000000"
\tinput.tdx.quote.header.vendor_id == "939a7233f79c4ca9940a0db3957f0607"
}

configuration := 2 if { input.tdx }

file_system := 2 if { input.tdx }
"""
ALLOW_RESOURCES = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
SEED_RESOURCE = "default/container-policy/insecure-accept-all"
SEED_SECRET = b'{"default": [{"type": "insecureAcceptAnything"}], "transports": {}}'

console = Console()


def _serve(app: Any) -> tuple[str, Any]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the demo server did not start")
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Keep the demo's state here (default: a temporary directory)."),
    ] = None,
) -> None:
    """Run the seeds' flows end to end on an emulated TEE (real crypto, real HTTP)."""
    with tempfile.TemporaryDirectory() as scratch:
        ok = _run(data_dir or Path(scratch))
    raise typer.Exit(0 if ok else 1)


def _run(base: Path) -> bool:
    from veritee.as_.api import create_app
    from veritee.as_.config import AsSettings
    from veritee.emulator.evidence import EvidenceRequest, emulate
    from veritee.emulator.root import TestRoot
    from veritee.guest.emulated import EmulatedEvidenceProvider
    from veritee.guest.kbs_client import KbsClient
    from veritee.guest.kbs_http import KbsRequestError
    from veritee.kbs.bootstrap import KbsSettings, build_kbs
    from veritee.kbs.service import DEFAULT_RESOURCE_POLICY
    from veritee.token.verify import load_jwks, verify_token

    console.rule("[bold]veritee demo[/bold]: emulated TEE, real signatures, real HTTP")
    root_dir = base / "test-root"
    root = TestRoot.load(root_dir) if root_dir.exists() else TestRoot.init(root_dir)
    console.print(f"test root of trust: {root_dir} (trusted only because the demo says so)")
    parts = build_kbs(
        KbsSettings(attestation=AsSettings(data_dir=base / "state", trust_root=root_dir))
    )
    kbs_url, kbs_server = _serve(parts.app)
    as_app = create_app(parts.attestation.service, admin=parts.admin, rvps=parts.attestation.rvps)
    as_url, as_server = _serve(as_app)
    console.print(f"KBS on {kbs_url}, Attestation Service on {as_url}")
    admin_token = parts.attestation.admin.token_path.read_text().strip()
    good = True
    try:
        console.rule("seed 000: evidence to the Attestation Service, policy 'client'")
        parts.attestation.service.policies.set_policy("client", SEED_CLIENT_POLICY)
        wire = emulate(root, EvidenceRequest(tee="tdx")).wire_bytes()
        evidence = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
        reply = httpx.post(
            f"{as_url}/attestation",
            timeout=30,
            json={
                "verification_requests": [{"tee": "tdx", "evidence": evidence}],
                "policy_ids": ["client"],
            },
        )
        reply.raise_for_status()
        claims = verify_token(reply.text, load_jwks(f"{as_url}/.well-known/jwks.json"))
        vector = claims["submods"]["cpu0"]["ear.trustworthiness-vector"]
        table = Table(title="submods.cpu0.ear.trustworthiness-vector")
        table.add_column("claim")
        table.add_column("value", justify="right")
        for name, value in vector.items():
            table.add_row(name, str(value))
        console.print(table)
        expected = {"configuration": 2, "executables": 3, "file-system": 2, "hardware": 2}
        good &= dict(vector) == expected
        console.print(
            "token verified through the JWKS; emulated evidence is marked: "
            f"ear.veritee.emulated = {claims.get('ear.veritee.emulated')}"
        )

        console.rule("seed 002: a secret behind the KBS")
        with KbsClient(kbs_url, admin_token=admin_token) as admin:
            admin.set_resource(SEED_RESOURCE, SEED_SECRET)
            admin.set_resource_policy(DEFAULT_RESOURCE_POLICY)  # a rerun starts from default
        provider = EmulatedEvidenceProvider(root_dir)
        with KbsClient(kbs_url, evidence_provider=provider, tee="tdx") as guest:
            guest.attest()
            try:
                guest.get_resource(SEED_RESOURCE)
                console.print("[red]the default policy released the resource[/red]")
                good = False
            except KbsRequestError as exc:
                console.print(
                    f"default policy: [yellow]{exc.name}[/yellow]: {exc.detail} (HTTP {exc.status})"
                )
                good &= exc.name == "PolicyDeny"
            with KbsClient(kbs_url, admin_token=admin_token) as admin:
                admin.set_resource_policy(ALLOW_RESOURCES)
            secret = guest.get_resource(SEED_RESOURCE)
            console.print(f"after an allow policy: released and decrypted: {secret.decode()}")
            good &= secret == SEED_SECRET
        good &= run_image_demo(console, base, root_dir, kbs_url, admin_token)
        if root.nvidia is None:
            console.rule("seed 002: confidential AI, a CPU TEE and an NVIDIA H100")
            console.print(
                f"[yellow]skipped[/yellow]: the test root in {root_dir} was made before GPU "
                "support and has no nvidia/ PKI; remove that directory to make a new one"
            )
        else:
            good &= run_gpu_demo(console, root_dir, kbs_url, admin_token)
    finally:
        kbs_server.should_exit = True
        as_server.should_exit = True
    console.rule(
        "[green]all flows behaved as the seeds show[/green]"
        if good
        else "[red]a flow did not behave as expected[/red]"
    )
    return good
