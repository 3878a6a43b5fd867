"""``veritee verify``: check one piece of evidence to its vendor root."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from veritee.encoding import read_evidence_file
from veritee.errors import CollateralError, InputError, ParseError, VeriteeError
from veritee.paths import default_cache_path
from veritee.verifier.base import TCB_UNKNOWN, Verdict, VerifyOptions
from veritee.verifier.detect import detect_tee
from veritee.verifier.registry import TEES, VerifierSettings, build_verifier

EXIT_VERIFIED, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def _parse_time(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {value}", param_hint="--at") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _parse_hex(value: str | None, flag: str) -> bytes | None:
    if value is None:
        return None
    text = value.removeprefix("0x")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise typer.BadParameter("not hex", param_hint=flag) from exc


def _read(path: Path | None, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=flag) from exc


def verify(
    evidence: Annotated[Path, typer.Argument(help="Quote or report: binary, hex or base64.")],
    tee: Annotated[str, typer.Option(help="auto, tdx, sgx, snp, sample or nvidia.")] = "auto",
    collateral: Annotated[
        Path | None, typer.Option(help="Intel collateral bundle (dcap-qvl QuoteCollateralV3 JSON).")
    ] = None,
    cert_chain: Annotated[
        Path | None,
        typer.Option(
            help="AMD VCEK/VLEK (and optionally ASK/ARK), PEM or DER; "
            "or an NVIDIA GPU's device chain (PEM, leaf first)."
        ),
    ] = None,
    rim: Annotated[
        list[Path] | None,
        typer.Option(help="NVIDIA driver or VBIOS RIM (SWID tag) to compare; repeatable."),
    ] = None,
    pccs: Annotated[str | None, typer.Option(help="PCCS or Intel PCS base URL.")] = None,
    kds: Annotated[str | None, typer.Option(help="AMD KDS base URL.")] = None,
    at: Annotated[str | None, typer.Option(help="Verify as of this ISO 8601 time.")] = None,
    report_data: Annotated[
        str | None, typer.Option(help="Expected report data (hex); a mismatch fails.")
    ] = None,
    init_data: Annotated[
        str | None,
        typer.Option(help="Expected init data digest (hex): MRCONFIGID, CONFIGID or HOST_DATA."),
    ] = None,
    allow_debug: Annotated[
        bool, typer.Option(help="Accept debug TDs, enclaves and guests (always reported).")
    ] = False,
    offline: Annotated[bool, typer.Option(help="Use only cached collateral.")] = False,
    trust_root: Annotated[
        Path | None,
        typer.Option(help="Also trust this emulator test root (evidence is marked emulated)."),
    ] = None,
    allow_sample: Annotated[
        bool, typer.Option(help="Accept Trustee's unsigned 'sample' evidence (tests only).")
    ] = False,
    cache: Annotated[Path | None, typer.Option(help="Collateral cache (SQLite).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Verify EVIDENCE cryptographically to the vendor root.

    Exit 0: verified.  Exit 1: rejected (the failing step is named).
    Exit 2: usage error or unreadable input.
    """
    if tee != "auto" and tee not in TEES:
        raise typer.BadParameter(f"expected auto or one of {', '.join(TEES)}", param_hint="--tee")
    options = VerifyOptions(
        at=_parse_time(at),
        report_data=_parse_hex(report_data, "--report-data"),
        init_data=_parse_hex(init_data, "--init-data"),
        allow_debug=allow_debug,
    )
    uses_network = pccs is not None or kds is not None or offline
    settings = VerifierSettings(
        collateral_file=collateral,
        cert_chain=_read(cert_chain, "--cert-chain"),
        pccs_url=pccs,
        kds_url=kds,
        cache_path=cache or (default_cache_path() if uses_network else None),
        offline=offline,
        trust_root=trust_root,
        allow_sample=allow_sample,
        rims=tuple(_read(path, "--rim") or b"" for path in rim or ()),
    )
    console = Console(stderr=False)
    kind = tee
    try:
        raw = read_evidence_file(evidence)
        kind = detect_tee(raw) if tee == "auto" else tee
        verdict = build_verifier(kind, settings).verify(raw, options)
    except InputError as exc:
        _usage_error(str(exc), as_json)
        return
    except ParseError as exc:
        verdict = Verdict(
            tee=kind, verified=False, tcb_status=TCB_UNKNOWN, step="parse", error=str(exc)
        )
    except CollateralError as exc:
        verdict = Verdict(
            tee=kind, verified=False, tcb_status=TCB_UNKNOWN, step="collateral", error=str(exc)
        )
    except VeriteeError as exc:  # any other deliberate error is a rejection, never a traceback
        verdict = Verdict(
            tee=kind, verified=False, tcb_status=TCB_UNKNOWN, step="verify", error=str(exc)
        )
    if as_json:
        typer.echo(json.dumps(verdict.to_json(), sort_keys=False))
    else:
        console.print(summary_table(verdict))
    raise typer.Exit(EXIT_VERIFIED if verdict.verified else EXIT_REJECTED)


def _usage_error(message: str, as_json: bool) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "verified": False,
                    "tee": None,
                    "tcb_status": TCB_UNKNOWN,
                    "advisory_ids": [],
                    "error": f"input: {message}",
                    "claims": {},
                }
            )
        )
    else:
        Console(stderr=True).print(f"[red]error:[/red] {message}")
    raise typer.Exit(EXIT_USAGE)


def _highlights(verdict: Verdict) -> list[tuple[str, str]]:
    c: dict[str, Any] = verdict.claims
    rows: list[tuple[str, str]] = []
    if verdict.tee == "tdx" and "quote" in c:
        body = c["quote"]["body"]
        rows += [
            ("MRTD", body["mr_td"]),
            *[(f"RTMR{i}", body[f"rtmr_{i}"]) for i in range(4)],
            ("MRCONFIGID", body["mr_config_id"]),
            ("debug", str(c["td_attributes"]["debug"]).lower()),
        ]
        module = c.get("tdx_module")
        if module:
            rows.append(
                ("TDX module", f"{module['id']} isvsvn {module['isvsvn']} ({module['tcb_status']})")
            )
    elif verdict.tee == "sgx" and "body" in c:
        body = c["body"]
        rows += [
            ("MRENCLAVE", body["mr_enclave"]),
            ("MRSIGNER", body["mr_signer"]),
            ("ISVPRODID", str(int.from_bytes(bytes.fromhex(body["isv_prod_id"]), "little"))),
            ("ISVSVN", str(int.from_bytes(bytes.fromhex(body["isv_svn"]), "little"))),
            ("debug", str(c["debug"]).lower()),
        ]
    elif verdict.tee == "snp" and "measurement" in c:
        rows += [
            ("MEASUREMENT", c["measurement"]),
            ("HOST_DATA", str(c.get("init_data", ""))),
            ("VMPL", str(c.get("vmpl", ""))),
            ("signing key", str(c.get("signing_key", ""))),
            ("debug allowed", str(c.get("policy_debug_allowed", "")).lower()),
            (
                "reported TCB",
                "bl {} tee {} snp {} ucode {}".format(
                    c.get("reported_tcb_bootloader"),
                    c.get("reported_tcb_tee"),
                    c.get("reported_tcb_snp"),
                    c.get("reported_tcb_microcode"),
                ),
            ),
        ]
    elif verdict.tee == "nvidia" and "config" in c:
        rows += _nvidia_rows(c)
    if "report_data" in c:
        rows.append(("report data", str(c["report_data"])))
    return rows


def _nvidia_rows(c: dict[str, Any]) -> list[tuple[str, str]]:
    chain = c.get("x-nvidia-gpu-attestation-report-cert-chain", {})
    measres = c.get("measres")
    rims = "not compared (no RIM given)" if measres == "not-compared" else str(measres)
    records = c.get("x-nvidia-mismatch-measurement-records", [])
    mismatched = [str(i) for i in sorted({int(m["index"]) for m in records})]
    rows = [
        ("arch", str(c.get("arch"))),
        ("driver", str(c.get("x-nvidia-gpu-driver-version"))),
        ("VBIOS", str(c.get("x-nvidia-gpu-vbios-version"))),
        (
            "device chain",
            f"{chain.get('x-nvidia-cert-status')} (OCSP {chain.get('x-nvidia-cert-ocsp-status')})",
        ),
        ("nonce", str(c.get("eat_nonce"))),
        ("measurements", str(len(c.get("measurements", {})))),
        ("RIMs", rims),
    ]
    if mismatched:
        rows.append(("mismatched indexes", ", ".join(mismatched)))
    return rows


def summary_table(verdict: Verdict) -> Table:
    title = (
        "[green]verified[/green]"
        if verdict.verified
        else f"[red]rejected[/red] at [bold]{verdict.step}[/bold]"
    )
    table = Table(title=f"{verdict.tee}: {title}", show_header=False, expand=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("TCB status", verdict.tcb_status)
    table.add_row("advisories", ", ".join(verdict.advisory_ids) or "none")
    if verdict.error:
        table.add_row("error", f"[red]{verdict.step}: {verdict.error}[/red]")
    for name, value in _highlights(verdict):
        table.add_row(name, value)
    return table
