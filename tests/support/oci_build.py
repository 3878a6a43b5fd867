"""Build small OCI images by hand (an ``oci:`` image layout) and push them with real skopeo.

Usage::

    from oci_build import Dir, Link, Symlink, build_layout, layer_tar, skopeo_push, whiteout

    image = build_layout(tmp / "layout", [
        {"etc/": Dir(), "etc/motd": b"hello\\n", "bin/sh": Symlink("/bin/busybox")},
        {whiteout("etc/motd"): b"", "etc/hard": Link("etc/os-release")},
    ], tag="v1")
    skopeo_push(image.layout, "v1", registry, "team/app:v1")   # registry: registry.LiveRegistry
    image.manifest_digest, image.config_digest, image.layer_digests  # what a pull must see

A layer is a mapping of tar member name → ``bytes`` (a 0644 regular file) or an entry
(``File``, ``Dir``, ``Symlink``, ``Link``, ``Device``, ``Fifo``); insertion order is tar order,
and names are written exactly as given (so ``../x`` and ``/abs`` make malicious layers).
Parent directories are not added implicitly.  Everything is deterministic: fixed mtimes,
uid/gid 0, gzip without a timestamp, JSON with sorted keys, so digests repeat run to run.

``build_index_layout`` puts several platform images behind one OCI image index (push it with
``skopeo_push(..., all_images=True)``).  ``layer_tar`` alone gives a layer's bytes for unpack
tests that need no registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

MTIME = 1_700_000_000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class File:
    data: bytes = b""
    mode: int = 0o644
    mtime: int = MTIME


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755
    mtime: int = MTIME


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Link:
    """A hard link to an earlier member ``target`` (a tar member name)."""

    target: str


@dataclass(frozen=True)
class Device:
    major: int = 1
    minor: int = 3
    char: bool = True


@dataclass(frozen=True)
class Fifo:
    pass


Entry = bytes | File | Dir | Symlink | Link | Device | Fifo
Layer = Mapping[str, Entry]


def whiteout(path: str) -> str:
    """The tar name that deletes ``path`` from lower layers."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return f"{parent}/.wh.{name}" if parent else f".wh.{name}"


def opaque(directory: str) -> str:
    """The tar name that hides everything lower layers put in ``directory``."""
    return f"{directory.rstrip('/')}/.wh..wh..opq"


def layer_tar(layer: Layer, *, compress: bool = True) -> bytes:
    """The layer as tar bytes (gzip-compressed, without a timestamp, unless ``compress`` is
    false)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, entry in layer.items():
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "", ""
            data: bytes | None = None
            if isinstance(entry, bytes):
                entry = File(entry)
            if isinstance(entry, File):
                info.size, info.mode, info.mtime, data = (
                    len(entry.data), entry.mode, entry.mtime, entry.data
                )
            elif isinstance(entry, Dir):
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, entry.mode, entry.mtime
            elif isinstance(entry, Symlink):
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.target, 0o777
            elif isinstance(entry, Link):
                info.type, info.linkname = tarfile.LNKTYPE, entry.target
            elif isinstance(entry, Device):
                info.type = tarfile.CHRTYPE if entry.char else tarfile.BLKTYPE
                info.devmajor, info.devminor, info.mode = entry.major, entry.minor, 0o666
            else:
                info.type, info.mode = tarfile.FIFOTYPE, 0o644
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Image:
    """What ``build_layout`` wrote: the layout and the digests a pull must reproduce."""

    layout: Path
    manifest: bytes
    manifest_digest: str
    config: bytes
    config_digest: str
    layers: list[bytes]
    layer_digests: list[str]
    diff_ids: list[str] = field(default_factory=list)


def _blob(layout: Path, data: bytes) -> str:
    digest = sha256(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def _descriptor(media_type: str, data: bytes, digest: str, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}


def _image_blobs(
    layout: Path, layers: Sequence[Layer], *, os_name: str, architecture: str,
    variant: str | None, compress: bool,
) -> Image:
    tars = [layer_tar(layer, compress=False) for layer in layers]
    blobs = [gzip.compress(t, mtime=0) for t in tars] if compress else tars
    layer_digests = [_blob(layout, b) for b in blobs]
    diff_ids = [sha256(t) for t in tars]
    platform: dict[str, Any] = {"os": os_name, "architecture": architecture}
    if variant:
        platform["variant"] = variant
    config = canonical({
        **platform, "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    config_digest = _blob(layout, config)
    media = LAYER_GZIP if compress else LAYER_TAR
    manifest = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": _descriptor(OCI_CONFIG, config, config_digest),
        "layers": [_descriptor(media, b, d) for b, d in zip(blobs, layer_digests, strict=True)],
    })
    manifest_digest = _blob(layout, manifest)
    return Image(layout, manifest, manifest_digest, config, config_digest, blobs,
                 layer_digests, diff_ids)


def _write_layout(layout: Path, media_type: str, data: bytes, digest: str, tag: str) -> None:
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    ref = {"org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2,
             "manifests": [_descriptor(media_type, data, digest, annotations=ref)]}
    (layout / "index.json").write_bytes(canonical(index))


def build_layout(
    layout: Path, layers: Sequence[Layer], *, tag: str = "latest", os_name: str = "linux",
    architecture: str = "amd64", variant: str | None = None, compress: bool = True,
) -> Image:
    """Write an OCI image layout at ``layout`` holding one image with ``layers`` under
    ``tag``."""
    layout.mkdir(parents=True, exist_ok=True)
    image = _image_blobs(layout, layers, os_name=os_name, architecture=architecture,
                         variant=variant, compress=compress)
    _write_layout(layout, OCI_MANIFEST, image.manifest, image.manifest_digest, tag)
    return image


@dataclass
class IndexImage:
    layout: Path
    index: bytes
    index_digest: str
    images: dict[str, Image]  # "os/arch[/variant]" → image


def build_index_layout(
    layout: Path, platforms: Mapping[str, Sequence[Layer]], *, tag: str = "latest",
) -> IndexImage:
    """One layout with an OCI image index over one image per ``"os/arch[/variant]"``."""
    layout.mkdir(parents=True, exist_ok=True)
    images: dict[str, Image] = {}
    entries = []
    for name, layers in platforms.items():
        os_name, architecture, *rest = name.split("/")
        variant = rest[0] if rest else None
        image = _image_blobs(layout, layers, os_name=os_name, architecture=architecture,
                             variant=variant, compress=True)
        images[name] = image
        platform = {"os": os_name, "architecture": architecture}
        if variant:
            platform["variant"] = variant
        entries.append(_descriptor(OCI_MANIFEST, image.manifest, image.manifest_digest,
                                   platform=platform))
    index = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    index_digest = _blob(layout, index)
    _write_layout(layout, OCI_INDEX, index, index_digest, tag)
    return IndexImage(layout, index, index_digest, images)


def skopeo_push(
    layout: Path, tag: str, registry: Any, destination: str, *, all_images: bool = False,
) -> None:
    """``skopeo copy oci:<layout>:<tag> docker://<registry.host>/<destination>`` with the
    registry's credentials, over plain HTTP, digests preserved.

    ``--insecure-policy`` because a bare machine may lack /etc/containers/policy.json;
    ``--dest-tls-verify=false`` makes containers/image fall back to HTTP on loopback."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.fail("skopeo is not installed; the image tests need it "
                    "(apt-get install skopeo docker-registry apache2-utils)")
    command = [skopeo, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
               "--preserve-digests"]
    if registry.user is not None:
        command.append(f"--dest-creds={registry.user}:{registry.password}")
    if all_images:
        command.append("--all")
    command += [f"oci:{layout}:{tag}", f"docker://{registry.host}/{destination}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"skopeo copy failed ({done.returncode}): {done.stderr.strip()}")
