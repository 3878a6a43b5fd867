"""``veritee collateral prefetch|show``: fill and inspect the collateral cache."""

from __future__ import annotations

import datetime as dt
import enum
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from veritee.encoding import read_evidence_file
from veritee.errors import VeriteeError
from veritee.paths import default_cache_path
from veritee.store.kv import SqliteStore
from veritee.verifier.collateral.amd import KDS_URL, KdsVekSource, vek_request_from_report
from veritee.verifier.collateral.anchor import vendor_fingerprints
from veritee.verifier.collateral.cache import CachedItem, CollateralCache, Step
from veritee.verifier.collateral.http import DEFAULT_TIMEOUT
from veritee.verifier.collateral.intel import (
    INTEL_PCS_URL,
    INTEL_ROOT_CA_CRL_URL,
    CaType,
    PcsCollateral,
    Tee,
    fmspc_and_ca_from_quote,
    normalize_fmspc,
)
from veritee.verifier.intel import trusted_pck_root
from veritee.verifier.intel_quote import parse_quote
from veritee.verifier.intel_root import intel_root_ca
from veritee.verifier.snp_roots import pinned_arks
from veritee.verifier.trust_root import load_test_anchors

__all__ = ["app"]

app = typer.Typer(
    help="Fetch Intel PCS/PCCS and AMD KDS collateral into the local cache, and show it.",
    no_args_is_help=True,
)

_SNP_REPORT_SIZE = 0x4A0
_TDX_TEE_TYPE = 0x81


class TeeChoice(enum.StrEnum):
    tdx = "tdx"
    sgx = "sgx"


class CaChoice(enum.StrEnum):
    platform = "platform"
    processor = "processor"


CacheOption = Annotated[
    Path | None,
    typer.Option(
        "--cache", help="Cache database [default: $VERITEE_HOME/collateral.db]", show_default=False
    ),
]
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="'As of' time (ISO 8601) for cache validity [default: now]"),
]


@dataclass
class _Plan:
    """What prefetch will fetch, and what went wrong while working that out."""

    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, step: Step) -> None:
        if all(s.what != step.what for s in self.steps):
            self.steps.append(step)


@app.command()
def prefetch(
    evidence: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Intel quotes or SNP reports (binary, hex or base64)", show_default=False
        ),
    ] = None,
    pccs: Annotated[str, typer.Option("--pccs", help="PCCS or Intel PCS base URL")] = INTEL_PCS_URL,
    kds: Annotated[str, typer.Option("--kds", help="AMD KDS base URL")] = KDS_URL,
    fmspc: Annotated[
        list[str] | None,
        typer.Option("--fmspc", help="Also fetch for this FMSPC (12 hex digits); repeatable"),
    ] = None,
    tee: Annotated[TeeChoice, typer.Option("--tee", help="TEE for --fmspc")] = TeeChoice.tdx,
    ca: Annotated[CaChoice, typer.Option("--ca", help="PCK CA for --fmspc")] = CaChoice.platform,
    product: Annotated[
        str, typer.Option("--product", help="AMD product for v2 SNP reports, which name none")
    ] = "Milan",
    root_ca_crl_url: Annotated[
        str, typer.Option("--root-ca-crl-url", help="Intel root CA CRL (DER) when PCCS lacks it")
    ] = INTEL_ROOT_CA_CRL_URL,
    cache: CacheOption = None,
    at: AtOption = None,
    trust_root: Annotated[
        Path | None,
        typer.Option(
            "--trust-root",
            help="Also accept collateral under this emulator test root (kept only in a "
            "--cache FILE: the default cache holds vendor-rooted collateral only)",
        ),
    ] = None,
) -> None:
    """Fetch the collateral that EVIDENCE files (and --fmspc values) need into the cache.

    Each item must chain to the root its evidence chains to (Intel's or AMD's, or the
    --trust-root test root); --fmspc items to Intel's.  Items are cached by that root.
    """
    when = _parse_at(at)
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    cache_path = cache or default_cache_path()
    try:
        anchors = load_test_anchors(trust_root) if trust_root is not None else None
        store = SqliteStore(cache_path)
    except VeriteeError as exc:
        err.print(f"error: {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc
    intel_roots: tuple[bytes, ...] = (intel_root_ca(),)
    if anchors is not None and anchors.intel_root_der is not None:
        intel_roots += (anchors.intel_root_der,)
    arks = (*pinned_arks(), *anchors.amd_arks) if anchors and anchors.amd_arks else None
    test_roots = cache_path.resolve() != default_cache_path().resolve()
    with store, httpx.Client(timeout=DEFAULT_TIMEOUT) as client:
        cached = CollateralCache(store, test_roots=test_roots)
        intel = PcsCollateral(pccs, cache=cached, client=client, root_ca_crl_url=root_ca_crl_url)
        amd = KdsVekSource(kds, cache=cached, client=client, trusted_arks=arks)
        plan = _plan(
            evidence or [], fmspc or [], tee.value, ca.value, product, intel, amd, intel_roots
        )
        if not plan.steps and not plan.errors:
            err.print("nothing to prefetch: give evidence files or --fmspc")
            raise typer.Exit(2)
        for note in plan.notes:
            out.print(escape(note), soft_wrap=True)
        failures = plan.errors + _run(plan.steps, when, out)
    for failure in failures:
        err.print(f"error: {escape(failure)}", soft_wrap=True)
    fetched = len(plan.steps) - (len(failures) - len(plan.errors))
    out.print(
        f"{fetched} of {len(plan.steps)} items ready in {escape(str(cache_path))}", soft_wrap=True
    )
    if failures:
        raise typer.Exit(1)


@app.command()
def show(
    cache: CacheOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    at: AtOption = None,
) -> None:
    """List cached collateral: kind, key, when fetched, when it expires, and its state."""
    when = _parse_at(at)
    cache_path = cache or default_cache_path()
    items: list[CachedItem] = []
    if cache_path.exists():
        try:
            with SqliteStore(cache_path) as store:
                items = CollateralCache(store).entries()
        except VeriteeError as exc:
            Console(stderr=True).print(f"error: {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps([item.to_json(when) for item in items], indent=2))
        return
    out = Console(highlight=False)
    if not items:
        out.print(f"no collateral cached in {escape(str(cache_path))}")
        return
    table = Table(title=escape(str(cache_path)))
    table.add_column("kind", no_wrap=True)
    table.add_column("key", overflow="fold")
    for name in ("root", "fetched", "expires", "state"):
        table.add_column(name, no_wrap=True)
    vendor = vendor_fingerprints()
    for item in items:
        state = item.state(when)
        style = "green" if state == "valid" else "red"
        root = "vendor" if item.root in vendor else f"[yellow]test {item.root[:8]}[/yellow]"
        table.add_row(
            item.kind,
            escape(item.key),
            root,
            _short(item.fetched_at),
            "never" if item.expires_at is None else _short(item.expires_at),
            f"[{style}]{state}[/{style}]",
        )
    out.print(table)


def _plan(
    evidence: list[Path],
    fmspcs: list[str],
    tee: Tee,
    ca: CaType,
    product: str,
    intel: PcsCollateral,
    amd: KdsVekSource,
    intel_roots: tuple[bytes, ...],
) -> _Plan:
    plan = _Plan()
    for path in evidence:
        try:
            _plan_evidence(plan, path, product, intel, amd, intel_roots)
        except VeriteeError as exc:
            plan.errors.append(f"{path}: {exc}")
    for value in fmspcs:
        try:
            for step in intel.steps(tee=tee, fmspc=normalize_fmspc(value), ca=ca):
                plan.add(step)
        except VeriteeError as exc:
            plan.errors.append(str(exc))
    return plan


def _plan_evidence(
    plan: _Plan,
    path: Path,
    product: str,
    intel: PcsCollateral,
    amd: KdsVekSource,
    intel_roots: tuple[bytes, ...],
) -> None:
    raw = read_evidence_file(path)
    kind = _evidence_kind(raw)
    if kind is None:
        plan.errors.append(f"{path}: neither an Intel quote nor a 1184-byte SNP report")
        return
    if kind != "snp":
        fmspc, ca = fmspc_and_ca_from_quote(raw)
        root = trusted_pck_root(parse_quote(raw).pck_chain_pem, intel_roots)
        test = "" if root == intel_roots[0] else ", under the test root"
        plan.notes.append(f"{path}: {kind} quote, FMSPC {fmspc}, {ca} CA{test}")
        for step in intel.steps(tee=kind, fmspc=fmspc, ca=ca, root=root):
            plan.add(step)
        return
    request = vek_request_from_report(raw, default_product=product)
    guessed = " (assumed: v2 report)" if request.product_guessed else ""
    plan.notes.append(f"{path}: SNP report, {request.product}{guessed}, signer {request.signer}")
    if request.signer is None:
        return
    signer = request.signer
    plan.add(
        Step(
            f"{request.product} {signer.upper()} cert chain",
            lambda at: amd.fetch_cert_chain(request.product, signer, at=at),
        )
    )
    if signer == "vlek":
        plan.notes.append(f"{path}: VLEKs are not on KDS; the evidence must carry it")
        return
    vek = Step(
        f"{request.product} VCEK for chip {request.chip_id[:8].hex()}…",
        lambda at: amd.fetch_vek(request.product, request.chip_id, request.reported_tcb, at=at),
    )
    plan.add(vek)


def _evidence_kind(raw: bytes) -> Literal["tdx", "sgx", "snp"] | None:
    """ "tdx"/"sgx" for an ECDSA quote (v3-v5), "snp" for an SNP report, else None."""
    if len(raw) >= 48:
        version, key_type, tee_type = struct.unpack_from("<HHI", raw, 0)
        if version in (3, 4, 5) and key_type == 2:
            return "tdx" if tee_type == _TDX_TEE_TYPE else "sgx"
    if len(raw) == _SNP_REPORT_SIZE and 2 <= struct.unpack_from("<I", raw, 0)[0] <= 5:
        return "snp"
    return None


def _run(steps: list[Step], at: dt.datetime, out: Console) -> list[str]:
    failures: list[str] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=out) as progress:
        tasks = [progress.add_task(escape(s.what), total=1, status="pending") for s in steps]
        for step, task in zip(steps, tasks, strict=True):
            progress.update(task, status="fetching")
            try:
                obtained = step.run(at)
            except VeriteeError as exc:
                failures.append(str(exc))
                progress.update(task, status="[red]failed[/red]")
                continue
            if not obtained.in_cache:
                failures.append(
                    f"{step.what}: fetched but not cached: it chains to a test root, and "
                    "the default cache holds only collateral under the vendors' roots "
                    "(use --cache FILE)"
                )
                progress.update(task, status="[yellow]not cached[/yellow]")
                continue
            status = "cached" if obtained.source == "cache" else "fetched"
            progress.update(task, advance=1, status=f"[green]{status}[/green]")
    return failures


def _parse_at(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}", param_hint="--at") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _short(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
