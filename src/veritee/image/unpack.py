"""Safe unpacking of OCI image layers onto a bundle's rootfs.

:func:`unpack_layer` applies one layer blob, in pull order, onto the same ``rootfs``
directory: it decompresses the blob as a stream, reads the tar in one pass and hashes the
uncompressed bytes as they go by (the layer's *diff_id*, the digest the image config lists).

Whatever the tar says, nothing is written outside ``rootfs``:

- **Names are normalised, not refused**, the way containerd does it: a member name is
  cleaned lexically relative to the rootfs, a leading ``/`` is dropped and ``..`` at the
  root stays at the root (``../../etc/passwd`` is ``etc/passwd``).
- Every directory on the way to an entry is opened with ``O_NOFOLLOW`` relative to its
  parent's descriptor.  A component that is a symlink (from this layer or a lower one) is
  resolved *inside* the rootfs: an absolute target starts again at the rootfs, ``..``
  stops at it.  The entry's own name is never followed: an existing file, symlink or
  directory there is removed first and the new entry created with ``O_EXCL``.
- Symlinks are created as they are: their targets are only text, never followed here.
- A hard link must name a regular file already in the rootfs, reached without following
  any symlink; a link to a symlink, a directory, a device or a missing file is skipped.
- Device nodes (character and block) are never created: they are skipped.  FIFOs are
  created (``mkfifo`` needs no privilege and opens no new access).
- Modes keep ``mode & 0o7777`` (setuid, setgid and sticky included); owners are not
  changed: the image's uids are not ours, files belong to whoever unpacks.  Directory
  modes and mtimes are set when the layer is done, so that a read-only directory can
  still receive the entries that follow it.
- Whiteouts (``.wh.<name>``) delete ``<name>`` left by lower layers, opaque markers
  (``.wh..wh..opq``) delete what lower layers put in their directory but keep what this
  layer adds, wherever the marker sits in the tar.  Neither is ever created as a file.

Skipped entries are listed, with the reason, in :attr:`UnpackedLayer.skipped` and logged
at DEBUG on ``veritee.image``; each layer's summary is logged at INFO.  Any error leaves a
partly unpacked rootfs: the caller must throw the whole rootfs away.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import importlib
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, Self, cast

from veritee.errors import VeriteeError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "LAYER_MEDIA_TYPES",
    "CorruptLayer",
    "DiffIdMismatch",
    "LayerLimitExceeded",
    "LayerUnpackError",
    "UnpackedLayer",
    "UnsafeLayerEntry",
    "UnsupportedLayerType",
    "unpack_layer",
]

log = logging.getLogger("veritee.image")

LAYER_MEDIA_TYPES: Final[Mapping[str, str]] = {
    "application/vnd.oci.image.layer.v1.tar": "tar",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}
"""Layer media type → compression.  ``zstd`` works only when Python's ``compression.zstd``
or the ``zstandard`` package can be imported; otherwise such a layer is refused."""

DEFAULT_MAX_BYTES: Final = 8 << 30
DEFAULT_MAX_ENTRIES: Final = 1_000_000
_MAX_SPECIAL = 1 << 20  # a PAX or GNU long-name header, as Go's archive/tar
_MAX_DEPTH = 256  # directories below the rootfs
_MAX_LINKS = 40  # symlinks expanded resolving one entry, as Linux
_CHUNK = 1 << 20
_TAIL = 1 << 16
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPAQUE = ".wh..wh..opq"
_WHITEOUT = ".wh."
_SPECIAL_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                  tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class LayerUnpackError(VeriteeError):
    """A layer could not be unpacked; the rootfs is partly written and must be discarded."""


class UnsupportedLayerType(LayerUnpackError):
    """A media type this unpacker does not know, or zstd without a decompressor."""


class CorruptLayer(LayerUnpackError):
    """The blob is not a readable compressed tar stream (bad or truncated gzip or tar)."""


class LayerLimitExceeded(LayerUnpackError):
    """The layer is larger, has more entries or nests deeper than allowed."""


class UnsafeLayerEntry(LayerUnpackError):
    """An entry that would destroy the rootfs itself (a whiteout of ``..``, a file in place
    of the rootfs); the layer is refused."""


class DiffIdMismatch(LayerUnpackError):
    """The uncompressed tar does not have the expected diff_id."""


@dataclass(frozen=True)
class UnpackedLayer:
    diff_id: str  # "<algorithm>:<hex>" of the uncompressed tar stream
    entries: int  # tar members read (whiteouts and skipped ones included)
    skipped: tuple[str, ...]  # "<entry>: <reason>" for every entry not applied as given


def _show(name: str) -> str:
    """``name`` for a message: control characters escaped, long names cut."""
    return repr(name[:200] + ("..." if len(name) > 200 else ""))


def _clean(name: str) -> tuple[str, ...]:
    """``name`` lexically cleaned relative to the rootfs; ``..`` at the root stays there."""
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return tuple(parts)


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(name: str, dir_fd: int) -> None:
    """Remove ``name`` (a whole tree if it is a directory) without following symlinks."""
    st = _lstat(name, dir_fd)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _set_mtime(target: int | str, mtime: float, dir_fd: int | None = None) -> None:
    try:
        if isinstance(target, int):
            os.utime(target, (mtime, mtime))
        else:
            os.utime(target, (mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)
    except (OverflowError, ValueError):
        pass  # an mtime the filesystem cannot hold is not worth failing the layer


class _HashingReader:
    """The decompressed stream, hashed and counted as tarfile reads it; keeps the last
    bytes read so the end of the archive can be checked."""

    def __init__(self, inner: Any, algorithm: str, max_bytes: int) -> None:
        self._inner, self._max = inner, max_bytes
        self._hash = hashlib.new(algorithm)
        self._tail = bytearray()
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = bytes(self._inner.read(size if size >= 0 else _CHUNK))
        except Exception as exc:  # the decompressor's own errors: zlib, EOF, zstd, I/O
            raise CorruptLayer(f"the layer stream cannot be read: {exc}") from None
        self.total += len(data)
        if self.total > self._max:
            raise LayerLimitExceeded(
                f"the layer is larger than {self._max} bytes uncompressed; refused")
        self._hash.update(data)
        self._tail += data
        del self._tail[:-_TAIL]
        return data

    def clean_end(self, offset: int) -> bool:
        """Whether the stream ended at ``offset`` or has a whole zero block there."""
        if offset == self.total:
            return True
        start = offset - (self.total - len(self._tail))
        block = self._tail[start:start + tarfile.BLOCKSIZE] if start >= 0 else b""
        return len(block) == tarfile.BLOCKSIZE and not any(block)

    def digest(self) -> str:
        return f"{self._hash.name}:{self._hash.hexdigest()}"


class _TarInfo(tarfile.TarInfo):
    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _SPECIAL_TYPES and info.size > _MAX_SPECIAL:
            raise LayerLimitExceeded(
                f"a tar extended header of {info.size} bytes (more than {_MAX_SPECIAL}); "
                "refused")
        return info


def _zstd_reader(blob: BinaryIO) -> Any | None:
    try:
        return importlib.import_module("compression.zstd").ZstdFile(blob)
    except ImportError:
        pass
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        return None
    return zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True)


def _decompressed(blob: BinaryIO, media_type: str) -> Any:
    compression = LAYER_MEDIA_TYPES.get(media_type)
    if compression is None:
        raise UnsupportedLayerType(
            f"layer media type {media_type!r} is not supported (known: "
            f"{', '.join(sorted(LAYER_MEDIA_TYPES))})")
    if compression == "gzip":
        return gzip.GzipFile(fileobj=blob, mode="rb")
    if compression == "zstd":
        reader = _zstd_reader(blob)
        if reader is None:
            raise UnsupportedLayerType(
                f"layer media type {media_type!r} needs a zstd decompressor and neither "
                "Python's compression.zstd nor the zstandard package is installed")
        return reader
    return blob


class _Applier:
    """Applies tar members onto the rootfs open as ``root``."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.skipped: list[str] = []
        self.touched: set[tuple[str, ...]] = set()  # written by this layer, and parents
        self.dirs: dict[tuple[str, ...], tuple[int, float, int, int]] = {}

    def skip(self, shown: str, reason: str) -> None:
        self.skipped.append(f"{shown}: {reason}")
        log.debug("layer entry %s skipped: %s", shown, reason)

    def record(self, path: tuple[str, ...]) -> None:
        for end in range(len(path), 0, -1):
            if path[:end] in self.touched:
                break
            self.touched.add(path[:end])

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        shown = _show(member.name)
        try:
            self._apply(member, tar, _clean(member.name), shown)
        except OSError as exc:
            raise LayerUnpackError(
                f"layer entry {shown}: {exc.strerror or exc}") from None

    def _apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile, parts: tuple[str, ...],
               shown: str) -> None:
        if parts and parts[-1].startswith(_WHITEOUT):
            self._whiteout(parts, shown)
            return
        if member.ischr() or member.isblk():
            kind = "character" if member.ischr() else "block"
            self.skip(shown, f"{kind} device {member.devmajor}:{member.devminor} not created")
            return
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()
                or member.isfifo()):
            self.skip(shown, f"tar entry type {member.type!r} not supported")
            return
        if not parts:
            if member.isdir():
                return  # the rootfs itself: its mode and owner are the bundle's
            raise UnsafeLayerEntry(f"layer entry {shown} would replace the rootfs itself")
        if "/".join(parts) != member.name:
            log.debug("layer entry %s unpacked as %r", shown, "/".join(parts))
        parent, parent_path = self._resolve(parts[:-1], shown)
        name, path = parts[-1], (*parent_path, parts[-1])
        try:
            if member.isdir():
                self._dir(parent, name, path, member)
            elif member.islnk():
                if not self._hardlink(parent, name, path, member, shown):
                    return
            else:
                _remove(name, parent)
                if member.isreg():
                    self._file(parent, name, member, tar)
                elif member.issym():
                    os.symlink(member.linkname, name, dir_fd=parent)
                    _set_mtime(name, member.mtime, parent)
                else:
                    os.mkfifo(name, 0o600, dir_fd=parent)
                    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, dir_fd=parent)
                    try:
                        os.fchmod(fd, member.mode & 0o7777)
                        _set_mtime(fd, member.mtime)
                    finally:
                        os.close(fd)
            self.record(path)
        finally:
            os.close(parent)

    def _resolve(self, parts: tuple[str, ...], shown: str, *,
                 create: bool = True) -> tuple[int, tuple[str, ...]]:
        """An open descriptor of directory ``parts`` and its path without symlinks:
        symlinks resolved inside the rootfs, missing directories created (0755) when
        ``create``, else :class:`FileNotFoundError`."""
        pending, fds, links = list(reversed(parts)), [os.dup(self.root)], 0
        names: list[str] = []
        try:
            while pending:
                name = pending.pop()
                if name == "..":
                    if names:
                        os.close(fds.pop())
                        names.pop()
                    continue
                if name in ("", "."):
                    continue
                st = _lstat(name, fds[-1])
                if st is not None and stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise LayerUnpackError(
                            f"layer entry {shown}: too many levels of symbolic links")
                    target = os.readlink(name, dir_fd=fds[-1])
                    if target.startswith("/"):
                        for fd in fds[1:]:
                            os.close(fd)
                        del fds[1:], names[:]
                    pending.extend(reversed(target.split("/")))
                    continue
                if len(names) >= _MAX_DEPTH:
                    raise LayerLimitExceeded(
                        f"layer entry {shown} nests deeper than {_MAX_DEPTH} directories")
                if st is None:
                    if not create:
                        raise FileNotFoundError(name)
                    os.mkdir(name, 0o700, dir_fd=fds[-1])
                    fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
                    os.fchmod(fds[-1], 0o755)
                elif stat.S_ISDIR(st.st_mode):
                    fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
                elif not create:
                    raise NotADirectoryError(name)
                else:
                    where = _show("/".join([*names, name]))
                    raise LayerUnpackError(f"layer entry {shown}: {where} is not a directory")
                names.append(name)
            return fds.pop(), tuple(names)
        finally:
            for fd in fds:
                os.close(fd)

    def _walk(self, parts: tuple[str, ...]) -> int:
        """Directory ``parts`` opened without following any symlink (else OSError)."""
        fd = os.dup(self.root)
        for name in parts:
            parent = fd
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            finally:
                os.close(parent)
        return fd

    def _dir(self, parent: int, name: str, path: tuple[str, ...],
             member: tarfile.TarInfo) -> None:
        st = _lstat(name, parent)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent)
            st = None
        if st is None:
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        try:
            os.fchmod(fd, (member.mode & 0o7777) | 0o700)  # the final mode at the end
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self.dirs[path] = (member.mode & 0o7777, member.mtime, st.st_dev, st.st_ino)

    def _file(self, parent: int, name: str, member: tarfile.TarInfo,
              tar: tarfile.TarFile) -> None:
        source = tar.extractfile(member)
        assert source is not None  # a regular file
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(name, flags, 0o600, dir_fd=parent), "wb") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
            out.flush()
            os.fchmod(out.fileno(), member.mode & 0o7777)
            _set_mtime(out.fileno(), member.mtime)

    def _hardlink(self, parent: int, name: str, path: tuple[str, ...],
                  member: tarfile.TarInfo, shown: str) -> bool:
        target = _clean(member.linkname)
        why = f"hard link to {_show(member.linkname)}"
        if not target or target == path:
            self.skip(shown, f"{why}: the link itself or the rootfs")
            return False
        try:
            directory = self._walk(target[:-1])
        except OSError as exc:
            self.skip(shown, f"{why}: " + (
                "missing in the rootfs" if exc.errno == errno.ENOENT else
                "not reachable in the rootfs without following a symlink or a non-directory"
                if exc.errno in (errno.ENOTDIR, errno.ELOOP) else str(exc.strerror)))
            return False
        try:
            st = _lstat(target[-1], directory)
            if st is None or not stat.S_ISREG(st.st_mode):
                what = "missing" if st is None else "not a regular file"
                self.skip(shown, f"{why}: {what} in the rootfs")
                return False
            _remove(name, parent)
            os.link(target[-1], name, src_dir_fd=directory, dst_dir_fd=parent,
                    follow_symlinks=False)
        finally:
            os.close(directory)
        return True

    def _whiteout(self, parts: tuple[str, ...], shown: str) -> None:
        base = parts[-1]
        if base == _OPAQUE:
            self._opaque(parts[:-1], shown)
            return
        if base.startswith(_WHITEOUT + _WHITEOUT):
            self.skip(shown, "aufs metadata, ignored")
            return
        name = base[len(_WHITEOUT):]
        if name in ("", ".", ".."):
            raise UnsafeLayerEntry(f"layer entry {shown}: a whiteout of {name!r} would remove "
                                   "a parent directory")
        try:
            parent, parent_path = self._resolve(parts[:-1], shown, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing of a lower layer to hide
        try:
            if (*parent_path, name) in self.touched:
                log.debug("layer entry %s: %r is this layer's own, kept", shown, name)
            else:
                _remove(name, parent)
        finally:
            os.close(parent)

    def _opaque(self, parts: tuple[str, ...], shown: str) -> None:
        """Remove what lower layers put in directory ``parts`` (itself not followed if it
        is a symlink: then this layer's own directory entry replaces the link)."""
        try:
            parent, parent_path = self._resolve(parts[:-1], shown, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            if parts:
                st = _lstat(parts[-1], parent)
                if st is None or not stat.S_ISDIR(st.st_mode):
                    return
                directory = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
                path = (*parent_path, parts[-1])
            else:
                directory, path = os.dup(parent), ()
        finally:
            os.close(parent)
        try:
            self._clear_lower(directory, path)
        finally:
            os.close(directory)
        self.record(path)

    def _clear_lower(self, directory: int, path: tuple[str, ...]) -> None:
        for name in os.listdir(directory):
            child = (*path, name)
            if child not in self.touched:
                _remove(name, directory)
                continue
            st = _lstat(name, directory)
            if st is not None and stat.S_ISDIR(st.st_mode):
                fd = os.open(name, _DIR_FLAGS, dir_fd=directory)
                try:
                    self._clear_lower(fd, child)
                finally:
                    os.close(fd)

    def finish(self) -> None:
        """Directory modes and mtimes, deepest first, on the directories still there."""
        for path, (mode, mtime, dev, ino) in sorted(
                self.dirs.items(), key=lambda item: -len(item[0])):
            try:
                fd = self._walk(path)
            except OSError:
                continue  # replaced later in the layer
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.fchmod(fd, mode)
                    _set_mtime(fd, mtime)
            finally:
                os.close(fd)


def _read_tar(reader: _HashingReader, applier: _Applier, max_entries: int) -> int:
    entries = 0
    try:
        with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|",
                          tarinfo=_TarInfo) as tar:
            while (member := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # no index: flat memory
                entries += 1
                if entries > max_entries:
                    raise LayerLimitExceeded(
                        f"the layer has more than {max_entries} entries; refused")
                applier.apply(member, tar)
            end = tar.offset
    except tarfile.TarError as exc:
        raise CorruptLayer(f"the layer is not a readable tar stream: {exc}") from None
    # tarfile stops quietly at a damaged or cut header: only a zero block or the very end
    # of the stream (as Go's archive/tar) may follow the last entry.
    if not reader.clean_end(end):
        raise CorruptLayer(f"the layer's tar stream is damaged or cut at offset {end}")
    return entries


def unpack_layer(
    blob: BinaryIO, media_type: str, rootfs: Path, *, expected_diff_id: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES,
) -> UnpackedLayer:
    """Apply the layer ``blob`` (of ``media_type``, see :data:`LAYER_MEDIA_TYPES`) onto
    the existing directory ``rootfs``, on top of the layers already unpacked there.

    The diff_id is the digest of the whole uncompressed stream, trailing padding included
    (sha256, or the algorithm of ``expected_diff_id``).  A different ``expected_diff_id``
    raises :class:`DiffIdMismatch` once the stream is read: the rootfs already holds the
    layer, so the caller must throw the rootfs away, as after any other error here.
    More than ``max_bytes`` uncompressed or ``max_entries`` entries raise
    :class:`LayerLimitExceeded` before anything more is written."""
    algorithm = "sha256"
    if expected_diff_id is not None:
        algorithm = expected_diff_id.partition(":")[0]
        if algorithm not in ("sha256", "sha512"):
            raise LayerUnpackError(f"diff_id {expected_diff_id!r}: unsupported algorithm")
    reader = _HashingReader(_decompressed(blob, media_type), algorithm, max_bytes)
    try:
        root = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise LayerUnpackError(f"rootfs {str(rootfs)!r}: {exc.strerror or exc}") from None
    try:
        applier = _Applier(root)
        entries = _read_tar(reader, applier, max_entries)
        while reader.read(_CHUNK):
            pass
        try:
            applier.finish()
        except OSError as exc:
            raise LayerUnpackError(
                f"setting directory modes: {exc.strerror or exc}") from None
    finally:
        os.close(root)
    diff_id = reader.digest()
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise DiffIdMismatch(f"the layer's diff_id is {diff_id}, expected {expected_diff_id}")
    log.info("layer %s: %d entries unpacked into %s, %d skipped", diff_id, entries, rootfs,
             len(applier.skipped))
    return UnpackedLayer(diff_id, entries, tuple(applier.skipped))
