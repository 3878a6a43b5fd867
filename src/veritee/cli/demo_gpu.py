"""``veritee demo``, seed 002's confidential AI: a CPU TEE and an NVIDIA GPU, both attested.

The guest is the emulated TDX with an emulated H100 (its SPDM report, device certificate
chain, RIMs and OCSP responses all under the demo's test root).  RCAR carries the GPU's
evidence as Trustee's composite evidence; the AS verifies both and gives a ``cpu0`` and a
``gpu0`` submod; a resource policy that requires both releases the model key.  A GPU whose
firmware measurement differs from its RIM is then attested: ``gpu0`` is contraindicated
and the key stays in the KBS.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from veritee.cli.demo_logs import show_logs
from veritee.errors import VeriteeError

__all__ = ["BOTH_DEVICES_POLICY", "run_gpu_demo"]

MODEL_KEY_PATH = "default/model/key"
MODEL_KEY = b"model decryption key: 6f1c9e..."
#: A resource policy that needs the CPU and the GPU (what seed 002 asks for).
BOTH_DEVICES_POLICY = """package policy

import rego.v1

default allow := false

allow if {
    data.plugin == "resource"
    input.submods.cpu0["ear.status"] != "contraindicated"
    input.submods.gpu0["ear.status"] == "affirming"
}
"""


def _submods(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    submods: dict[str, Any] = claims["submods"]
    return submods


def _table(submods: dict[str, Any]) -> Table:
    table = Table(title="EAR submods")
    table.add_column("submod")
    table.add_column("ear.status")
    table.add_column("hardware", justify="right")
    table.add_column("executables", justify="right")
    table.add_column("configuration", justify="right")
    for name, submod in sorted(submods.items()):
        vector = submod.get("ear.trustworthiness-vector", {})
        table.add_row(
            name,
            submod.get("ear.status", "?"),
            str(vector.get("hardware", "")),
            str(vector.get("executables", "")),
            str(vector.get("configuration", "")),
        )
    return table


def run_gpu_demo(console: Console, root_dir: Path, kbs_url: str, admin_token: str) -> bool:
    """True when the CPU+GPU flow behaved as seed 002 shows."""
    from veritee.guest.emulated import EmulatedEvidenceProvider
    from veritee.guest.kbs_client import KbsClient
    from veritee.guest.kbs_http import KbsRequestError

    console.rule("seed 002: confidential AI, a CPU TEE and an NVIDIA H100 attested together")
    with KbsClient(kbs_url, admin_token=admin_token) as admin:
        admin.set_resource(MODEL_KEY_PATH, MODEL_KEY)
        admin.set_resource_policy(BOTH_DEVICES_POLICY)
    console.print("resource policy: cpu0 not contraindicated and gpu0 affirming")
    good = True
    with show_logs(console, ("veritee.as",)):
        console.print("[bold]an emulated TDX guest with an emulated H100[/bold]")
        try:
            provider = EmulatedEvidenceProvider(root_dir, devices=["nvidia"])
            with KbsClient(kbs_url, evidence_provider=provider, tee="tdx") as guest:
                submods = _submods(guest.attest())
                console.print(_table(submods))
                key = guest.get_resource(MODEL_KEY_PATH)
                console.print(f"  [green]released[/green]: {escape(key.decode())}")
                good &= key == MODEL_KEY and submods["gpu0"]["ear.status"] == "affirming"
        except VeriteeError as exc:
            console.print(f"  [red]failed: {escape(str(exc))}[/red]")
            return False
        console.print("[bold]the same guest, its GPU firmware measurement 3 changed[/bold]")
        changed = {"nvidia": {"measurement.3": b"\x42" * 48}}
        tampered = EmulatedEvidenceProvider(root_dir, devices=["nvidia"], device_settings=changed)
        with KbsClient(kbs_url, evidence_provider=tampered, tee="tdx") as guest:
            submods = _submods(guest.attest())
            console.print(_table(submods))
            try:
                guest.get_resource(MODEL_KEY_PATH)
                console.print("  [red]the key was released to a tampered GPU[/red]")
                good = False
            except KbsRequestError as exc:
                console.print(f"  refused as expected: [yellow]{exc.name}[/yellow]: {exc.detail}")
                good &= exc.name == "PolicyDeny" and submods["gpu0"]["ear.status"] == (
                    "contraindicated"
                )
    return good
