"""The real :class:`~veritee.guest.attesters.base.Kernel`: files, directories and ioctls of Linux.

Every call is one system call or two, so what an attester asks for is what the
kernel sees: ``write`` is a single ``write(2)`` (sysfs and configfs take an
attribute in one write), ``ioctl`` opens the device read-write, issues the request
with the buffer mutated in place, and closes it.  Failures are the kernel's
:class:`OSError`.  ``root`` prefixes every path, for a guest whose interfaces are
mounted elsewhere (and for tests over a plain directory).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Mapping

__all__ = ["LinuxKernel"]


class LinuxKernel:
    """The running kernel's interfaces, by absolute path."""

    def __init__(
        self, root: str | os.PathLike[str] = "/", env: Mapping[str, str] | None = None
    ) -> None:
        self.root = os.fspath(root)
        self.env: Mapping[str, str] = os.environ if env is None else env

    def _path(self, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"kernel paths are absolute, got {path!r}")
        return os.path.join(self.root, path.lstrip("/"))

    def exists(self, path: str) -> bool:
        return os.path.exists(self._path(path))

    def read(self, path: str) -> bytes:
        with open(self._path(path), "rb", buffering=0) as f:
            return f.read()

    def write(self, path: str, data: bytes) -> None:
        fd = os.open(self._path(path), os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")

    def make_dir(self, parent: str) -> str:
        made = tempfile.mkdtemp(prefix=".tmp", dir=self._path(parent))
        return os.path.join("/", os.path.relpath(made, self.root))

    def remove_dir(self, path: str) -> None:
        os.rmdir(self._path(path))

    def ioctl(self, device: str, request: int, arg: bytearray) -> None:
        fd = os.open(self._path(device), os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, request, arg, True)
        finally:
            os.close(fd)
