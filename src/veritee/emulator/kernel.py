"""The kernel side of an emulated machine: a virtual file tree, configfs-tsm and ioctls.

:class:`EmulatedKernel` implements :class:`veritee.guest.attesters.base.Kernel` over
paths as Linux has them.  Files are read and write handlers; a directory may
answer ``make_dir`` (configfs-tsm's report directory makes an entry with its
attribute files); a device file may answer ``ioctl``.  Failures are
:class:`OSError` with the errno Linux gives.  Every call is recorded in
:attr:`EmulatedKernel.calls` (and ioctls, with the request structs read from
user memory, in :attr:`EmulatedKernel.ioctls`) for tests to assert on.  One
lock serialises all calls, so the machine can serve a threaded REST API.

configfs-tsm entries behave as Linux's ``drivers/virt/coco/tsm.c``: ``provider``
names the TEE, ``generation`` counts the writes to the entry, ``outblob`` is made
from the last ``inblob`` (once per generation), ``auxblob`` holds supplemental
data (SEV: the certificate table) and ``remove_dir`` deletes the entry.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from veritee.guest.attesters.tsm import TSM_REPORT

__all__ = ["Call", "EmulatedKernel", "Faults", "IoctlCall", "Tsm", "ioc_size", "oserror"]

INBLOB_MAX = 64


def oserror(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


def ioc_size(request: int) -> int:
    """The argument size encoded in an ioctl request number (``_IOC_SIZE``)."""
    return (request >> 16) & 0x3FFF


@dataclass
class Faults:
    """Ways to make the machine hostile, for tests; they may be changed at any time.

    ``provider``: configfs-tsm names this provider instead of the TEE's.
    ``inblob_race``: another writer's inblob lands right after each of ours, so
    ``generation`` reads 2 and the outblob answers the other request.
    ``fw_error``: every report request fails with EIO; a SEV guest request also
    reports this firmware error in ``exitinfo2``.
    ``cert_table_size``: the SEV host's certificate table is padded to this many bytes.
    """

    provider: str | None = None
    inblob_race: bool = False
    fw_error: int | None = None
    cert_table_size: int | None = None


@dataclass(frozen=True)
class Call:
    """One kernel call: ``op`` is read, write, make_dir, remove_dir or ioctl; ``data`` is
    what was written, or the ioctl argument as passed."""

    op: str
    path: str
    data: bytes = b""


@dataclass(frozen=True)
class IoctlCall:
    """One ioctl: the request number, the argument as passed and, for requests that point
    at user memory, the request struct the kernel read from there."""

    device: str
    request: int
    arg: bytes
    req: bytes | None = None


@dataclass
class _Node:
    read: Callable[[], bytes] | None = None
    write: Callable[[bytes], None] | None = None


@dataclass(frozen=True)
class Tsm:
    """A configfs-tsm provider: its name, how it turns an inblob into an outblob, and its
    auxblob."""

    provider: str
    outblob: Callable[[bytes], bytes]
    auxblob: Callable[[], bytes] = bytes
    extra_attributes: tuple[str, ...] = ()


class _Entry:
    """One configfs-tsm report entry."""

    def __init__(self) -> None:
        self.inblob: bytes | None = None
        self.generation = 0
        self.outblob: tuple[int, bytes] | None = None


class EmulatedKernel:
    """A virtual file tree behind the Kernel interface."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env: Mapping[str, str] = dict(env or {})
        self.calls: list[Call] = []
        self.ioctls: list[IoctlCall] = []
        self.faults = Faults()
        self._lock = threading.RLock()
        self._files: dict[str, _Node] = {}
        self._dirs: set[str] = {"/"}
        self._devices: dict[str, Callable[[int, bytearray], None]] = {}
        self._mkdir: dict[str, Callable[[], str]] = {}
        self._names = itertools.count(1)

    # -- building the tree ----------------------------------------------------------------

    def add_dir(self, path: str) -> None:
        while path not in self._dirs:
            self._dirs.add(path)
            path = os.path.dirname(path)

    def add_file(
        self,
        path: str,
        read: Callable[[], bytes] | None = None,
        write: Callable[[bytes], None] | None = None,
    ) -> None:
        self.add_dir(os.path.dirname(path))
        self._files[path] = _Node(read, write)

    def add_device(self, path: str, handler: Callable[[int, bytearray], None]) -> None:
        self.add_file(path)
        self._devices[path] = handler

    def add_tsm(self, tsm: Tsm) -> None:
        """configfs-tsm's report directory, making entries for ``tsm``."""
        self.add_dir(TSM_REPORT)
        self._mkdir[TSM_REPORT] = lambda: self._tsm_entry(tsm)

    def _tsm_entry(self, tsm: Tsm) -> str:
        path = f"{TSM_REPORT}/report{next(self._names)}"
        entry = _Entry()

        def write_inblob(data: bytes) -> None:
            if len(data) > INBLOB_MAX:
                raise oserror(errno.EINVAL, f"{path}/inblob")
            entry.inblob, entry.generation = bytes(data), entry.generation + 1
            if self.faults.inblob_race:  # another process writes its own request before we read
                entry.inblob, entry.generation = os.urandom(INBLOB_MAX), entry.generation + 1

        def read_outblob() -> bytes:
            if entry.inblob is None:
                raise oserror(errno.EINVAL, f"{path}/outblob")
            if self.faults.fw_error is not None:
                raise oserror(errno.EIO, f"{path}/outblob")
            if entry.outblob is None or entry.outblob[0] != entry.generation:
                entry.outblob = (entry.generation, tsm.outblob(entry.inblob))
            return entry.outblob[1]

        def count_write(_: bytes) -> None:
            entry.generation += 1

        self.add_dir(path)
        self.add_file(f"{path}/provider", read=lambda: f"{self._provider(tsm)}\n".encode())
        self.add_file(f"{path}/generation", read=lambda: f"{entry.generation}\n".encode())
        self.add_file(f"{path}/inblob", write=write_inblob)
        self.add_file(f"{path}/outblob", read=read_outblob)
        self.add_file(f"{path}/auxblob", read=tsm.auxblob)
        for name in tsm.extra_attributes:
            self.add_file(f"{path}/{name}", read=lambda: b"0\n", write=count_write)
        return path

    def _provider(self, tsm: Tsm) -> str:
        return self.faults.provider if self.faults.provider is not None else tsm.provider

    # -- the Kernel interface -------------------------------------------------------------

    def exists(self, path: str) -> bool:
        with self._lock:
            path = _norm(path)
            return path in self._files or path in self._dirs

    def read(self, path: str) -> bytes:
        with self._lock:
            self.calls.append(Call("read", path))
            reader = self._node(path).read
            if reader is None:
                raise oserror(errno.EACCES, path)
            return reader()

    def write(self, path: str, data: bytes) -> None:
        with self._lock:
            self.calls.append(Call("write", path, bytes(data)))
            writer = self._node(path).write
            if writer is None:
                raise oserror(errno.EACCES, path)
            writer(bytes(data))

    def make_dir(self, parent: str) -> str:
        with self._lock:
            self.calls.append(Call("make_dir", parent))
            parent = _norm(parent)
            make = self._mkdir.get(parent)
            if make is None:
                raise oserror(errno.EPERM if parent in self._dirs else errno.ENOENT, parent)
            return make()

    def remove_dir(self, path: str) -> None:
        with self._lock:
            self.calls.append(Call("remove_dir", path))
            path = _norm(path)
            if os.path.dirname(path) not in self._mkdir:
                raise oserror(errno.EPERM if path in self._dirs else errno.ENOENT, path)
            if path not in self._dirs:
                raise oserror(errno.ENOENT, path)
            self._dirs.discard(path)
            for name in [f for f in self._files if os.path.dirname(f) == path]:
                del self._files[name]

    def ioctl(self, device: str, request: int, arg: bytearray) -> None:
        with self._lock:
            self.calls.append(Call("ioctl", device, bytes(arg)))
            self._node(device)
            handler = self._devices.get(_norm(device))
            if handler is None:
                raise oserror(errno.ENOTTY, device)
            handler(request, arg)

    def _node(self, path: str) -> _Node:
        path = _norm(path)
        node = self._files.get(path)
        if node is None:
            raise oserror(errno.EISDIR if path in self._dirs else errno.ENOENT, path)
        return node

    # -- for tests ------------------------------------------------------------------------

    def entries(self) -> list[str]:
        """The configfs-tsm report entries that exist now."""
        with self._lock:
            return sorted(d for d in self._dirs if os.path.dirname(d) == TSM_REPORT)


def _norm(path: str) -> str:
    return os.path.normpath(path) if path != "/" else path
