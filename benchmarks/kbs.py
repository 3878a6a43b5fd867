"""Full RCAR flows (auth -> attest -> get-resource) against `veritee serve` on loopback.

The KBS runs as separate process(es); this process drives flows with the real
client and emulated TDX evidence from --clients threads for --seconds, and reports
flows/s, p50 and p99.  The floor is the crypto and policy work one flow needs,
measured in process in the same run: TDX verify, attestation policy, token
signing and verification, resource policy, JWE encryption.  ratio = p50 / floor.

    python benchmarks/kbs.py [--clients C] [--seconds S] [--replicas N --store postgres+redis]

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
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

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


def start(
    args: argparse.Namespace, root: TestRoot, tmp: Path, services: contextlib.ExitStack
) -> tuple[list[str], list[subprocess.Popen[bytes]], Path]:
    data = tmp / "state"
    urls, procs = [], []
    env = dict(os.environ)
    env.pop("POSTGRES_URL", None)  # it would override the configured server
    if args.store == "postgres+redis":
        sys.path.insert(0, str(SUPPORT))
        from services import running, start_postgres, start_redis

        pg = services.enter_context(running(start_postgres))
        redis = services.enter_context(running(start_redis))
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
        if args.store == "postgres+redis":
            config = tmp / f"kbs-{index}.toml"
            _config(config, port, pg.port, redis.url)
            cmd += ["--config", str(config)]
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        )
        urls.append(f"http://127.0.0.1:{port}")
        if index == 0:
            _wait(urls[0], procs[0])  # the first start writes the keys the others share
    for url, proc in zip(urls, procs, strict=True):
        _wait(url, proc)
    return urls, procs, data


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


def drive(
    urls: list[str], providers: list[EmulatedEvidenceProvider], seconds: float
) -> tuple[float, list[float]]:
    clients = len(providers)
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        provider = providers[index]
        url = urls[index % len(urls)]
        try:
            while time.monotonic() < stop:
                start = time.perf_counter()
                with KbsClient(url, evidence_provider=provider, tee="tdx") as guest:
                    guest.attest()
                    guest.get_resource("default/key/bench")
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    latencies.append(elapsed)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return len(latencies) / (time.monotonic() - began), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--store", choices=["sqlite", "postgres+redis"], default="sqlite")
    args = parser.parse_args()
    if args.replicas > 1 and args.store != "postgres+redis":
        parser.error("several replicas need --store postgres+redis")
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as services:
        tmp = Path(tmp_name)
        root = TestRoot.init(tmp / "root")
        floor = floor_ms(root, tmp / "floor")
        urls, procs, data = start(args, root, tmp, services)
        try:
            token = (data / "admin.token").read_text().strip()
            with KbsClient(urls[0], admin_token=token) as admin:
                admin.set_resource("default/key/bench", uuid.uuid4().bytes)
                admin.set_resource_policy(ALLOW)
            # One provider per client thread, its test root loaded before the clock starts.
            providers = [EmulatedEvidenceProvider(root.directory) for _ in range(args.clients)]
            drive(urls, providers, 2.0)  # warm up: every provider and every server path
            rate, latencies = drive(urls, providers, args.seconds)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    figures = {
        "flows_per_s": round(rate, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "floor_ms": round(floor, 3),
        "ratio": round(p50 / floor, 2),
        "replicas": args.replicas,
        "store": args.store,
        "clients": args.clients,
        "flows": len(latencies),
    }
    print(
        f"{len(latencies)} flows with {args.clients} clients against {args.replicas} "
        f"replica(s) ({args.store}): {rate:.1f} flows/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    print(
        f"floor (verify + policy + token sign/verify + resource policy + JWE) {floor:.2f} ms;"
        f" p50 / floor = {figures['ratio']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
