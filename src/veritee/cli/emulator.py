"""``veritee emulator``: test roots, emulated evidence, and an emulated PCCS/KDS."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, cast

import typer
from rich.console import Console

from veritee.emulator.amd_pki import PRODUCTS
from veritee.emulator.evidence import EMULATED_DEVICES, EMULATED_TEES, EvidenceRequest, emulate
from veritee.emulator.intel_pki import TCB_STATUSES
from veritee.emulator.root import TestRoot
from veritee.errors import InputError

app = typer.Typer(no_args_is_help=True, help="Emulated TEEs under a generated test root.")
console = Console()

_PRODUCTS = PRODUCTS
_STATUSES = TCB_STATUSES


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the test root.")],
    product: Annotated[str, typer.Option(help="AMD generation: Milan, Genoa or Turin.")] = "Milan",
    tcb_status: Annotated[
        str, typer.Option(help="TCB status of the emulated Intel platform.")
    ] = "UpToDate",
) -> None:
    """Create test roots of trust (Intel, AMD and NVIDIA) in DIRECTORY."""
    if product not in _PRODUCTS:
        raise typer.BadParameter(f"expected one of {', '.join(_PRODUCTS)}", param_hint="--product")
    if tcb_status not in _STATUSES:
        raise typer.BadParameter(
            f"expected one of {', '.join(_STATUSES)}", param_hint="--tcb-status"
        )
    try:
        TestRoot.init(
            directory,
            product=product,
            tcb_status=tcb_status,
        )
    except InputError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"test root created in [bold]{directory}[/bold]")
    console.print(
        "[yellow]It is trusted only where you pass --trust-root "
        f"{directory}; evidence under it is marked emulated.[/yellow]"
    )


def _settings(values: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected FIELD=HEX, got {item!r}", param_hint="--set")
        try:
            out[name] = bytes.fromhex(value.removeprefix("0x"))
        except ValueError as exc:
            raise typer.BadParameter(f"{name}: not hex", param_hint="--set") from exc
    return out


def _rim_tamper(values: list[str]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for name, value in _settings(values).items():
        index = name.removeprefix("measurement.")
        if index == name or not index.isdigit():
            raise typer.BadParameter(
                f"expected measurement.N=HEX, got {name!r}", param_hint="--rim-set"
            )
        out[int(index)] = value
    return out


@app.command()
def evidence(
    root: Annotated[Path, typer.Option(help="Test root directory (from `emulator init`).")],
    tee: Annotated[str, typer.Option(help="tdx, sgx, snp, sample or nvidia (an H100).")],
    out: Annotated[Path, typer.Option(help="Directory to write the evidence files to.")],
    report_data: Annotated[str | None, typer.Option(help="Report data (hex, ≤ 64 bytes).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="FIELD=HEX, e.g. mr_td=…, rtmr2=…, measurement=…, host_data=…; "
            "for nvidia measurement.N=… (block N, 48 bytes), fwid=…, nvdec0_status=….",
        ),
    ] = None,
    tdx_version: Annotated[int, typer.Option(help="TDX quote version: 4 or 5.")] = 4,
    td15: Annotated[bool, typer.Option(help="TDX v5 with a TD 1.5 body.")] = False,
    snp_version: Annotated[int, typer.Option(help="SNP report version: 3 or 5.")] = 5,
    signer: Annotated[str, typer.Option(help="SNP signing key: vcek or vlek.")] = "vcek",
    rims: Annotated[
        bool, typer.Option(help="nvidia: also write the signed driver and VBIOS RIMs to OUT/rims.")
    ] = False,
    rim_set: Annotated[
        list[str] | None,
        typer.Option(help="nvidia: measurement.N=HEX, a golden value the RIMs say instead."),
    ] = None,
    driver_version: Annotated[str | None, typer.Option(help="nvidia: driver version.")] = None,
    vbios_version: Annotated[
        str | None, typer.Option(help="nvidia: VBIOS version (96.00.9f.00.01).")
    ] = None,
) -> None:
    """Write evidence.bin, evidence.json and collateral.json or cert_chain.pem to OUT.

    For nvidia: evidence.bin is the SPDM request + response, evidence.json Trustee's
    device_evidence_list, cert_chain.pem the device chain; the nonce is the first 32 bytes
    of the report data."""
    kinds = (*EMULATED_TEES, *EMULATED_DEVICES)
    if tee not in kinds:
        raise typer.BadParameter(f"expected one of {', '.join(kinds)}", param_hint="--tee")
    if tee != "nvidia" and (rims or rim_set or driver_version or vbios_version):
        raise typer.BadParameter("only for --tee nvidia", param_hint="--rims/--rim-set/--*-version")
    if tdx_version not in (4, 5) or (td15 and tdx_version != 5):
        raise typer.BadParameter("4 or 5 (a TD 1.5 body needs 5)", param_hint="--tdx-version")
    if snp_version not in (3, 5):
        raise typer.BadParameter("3 or 5", param_hint="--snp-version")
    if signer not in ("vcek", "vlek"):
        raise typer.BadParameter("vcek or vlek", param_hint="--signer")
    try:
        data = bytes.fromhex((report_data or "").removeprefix("0x"))
    except ValueError as exc:
        raise typer.BadParameter("not hex", param_hint="--report-data") from exc
    request = EvidenceRequest(
        tee=tee,
        report_data=data,
        settings=_settings(set_ or []),
        tdx_version=cast(Literal[4, 5], tdx_version),
        td15=td15,
        snp_version=cast(Literal[3, 5], snp_version),
        signer=cast(Literal["vcek", "vlek"], signer),
        driver_version=driver_version,
        vbios_version=vbios_version,
        with_rims=rims or bool(rim_set),
        rim_tamper=_rim_tamper(rim_set or []),
    )
    try:
        made = emulate(TestRoot.load(root), request)
    except InputError as exc:
        raise _fail(str(exc)) from exc
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from exc
    out.mkdir(parents=True, exist_ok=True)
    (out / "evidence.bin").write_bytes(made.raw)
    (out / "evidence.json").write_bytes(made.wire_bytes())
    written = ["evidence.bin", "evidence.json"]
    if made.collateral_json is not None:
        (out / "collateral.json").write_text(made.collateral_json, encoding="utf-8")
        written.append("collateral.json")
    if made.cert_chain_pem is not None:
        (out / "cert_chain.pem").write_bytes(made.cert_chain_pem)
        written.append("cert_chain.pem")
    if made.eventlog is not None:
        (out / "ccel.bin").write_bytes(made.eventlog)
        written.append("ccel.bin")
    if made.rims is not None:
        (out / "rims").mkdir(exist_ok=True)
        for name, data in made.rims.items():
            (out / "rims" / name).write_bytes(data)
            written.append(f"rims/{name}")
    console.print(f"{tee} evidence written to {out}: {', '.join(written)}")


@app.command()
def serve(
    root: Annotated[Path, typer.Option(help="Test root directory (from `emulator init`).")],
    port: Annotated[int, typer.Option(help="TCP port.")] = 8081,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve the test root's collateral as an emulated Intel PCCS and AMD KDS."""
    import uvicorn

    from veritee.emulator.server import create_app

    try:
        test_root = TestRoot.load(root)
    except InputError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"emulated PCCS and KDS for {root} on http://{host}:{port}")
    uvicorn.run(create_app(test_root), host=host, port=port, log_level="warning")
