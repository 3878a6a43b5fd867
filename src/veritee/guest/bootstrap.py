"""Assemble the guest side from settings: the TEE, the Attestation Agent, the CDH, the API.

The steps follow guest-components' start-up: read the configs (``aa.toml``,
``cdh.toml``; from the initdata document when it carries them and no file is
given, as kata writes them out of initdata; else the ``AA_KBC_PARAMS``
fallback), find the TEE (the emulated machine under a test root, or the real
kernel interfaces), check the initdata against the TEE's launch-bound field (a
mismatch stops here), open the event log, fetch the CDH's credentials, and build
the REST API.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veritee.errors import ConfigError, InputError
from veritee.guest.aa import AttestationAgent
from veritee.guest.aa_config import AaConfig, load_aa_config
from veritee.guest.api import Features, create_app
from veritee.guest.attesters.base import Attester, Kernel
from veritee.guest.attesters.detect import (
    attester_for,
    detect_attester,
    detect_devices,
    no_tee_error,
)
from veritee.guest.cdh import ConfidentialDataHub, ResourceGetter
from veritee.guest.cdh_config import CdhConfig, load_cdh_config
from veritee.guest.eventlog import AaEventLog
from veritee.initdata import Initdata, digest_for_tee, parse_initdata

if TYPE_CHECKING:
    from veritee.emulator.root import TestRoot

__all__ = ["DEFAULT_EVENTLOG", "AgentParts", "AgentSettings", "build_agent"]

DEFAULT_EVENTLOG = Path("/run/attestation-agent/eventlog")


@dataclass(frozen=True)
class AgentSettings:
    """What ``veritee agent serve`` was asked for."""

    features: Features = "resource"
    aa_config: Path | None = None
    cdh_config: Path | None = None
    initdata: Path | None = None
    emulated_root: Path | None = None
    emulated_tee: str = "tdx"
    emulated_devices: tuple[str, ...] = ()
    eventlog: Path | None = None
    credentials_root: Path | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass
class AgentParts:
    aa: AttestationAgent
    cdh: ConfidentialDataHub
    app: Any
    kernel: Kernel
    notes: list[str]


def build_agent(settings: AgentSettings) -> AgentParts:
    """Everything the agent serves; ConfigError/InputError/AgentError name what is wrong."""
    notes: list[str] = []
    root = _test_root(settings)
    extra_devices = _emulated_devices(settings, root)  # a wrong --device fails before the rest
    initdata = _read_initdata(settings.initdata)
    aa_config = _aa_config(settings, initdata)
    notes += [f"{aa_config.source}: unknown key {key!r} ignored" for key in aa_config.warnings]
    cdh_config = _cdh_config(settings, initdata, aa_config)
    kernel = _kernel(settings, initdata, root)
    eventlog_path = settings.eventlog or _default_eventlog(settings)
    if settings.emulated_root is not None:
        attester = attester_for(settings.emulated_tee, kernel, aael_path=eventlog_path)
    else:
        found = detect_attester(kernel, aael_path=eventlog_path)
        if found is None:
            raise no_tee_error(kernel)
        attester = found
    eventlog = None
    if aa_config.eventlog_config.enable_eventlog:
        if attester.supports_runtime_measurement():
            eventlog = AaEventLog(
                eventlog_path, attester, init_pcr=aa_config.eventlog_config.init_pcr
            )
        else:
            notes.append(f"{attester.tee} has no runtime measurement register: AAEL is off")
    devices = [*detect_devices(kernel), *extra_devices]
    aa = AttestationAgent(
        attester, aa_config, devices=devices, initdata=initdata, eventlog=eventlog
    )
    note = aa.check_init_data()
    if note is not None:
        notes.append(note)
    cdh_kwargs: dict[str, Any] = {}
    if settings.credentials_root is not None:
        cdh_kwargs["credentials_root"] = settings.credentials_root
    getter: ResourceGetter = aa.get_resource
    if cdh_config.kbc.name == "eaa_kbc":
        from veritee.guest.eaa_kbc import attested_resource_getter

        getter = attested_resource_getter(
            cdh_config.kbc.url, attester, trust_root=settings.emulated_root
        )
    cdh = ConfidentialDataHub(cdh_config, getter, **cdh_kwargs)
    cdh.fetch_credentials()
    return AgentParts(aa, cdh, create_app(aa, cdh, settings.features), kernel, notes)


def _read_initdata(path: Path | None) -> Initdata | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read initdata {path}: {exc}") from exc
    return parse_initdata(text)


def _aa_config(settings: AgentSettings, initdata: Initdata | None) -> AaConfig:
    if settings.aa_config is not None:
        return load_aa_config(settings.aa_config)
    if initdata is not None and "aa.toml" in initdata.data:
        return AaConfig.from_text(initdata.data["aa.toml"], "initdata aa.toml")
    return AaConfig.from_environment(settings.env)


def _cdh_config(
    settings: AgentSettings, initdata: Initdata | None, aa_config: AaConfig
) -> CdhConfig:
    if settings.cdh_config is not None:
        return load_cdh_config(settings.cdh_config)
    if initdata is not None and "cdh.toml" in initdata.data:
        return CdhConfig.from_text(initdata.data["cdh.toml"], "initdata cdh.toml")
    url = aa_config.kbs.url if aa_config.kbs is not None else ""
    if not url:
        raise ConfigError(
            "no cdh.toml: give --cdh-config, a cdh.toml in the initdata, or a KBS URL in aa.toml"
        )
    return CdhConfig.from_text(f'[kbc]\nname = "cc_kbc"\nurl = "{url}"\n', "defaults")


def _test_root(settings: AgentSettings) -> TestRoot | None:
    """The emulator's test root, loaded once for the machine and its devices."""
    if settings.emulated_root is None:
        return None
    from veritee.emulator.root import TestRoot

    return TestRoot.load(settings.emulated_root)


def _kernel(settings: AgentSettings, initdata: Initdata | None, root: TestRoot | None) -> Kernel:
    if root is None:
        from veritee.guest.attesters.linux import LinuxKernel

        return LinuxKernel(env=settings.env)
    from veritee.emulator.machine import EmulatedMachine

    tee = settings.emulated_tee
    if tee not in ("tdx", "snp", "sgx"):
        raise InputError(f"the emulated machine is tdx, snp or sgx, not {tee!r}")
    digest = None
    if initdata is not None and tee != "sgx":
        digest = digest_for_tee(initdata, tee)[1]
    return EmulatedMachine.launch(
        root,
        tee,  # type: ignore[arg-type]
        init_data_digest=digest,
        env=settings.env,
    )


def _emulated_devices(settings: AgentSettings, root: TestRoot | None) -> list[Attester]:
    """The additional devices of the emulated machine: ``nvidia`` is the test root's H100."""
    if not settings.emulated_devices:
        return []
    if root is None:
        raise InputError("an emulated device needs an emulated TEE (--emulated ROOTDIR)")
    from veritee.emulator.evidence import EMULATED_DEVICES

    unknown = [d for d in settings.emulated_devices if d not in EMULATED_DEVICES]
    if unknown:
        raise InputError(
            f"no emulated device {', '.join(unknown)}; expected {', '.join(EMULATED_DEVICES)}"
        )
    from veritee.emulator.nvidia import EmulatedGpu
    from veritee.guest.attesters.nvidia import NvidiaAttester

    gpu = EmulatedGpu(root.gpu())
    return [NvidiaAttester([gpu])]


def _default_eventlog(settings: AgentSettings) -> Path:
    if settings.emulated_root is None:
        return DEFAULT_EVENTLOG
    return Path(tempfile.mkdtemp(prefix="veritee-agent-")) / "eventlog"
