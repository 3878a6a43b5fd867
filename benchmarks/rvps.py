"""Attestation cost with 10 and with 100,000 registered reference values, side by side.

The policy layer must give a policy only the values it can name
(:func:`veritee.rvps.names.reference_names` and ``ReferenceValueStore.lookup``): with
every value compiled into the policy's bundle, rego-cpp takes minutes to build it at
10^5 values and each evaluation grows with the count.

In process, on emulated TDX evidence under a fresh test root, two Attestation
Services over their own SQLite stores: one holding 10 reference values, one
holding 100,000 (``--values``).  Both hold the values the default CPU policy
looks up (``mr_td``, ``rtmr_1``, ``rtmr_2``, so the verdict is "affirming"),
the rest are filler names.  Figures:

- rvps_10_ms, rvps_100k_ms: median of the whole ``AttestationService.attest``
  (steady state: no value changed since the previous attestation), taken in
  alternation; rvps_100k_to_10 is their ratio;
- change_10_ms, change_100k_ms: the first attestation after one value changed
  (the reference values are re-read and the policy bundle rebuilt);
- register_100k_s: registering the 100,000 values (one batch);
- page_ms: one page of 100 values from the middle of the 100,000 by page token;
  page_max_ms: one page of 1000.

The last line is one JSON object of the figures.

    python benchmarks/rvps.py [--iterations N] [--values N]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from veritee.as_.bootstrap import AsComponents, build_attestation_service
from veritee.as_.config import AsSettings
from veritee.as_.request import AttestationRequest, parse_attestation_request
from veritee.emulator.evidence import EvidenceRequest, emulate
from veritee.emulator.root import TestRoot
from veritee.rvps.model import ReferenceValue
from veritee.rvps.store import ReferenceValueStore


def _build(settings: AsSettings) -> AsComponents:
    return build_attestation_service(settings)


_LOOKED_UP = ("mr_td", "rtmr_1", "rtmr_2")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _values(claims: dict[str, Any], count: int) -> list[ReferenceValue]:
    expiration = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    body = claims["tdx"]["quote"]["body"]
    values = [ReferenceValue(name=n, value=[body[n]], expiration=expiration) for n in _LOOKED_UP]
    values += [
        ReferenceValue(name=f"filler/{i:07d}", value=[f"{i:064x}"], expiration=expiration)
        for i in range(count - len(values))
    ]
    return values


def _attest_ms(parts: AsComponents, request: AttestationRequest) -> float:
    start = time.perf_counter()
    parts.service.attest(request)
    return (time.perf_counter() - start) * 1000


def _touch(parts: AsComponents, claims: dict[str, Any], salt: int) -> None:
    """Change one looked-up value (still accepting the evidence)."""
    expiration = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    accepted = [claims["tdx"]["quote"]["body"]["mr_td"], f"{salt:096x}"]
    parts.rvps.register([ReferenceValue(name="mr_td", value=accepted, expiration=expiration)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--values", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = TestRoot.init(Path(tmp) / "root")
        made = emulate(root, EvidenceRequest(tee="tdx", report_data=b"\x01" * 48))
        body = {"verification_requests": [{
            "tee": "tdx", "evidence": _b64(made.wire_bytes()),
            "runtime_data": {"raw": _b64(b"\x01" * 48)}}]}
        request = parse_attestation_request(body)
        small = _build(
            AsSettings(data_dir=Path(tmp) / "small", trust_root=root.directory))
        large = _build(
            AsSettings(data_dir=Path(tmp) / "large", trust_root=root.directory))
        [(_, claims, _)] = small.service.verify_one(request.verification_requests[0])

        small.rvps.register(_values(claims, 10))
        start = time.perf_counter()
        large.rvps.register(_values(claims, args.values))
        register_s = time.perf_counter() - start

        verdicts = set()
        for parts in (small, large):
            token = parts.service.attest(request)
            verdicts.add(json.dumps(_status(token)))
        if len(verdicts) != 1:
            raise RuntimeError(f"different verdicts: {verdicts}")

        change: dict[str, list[float]] = {"small": [], "large": []}
        for salt in range(3):
            for name, parts in (("small", small), ("large", large)):
                _touch(parts, claims, salt)
                change[name].append(_attest_ms(parts, request))

        samples: dict[str, list[float]] = {"small": [], "large": []}
        for _ in range(args.iterations):
            for name, parts in (("small", small), ("large", large)):
                samples[name].append(_attest_ms(parts, request))

        middle = _middle_token(large.rvps, args.values // 2)
        page_ms = _median_ms(lambda: large.rvps.page(limit=100, token=middle), 50)
        page_max_ms = _median_ms(lambda: large.rvps.page(limit=1000, token=middle), 20)

    rvps_10 = statistics.median(samples["small"])
    rvps_100k = statistics.median(samples["large"])
    figures = {
        "rvps_10_ms": round(rvps_10, 3),
        "rvps_100k_ms": round(rvps_100k, 3),
        "rvps_100k_to_10": round(rvps_100k / rvps_10, 3),
        "change_10_ms": round(statistics.median(change["small"]), 1),
        "change_100k_ms": round(statistics.median(change["large"]), 1),
        "register_100k_s": round(register_s, 2),
        "page_ms": round(page_ms, 3),
        "page_max_ms": round(page_max_ms, 3),
        "values": args.values,
        "verdict": verdicts.pop(),
    }
    print(f"attest, 10 values          {rvps_10:.3f} ms")
    print(f"attest, {args.values} values    {rvps_100k:.3f} ms   ratio "
          f"{figures['rvps_100k_to_10']}")
    print(f"first attest after a change  {figures['change_10_ms']} ms (10 values), "
          f"{figures['change_100k_ms']} ms ({args.values} values)")
    print(f"register {args.values} values   {register_s:.2f} s")
    print(f"one page of 100 / 1000       {page_ms:.3f} ms / {page_max_ms:.3f} ms")
    print(json.dumps(figures))


def _middle_token(rvps: ReferenceValueStore, skip: int) -> str | None:
    token = None
    for _ in range(skip // 1000):
        token = rvps.page(limit=1000, token=token).next_token
    return token


def _median_ms(fn: Any, iterations: int) -> float:
    fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _status(token: Any) -> Any:
    """The verdict part of an attestation answer (the EAR's claims, unsigned)."""
    text = token if isinstance(token, str) else getattr(token, "token", str(token))
    payload = text.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {k: {"status": v.get("ear.status"), "vector": v.get("ear.trustworthiness-vector")}
            for k, v in claims.get("submods", {}).items()}


if __name__ == "__main__":
    main()
