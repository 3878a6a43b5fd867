"""OCI image layouts on disk (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``).

What ``skopeo copy oci:DIR:TAG …`` reads and writes.  :class:`OciLayout` stores blobs by
digest and tags manifests in ``index.json`` (the ``org.opencontainers.image.ref.name``
annotation); :func:`build_image` makes a one-layer image from a mapping of file names to
bytes (what ``veritee demo`` pushes); :mod:`veritee.image.encrypt` rewrites one with its
layers encrypted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veritee.errors import InputError

__all__ = [
    "LAYER_GZIP",
    "OCI_CONFIG",
    "OCI_MANIFEST",
    "REF_NAME",
    "LayoutError",
    "OciLayout",
    "TaggedManifest",
    "build_image",
    "canonical_json",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
_EPOCH = 1_700_000_000  # fixed mtimes: the same files give the same digests


class LayoutError(InputError):
    """An OCI layout that is missing, malformed, or lacks the tag or blob asked for."""


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class TaggedManifest:
    """A manifest found under a tag: its bytes, digest and parsed document."""

    tag: str
    digest: str
    media_type: str
    data: bytes
    document: dict[str, Any]


class OciLayout:
    """One OCI image layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def create(cls, root: Path) -> OciLayout:
        """Make ``root`` a layout (an existing one keeps its blobs and tags)."""
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = root / "oci-layout"
        if not marker.exists():
            marker.write_text('{"imageLayoutVersion":"1.0.0"}')
        index = root / "index.json"
        if not index.exists():
            index.write_bytes(canonical_json({"schemaVersion": 2, "manifests": []}))
        return cls(root)

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexpart = digest.partition(":")
        if algorithm not in ("sha256", "sha512") or not hexpart.isalnum():
            raise LayoutError(f"{digest[:80]!r} is not a blob digest")
        return self.root / "blobs" / algorithm / hexpart

    def read_blob(self, digest: str) -> bytes:
        try:
            data = self.blob_path(digest).read_bytes()
        except OSError:
            raise LayoutError(f"{self.root}: no blob {digest}") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest and digest.startswith("sha256:"):
            raise LayoutError(f"{self.root}: blob {digest} does not hash to its name")
        return data

    def write_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".part")
            temporary.write_bytes(data)
            temporary.replace(path)
        return digest

    def _index(self) -> dict[str, Any]:
        try:
            index = json.loads((self.root / "index.json").read_bytes())
        except OSError:
            raise LayoutError(f"{self.root} is not an OCI layout (no index.json)") from None
        except json.JSONDecodeError:
            raise LayoutError(f"{self.root}/index.json is not JSON") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise LayoutError(f"{self.root}/index.json has no manifests list")
        return index

    def manifest(self, tag: str) -> TaggedManifest:
        for entry in self._index()["manifests"]:
            annotations = entry.get("annotations") or {}
            if isinstance(entry, dict) and annotations.get(REF_NAME) == tag:
                data = self.read_blob(str(entry.get("digest")))
                try:
                    document = json.loads(data)
                except json.JSONDecodeError:
                    raise LayoutError(f"{self.root}: the manifest of {tag!r} is not JSON") from None
                return TaggedManifest(tag, entry["digest"], entry.get("mediaType", ""), data,
                                      document)
        raise LayoutError(f"{self.root}: no image tagged {tag!r}")

    def tag(self, tag: str, media_type: str, manifest: bytes) -> str:
        """Store ``manifest`` and point ``tag`` at it (replacing the tag's old target)."""
        digest = self.write_blob(manifest)
        index = self._index()
        kept = [m for m in index["manifests"]
                if (m.get("annotations") or {}).get(REF_NAME) != tag]
        kept.append({"mediaType": media_type, "digest": digest, "size": len(manifest),
                     "annotations": {REF_NAME: tag}})
        index["manifests"] = kept
        (self.root / "index.json").write_bytes(canonical_json(index))
        return digest


def _layer(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made: set[str] = set()
        for name in sorted(files):
            parts = name.strip("/").split("/")
            for end in range(1, len(parts)):
                directory = "/".join(parts[:end])
                if directory not in made:
                    made.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _EPOCH
                    tar.addfile(info)
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode, info.mtime = len(files[name]), 0o644, _EPOCH
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def build_image(
    layout: OciLayout,
    files: Mapping[str, bytes],
    *,
    tag: str = "latest",
    cmd: Sequence[str] = ("/bin/sh",),
    architecture: str = "amd64",
) -> str:
    """Write a one-layer linux image holding ``files`` (name → bytes) under ``tag``;
    returns its manifest digest."""
    tar = _layer(files)
    blob = gzip.compress(tar, mtime=0)
    layer_digest = layout.write_blob(blob)
    config = canonical_json({
        "architecture": architecture, "os": "linux", "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": list(cmd)},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
    })
    config_digest = layout.write_blob(config)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": LAYER_GZIP, "digest": layer_digest, "size": len(blob)}],
    })
    return layout.tag(tag, OCI_MANIFEST, manifest)
