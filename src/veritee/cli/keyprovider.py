"""``veritee keyprovider``: the ocicrypt key provider ``attestation-agent`` as a command.

ocicrypt (skopeo, buildah, containerd's imgcrypt) runs it once per layer with one JSON
request on stdin and reads the answer on stdout (:mod:`veritee.image.keyprovider`).  Point
``OCICRYPT_KEYPROVIDER_CONFIG`` at::

    {"key-providers": {"attestation-agent": {"cmd": {
        "path": "/usr/bin/python3", "args": ["-m", "veritee", "keyprovider"]}}}}

and encrypt with ``--encryption-key provider:attestation-agent:<params>``, where
``<params>`` is

- ``kbs:///<repository>/<type>/<tag>`` (or ``keyid=kbs:///…``): the key id.  One random
  KEK is made for it, kept under ``--kek-dir`` (0600; every layer, each wrapped by its own
  run, needs the same one) and stored in the KBS under ``<repository>/<type>/<tag>``;
- ``keyid=kbs:///…::keypath=/path/kek``: the 32-byte KEK from that file instead (stored
  in the KBS when one is configured, else left to you);
- nothing: a new key id ``kbs:///default/image-kek/<uuid4>`` and KEK per layer;
- ``algorithm=A256GCM`` may be added (the default and only one); ``sample=true`` is
  refused.

Settings, as options (e.g. in the config's ``args``) or environment variables:
``--kbs-url`` / ``VERITEE_KEYPROVIDER_KBS_URL`` (the KBS whose admin API keeps KEKs),
``--admin-token-file`` / ``VERITEE_KEYPROVIDER_ADMIN_TOKEN_FILE`` (or the token itself in
``VERITEE_KEYPROVIDER_ADMIN_TOKEN``), ``--kbs-cert`` / ``VERITEE_KEYPROVIDER_KBS_CERT``,
``--kek-dir`` / ``VERITEE_KEYPROVIDER_KEK_DIR`` (default ``$VERITEE_HOME/keyprovider/keks``)
for wrapping; ``--cdh-url`` / ``VERITEE_KEYPROVIDER_CDH_URL`` (default
``http://127.0.0.1:8006``, the guest's REST API) for unwrapping, where the KEK comes from
the CDH's ``/cdh/resource/<repository>/<type>/<tag>`` (the KBS releases it after
attestation, under its resource policy).

Exit codes: 0 answered, 1 refused (the reason on stderr; never key material).
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from veritee.errors import InputError, VeriteeError
from veritee.guest.resource_uri import DEFAULT_PLUGIN, ResourceUri, parse_resource_uri
from veritee.image.keyprovider import (
    KEK_SIZE,
    PROVIDER,
    KekStore,
    KeyProvider,
    KeyUnwrapError,
    ResourceGetter,
    read_kek,
)
from veritee.paths import veritee_home

__all__ = ["DEFAULT_CDH_URL", "KekDirectory", "cdh_resource_getter", "keyprovider"]

DEFAULT_CDH_URL = "http://127.0.0.1:8006"
ENV = "VERITEE_KEYPROVIDER_"
TIMEOUT_S = 60.0
MAX_REQUEST = 1 << 20


class KekDirectory:
    """One random KEK per key id, made once and kept (0600) under ``root``: ocicrypt wraps
    each layer in its own process, and every layer of an image must get the same KEK."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, kid: ResourceUri) -> bytes:
        target = self.root.joinpath(*kid.segments)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not target.exists():
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".kek.")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(secrets.token_bytes(KEK_SIZE))
                    file.flush()
                    os.fsync(file.fileno())
                os.link(temporary, target)  # of concurrent first wrappers, one wins
            except FileExistsError:
                pass
            finally:
                Path(temporary).unlink(missing_ok=True)
        return read_kek(target, f"the kept KEK for {kid}")


def cdh_resource_getter(cdh_url: str, http: httpx.Client) -> ResourceGetter:
    """KEKs from the guest's CDH over its REST API (``GET /cdh/resource/<path>``)."""
    base = cdh_url.rstrip("/")

    def get(uri: str) -> bytes:
        parsed = parse_resource_uri(uri)
        if parsed.plugin != DEFAULT_PLUGIN or parsed.query is not None:
            raise KeyUnwrapError(f"{parsed}: the CDH's REST API serves kbs:/// resources only")
        url = f"{base}/cdh/resource/{parsed.resource_path}"
        try:
            response = http.get(url)
        except httpx.HTTPError as exc:
            raise KeyUnwrapError(f"cannot reach the CDH at {base}: {exc}") from exc
        if response.status_code != 200:
            said = response.text.strip()[:300]
            raise KeyUnwrapError(f"the CDH answered {response.status_code} for {parsed}: {said}")
        return response.content

    return get


def _admin_token(path: Path | None) -> str | None:
    if path is None:
        return os.environ.get(f"{ENV}ADMIN_TOKEN") or None
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the admin token file {path}: {exc}") from exc


def _kbs_store(url: str, token: str | None, cert: Path | None) -> KekStore:
    from veritee.guest.kbs_client import KbsClient

    try:
        cert_pem = cert.read_bytes() if cert is not None else None
    except OSError as exc:
        raise InputError(f"cannot read the KBS certificate {cert}: {exc.strerror}") from exc

    def store(path: str, kek: bytes) -> None:
        with KbsClient(url, admin_token=token, cert_pem=cert_pem) as admin:
            admin.set_resource(path, kek)

    return store


def keyprovider(
    kbs_url: Annotated[
        str | None,
        typer.Option(envvar=f"{ENV}KBS_URL", help="Wrap: the KBS that keeps new KEKs."),
    ] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(
            envvar=f"{ENV}ADMIN_TOKEN_FILE",
            help=f"Wrap: the KBS admin token (or the token in ${ENV}ADMIN_TOKEN).",
        ),
    ] = None,
    kbs_cert: Annotated[
        Path | None,
        typer.Option(envvar=f"{ENV}KBS_CERT", help="Wrap: the root of the KBS's HTTPS cert."),
    ] = None,
    kek_dir: Annotated[
        Path | None,
        typer.Option(
            envvar=f"{ENV}KEK_DIR",
            help="Wrap: where the one KEK of each key id is kept [$VERITEE_HOME/keyprovider/keks].",
        ),
    ] = None,
    cdh_url: Annotated[
        str,
        typer.Option(envvar=f"{ENV}CDH_URL", help="Unwrap: the guest's CDH REST API."),
    ] = DEFAULT_CDH_URL,
    provider: Annotated[
        str, typer.Option(help="The provider name in ocicrypt's config and parameters.")
    ] = PROVIDER,
) -> None:
    """Answer one ocicrypt key-provider request (JSON on stdin, JSON on stdout).

    Encrypt with --encryption-key provider:attestation-agent:PARAMS, PARAMS being
    kbs:///REPO/TYPE/TAG (one random KEK per key id, stored in the KBS under
    REPO/TYPE/TAG), or keyid=kbs:///REPO/TYPE/TAG::keypath=FILE (that 32-byte KEK), or
    nothing (a new kbs:///default/image-kek/UUID per layer).  Unwrapping gets the KEK
    from the guest's CDH (--cdh-url), which the KBS serves only after attestation.
    """
    err = Console(stderr=True, highlight=False)
    request = sys.stdin.buffer.read(MAX_REQUEST + 1)
    if len(request) > MAX_REQUEST:
        err.print(f"[red]error:[/red] the request is larger than {MAX_REQUEST} bytes")
        raise typer.Exit(1)
    try:
        with httpx.Client(timeout=TIMEOUT_S) as http:
            store = None
            if kbs_url is not None:
                store = _kbs_store(kbs_url, _admin_token(admin_token_file), kbs_cert)
            served = KeyProvider(
                name=provider,
                store_kek=store,
                get_resource=cdh_resource_getter(cdh_url, http),
                kek_for=KekDirectory(kek_dir or veritee_home() / "keyprovider" / "keks"),
            )
            answer = served.handle(request)
    except VeriteeError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    sys.stdout.buffer.write(answer + b"\n")
    sys.stdout.buffer.flush()
