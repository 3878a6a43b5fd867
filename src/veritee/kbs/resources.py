"""KBS resources: Trustee's resource paths and the storage behind the ``resource`` plugin.

A resource is addressed ``<repo>/<type>/<tag>``; :func:`validate_resource_path`
applies Trustee's exact rule (``kbs/src/plugins/implementations/resource/backend.rs``):
three segments, each ``[a-zA-Z0-9_\\-]+[a-zA-Z0-9_\\-\\.]*`` (so no empty segment, no
leading dot, no ``..``).  Anything else is :class:`~veritee.kbs.errors.PluginInternalError`,
as in Trustee (401, not 404).

Backends (:class:`ResourceBackend`):

* :class:`LocalFsBackend` reads and writes both on-disk layouts Trustee has used:

  - ``nested`` (Trustee ≤ v0.18, ``[[plugins]] name = "resource" type = "LocalFs"``):
    one real file per resource, ``<directory>/<repo>/<type>/<tag>``;
  - ``flat`` (Trustee ≥ v0.19, ``[storage_backend] storage_type = "LocalFs"``): one file
    per resource directly in the ``repository`` namespace directory, named with the
    slashes escaped as the four characters ``\\x2F``: ``<directory>/<repo>\\x2F<type>\\x2F<tag>``.

  Give the directory that holds the resources (the legacy ``dir_path``, or
  ``<storage dir_path>/repository``).  Reads try the configured layout first and
  then the other, so a directory written by either Trustee generation (or by hand,
  ``mkdir -p <dir>/default/key && echo … > <dir>/default/key/1``) is served.
  Writes go to the configured layout, atomically (temporary file, ``fsync``,
  rename) with mode 0600, and remove a copy in the other layout so one resource is
  one file.  Paths are built only from validated segments, and every resolved path
  (symlinks followed) must still lie inside the directory.
* :class:`KvResourceBackend` keeps resources in a :class:`~veritee.store.kv.KeyValueStore`
  (SQLite by default, PostgreSQL through :func:`~veritee.store.postgres.open_store`)
  under keys ``<repo>/<type>/<tag>``.

A missing resource is ``None`` from :meth:`ResourceBackend.get` and ``False`` from
:meth:`ResourceBackend.delete`; the caller raises ``PluginInternalError`` as Trustee
does.  Storage failures (I/O errors, an escaping symlink) raise ``PluginInternalError``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

from veritee.kbs.errors import PluginInternalError
from veritee.store.kv import KeyValueStore

__all__ = [
    "FLAT_SEPARATOR",
    "KvResourceBackend",
    "LocalFsBackend",
    "ResourceBackend",
    "resource_key",
    "validate_resource_path",
]

log = logging.getLogger("veritee.kbs.resources")

_SEGMENT = r"[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-\.]*"
# Trustee's regex, applied to the joined path; fullmatch so that "\n" cannot sneak
# past a "$" (Rust's "$" only matches at the very end of the text).
_RESOURCE_PATH = re.compile(rf"(?P<repo>{_SEGMENT})/(?P<type>{_SEGMENT})/(?P<tag>{_SEGMENT})")
_SEGMENT_RE = re.compile(_SEGMENT)

#: How Trustee's LocalFs key-value storage escapes ``/`` in a key (four characters).
FLAT_SEPARATOR = "\\x2F"

Layout = Literal["nested", "flat"]


def validate_resource_path(segments: Sequence[str]) -> tuple[str, str, str]:
    """``(repo, type, tag)`` for a valid resource path, else ``PluginInternalError``."""
    if isinstance(segments, str) or len(segments) != 3:
        raise PluginInternalError()
    if not all(isinstance(s, str) for s in segments):
        raise PluginInternalError()
    match = _RESOURCE_PATH.fullmatch("/".join(segments))
    if match is None:
        raise PluginInternalError()
    return match["repo"], match["type"], match["tag"]


def resource_key(repo: str, type_: str, tag: str) -> str:
    """The storage key Trustee uses: ``<repo>/<type>/<tag>`` (validated)."""
    r, t, g = validate_resource_path((repo, type_, tag))
    return f"{r}/{t}/{g}"


class ResourceBackend(Protocol):
    """Where the ``resource`` plugin keeps secrets."""

    def get(self, repo: str, type_: str, tag: str) -> bytes | None:
        """The resource's bytes, or ``None`` when it does not exist."""
        ...

    def put(self, repo: str, type_: str, tag: str, data: bytes) -> None:
        """Create or replace the resource."""
        ...

    def delete(self, repo: str, type_: str, tag: str) -> bool:
        """Remove the resource; return whether it existed."""
        ...

    def list(self) -> list[tuple[str, str, str]]:
        """Every resource, sorted."""
        ...


class LocalFsBackend:
    """Resources as files under ``directory``, in Trustee's nested or flat layout."""

    def __init__(self, directory: str | Path, *, layout: Layout = "nested") -> None:
        if layout not in ("nested", "flat"):
            raise ValueError(f"unknown LocalFs layout {layout!r} (use 'nested' or 'flat')")
        self.directory = Path(directory).expanduser()
        self.layout: Layout = layout
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"LocalFsBackend({str(self.directory)!r}, layout={self.layout!r})"

    # -- paths ---------------------------------------------------------------

    def _root(self) -> Path:
        return self.directory.resolve()

    def _path(self, layout: Layout, repo: str, type_: str, tag: str) -> Path:
        r, t, g = validate_resource_path((repo, type_, tag))
        if layout == "nested":
            return self.directory / r / t / g
        return self.directory / FLAT_SEPARATOR.join((r, t, g))

    def _contained(self, path: Path) -> Path:
        """``path`` resolved (symlinks followed); it must stay inside the directory."""
        root = self._root()
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            log.warning("resource path %s resolves outside %s; refused", path, root)
            raise PluginInternalError()
        return resolved

    def _layouts(self) -> tuple[Layout, Layout]:
        return ("nested", "flat") if self.layout == "nested" else ("flat", "nested")

    # -- operations ----------------------------------------------------------

    def get(self, repo: str, type_: str, tag: str) -> bytes | None:
        with self._lock:
            for layout in self._layouts():
                path = self._path(layout, repo, type_, tag)
                try:
                    if not path.is_file():
                        continue
                    return self._contained(path).read_bytes()
                except OSError as exc:
                    log.error("cannot read resource %s: %s", path, exc)
                    raise PluginInternalError() from exc
            return None

    def put(self, repo: str, type_: str, tag: str, data: bytes) -> None:
        preferred, other = self._layouts()
        target = self._path(preferred, repo, type_, tag)
        with self._lock:
            try:
                self._ensure_dir(target.parent)
                self._contained(target)
                _atomic_write(target, bytes(data))
                stale = self._path(other, repo, type_, tag)
                if stale.is_file():
                    self._contained(stale).unlink()
            except OSError as exc:
                log.error("cannot write resource %s: %s", target, exc)
                raise PluginInternalError() from exc

    def delete(self, repo: str, type_: str, tag: str) -> bool:
        found = False
        with self._lock:
            for layout in self._layouts():
                path = self._path(layout, repo, type_, tag)
                try:
                    if path.is_file() or path.is_symlink():
                        if path.is_file():
                            self._contained(path)
                        path.unlink()
                        found = True
                except OSError as exc:
                    log.error("cannot delete resource %s: %s", path, exc)
                    raise PluginInternalError() from exc
        return found

    def list(self) -> list[tuple[str, str, str]]:
        found: set[tuple[str, str, str]] = set()
        with self._lock:
            if not self.directory.is_dir():
                return []
            try:
                for entry in self.directory.iterdir():
                    if entry.is_file() and FLAT_SEPARATOR in entry.name:
                        parts = entry.name.split(FLAT_SEPARATOR)
                        if _valid(parts):
                            found.add((parts[0], parts[1], parts[2]))
                    elif entry.is_dir() and _SEGMENT_RE.fullmatch(entry.name):
                        for type_dir in entry.iterdir():
                            if not (type_dir.is_dir() and _SEGMENT_RE.fullmatch(type_dir.name)):
                                continue
                            for leaf in type_dir.iterdir():
                                if leaf.is_file() and _SEGMENT_RE.fullmatch(leaf.name):
                                    found.add((entry.name, type_dir.name, leaf.name))
            except OSError as exc:
                log.error("cannot list resources in %s: %s", self.directory, exc)
                raise PluginInternalError() from exc
        return sorted(found)

    def _ensure_dir(self, directory: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def _valid(parts: Sequence[str]) -> bool:
    return len(parts) == 3 and _RESOURCE_PATH.fullmatch("/".join(parts)) is not None


def _atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a 0600 temporary file and a rename."""
    # The leading dot keeps the temporary name out of Trustee's segment syntax, so
    # a half-written file can never be listed or served as a resource.
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class KvResourceBackend:
    """Resources in a key-value store namespace, keyed ``<repo>/<type>/<tag>``."""

    def __init__(self, store: KeyValueStore, namespace: str = "resource") -> None:
        self.store = store
        self.namespace = namespace

    def get(self, repo: str, type_: str, tag: str) -> bytes | None:
        entry = self.store.get(self.namespace, resource_key(repo, type_, tag))
        return None if entry is None else entry.value

    def put(self, repo: str, type_: str, tag: str, data: bytes) -> None:
        self.store.put(self.namespace, resource_key(repo, type_, tag), bytes(data))

    def delete(self, repo: str, type_: str, tag: str) -> bool:
        return self.store.delete(self.namespace, resource_key(repo, type_, tag))

    def list(self) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for entry in self.store.items(self.namespace):
            parts = entry.key.split("/")
            if _valid(parts):
                out.append((parts[0], parts[1], parts[2]))
        return sorted(out)
