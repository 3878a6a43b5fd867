"""Attestation Service cost, measured side by side with raw verification in one run.

In process, on emulated TDX evidence under a fresh test root:
- verify_ms: the TDX verifier alone (dcap-qvl and our checks);
- policy_ms: appraising the verified claims with the default CPU policy (compiled bundle);
- as_ms: the whole ``AttestationService.attest`` (parse, verify, transform, policy, EAR, sign);
- as_overhead_ms = as_ms - verify_ms.
The three are measured in turn within each iteration (medians), so a change of load on
the machine weighs on all three alike.
Over HTTP, against ``veritee serve as`` started as a separate process on 127.0.0.1:
- requests_per_s with --clients concurrent clients for --seconds.

The last line is one JSON object of the figures.

    python benchmarks/as.py [--iterations N] [--seconds S] [--clients C]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from veritee.as_.bootstrap import build_attestation_service
from veritee.as_.config import AsSettings
from veritee.as_.request import parse_attestation_request
from veritee.emulator.evidence import EvidenceRequest, emulate
from veritee.emulator.root import TestRoot
from veritee.verifier.base import VerifyOptions


def _interleaved_ms(fns: list[Callable[[], object]], iterations: int) -> list[float]:
    """The median ms of each of ``fns``, run in turn within every iteration, so a change in
    the machine's load (other processes) weighs on all of them alike."""
    for fn in fns:
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(iterations):
        for fn, out in zip(fns, samples, strict=True):
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1000)
    return [statistics.median(out) for out in samples]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _http_rate(url: str, body: bytes, seconds: float, clients: int) -> tuple[float, float]:
    done = [0] * clients
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop:
                start = time.perf_counter()
                reply = client.post(f"{url}/attestation", content=body,
                                    headers={"content-type": "application/json"})
                elapsed = (time.perf_counter() - start) * 1000
                if reply.status_code != 200:
                    raise RuntimeError(f"attestation failed: {reply.status_code} {reply.text}")
                done[index] += 1
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - began), statistics.median(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = TestRoot.init(Path(tmp) / "root")
        made = emulate(root, EvidenceRequest(tee="tdx", report_data=b"\x01" * 48))
        evidence = base64.urlsafe_b64encode(made.wire_bytes()).rstrip(b"=").decode()
        body = {"verification_requests": [{"tee": "tdx", "evidence": evidence,
                                           "runtime_data": {"raw": base64.urlsafe_b64encode(
                                               b"\x01" * 48).rstrip(b"=").decode()}}]}
        parts = build_attestation_service(AsSettings(data_dir=Path(tmp) / "as",
                                                     trust_root=root.directory))
        service = parts.service
        request = parse_attestation_request(body)
        verifier = service.verifier("tdx")
        options = VerifyOptions(report_data=b"\x01" * 48)
        [(tee_class, policy_input, _)] = service.verify_one(request.verification_requests[0])

        verify_ms, policy_ms, as_ms = _interleaved_ms(
            [lambda: verifier.verify(made.wire_bytes(), options),
             lambda: service.policies.appraise("default", tee_class, policy_input),
             lambda: service.attest(request)],
            args.iterations)
        overhead_ms = as_ms - verify_ms

        port = _free_port()
        env = dict(os.environ, VERITEE_HOME=str(Path(tmp) / "http"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "veritee", "serve", "as", "--port", str(port),
             "--trust-root", str(root.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
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
                    raise RuntimeError("veritee serve as did not start")
                time.sleep(0.1)
            payload = json.dumps(body).encode()
            _http_rate(url, payload, 1.0, 1)  # warm up
            rate, p50 = _http_rate(url, payload, args.seconds, args.clients)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    figures = {
        "verify_ms": round(verify_ms, 4),
        "policy_ms": round(policy_ms, 4),
        "as_ms": round(as_ms, 4),
        "as_overhead_ms": round(overhead_ms, 4),
        "requests_per_s": round(rate, 1),
        "http_p50_ms": round(p50, 3),
        "policy_to_verify": round(policy_ms / verify_ms, 3),
        "overhead_to_verify": round(overhead_ms / verify_ms, 3),
        "http_to_verify": round(p50 / verify_ms, 3),
        "clients": args.clients,
    }
    print(f"verify (TDX, emulated)   {verify_ms:.3f} ms")
    print(f"policy (default_cpu)     {policy_ms:.3f} ms   ratio to verify "
          f"{figures['policy_to_verify']}")
    print(f"AS in process            {as_ms:.3f} ms   overhead {overhead_ms:.3f} ms   ratio "
          f"{figures['overhead_to_verify']}")
    print(f"AS over HTTP             {rate:.1f} requests/s with {args.clients} clients, p50 "
          f"{p50:.2f} ms")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
