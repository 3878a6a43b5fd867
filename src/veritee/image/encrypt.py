"""Encrypt an image's layers the way ocicrypt does, keys wrapped by a key provider.

``veritee image encrypt`` is this module: for each layer of an image in an OCI layout it
writes ocicrypt's ``…+encrypted`` blob (:func:`veritee.image.ocicrypt.encrypt_stream`),
asks the key provider to wrap the layer's private options, and records the answer in the
``org.opencontainers.image.enc.keys.provider.<name>`` annotation beside the public
options; the config (and its ``diff_ids``) is unchanged, the manifest is new.

The provider is reached as ocicrypt reaches one: the ``cmd`` entry for ``<name>`` in the
JSON file ``OCICRYPT_KEYPROVIDER_CONFIG`` names, run once per layer with the ``keywrap``
request on stdin (:func:`command_key_wrapper`), so ``veritee keyprovider`` (or CoCo's
coco_keyprovider as a command) serves it unchanged.  It stands in for
``skopeo copy --encryption-key provider:…`` where skopeo's ocicrypt predates key
providers (Debian's skopeo 1.9.3 has ocicrypt 1.0.3).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from veritee.errors import VeriteeError
from veritee.image.layout import OciLayout, canonical_json
from veritee.image.ocicrypt import (
    KEYS_ANNOTATION_PREFIX,
    PUBOPTS_ANNOTATION,
    encrypt_stream,
    is_encrypted,
)

__all__ = [
    "CONFIG_ENV",
    "ImageEncryptError",
    "KeyWrapper",
    "command_key_wrapper",
    "encrypt_image",
]

CONFIG_ENV = "OCICRYPT_KEYPROVIDER_CONFIG"
TIMEOUT_S = 120.0
MAX_ANSWER = 1 << 20

KeyWrapper = Callable[[bytes], bytes]
"""A layer's private options JSON in, the provider's annotation (an AnnotationPacket) out."""


class ImageEncryptError(VeriteeError):
    """The image could not be encrypted: no provider, a provider that refused, a layer
    that is already encrypted, a layout without the image."""


def _provider_command(config_path: Path, provider: str) -> list[str]:
    try:
        config = json.loads(config_path.read_bytes())
    except OSError as exc:
        raise ImageEncryptError(f"cannot read {config_path}: {exc.strerror}") from None
    except json.JSONDecodeError:
        raise ImageEncryptError(f"{config_path} is not JSON") from None
    entry = (config.get("key-providers") or {}).get(provider) if isinstance(config, dict) else None
    command = entry.get("cmd") if isinstance(entry, dict) else None
    if not isinstance(command, dict) or not isinstance(command.get("path"), str):
        raise ImageEncryptError(
            f"{config_path}: no key-providers.{provider}.cmd.path (only command providers "
            "are run here)"
        )
    args = command.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ImageEncryptError(f"{config_path}: key-providers.{provider}.cmd.args is not a list")
    return [command["path"], *args]


def command_key_wrapper(
    provider: str,
    params: str,
    *,
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> KeyWrapper:
    """Wrap through the provider command ocicrypt's config file names (``config_path``,
    else ``$OCICRYPT_KEYPROVIDER_CONFIG``) with ``provider:<provider>:<params>``."""
    environment = dict(os.environ if env is None else env)
    if config_path is None:
        named = environment.get(CONFIG_ENV)
        if not named:
            raise ImageEncryptError(f"{CONFIG_ENV} is not set: no key provider to wrap keys")
        config_path = Path(named)
    command = _provider_command(config_path, provider)

    def wrap(optsdata: bytes) -> bytes:
        request = {
            "op": "keywrap",
            "keywrapparams": {
                "ec": {"Parameters": {provider: [base64.b64encode(params.encode()).decode()]},
                       "DecryptConfig": {"Parameters": {}}},
                "optsdata": base64.b64encode(optsdata).decode(),
            },
        }
        try:
            done = subprocess.run(  # noqa: S603 - the command the operator's config names
                command, input=json.dumps(request).encode(), capture_output=True,
                timeout=TIMEOUT_S, env=environment, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ImageEncryptError(f"key provider {provider}: cannot run {command[0]}: "
                                    f"{exc}") from None
        if done.returncode != 0:
            reason = " ".join(done.stderr.decode(errors="replace").split())[-600:]
            raise ImageEncryptError(
                f"key provider {provider} refused (exit {done.returncode}): "
                f"{reason.removeprefix('error: ') or 'no message'}"
            )
        try:
            answer = json.loads(done.stdout[:MAX_ANSWER])
            return base64.b64decode(answer["keywrapresults"]["annotation"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise ImageEncryptError(
                f"key provider {provider}: the answer is not "
                '{"keywrapresults":{"annotation":"<base64>"}}'
            ) from None

    return wrap


def _encrypt_layer(
    layout: OciLayout, out: OciLayout, layer: dict[str, Any], wrap: KeyWrapper, provider: str
) -> dict[str, Any]:
    media_type = str(layer.get("mediaType", ""))
    if is_encrypted(media_type):
        raise ImageEncryptError(f"layer {layer.get('digest')} is already encrypted")
    data = layout.read_blob(str(layer["digest"]))
    sealed = io.BytesIO()
    private, public = encrypt_stream(io.BytesIO(data), sealed, digest=str(layer["digest"]))
    packet = wrap(private.to_json())
    digest = out.write_blob(sealed.getvalue())
    annotations = dict(layer.get("annotations") or {})
    annotations[f"{KEYS_ANNOTATION_PREFIX}provider.{provider}"] = base64.b64encode(packet).decode()
    annotations[PUBOPTS_ANNOTATION] = public.annotation()
    return {"mediaType": media_type + "+encrypted", "digest": digest,
            "size": len(sealed.getvalue()), "annotations": annotations}


def encrypt_image(
    source: OciLayout,
    tag: str,
    dest: OciLayout,
    dest_tag: str,
    wrap: KeyWrapper,
    *,
    provider: str = "attestation-agent",
) -> str:
    """Write ``source:tag`` with every layer encrypted to ``dest:dest_tag`` (which may be
    the same layout); returns the new manifest digest."""
    found = source.manifest(tag)
    manifest = dict(found.document)
    layers = manifest.get("layers")
    config = manifest.get("config")
    if not isinstance(layers, list) or not isinstance(config, dict):
        raise ImageEncryptError(f"{source.root}:{tag} is not an image manifest (an index?)")
    dest.write_blob(source.read_blob(str(config["digest"])))
    manifest["layers"] = [_encrypt_layer(source, dest, layer, wrap, provider) for layer in layers]
    media_type = found.media_type or str(manifest.get("mediaType", ""))
    return dest.tag(dest_tag, media_type, canonical_json(manifest))
