"""Full RCAR flows (auth -> attest -> get-resource) against `veritee serve` on loopback.

The KBS runs as separate process(es); --clients load-generator PROCESSES (not threads)
drive flows with the real client and emulated TDX evidence for --seconds.  Each client
process prepares before the clock starts all that does not depend on the server's
nonce: its KbsClient (TEE key pair, HTTP connection) and the emulator's test root; each
flow is then a fresh /auth, evidence bound to that nonce, /attest and the resource GET.

Figures: flows/s, p50 and p99; the floor, the crypto and policy work one flow needs,
measured in process in the same run (TDX verify, attestation policy, token signing and
verification, resource policy, JWE encryption); ratio = p50 / floor;
server_cpu_ms_per_flow = CPU (user+system, /proc) of the server process and all its
descendants (uvicorn workers) over the measured window / flows completed in it, and
cpu_to_floor = that / floor; light_p50_to_floor = p50 of flows from one client process
running them one after another / floor; scaling = flows/s with --workers 2 / flows/s
with --workers 1, the server pinned to 2 cores and the load generator to the others
(also 4 and 8 workers when there are cores for them), null on fewer than 4 cores.

    python benchmarks/kbs.py [--clients C] [--seconds S] [--workers W]
                             [--replicas N --store postgres+redis] [--force-scaling]
                             [--compare-http]

With --store postgres+redis the replicas share a throwaway PostgreSQL and Redis that
this run starts on free ports and removes at the end (tests/support/services.py);
no system instance is used.

The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx

from veritee.as_.config import AsSettings
from veritee.as_.request import RuntimeData, VerificationRequest
from veritee.emulator.evidence import EvidenceRequest, emulate
from veritee.emulator.root import TestRoot
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_protocol import tee_pubkey_jwk
from veritee.kbs.bootstrap import KbsSettings, build_kbs
from veritee.kbs.jwe import encrypt_for
from veritee.kbs.rcar import expected_report_data, runtime_data
from veritee.policy.resource import ResourcePolicy
from veritee.verifier.base import VerifyOptions

ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
SUPPORT = Path(__file__).resolve().parent.parent / "tests" / "support"
sys.path.insert(0, str(SUPPORT))

from proctree import tree_cpu_seconds  # noqa: E402  (tests/support, on the path above)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ms(fn: Callable[[], object], n: int = 200) -> float:
    fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def floor_ms(root: TestRoot, data: Path) -> float:
    parts = build_kbs(KbsSettings(attestation=AsSettings(data_dir=data, trust_root=root.directory)))
    service = parts.service
    client = KbsClient("http://127.0.0.1:1", tee="tdx")
    runtime = runtime_data("bm9uY2U=", client.tee_pubkey)
    report = expected_report_data("tdx", runtime)
    wire = emulate(root, EvidenceRequest(tee="tdx", report_data=report)).wire_bytes()
    verifier = parts.attestation.service.verifier("tdx")
    verify = _ms(lambda: verifier.verify(wire, VerifyOptions(report_data=report)))
    token = service.verify_evidence([("tdx", wire)], runtime, "sha384")
    [(tee_class, policy_input, _)] = parts.attestation.service.verify_one(
        VerificationRequest(tee="tdx", evidence=wire, runtime_data=RuntimeData(structured=runtime))
    )
    policies = parts.attestation.service.policies
    appraise = _ms(lambda: policies.appraise("default", tee_class, policy_input))
    claims = service.verify_token(token)
    sign = _ms(lambda: parts.attestation.service.signer.sign(claims))
    check = _ms(lambda: service.verify_token(token))
    resource_policy = ResourcePolicy(ALLOW)
    decide = _ms(
        lambda: resource_policy.allows(claims, repository="default", type_="key", tag="bench")
    )
    jwe = _ms(lambda: encrypt_for(tee_pubkey_jwk(client.tee_key), b"x" * 64))
    client.close()
    return verify + appraise + sign + check + decide + jwe


def _config(path: Path, port: int, pg_port: int, redis_url: str) -> None:
    path.write_text(f"""
session_storage_type = "Redis"

[http_server]
sockets = ["127.0.0.1:{port}"]
insecure_http = true

[storage_backend]
storage_type = "Postgres"

[storage_backend.backends.postgres]
host = "127.0.0.1"
port = {pg_port}
db = "test"
username = "postgres"

[storage_backend.backends.redis]
url = "{redis_url}"

[[plugins]]
name = "resource"
""")


@dataclass
class Server:
    urls: list[str]
    procs: list[subprocess.Popen[bytes]]
    data: Path

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def serve_has_workers() -> bool:
    """Whether this checkout's ``veritee serve`` takes ``--workers``."""
    out = subprocess.run(
        [sys.executable, "-m", "veritee", "serve", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    return "--workers" in out.stdout


def _pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    if cpus is None:
        return None
    chosen = set(cpus)

    def pin() -> None:
        os.sched_setaffinity(0, chosen)  # inherited by every worker the server forks

    return pin


def start(
    args: argparse.Namespace,
    root: TestRoot,
    data: Path,
    services: contextlib.ExitStack,
    *,
    workers: int | None = None,
    cpus: set[int] | None = None,
    env_extra: dict[str, str] | None = None,
) -> Server:
    """``veritee serve`` replica(s) on free ports, the bench resource and policy set."""
    urls, procs = [], []
    env = {**os.environ, **(env_extra or {})}
    env.pop("POSTGRES_URL", None)  # it would override the configured server
    if args.store == "postgres+redis":
        from services import running, start_postgres, start_redis

        if not hasattr(args, "_pg"):
            args._pg = services.enter_context(running(start_postgres))
            args._redis = services.enter_context(running(start_redis))
    for index in range(args.replicas):
        port = _port()
        cmd = [
            sys.executable,
            "-m",
            "veritee",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--trust-root",
            str(root.directory),
        ]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        if args.store == "postgres+redis":
            config = data.parent / f"{data.name}-kbs-{index}.toml"
            _config(config, port, args._pg.port, args._redis.url)
            cmd += ["--config", str(config)]
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                preexec_fn=_pinned(cpus),
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
        if index == 0:
            _wait(urls[0], procs[0])  # the first start writes the keys the others share
    server = Server(urls, procs, data)
    try:
        for url, proc in zip(urls, procs, strict=True):
            _wait(url, proc)
        token = (data / "admin.token").read_text().strip()
        with KbsClient(urls[0], admin_token=token) as admin:
            admin.set_resource("default/key/bench", uuid.uuid4().bytes)
            admin.set_resource_policy(ALLOW)
    except BaseException:
        server.stop()
        raise
    return server


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"KBS at {url} did not start")
        time.sleep(0.1)


# --------------------------------------------------------------------------- load generator

OVERRUN_S = 0.5  # clients keep going past the window, so its last flows are not idle


@dataclass(frozen=True)
class ClientJob:
    url: str
    root_dir: Path
    warmup_s: float
    seconds: float
    cpus: frozenset[int] | None


def client_process(job: ClientJob, barrier: Any, results: Any) -> None:
    """One load-generator process: prepare, warm up, wait for the others, run flows.

    Puts ``("ok", [(end monotonic, latency ms), ...])`` or ``("error", text)``.
    """
    try:
        if job.cpus is not None:
            os.sched_setaffinity(0, job.cpus)
        provider = EmulatedEvidenceProvider(job.root_dir)
        provider.prepare()  # the test root, loaded once per process
        flows: list[tuple[float, float]] = []
        # One client (one TEE key pair, one keep-alive connection) for every flow; each
        # flow is still a fresh /auth, evidence bound to its nonce, /attest and a GET.
        with KbsClient(job.url, evidence_provider=provider, tee="tdx") as guest:

            def flow() -> None:
                guest.attest()
                guest.get_resource("default/key/bench")

            warm_until = time.monotonic() + job.warmup_s
            flow()
            while time.monotonic() < warm_until:
                flow()
            barrier.wait(timeout=300)
            stop = time.monotonic() + job.seconds + OVERRUN_S
            while True:
                began = time.monotonic()
                if began >= stop:
                    break
                flow()
                ended = time.monotonic()
                flows.append((ended, (ended - began) * 1000))
        results.put(("ok", flows))
    except BaseException as exc:  # reported to the parent, which fails the run
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put(("error", f"{type(exc).__name__}: {exc}"))


@dataclass(frozen=True)
class Run:
    rate: float
    latencies: list[float]
    cpu_s: float  # CPU of every server process tree over the window

    @property
    def flows(self) -> int:
        return len(self.latencies)

    @property
    def cpu_ms_per_flow(self) -> float:
        return self.cpu_s * 1000 / max(1, self.flows)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def measure(
    server: Server,
    root: TestRoot,
    *,
    clients: int,
    seconds: float,
    warmup_s: float = 1.5,
    cpus: set[int] | None = None,
) -> Run:
    """Drive flows from ``clients`` processes; the window starts once all are warm."""
    context = get_context("spawn")
    barrier = context.Barrier(clients + 1)
    results = context.Queue()
    pinned = frozenset(cpus) if cpus is not None else None
    procs = [
        context.Process(
            target=client_process,
            args=(
                ClientJob(
                    server.urls[i % len(server.urls)], root.directory, warmup_s, seconds, pinned
                ),
                barrier,
                results,
            ),
        )
        for i in range(clients)
    ]
    for proc in procs:
        proc.start()
    try:
        with contextlib.suppress(Exception):  # a client failed: its error is in the queue
            barrier.wait(timeout=300)
        cpu_before = sum(tree_cpu_seconds(pid) for pid in server.pids())
        began = time.monotonic()
        if not barrier.broken:
            time.sleep(seconds)
        ended = time.monotonic()
        cpu_after = sum(tree_cpu_seconds(pid) for pid in server.pids())
        outcomes = [results.get(timeout=seconds + 120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    errors = [text for kind, text in outcomes if kind == "error"]
    if errors:
        raise RuntimeError(f"a load-generator process failed: {errors[0]}")
    latencies = [ms for _, flows in outcomes for end, ms in flows if began <= end <= ended]
    if not latencies:
        raise RuntimeError("no flow completed in the measured window")
    return Run(len(latencies) / (ended - began), latencies, cpu_after - cpu_before)


# --------------------------------------------------------------------------- scaling


def scaling_ratios(
    ratios: dict[int, float | None], rates: dict[int, float]
) -> dict[int, float | None]:
    """flows/s with w workers / flows/s with 1 worker, for every measured w."""
    base = rates.get(1)
    for workers, rate in rates.items():
        if workers != 1:
            ratios[workers] = round(rate / base, 2) if base else None
    return ratios


def scaling_plan(cpus: Sequence[int], force: bool) -> list[tuple[int, set[int], set[int]]]:
    """(workers, server cores, load-generator cores) for each measurable worker count.

    w workers get max(2, w) cores and the load generator at least as many others; with
    ``force`` on a small machine, 2 workers share the cores with the load generator.
    """
    plan = []
    for workers in (2, 4, 8):
        server = max(2, workers)
        if len(cpus) >= 2 * server:
            plan.append((workers, set(cpus[:server]), set(cpus[server:])))
        elif force and workers == 2:
            plan.append((workers, set(cpus[:server]), set(cpus)))
    return plan


def scaling(
    args: argparse.Namespace, root: TestRoot, tmp: Path, services: contextlib.ExitStack
) -> tuple[dict[int, float | None] | None, str]:
    cpus = sorted(os.sched_getaffinity(0))
    if not serve_has_workers():
        return None, "veritee serve has no --workers option in this checkout"
    if len(cpus) < 4 and not args.force_scaling:
        return None, (
            f"only {len(cpus)} cores: the server needs 2 and the load generator others of "
            "its own, or it competes with the server for the same cores"
        )
    plan = scaling_plan(cpus, args.force_scaling)
    rates: dict[int, float] = {}
    for workers, server_cpus, load_cpus in [(1, set(cpus[:2]), plan[0][2]), *plan]:
        clients = max(args.clients, 3 * workers)
        server = start(
            args, root, tmp / f"scale-{workers}", services, workers=workers, cpus=server_cpus
        )
        try:
            run = measure(server, root, clients=clients, seconds=args.seconds, cpus=load_cpus)
        finally:
            server.stop()
        rates[workers] = run.rate
        print(
            f"scaling: {workers} worker(s) on cores {sorted(server_cpus)}, {clients} clients "
            f"on {sorted(load_cpus)}: {run.rate:.1f} flows/s"
        )
    note = "" if len(cpus) >= 4 else f" (forced on {len(cpus)} cores: not a fair figure)"
    return scaling_ratios({2: None, 4: None, 8: None}, rates), "measured" + note


# --------------------------------------------------------------------------- HTTP stack A/B

HTTP_STACKS = {
    "asyncio+h11": {"VERITEE_UVICORN_LOOP": "asyncio", "VERITEE_UVICORN_HTTP": "h11"},
    "uvloop+httptools": {"VERITEE_UVICORN_LOOP": "uvloop", "VERITEE_UVICORN_HTTP": "httptools"},
}


def compare(
    args: argparse.Namespace,
    root: TestRoot,
    tmp: Path,
    services: contextlib.ExitStack,
    variants: dict[str, dict[str, str]],
) -> dict[str, dict[str, float]]:
    """The same load against a server run with each variant's environment, in alternating
    rounds (so that the machine's load falls on all alike): flows/s, p50, server CPU per
    flow, and the p50 of one sequential client."""
    runs: dict[str, list[tuple[Run, Run]]] = {name: [] for name in variants}
    for round_ in range(2):
        for name, env in variants.items():
            server = start(
                args,
                root,
                tmp / f"ab-{name}-{round_}",
                services,
                workers=args.workers,
                env_extra=env,
            )
            try:
                loaded = measure(server, root, clients=args.clients, seconds=args.seconds / 2)
                light = measure(server, root, clients=1, seconds=args.light_seconds / 2)
            finally:
                server.stop()
            runs[name].append((loaded, light))
    out = {}
    for name, measured in runs.items():
        flows = sum(loaded.flows for loaded, _ in measured)
        out[name] = {
            "flows_per_s": round(statistics.mean(loaded.rate for loaded, _ in measured), 1),
            "p50_ms": round(statistics.median([x for m, _ in measured for x in m.latencies]), 2),
            "server_cpu_ms_per_flow": round(
                sum(loaded.cpu_s for loaded, _ in measured) * 1000 / flows, 2
            ),
            "light_p50_ms": round(
                statistics.median([x for _, light in measured for x in light.latencies]), 2
            ),
        }
        print(f"{name}: {out[name]}")
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="load-generator processes")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--light-seconds", type=float, default=4.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="veritee serve --workers (default: the server's own default)",
    )
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--store", choices=["sqlite", "postgres+redis"], default="sqlite")
    parser.add_argument(
        "--force-scaling",
        action="store_true",
        help="run the scaling measurement even on fewer than 4 cores",
    )
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument(
        "--compare-http",
        action="store_true",
        help="also compare asyncio+h11 with uvloop+httptools side by side",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also run, side by side, a server from another checkout's src/ (e.g. a git "
        "worktree of the commit before a change): reported as 'baseline' and 'this'",
    )
    args = parser.parse_args()
    if args.replicas > 1 and args.store != "postgres+redis":
        parser.error("several replicas need --store postgres+redis")
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as services:
        tmp = Path(tmp_name)
        root = TestRoot.init(tmp / "root")
        floor = floor_ms(root, tmp / "floor")
        server = start(args, root, tmp / "state", services, workers=args.workers)
        try:
            run = measure(server, root, clients=args.clients, seconds=args.seconds)
            light = measure(server, root, clients=1, seconds=args.light_seconds)
        finally:
            server.stop()
        stacks = compare(args, root, tmp, services, HTTP_STACKS) if args.compare_http else None
        before_after = None
        if args.baseline_src is not None:
            baseline = {"PYTHONPATH": str(args.baseline_src.resolve())}
            before_after = compare(args, root, tmp, services, {"baseline": baseline, "this": {}})
        if args.no_scaling:
            ratios, why = None, "not asked (--no-scaling)"
        else:
            ratios, why = scaling(args, root, tmp, services)
    p50, p99 = statistics.median(run.latencies), run.percentile(0.99)
    light_p50 = statistics.median(light.latencies)
    figures: dict[str, Any] = {
        "flows_per_s": round(run.rate, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "floor_ms": round(floor, 3),
        "ratio": round(p50 / floor, 2),
        "replicas": args.replicas,
        "store": args.store,
        "clients": args.clients,
        "flows": run.flows,
        "workers": args.workers,
        "server_cpu_ms_per_flow": round(run.cpu_ms_per_flow, 2),
        "cpu_to_floor": round(run.cpu_ms_per_flow / floor, 2),
        "light_p50_ms": round(light_p50, 2),
        "light_p50_to_floor": round(light_p50 / floor, 2),
        "scaling": ratios[2] if ratios else None,
        "scaling_4": ratios[4] if ratios else None,
        "scaling_8": ratios[8] if ratios else None,
        "cores": len(os.sched_getaffinity(0)),
    }
    if stacks is not None:
        figures["http_stacks"] = stacks
    if before_after is not None:
        figures["before_after"] = before_after
    print(
        f"{run.flows} flows from {args.clients} client processes against {args.replicas} "
        f"replica(s) ({args.store}): {run.rate:.1f} flows/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms;"
        f" server CPU {run.cpu_ms_per_flow:.2f} ms per flow"
    )
    print(
        f"floor (verify + policy + token sign/verify + resource policy + JWE) {floor:.2f} ms;"
        f" p50 / floor = {figures['ratio']}; CPU / floor = {figures['cpu_to_floor']};"
        f" one client: p50 {light_p50:.1f} ms = {figures['light_p50_to_floor']} x floor"
    )
    print(f"scaling: {why}" if ratios is None else f"scaling ({why}): {ratios}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
