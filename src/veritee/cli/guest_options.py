"""The options that say which guest to run, shared by ``veritee agent serve`` and
``veritee image pull``, and the settings they make."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from veritee.guest.bootstrap import AgentSettings

__all__ = [
    "AaConfigOption",
    "CdhConfigOption",
    "DeviceOption",
    "EmulatedOption",
    "EventlogOption",
    "InitdataOption",
    "TeeOption",
    "agent_settings",
]

AaConfigOption = Annotated[
    Path | None,
    typer.Option("--config", metavar="AA.TOML", help="The Attestation Agent's aa.toml."),
]
CdhConfigOption = Annotated[
    Path | None, typer.Option(metavar="CDH.TOML", help="The Confidential Data Hub's cdh.toml.")
]
InitdataOption = Annotated[
    Path | None, typer.Option(metavar="FILE", help="The initdata TOML this TEE was launched with.")
]
EmulatedOption = Annotated[
    Path | None,
    typer.Option(
        metavar="ROOTDIR",
        help="Run in an emulated TEE under this test root (veritee emulator init).",
    ),
]
DeviceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--device",
        metavar="nvidia",
        help="An emulated additional device (with --emulated): nvidia, the test root's H100, "
        "whose evidence the AA gives as additional evidence.  Repeatable.",
    ),
]
TeeOption = Annotated[
    str, typer.Option(metavar="tdx|snp|sgx", help="The emulated TEE (with --emulated).")
]
EventlogOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="The AA event log [default: /run/attestation-agent/eventlog; emulated: a "
        "temporary file].",
    ),
]


def agent_settings(
    *,
    config: Path | None,
    cdh_config: Path | None,
    initdata: Path | None,
    emulated: Path | None,
    tee: str,
    eventlog: Path | None,
    features: str = "resource",
    devices: list[str] | None = None,
) -> AgentSettings:
    from veritee.guest.bootstrap import AgentSettings

    return AgentSettings(
        features=features,  # type: ignore[arg-type]
        aa_config=config,
        cdh_config=cdh_config,
        initdata=initdata,
        emulated_root=emulated,
        emulated_tee=tee,
        emulated_devices=tuple(devices or ()),
        eventlog=eventlog,
    )
