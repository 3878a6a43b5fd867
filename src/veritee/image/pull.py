"""The guest's image pull, gated on attestation, as image-rs does it inside the CDH.

One :class:`ImagePuller` per guest.  Its first pull fetches, **before any registry is
contacted**, what the CDH's ``[image]`` config names, in image-rs's order: the registry
credentials (an ``auth.json``), the sigstore config (registries.d YAML: lookaside stores
and sigstore attachments), the image security policy (containers-policy.json) and the
registry configuration (registries.conf).  A ``kbs:///`` URI goes through the CDH's
resource getter, so the first pull is what triggers attestation (RCAR through the AA);
a ``file://`` URI or a path is read locally.  A denied attestation or resource stops the
pull there, with no registry request made.

Then, for each image: route it (registries.conf), resolve manifest and config (no
layers yet), evaluate the policy (signatures are fetched only when a requirement needs
them), get the keys of encrypted layers from the KBS (still no layer fetched), and only
then fetch each layer (digest checked), decrypt it, and unpack it into
``<bundle>/rootfs`` against the config's ``diff_ids``.  A failure leaves no rootfs
behind.  Last, the ``PullImage`` event goes to the AA event log, with the text CDH
writes (``{"image":"<ref>", "digest":"<manifest digest>"}``), and ``config.json`` (an OCI
runtime spec for the image's process) is written to the bundle.

Each step is logged on ``veritee.image`` at INFO; no key, credential or token is.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from veritee.errors import VeriteeError
from veritee.guest.cdh_config import ImageConfig, RegistryConfig
from veritee.image.keyprovider import ResourceGetter, key_unwrapper
from veritee.image.ocicrypt import (
    decrypt_layer,
    is_encrypted,
    unwrap_private_options,
)
from veritee.image.policy import (
    ImagePolicy,
    RegistriesD,
    evaluate,
)
from veritee.image.reference import ImageReference, parse_reference
from veritee.image.registries_conf import parse_registries_conf, route
from veritee.image.registry import RegistryClient, ResolvedImage
from veritee.image.registry_auth import AuthFile
from veritee.image.registry_types import Descriptor, Platform
from veritee.image.registry_types import ImageConfig as RuntimeConfig
from veritee.image.signature_source import RegistrySignatures
from veritee.image.unpack import unpack_layer

__all__ = [
    "PULL_DOMAIN",
    "PULL_OPERATION",
    "ImagePullError",
    "ImagePuller",
    "PullResult",
    "PullSetupError",
    "pull_event_content",
]

log = logging.getLogger("veritee.image")

PULL_DOMAIN = "github.com/confidential-containers"
PULL_OPERATION = "PullImage"
Measure = Callable[[str, str, str], object]


class ImagePullError(VeriteeError):
    """The pull could not go on (a bundle that is not empty, a layer count that does not
    match the config, …); the registry, policy, key and unpack steps raise their own."""


class PullSetupError(ImagePullError):
    """A resource the pull needs first (policy, credentials, sigstore or registry
    config) could not be had: no registry was contacted."""


def pull_event_content(image: str, digest: str) -> str:
    """The AAEL content CDH records for a pull (its exact bytes, space after the comma)."""
    return f'{{"image":"{image}", "digest":"{digest}"}}'


@dataclass(frozen=True)
class PullResult:
    image: str
    reference: ImageReference
    manifest_digest: str
    bundle: Path
    rootfs: Path
    layers: int
    decrypted: int
    policy: str
    measured: str


@dataclass
class _Setup:
    """What the first pull fetched (kept for the pulls after it)."""

    auth: AuthFile = field(default_factory=AuthFile)
    policy: ImagePolicy | None = None
    registries_d: RegistriesD | None = None
    registries: RegistryConfig | None = None


class ImagePuller:
    """Pulls images for one guest; ``get_resource`` is the CDH's, ``measure`` the AA's
    ``extend_runtime_measurement``."""

    def __init__(
        self,
        config: ImageConfig | None,
        get_resource: ResourceGetter,
        *,
        measure: Measure | None = None,
        platform: Platform | None = None,
        http: httpx.Client | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.config = config or ImageConfig()
        self.get_resource = get_resource
        self.measure = measure
        self.platform = platform or Platform()
        self.http = http
        self.work_dir = work_dir
        self._setup: _Setup | None = None
        self._lock = threading.Lock()

    # -- the first pull's resources ---------------------------------------------------------

    def _fetch(self, uri: str, what: str) -> bytes:
        try:
            if uri.startswith(("kbs://", "kbs+")):
                data = self.get_resource(uri)
            else:
                data = Path(uri.removeprefix("file://")).read_bytes()
        except VeriteeError as exc:
            raise PullSetupError(f"cannot get the {what} ({uri}): {exc}") from exc
        except OSError as exc:
            raise PullSetupError(f"cannot read the {what} ({uri}): {exc.strerror}") from None
        log.info("fetched the %s from %s (%d bytes)", what, uri, len(data))
        return data

    def _load_setup(self) -> _Setup:
        config, setup = self.config, _Setup()
        try:
            if config.authenticated_registry_credentials_uri:
                data = self._fetch(config.authenticated_registry_credentials_uri,
                                   "registry credentials")
                setup.auth = AuthFile.parse(_json(data, "registry credentials"),
                                            source=config.authenticated_registry_credentials_uri)
            sigstore = config.sigstore_config
            if config.sigstore_config_uri:
                sigstore = self._fetch(config.sigstore_config_uri, "sigstore config").decode()
            if sigstore:
                setup.registries_d = RegistriesD.parse(sigstore.encode(), source="sigstore config")
            policy = config.image_security_policy.encode() if config.image_security_policy else None
            source = "cdh.toml image_security_policy"
            if config.image_security_policy_uri:
                source = config.image_security_policy_uri
                policy = self._fetch(source, "image security policy")
            if policy is not None:
                setup.policy = ImagePolicy.parse(policy, source=source)
            else:
                log.warning("no image security policy is configured: all images can be pulled")
            setup.registries = config.registry_config
            if config.registry_configuration_uri:
                data = self._fetch(config.registry_configuration_uri, "registry configuration")
                setup.registries = parse_registries_conf(
                    data, source=config.registry_configuration_uri
                )
        except UnicodeDecodeError:
            raise PullSetupError("the sigstore config is not UTF-8") from None
        return setup

    def setup(self) -> _Setup:
        with self._lock:
            if self._setup is None:
                self._setup = self._load_setup()
            return self._setup

    # -- one pull ---------------------------------------------------------------------------

    def pull(self, image: str, bundle: Path) -> PullResult:
        """Pull ``image`` into ``bundle`` (``rootfs`` and ``config.json`` are made there)."""
        reference = parse_reference(image)
        rootfs = bundle / "rootfs"
        if rootfs.is_symlink() or (rootfs.exists() and (not rootfs.is_dir()
                                                         or any(rootfs.iterdir()))):
            raise ImagePullError(f"{rootfs} is not an empty directory")
        if bundle.exists() and not bundle.is_dir():
            raise ImagePullError(f"{bundle} is not a directory")
        setup = self.setup()
        routed = route(setup.registries, reference)
        if routed.reference != reference:
            log.info("%s is pulled from %s (registries.conf %s)", reference,
                     routed.reference, routed.entry)
        target = routed.reference
        plain = [target.registry] if routed.plain_http else []
        with RegistryClient(auth=setup.auth, plain_http=plain, http=self.http,
                            platform=self.platform) as registry:
            resolved = registry.resolve(target)
            log.info("%s is %s: %d layer(s), %s", reference, resolved.manifest_digest,
                     len(resolved.manifest.layers), self.platform)
            decision = self._check_policy(setup, registry, reference, resolved)
            unwrapped = self._layer_keys(resolved)
            try:
                bundle.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ImagePullError(f"cannot create the bundle {bundle}: {exc.strerror}") from None
            try:
                self._layers(registry, target, resolved, unwrapped, rootfs)
                _write_runtime_config(bundle, resolved.config)
            except BaseException:
                shutil.rmtree(rootfs, ignore_errors=True)
                raise
        measured = self._measure(image, resolved.manifest_digest)
        log.info("pulled %s (%s) into %s", reference, resolved.manifest_digest, rootfs)
        return PullResult(image, reference, resolved.manifest_digest, bundle, rootfs,
                          len(resolved.manifest.layers), len(unwrapped), decision, measured)

    def _check_policy(
        self, setup: _Setup, registry: RegistryClient, reference: ImageReference,
        resolved: ResolvedImage,
    ) -> str:
        if setup.policy is None:
            return "no policy"
        signatures = RegistrySignatures(registry, setup.registries_d, http=self.http)
        decision = evaluate(
            setup.policy, reference,
            manifest_bytes=resolved.manifest_bytes,
            manifest_digest=resolved.manifest_digest,
            signatures=signatures,
            key_loader=self._key,
            manifest_list_bytes=resolved.index_bytes,
            manifest_list_digest=resolved.index_digest,
        )
        log.info("%s", decision.log_line())
        return str(decision)

    def _key(self, path: str) -> bytes:
        return self._fetch(path, "policy key")

    def _layer_keys(self, resolved: ResolvedImage) -> dict[int, bytes]:
        """The private options of every encrypted layer, from the KBS, before any layer
        is fetched (a refused key means no layer is)."""
        unwrap = key_unwrapper(self.get_resource)
        keys: dict[int, bytes] = {}
        for index, layer in enumerate(resolved.manifest.layers):
            if is_encrypted(layer.media_type):
                options = unwrap_private_options(layer.annotations, unwrap)
                keys[index] = options.to_json()
                log.info("layer %d: its key was released by the KBS", index + 1)
        return keys

    def _layers(
        self, registry: RegistryClient, target: ImageReference, resolved: ResolvedImage,
        keys: dict[int, bytes], rootfs: Path,
    ) -> None:
        layers: Sequence[Descriptor] = resolved.manifest.layers
        diff_ids = resolved.config.diff_ids
        if len(diff_ids) != len(layers):
            raise ImagePullError(
                f"{target}: the manifest has {len(layers)} layer(s), the config "
                f"{len(diff_ids)} diff_id(s)"
            )
        rootfs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="veritee-pull-") as scratch:
            for index, layer in enumerate(layers):
                blob = Path(scratch) / f"layer-{index}"
                registry.fetch_blob(target, layer, blob)
                media_type = layer.media_type
                if index in keys:
                    with blob.open("rb") as sealed:
                        opened = decrypt_layer(
                            sealed, media_type=media_type, annotations=layer.annotations,
                            unwrap=_released(keys[index]), dest=blob.with_suffix(".plain"),
                        )
                    blob.unlink()
                    blob, media_type = opened.path, opened.media_type
                    log.info("layer %d: decrypted (%d bytes)", index + 1, opened.size)
                with blob.open("rb") as stream:
                    done = unpack_layer(stream, media_type, rootfs,
                                        expected_diff_id=diff_ids[index])
                blob.unlink()
                log.info("layer %d/%d %s unpacked (%d entries, diff_id %s)", index + 1,
                         len(layers), layer.digest, done.entries, done.diff_id)

    def _measure(self, image: str, digest: str) -> str:
        if self.measure is None:
            return "no AA"
        result = self.measure(PULL_DOMAIN, PULL_OPERATION, pull_event_content(image, digest))
        name = getattr(result, "name", str(result))
        log.info("PullImage event for %s: %s", image, name)
        return str(name)


def _released(options: bytes) -> Callable[[bytes], bytes]:
    """An unwrapper that answers with the options the KBS already released for a layer."""

    def unwrap(_packet: bytes) -> bytes:
        return options

    return unwrap


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PullSetupError(f"the {what} is not JSON") from None


def _write_runtime_config(bundle: Path, config: RuntimeConfig) -> None:
    """A minimal OCI runtime spec for the image's process (args, env, cwd, user)."""
    args = [*config.entrypoint, *config.cmd] or ["/bin/sh"]
    user = config.user.split(":", 1)
    spec = {
        "ociVersion": "1.1.0",
        "process": {
            "terminal": False,
            "user": {"uid": int(user[0]) if user[0].isdigit() else 0,
                     "gid": int(user[1]) if len(user) > 1 and user[1].isdigit() else 0},
            "args": args,
            "env": list(config.env),
            "cwd": config.working_dir or "/",
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "veritee",
    }
    (bundle / "config.json").write_text(json.dumps(spec, indent=2) + "\n")
