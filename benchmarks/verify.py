"""Verification cost: ours against the floor, measured side by side in one run.

- TDX and SGX: ``IntelVerifier.verify`` (parse, claims, dcap-qvl, bindings) against
  a raw ``dcap_qvl.verify`` of the same quote and collateral.
- SNP: ``SnpVerifier.verify`` against a bare ``cryptography`` P-384 verify of the
  same report's signature (the least any verifier must do); ours warm (the chip's VCEK chain
  remembered as verified, as when a chip attests again) and cold (the chain memo cleared before
  every call, so the three RSA-4096 chain signatures are verified again).
- NVIDIA GPU: ``NvidiaVerifier.verify`` of the real Hopper report (parse, chain to the
  pinned device root, FWID, signature, nonce; no RIMs) against a bare P-384 verify of
  its SPDM signature with the leaf key; ours both warm (the device chain as parsed and its
  signatures remembered, as when a GPU attests again) and cold (the chain parsed and its five
  signatures verified).

The two sides alternate in short rounds so that machine noise hits both alike; times are
CPU time of this process (other processes on a busy machine do not count), each side's figure
is its median per-call time over the rounds, and each ratio is the median of the per-round
ratios (ours over the floor measured right after it).  The last line of output is one JSON
object of the figures.

    python benchmarks/verify.py [--rounds N] [--iterations N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import dcap_qvl
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from veritee.pem import load_certificates
from veritee.verifier.base import VerifyOptions
from veritee.verifier.collateral.intel import FileCollateral
from veritee.verifier.intel import IntelVerifier
from veritee.verifier.nvidia import NvidiaVerifier
from veritee.verifier.nvidia_certs import clear_chain_memo
from veritee.verifier.snp import SnpVerifier
from veritee.verifier.snp_chain import clear_chain_memo as clear_snp_memo

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "tests" / "data" / "vectors"


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _per_call_ms(fn: Callable[[], object], iterations: int) -> float:
    start = time.process_time_ns()
    for _ in range(iterations):
        fn()
    return (time.process_time_ns() - start) / 1e6 / iterations


def side_by_side(
    ours: Callable[[], object], floor: Callable[[], object], rounds: int, iterations: int
) -> tuple[float, float, float]:
    """Median per-call ms of each side over alternating rounds, and the median per-round ratio."""
    ours(), floor()  # warm caches and imports
    a, b = [], []
    for _ in range(rounds):
        a.append(_per_call_ms(ours, iterations))
        b.append(_per_call_ms(floor, iterations))
    ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
    return statistics.median(a), statistics.median(b), ratio


def intel_case(
    quote: str, collateral: str, tee: str, at: str, rounds: int, iterations: int
) -> tuple[float, float, float]:
    raw = (VECTORS / quote).read_bytes()
    path = VECTORS / collateral
    when = _utc(at)
    now = int(when.timestamp())
    coll = dcap_qvl.QuoteCollateralV3.from_json(path.read_text())
    verifier = IntelVerifier("tdx" if tee == "tdx" else "sgx", collateral=FileCollateral(path))
    options = VerifyOptions(at=when)
    verdict = verifier.verify(raw, options)
    assert verdict.verified, verdict.error
    return side_by_side(
        lambda: verifier.verify(raw, options),
        lambda: dcap_qvl.verify(raw, coll, now),
        rounds,
        iterations,
    )


def snp_case(rounds: int, iterations: int) -> tuple[float, float, float, float, float]:
    """(ours with the chain remembered, the floor, the ratio; ours cold, its ratio)."""
    report = (VECTORS / "virtee-sev/report_milan.hex").read_bytes()
    raw = bytes.fromhex(report.decode().strip().removeprefix("0x"))
    vcek_der = (VECTORS / "virtee-sev/vcek_milan.der").read_bytes()
    verifier = SnpVerifier(cert_chain=vcek_der)
    options = VerifyOptions(at=_utc("2025-01-01T00:00:00Z"))
    verdict = verifier.verify(raw, options)
    assert verdict.verified, verdict.error
    key = load_certificates(vcek_der)[0].public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    r = int.from_bytes(raw[0x2A0 : 0x2A0 + 72], "little")
    s = int.from_bytes(raw[0x2A0 + 72 : 0x2A0 + 144], "little")
    signature = utils.encode_dss_signature(r, s)
    signed = raw[:0x2A0]

    def floor() -> None:
        key.verify(signature, signed, ec.ECDSA(hashes.SHA384()))

    def cold() -> None:
        clear_snp_memo()
        verifier.verify(raw, options)

    warm = side_by_side(lambda: verifier.verify(raw, options), floor, rounds, iterations)
    cold_run = side_by_side(cold, floor, rounds, max(iterations // 4, 1))
    return *warm, cold_run[0], cold_run[2]


def gpu_case(rounds: int, iterations: int) -> tuple[float, float, float, float, float]:
    """(ours with the parsed chain and its signatures remembered, as for a GPU seen before; the
    floor; the ratio; ours cold, the chain parsed and every signature verified again; its
    ratio)."""
    nv = VECTORS / "nvidia"
    raw = bytes.fromhex((nv / "hopperAttestationReport.txt").read_text().strip())
    chain = (nv / "hopperCertChain.txt").read_bytes()
    nonce = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
    verifier = NvidiaVerifier(cert_chain=chain)
    options = VerifyOptions(report_data=nonce)
    verdict = verifier.verify(raw, options)
    assert verdict.verified, verdict.error
    key = load_certificates(chain)[0].public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    signature = utils.encode_dss_signature(
        int.from_bytes(raw[-96:-48], "big"), int.from_bytes(raw[-48:], "big")
    )
    signed = raw[:-96]

    def floor() -> None:
        key.verify(signature, signed, ec.ECDSA(hashes.SHA384()))

    def cold() -> None:
        clear_chain_memo()
        verifier.verify(raw, options)

    warm = side_by_side(lambda: verifier.verify(raw, options), floor, rounds, iterations)
    cold_run = side_by_side(cold, floor, rounds, max(iterations // 4, 1))
    return *warm, cold_run[0], cold_run[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    tdx = intel_case(
        "dcap-qvl/tdx_quote",
        "dcap-qvl/tdx_quote_collateral.json",
        "tdx",
        "2025-07-19T10:00:34Z",
        args.rounds,
        args.iterations,
    )
    sgx = intel_case(
        "dcap-qvl/sgx_quote",
        "dcap-qvl/sgx_quote_collateral.json",
        "sgx",
        "2025-07-19T10:01:17Z",
        args.rounds,
        args.iterations,
    )
    snp = snp_case(args.rounds, args.iterations)
    gpu = gpu_case(args.rounds, args.iterations)
    figures = {
        "tdx_ours_ms": round(tdx[0], 4),
        "tdx_raw_ms": round(tdx[1], 4),
        "tdx_ratio": round(tdx[2], 3),
        "sgx_ours_ms": round(sgx[0], 4),
        "sgx_raw_ms": round(sgx[1], 4),
        "sgx_ratio": round(sgx[2], 3),
        "snp_ours_ms": round(snp[0], 4),
        "snp_floor_ms": round(snp[1], 4),
        "snp_ratio": round(snp[2], 3),
        "snp_cold_ms": round(snp[3], 4),
        "snp_cold_ratio": round(snp[4], 3),
        "gpu_ours_ms": round(gpu[0], 4),
        "gpu_floor_ms": round(gpu[1], 4),
        "gpu_ratio": round(gpu[2], 3),
        "gpu_cold_ms": round(gpu[3], 4),
        "gpu_cold_ratio": round(gpu[4], 3),
        "rounds": args.rounds,
        "iterations": args.iterations,
        "quote_sha256": hashlib.sha256((VECTORS / "dcap-qvl/tdx_quote").read_bytes()).hexdigest()[
            :16
        ],
    }
    print(
        f"TDX v4 (T1)  ours {tdx[0]:.3f} ms  raw dcap_qvl.verify {tdx[1]:.3f} ms  "
        f"ratio {figures['tdx_ratio']}"
    )
    print(
        f"SGX v3 (S1)  ours {sgx[0]:.3f} ms  raw dcap_qvl.verify {sgx[1]:.3f} ms  "
        f"ratio {figures['sgx_ratio']}"
    )
    print(
        f"SNP Milan    ours {snp[0]:.3f} ms  bare P-384 verify   {snp[1]:.3f} ms  "
        f"ratio {figures['snp_ratio']}  (cold chain {snp[3]:.3f} ms, "
        f"ratio {figures['snp_cold_ratio']})"
    )
    print(
        f"GPU Hopper   ours {gpu[0]:.3f} ms  bare P-384 verify   {gpu[1]:.3f} ms  "
        f"ratio {figures['gpu_ratio']}  (cold chain {gpu[3]:.3f} ms, "
        f"ratio {figures['gpu_cold_ratio']})"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
