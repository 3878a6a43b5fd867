"""Throwaway PostgreSQL and Redis servers for the tests and the benchmarks.

Each server is started from the installed binaries on a free 127.0.0.1 port, in a
temporary directory of its own, and stopped (the directory removed) at the end.  No
system instance and no fixed port is ever used.

PostgreSQL refuses to run as root: when this process is root, ``initdb`` and
``pg_ctl`` run as the unprivileged ``postgres`` system user (Debian's ``postgresql``
package creates it), in a directory made directly under /tmp and owned by that user.

For pytest, the session-scoped fixtures ``postgres_dsn`` and ``redis_url`` start a
server the first time a test asks for one (tests/conftest.py imports them).  A
missing binary or a server that does not start fails the test, never skips it.
Benchmarks use ``with running(start_postgres)`` and ``with running(start_redis)``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

PG_USER = "postgres"  # both the superuser inside the cluster and, as root, the OS user
PG_DATABASE = "test"
PG_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
PG_LIB = Path("/usr/lib/postgresql")  # Debian's versioned server binaries: <version>/bin
PG_INSTALL = "apt-get install postgresql"
REDIS_INSTALL = "apt-get install redis-server"
START_ATTEMPTS = 5
START_TIMEOUT = 60.0


class ServiceError(RuntimeError):
    """A throwaway server could not be found or started."""


def free_port() -> int:
    """A port nobody listens on right now (the caller retries if it is taken meanwhile)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _port_taken(log: str) -> bool:
    return bool(re.search(r"address already in use|could not bind", log, re.IGNORECASE))


# -- PostgreSQL -----------------------------------------------------------------


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (0,)


def postgres_bindir(lib_root: Path = PG_LIB) -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates: list[Path] = []
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(lib_root.glob("*/bin"), key=_version_key, reverse=True)
    for bindir in candidates:
        if all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise ServiceError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, "
        f"pg_config --bindir or /usr/lib/postgresql/*/bin: {PG_INSTALL}"
    )


def _as_postgres_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that drops root to the ``postgres`` user (none if not root)."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam(PG_USER)
    except KeyError:
        raise ServiceError(
            "PostgreSQL refuses to run as root and there is no "
            f"{PG_USER!r} system user to run it as: {PG_INSTALL} "
            f"(it creates the user) or useradd --system {PG_USER}"
        ) from None
    if shutil.which("runuser"):
        return ["runuser", "-u", PG_USER, "--"], user
    if shutil.which("setpriv"):
        return [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--init-groups",
            "--",
        ], user
    raise ServiceError(
        f"running PostgreSQL as root needs runuser or setpriv to switch to {PG_USER!r}: "
        "apt-get install util-linux"
    )


@dataclass
class PostgresServer:
    """A PostgreSQL cluster of our own; ``dsn`` points at its database ``test``."""

    port: int
    directory: Path
    bindir: Path
    prefix: list[str] = field(repr=False)
    stopped: bool = False

    @property
    def dsn(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def _pg_ctl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.directory,
            check=False,
        )

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        pid_file = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "30", timeout=40)
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pg_ctl could not stop it: kill the postmaster named in its pid file, if that
            # process is still the one serving this data directory.
            pid = int(pid_file.read_text().split()[0])
            if str(self.data_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """initdb a cluster in a new temporary directory and start it on a free port."""
    import psycopg

    bindir = postgres_bindir()
    prefix, user = _as_postgres_user()
    # As root, directly under /tmp: pytest's temporary directories are 0700 root.
    directory = Path(tempfile.mkdtemp(prefix="veritee-pg-", dir="/tmp" if user else None))
    server = PostgresServer(port=0, directory=directory, bindir=bindir, prefix=prefix)
    try:
        if user is not None:
            os.chown(directory, user.pw_uid, user.pw_gid)
        init = subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(server.data_dir),
                "--auth=trust",
                f"--username={PG_USER}",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=directory,
            check=False,
        )
        if init.returncode != 0:
            raise ServiceError(
                f"initdb failed (exit {init.returncode}) in {server.data_dir}:\n"
                f"{(init.stdout + init.stderr).strip()[-3000:]}"
            )
        settings = {**PG_SETTINGS, "unix_socket_directories": f"'{directory}'"}
        with (server.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# veritee tests: a throwaway server\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        for _attempt in range(START_ATTEMPTS):
            server.port = free_port()
            server.log.unlink(missing_ok=True)  # the tail below is this attempt's only
            started = server._pg_ctl(
                "start",
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "-l",
                str(server.log),
                "-o",
                f"-p {server.port}",
            )
            if started.returncode == 0:
                break
            log = _tail(server.log)
            if not _port_taken(log):
                raise ServiceError(
                    f"PostgreSQL did not start (pg_ctl exit {started.returncode}): "
                    f"{(started.stdout + started.stderr).strip()}\nlog tail:\n{log}"
                )
        else:
            raise ServiceError(
                f"PostgreSQL found no free port in {START_ATTEMPTS} attempts:\n{_tail(server.log)}"
            )
        admin = f"postgresql://{PG_USER}@127.0.0.1:{server.port}/postgres"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"CREATE DATABASE {PG_DATABASE}")
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"PostgreSQL on port {server.port} does not accept connections: "
                        f"{exc}\nlog tail:\n{_tail(server.log)}"
                    ) from exc
                time.sleep(0.1)
    except BaseException:
        server.stop()
        raise
    atexit.register(server.stop)
    return server


# -- Redis ------------------------------------------------------------------------


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A redis-server of our own, without persistence; ``url`` is its database 0."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    stopped: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_redis() -> RedisServer:
    """redis-server in a new temporary directory, on a free port, in the foreground."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(f"redis-server not found on PATH: {REDIS_INSTALL}")
    directory = Path(tempfile.mkdtemp(prefix="veritee-redis-"))
    server = RedisServer(port=0, directory=directory)
    try:
        for _attempt in range(START_ATTEMPTS):
            server.port = free_port()
            with server.log.open("wb") as log:
                server.process = subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(server.port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(directory),
                        "--daemonize",
                        "no",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=directory,
                )
            deadline = time.monotonic() + START_TIMEOUT
            while server.process.poll() is None and not _ping(server.port):
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"redis-server on port {server.port} does not answer PING:\n"
                        f"{_tail(server.log)}"
                    )
                time.sleep(0.05)
            if server.process.poll() is None:
                break
            log_tail = _tail(server.log)
            if not _port_taken(log_tail):
                raise ServiceError(
                    f"redis-server did not start (exit {server.process.returncode}):\n{log_tail}"
                )
        else:
            raise ServiceError(
                f"redis-server found no free port in {START_ATTEMPTS} attempts:\n"
                f"{_tail(server.log)}"
            )
    except BaseException:
        server.stop()
        raise
    atexit.register(server.stop)
    return server


# -- for benchmarks and pytest ------------------------------------------------------

_Server = TypeVar("_Server", PostgresServer, RedisServer)


@contextlib.contextmanager
def running(start: Callable[[], _Server]) -> Iterator[_Server]:
    """``with running(start_postgres) as pg:`` - a server for the block, stopped after it."""
    server = start()
    try:
        yield server
    finally:
        server.stop()


def _start_or_fail(start: Callable[[], _Server], what: str) -> _Server:
    """Start a server, or fail the test (never skip) saying what to install."""
    try:
        return start()
    except ServiceError as exc:
        message = f"{what} required: {exc}"
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:PORT/test`` on the session's throwaway server."""
    server = _start_or_fail(start_postgres, "PostgreSQL")
    yield server.dsn
    server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` on the session's throwaway redis-server."""
    server = _start_or_fail(start_redis, "Redis")
    yield server.url
    server.stop()
