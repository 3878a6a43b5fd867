"""`veritee serve --workers N` as a real process tree, for the multi-worker tests.

``serve_process`` starts ``python -m veritee <args> --port P`` on a free port, waits for
``/healthz`` and yields a :class:`Served` (URL, the parent's Popen, the log);
``worker_pids`` lists the uvicorn worker processes the parent spawned (its children
running multiprocessing's ``spawn_main``), read from /proc.  ``Routed`` is an httpx
transport that sends each request of a flow to the next server of a list, so that a
flow's /auth, /attest and resource request land on different processes for certain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from spawn import free_port


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve_process(
    args: list[str], log: Path, *, env: dict[str, str] | None = None, timeout_s: float = 60
) -> Iterator[Served]:
    """``veritee <args> --port P`` running, healthy; stopped (SIGTERM) afterwards."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "veritee", *args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    served = Served(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(served.url):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(served.output())
            time.sleep(0.05)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def worker_pids(pid: int) -> list[int]:
    """The uvicorn workers of the serving parent ``pid`` (not multiprocessing's resource
    tracker), sorted."""
    workers = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(child)
    return sorted(workers)


def wait_for_workers(
    served: Served, count: int, *, exclude: Sequence[int] = (), timeout_s: float = 60
) -> list[int]:
    """Wait until ``count`` workers (none of ``exclude``) run and the port answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = [p for p in worker_pids(served.proc.pid) if p not in exclude]
        if len(pids) == count and _healthy(served.url):
            return pids
        if time.monotonic() > deadline or served.proc.poll() is not None:
            raise RuntimeError(f"workers {pids} of {count}:\n{served.output()}")
        time.sleep(0.05)


@dataclass
class Routed(httpx.BaseTransport):
    """A load balancer that sends request i to ``urls[i % len(urls)]``."""

    urls: list[str]
    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    #: (the request's first path segment after /kbs/v0/, the server it went to)
    seen: list[tuple[str, str]] = field(default_factory=list)
    #: every request sent (its body read), for replays
    sent: list[httpx.Request] = field(default_factory=list)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = self.urls[len(self.seen) % len(self.urls)]
        name = request.url.path.rsplit("/kbs/v0/", 1)[-1].split("/")[0]
        self.seen.append((name, target))
        request.read()
        self.sent.append(request)
        parsed = httpx.URL(target)
        request.url = request.url.copy_with(host=parsed.host, port=parsed.port)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@dataclass
class HoldAttest(httpx.BaseTransport):
    """Sends /auth to ``url`` but keeps the /attest request instead of sending it (the
    client sees a connection error): a challenge nobody has used yet, to race for."""

    url: str
    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    held: httpx.Request | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/kbs/v0/attest"):
            request.read()
            self.held = request
            raise httpx.ConnectError("held by the test", request=request)
        parsed = httpx.URL(self.url)
        request.url = request.url.copy_with(host=parsed.host, port=parsed.port)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def resend(request: httpx.Request, url: str) -> httpx.Response:
    """``request`` (method, path, headers, body) sent again to ``url`` on a new connection."""
    target = httpx.URL(url)
    with httpx.Client(timeout=30) as client:
        return client.request(
            request.method,
            request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            content=request.content,
        )


def worker_holding(served: Served, client_port: int) -> int:
    """The worker of ``served`` whose socket is the server end of the loopback TCP
    connection from ``client_port`` (found through /proc/net/tcp and /proc/<pid>/fd)."""
    server_port = httpx.URL(served.url).port
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            inode = fields[9]
    if inode is None:
        raise RuntimeError(f"no server socket for the connection from port {client_port}")
    for pid in worker_pids(served.proc.pid):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise RuntimeError(f"no worker holds socket {inode}")


def wait_gone(pid: int, timeout_s: float = 10) -> None:
    """Wait until process ``pid`` has exited (gone, or a zombie not yet reaped)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise RuntimeError(f"process {pid} did not exit")


@dataclass
class KillAfterAuth(httpx.BaseTransport):
    """Forwards every request; after the /auth answer, SIGKILLs the worker that served it
    (its connection then dies with it) and waits until it is gone."""

    served: Served
    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    killed: int | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/kbs/v0/auth") and self.killed is None:
            response.read()
            stream = response.extensions["network_stream"]
            client_port = int(stream.get_extra_info("client_addr")[1])
            self.killed = worker_holding(self.served, client_port)
            os.kill(self.killed, signal.SIGKILL)
            wait_gone(self.killed)
        return response

    def close(self) -> None:
        self.inner.close()
