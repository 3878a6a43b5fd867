"""Soak: many full RCAR flows against one ``veritee serve``, watching the server's memory.

One ``veritee serve`` (a subprocess on loopback, SQLite store in a temporary data
directory, ``--workers`` passed through when given) serves ``--flows`` full flows
(``/auth`` -> evidence bound to the nonce -> ``/attest`` -> resource GET), driven by
``--clients`` load-generator processes, each with one KbsClient and the emulator's
test root.  Every ``--interval`` seconds the parent sums VmRSS over the server and all
its descendants (uvicorn workers, found through ``/proc/<pid>/task/*/children``) and
records it with the number of flows done.

Figures: rss_10_mb, rss_50_mb, rss_end_mb (total RSS at the first sample after 10% and
50% of the flows, and after the last flow); rss_growth = (end - at 10%) / at 10%
(target <= 0.05); rss_peak_mb; flows_per_s.  The last line is one JSON object.

    python benchmarks/soak.py [--flows N] [--clients C] [--workers W] [--interval S]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx

from veritee.emulator.root import TestRoot
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient

ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
RESOURCE = "default/key/soak"
SUPPORT = Path(__file__).resolve().parent.parent / "tests" / "support"
sys.path.insert(0, str(SUPPORT))

from proctree import tree_pids  # noqa: E402  (tests/support, on the path above)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """VmRSS of one process; 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_rss_bytes(pid: int) -> int:
    """VmRSS summed over ``pid`` and all its live descendants."""
    return sum(rss_bytes(p) for p in tree_pids(pid))


def start_server(root: TestRoot, data: Path, workers: int | None) -> tuple[str, Any]:
    port = _port()
    cmd = [sys.executable, "-m", "veritee", "serve", "--port", str(port),
           "--data-dir", str(data), "--trust-root", str(root.directory)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    env = dict(os.environ)
    env.pop("POSTGRES_URL", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"veritee serve at {url} did not start")
            time.sleep(0.1)
        token = (data / "admin.token").read_text().strip()
        with KbsClient(url, admin_token=token) as admin:
            admin.set_resource(RESOURCE, uuid.uuid4().bytes)
            admin.set_resource_policy(ALLOW)
    except BaseException:
        stop_server(proc)
        raise
    return url, proc


def stop_server(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def client_process(url: str, root_dir: Path, remaining: Any, done: Any, errors: Any) -> None:
    """Take flows from ``remaining`` until none is left; count each in ``done``."""
    try:
        provider = EmulatedEvidenceProvider(root_dir)
        provider.prepare()
        with KbsClient(url, evidence_provider=provider, tee="tdx") as guest:
            while True:
                with remaining.get_lock():
                    if remaining.value <= 0:
                        break
                    remaining.value -= 1
                guest.attest()
                guest.get_resource(RESOURCE)
                with done.get_lock():
                    done.value += 1
    except BaseException as exc:  # reported by the parent, which fails the run
        errors.put(f"{type(exc).__name__}: {exc}")
        with remaining.get_lock():
            remaining.value = 0


@dataclass(frozen=True)
class Sample:
    at: float
    flows: int
    rss: int
    processes: int


def first_at(samples: list[Sample], flows: int) -> Sample:
    """The first sample taken once ``flows`` flows were done."""
    return next(s for s in samples if s.flows >= flows)


def soak(url: str, pid: int, root_dir: Path, args: argparse.Namespace) -> list[Sample]:
    ctx = get_context("spawn")
    remaining = ctx.Value("q", args.flows)
    done = ctx.Value("q", 0)
    errors = ctx.Queue()
    clients = [ctx.Process(target=client_process, args=(url, root_dir, remaining, done, errors))
               for _ in range(args.clients)]
    for client in clients:
        client.start()
    samples: list[Sample] = []
    began = time.monotonic()
    try:
        while any(c.is_alive() for c in clients):
            pids = tree_pids(pid)
            samples.append(Sample(time.monotonic() - began, done.value,
                                  sum(rss_bytes(p) for p in pids), len(pids)))
            time.sleep(args.interval)
    finally:
        for client in clients:
            client.join(timeout=60)
    pids = tree_pids(pid)
    samples.append(Sample(time.monotonic() - began, done.value,
                          sum(rss_bytes(p) for p in pids), len(pids)))
    with contextlib.suppress(Exception):
        failure = errors.get_nowait()
        raise RuntimeError(f"a client failed: {failure}")
    if done.value != args.flows:
        raise RuntimeError(f"only {done.value} of {args.flows} flows done")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None,
                        help="veritee serve --workers (default: serve's own default)")
    parser.add_argument("--interval", type=float, default=0.5, help="RSS sampling period, s")
    args = parser.parse_args()
    if args.flows < 10 or args.clients < 1:
        parser.error("--flows must be at least 10 and --clients at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        root = TestRoot.init(Path(tmp) / "root")
        url, proc = start_server(root, Path(tmp) / "data", args.workers)
        try:
            samples = soak(url, proc.pid, root.directory, args)
        finally:
            stop_server(proc)
    at10 = first_at(samples, args.flows // 10)
    at50 = first_at(samples, args.flows // 2)
    end = samples[-1]
    mb = 1024 * 1024
    after10 = [s for s in samples if s.at >= at10.at]
    figures = {
        "flows": args.flows,
        "flows_per_s": round(args.flows / end.at, 1),
        "rss_start_mb": round(samples[0].rss / mb, 1),
        "rss_10_mb": round(at10.rss / mb, 1),
        "rss_50_mb": round(at50.rss / mb, 1),
        "rss_end_mb": round(end.rss / mb, 1),
        "rss_peak_mb": round(max(s.rss for s in samples) / mb, 1),
        "rss_min_after_10_mb": round(min(s.rss for s in after10) / mb, 1),
        "rss_growth": round((end.rss - at10.rss) / at10.rss, 4),
        "server_processes": end.processes,
        "clients": args.clients,
        "samples": len(samples),
    }
    print(f"{args.flows} flows in {end.at:.1f} s: {figures['flows_per_s']} flows/s "
          f"({args.clients} clients, {end.processes} server processes)")
    print(f"server RSS: {figures['rss_10_mb']} MB at 10%, {figures['rss_50_mb']} MB at 50%, "
          f"{figures['rss_end_mb']} MB at the end (peak {figures['rss_peak_mb']} MB)")
    print(f"rss_growth {figures['rss_growth']} (target <= 0.05)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
