"""``veritee image``: pull an image in the guest behind attestation, encrypt one's layers.

``veritee image pull REF --dest BUNDLE`` builds the guest (AA and CDH, from the same
options as ``veritee agent serve``) in this process and pulls as the CDH does
(:mod:`veritee.image.pull`): the ``[image]`` table of ``cdh.toml`` names the policy,
the registry credentials, the sigstore and registry configs, mostly as ``kbs:///``
resources, so the pull starts with attestation.

``veritee image encrypt oci:DIR:TAG oci:DIR:TAG --encryption-key
provider:attestation-agent:PARAMS`` is ``skopeo copy --encryption-key …`` for an OCI
layout, with the key provider run the way ocicrypt runs it
(``OCICRYPT_KEYPROVIDER_CONFIG``); use it where skopeo's ocicrypt has no key providers.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from veritee.cli.guest_options import (
    AaConfigOption,
    CdhConfigOption,
    EmulatedOption,
    EventlogOption,
    InitdataOption,
    TeeOption,
    agent_settings,
)
from veritee.errors import VeriteeError

if TYPE_CHECKING:
    from veritee.guest.bootstrap import AgentSettings
    from veritee.image.pull import PullResult
    from veritee.image.registry_types import Platform

app = typer.Typer(no_args_is_help=True)
console = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(exc: VeriteeError) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(1)


class _StepLines(logging.Handler):
    """veritee's step lines, written to the stderr of the moment."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"{record.levelname} {record.name}: {record.getMessage()}\n")


@contextmanager
def _show_steps(quiet: bool) -> Iterator[None]:
    """veritee's INFO lines (each step of the pull) on stderr while the command runs."""
    handler = _StepLines()
    loggers = [logging.getLogger(name) for name in ("veritee.image", "veritee.guest")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING if quiet else logging.INFO)
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _platform(value: str) -> tuple[str, str, str | None]:
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise typer.BadParameter(f"expected OS/ARCH[/VARIANT], got {value!r}",
                                 param_hint="--platform")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


@app.command()
def pull(
    image: Annotated[str, typer.Argument(metavar="REF", help="The image, e.g. "
                                         "registry.example/app:1.0 or …@sha256:…")],
    dest: Annotated[Path, typer.Option(metavar="BUNDLE",
                                       help="The OCI bundle: rootfs/ and config.json go here.")],
    config: AaConfigOption = None,
    cdh_config: CdhConfigOption = None,
    initdata: InitdataOption = None,
    emulated: EmulatedOption = None,
    tee: TeeOption = "tdx",
    eventlog: EventlogOption = None,
    platform: Annotated[str, typer.Option(metavar="OS/ARCH[/VARIANT]",
                                          help="The platform to pick from an image index.")]
    = "linux/amd64",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the result.")] = False,
) -> None:
    """Pull REF into BUNDLE as the guest's CDH does: policy, credentials and layer keys
    from the KBS after attestation, signatures checked before any layer is fetched."""
    from veritee.image.registry_types import Platform

    os_name, architecture, variant = _platform(platform)
    settings = agent_settings(config=config, cdh_config=cdh_config, initdata=initdata,
                              emulated=emulated, tee=tee, eventlog=eventlog)
    try:
        with _show_steps(quiet):
            result = _pull(settings, image, dest, Platform(os_name, architecture, variant))
    except VeriteeError as exc:
        raise _fail(exc) from None
    console.print(f"pulled {escape(result.reference.whole())}")
    console.print(f"  manifest digest  {result.manifest_digest}")
    console.print(f"  rootfs           {escape(str(result.rootfs))}")
    console.print(f"  layers           {result.layers} ({result.decrypted} decrypted)")
    console.print(f"  policy           {escape(result.policy)}")
    console.print(f"  AAEL PullImage   {result.measured}")


def _pull(settings: AgentSettings, image: str, dest: Path, platform: Platform) -> PullResult:
    from veritee.guest.bootstrap import build_agent
    from veritee.image.pull import ImagePuller

    parts = build_agent(settings)
    for note in parts.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}")
    try:
        puller = ImagePuller(parts.cdh.config.image, parts.cdh.get_resource,
                             measure=parts.aa.extend_runtime_measurement, platform=platform)
        return puller.pull(image, dest)
    finally:
        parts.aa.close()


def _layout(value: str, what: str) -> tuple[Path, str]:
    transport, _, rest = value.partition(":")
    directory, _, tag = rest.rpartition(":") if rest.count(":") else (rest, "", "latest")
    if transport != "oci" or not directory:
        raise typer.BadParameter(f"expected oci:DIR[:TAG], got {value!r}", param_hint=what)
    return Path(directory), tag or "latest"


@app.command()
def encrypt(
    source: Annotated[str, typer.Argument(metavar="oci:DIR[:TAG]")],
    destination: Annotated[str, typer.Argument(metavar="oci:DIR[:TAG]")],
    encryption_key: Annotated[
        str,
        typer.Option(metavar="provider:NAME[:PARAMS]",
                     help="As skopeo's: the key provider (from $OCICRYPT_KEYPROVIDER_CONFIG) "
                     "and its parameters, e.g. provider:attestation-agent:kbs:///default/k/1."),
    ],
    keyprovider_config: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="ocicrypt's key-provider config "
                     "[$OCICRYPT_KEYPROVIDER_CONFIG]."),
    ] = None,
) -> None:
    """Encrypt every layer of an image in an OCI layout, its keys wrapped by a key
    provider (as skopeo copy --encryption-key provider:… does)."""
    from veritee.image.encrypt import command_key_wrapper, encrypt_image
    from veritee.image.layout import OciLayout

    scheme, _, rest = encryption_key.partition(":")
    provider, _, params = rest.partition(":")
    if scheme != "provider" or not provider:
        raise typer.BadParameter("only provider:NAME[:PARAMS] keys are supported",
                                 param_hint="--encryption-key")
    (src_dir, src_tag), (dst_dir, dst_tag) = (_layout(source, "SOURCE"),
                                              _layout(destination, "DESTINATION"))
    try:
        wrap = command_key_wrapper(provider, params, config_path=keyprovider_config)
        digest = encrypt_image(OciLayout(src_dir), src_tag, OciLayout.create(dst_dir), dst_tag,
                               wrap, provider=provider)
    except VeriteeError as exc:
        raise _fail(exc) from None
    console.print(f"encrypted oci:{escape(str(dst_dir))}:{escape(dst_tag)} {digest}")
