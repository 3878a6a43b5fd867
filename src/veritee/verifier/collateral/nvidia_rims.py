"""NVIDIA RIMs by id (:class:`RimSource`): from a local directory of SWID tags or from NVIDIA's
RIM service.

Facts from NVIDIA's local GPU verifier (nvtrust), stated here, not copied: the RIM service
answers ``GET <base><rim id>`` (base :data:`RIM_SERVICE_URL`, which nvtrust lets
``NV_RIM_URL`` override) with JSON whose ``rim`` field is the base64 of the SWID tag; ids are
:func:`veritee.verifier.nvidia_rim.rim_id`'s.

Like the other collateral sources it goes through
:func:`~veritee.verifier.collateral.cache.obtain` for cache-or-fetch (kind ``nvidia-rim``),
each RIM filed under the root its signer chain ends in; offline mode answers from the cache
only (a miss is :class:`~veritee.errors.CollateralMissing` naming the RIM); every failure is a
:class:`~veritee.errors.CollateralError` naming the RIM and, for HTTP, the URL.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import httpx
from cryptography import x509

from veritee.errors import CollateralError, ParseError, VerificationError
from veritee.verifier.collateral.anchor import Anchor, anchor_of_chain
from veritee.verifier.collateral.cache import CollateralCache, Fetched, obtain, window_of
from veritee.verifier.collateral.http import http_get
from veritee.verifier.nvidia_certs import pinned_rim_root
from veritee.verifier.nvidia_rim import MAX_RIM_SIZE, parse_rim
from veritee.verifier.nvidia_rim_signature import chain_to_root

__all__ = ["RIM_SERVICE_URL", "RimSource"]

RIM_SERVICE_URL: Final = "https://rim.attestation.nvidia.com/v1/rim/"
_RIM_ID = re.compile(
    r"NV_GPU_(?:DRIVER_GH100_(?P<driver>[0-9][0-9.]*)"
    r"|VBIOS_(?P<project>[0-9A-Z]+)_(?P<psku>[0-9A-Z]+)_(?P<csku>[0-9A-Z]+)_(?P<vbios>[0-9A-F]+))"
)


def _now(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


class RimSource:
    """RIM documents by id: from ``directory`` first (``<id>.swidtag``, nvtrust's
    ``<project>_<project sku>_<chip sku>_<version>_*.swidtag``, else the one ``*.swidtag`` of
    that kind and version), then from NVIDIA's RIM service at ``url`` through ``cache``.

    With a ``directory`` and no ``url`` nothing is fetched; with neither, ``url`` is
    :data:`RIM_SERVICE_URL`.  A served RIM must parse, be of the id's kind and version, and
    carry a signer chain that links up to a root; it is filed under that root, and refused
    (never cached) unless that is one of ``roots`` (default: NVIDIA's pinned RIM root).  The
    verifier checks its signature and validity; this only obtains it."""

    def __init__(
        self,
        *,
        directory: Path | None = None,
        url: str | None = None,
        cache: CollateralCache | None = None,
        offline: bool = False,
        client: httpx.Client | None = None,
        roots: Sequence[x509.Certificate] | None = None,
    ) -> None:
        self.directory = directory
        self.url = url if url is not None or directory is not None else RIM_SERVICE_URL
        self.cache = cache
        self.offline = offline
        self._client = client
        self._roots = tuple(roots) if roots is not None else (pinned_rim_root(),)
        self._anchors = tuple(dict.fromkeys(Anchor.of(r) for r in self._roots))

    def rim(self, rim_id: str, *, at: dt.datetime | None = None) -> bytes:
        """The RIM document for ``rim_id``; :class:`CollateralError` names the id if none."""
        what = f"NVIDIA RIM {rim_id}"
        match = _RIM_ID.fullmatch(rim_id)
        if match is None:
            raise CollateralError(what, "not an NVIDIA RIM id (NV_GPU_DRIVER_… or NV_GPU_VBIOS_…)")
        if self.directory is not None:
            found = self._from_directory(self.directory, rim_id, match)
            if found is not None:
                return found
            if self.url is None:
                raise CollateralError(what, f"no RIM for it in {self.directory}")
        if self.url is None:  # pragma: no cover - a directory or a URL is always set
            raise CollateralError(what, "no RIM source configured")
        url = self.url.rstrip("/") + "/" + rim_id
        return obtain(
            self.cache,
            kind="nvidia-rim",
            key=rim_id,
            what=what,
            at=_now(at),
            offline=self.offline,
            fetch=lambda: self._fetch(url, match, what),
            roots=self._anchors,
        ).value

    def _from_directory(self, directory: Path, rim_id: str, match: re.Match[str]) -> bytes | None:
        exact = directory / f"{rim_id}.swidtag"
        if exact.is_file():
            return _read(exact)
        files = sorted(p for p in directory.glob("*.swidtag") if p.is_file())
        if match["vbios"]:
            stem = f"{match['project']}_{match['psku']}_{match['csku']}_{match['vbios']}_".lower()
            named = [p for p in files if p.name.lower().startswith(stem)]
            if named:
                return _read(named[0])
        hits = []
        for path in files:
            data = _read(path)
            try:
                rim = parse_rim(data)
            except ParseError:
                continue
            if _describes(rim.kind, rim.version, match):
                hits.append(data)
        if len(set(hits)) > 1:
            raise CollateralError(
                f"NVIDIA RIM {rim_id}", f"{len(hits)} different RIMs in {directory} match it"
            )
        return hits[0] if hits else None

    def _fetch(self, url: str, match: re.Match[str], what: str) -> Fetched:
        reply = http_get(self._client, url, what=what)
        try:
            document = json.loads(reply.body)
            data = base64.b64decode(document["rim"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise CollateralError(
                what, f"{reply.url} did not answer JSON with a base64 'rim' field"
            ) from None
        try:
            rim = parse_rim(data)
        except ParseError as exc:
            raise CollateralError(
                what, f"{reply.url} served a RIM that does not parse: {exc}"
            ) from None
        if not _describes(rim.kind, rim.version, match):
            raise CollateralError(
                what, f"{reply.url} served the {rim.kind} RIM for version {rim.version}"
            )
        try:
            chain = chain_to_root(rim.signer_chain, self._roots)
        except VerificationError:
            chain = rim.signer_chain  # obtain() refuses it, naming the root it ends in
        anchor = anchor_of_chain(chain, what)
        valid_from, expires = window_of(chain)
        return Fetched(data, expires, valid_from, anchor, reply.url)


def _describes(kind: str, version: str, match: re.Match[str]) -> bool:
    if match["driver"]:
        return kind == "driver" and version.lower() == match["driver"].lower()
    return kind == "vbios" and version.replace(".", "").upper() == match["vbios"]


def _read(path: Path) -> bytes:
    if path.stat().st_size > MAX_RIM_SIZE:
        raise CollateralError(f"NVIDIA RIM file {path}", f"over {MAX_RIM_SIZE} bytes")
    return path.read_bytes()
