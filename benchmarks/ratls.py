"""RA-TLS through the proxy against plain TLS through the same proxy, side by side in one run.

A child process runs two :class:`~veritee.ratls.proxy.RatlsProxy` instances in front of one
asyncio echo server: one presents an emulated attested identity (a DICE RA-TLS certificate
under a fresh test root), the other a plain self-signed certificate (``plain_identity``).
Both are pyOpenSSL with the same code; only the identity and the verification differ.  This
process is the client:

- handshakes: connect, handshake, verify the proxy's certificate (attested only: evidence to
  the test root, binding, claims), one byte through the proxy to the echo server and back,
  close; sequentially, so the figure is the cost of one connection;
- throughput: one connection streams ``--mebibytes`` through the proxy to the echo server
  while reading the echo back (bytes/s counts the payload once);
- verify: ``RatlsVerifier.verify_certificate`` alone on the proxy's certificate, so the
  attested handshake's extra cost can be set against the verification it must do.

With ``--mutual`` the attested proxy also requires and verifies the client's RA-TLS
certificate (the plain side stays plain).  The sides alternate in rounds so that machine
noise hits both alike.  Ratios are attested ÷ plain of the rates (1.0 = no cost).  The last
line of output is one JSON object of the figures.

    python benchmarks/ratls.py [--tee sgx|tdx|snp] [--rounds N] [--handshakes N]
                               [--mebibytes N] [--mutual]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from veritee.emulator.root import TestRoot
from veritee.ratls.cert import RatlsIdentity, make_identity, plain_identity
from veritee.ratls.proxy import RatlsProxy, peer_verifier
from veritee.ratls.quoter import EmulatedQuoter
from veritee.ratls.tls import client_context, connect_attested, open_attested
from veritee.ratls.verify import RatlsVerifier

CHUNK = 65536


# --------------------------------------------------------------------------- the server side


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _serve(root: Path, tee: str, mutual: bool, pipe: Connection) -> None:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    xfer = ("127.0.0.1", echo.sockets[0].getsockname()[1])
    attested = RatlsProxy(
        make_identity(EmulatedQuoter(root, tee)),
        xfer=xfer,
        verifier=peer_verifier(trust_root=root) if mutual else None,
    )
    plain = RatlsProxy(plain_identity(), xfer=xfer)
    servers = [await attested.start("127.0.0.1", 0), await plain.start("127.0.0.1", 0)]
    pipe.send([server.sockets[0].getsockname()[1] for server in servers])
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop
    for server in [*servers, echo]:
        server.close()
    await attested.aclose()
    await plain.aclose()


def serve(root: str, tee: str, mutual: bool, pipe: Connection) -> None:
    asyncio.run(_serve(Path(root), tee, mutual, pipe))


# --------------------------------------------------------------------------- the client side


def handshakes_ms(
    port: int, identity: RatlsIdentity | None, verifier: RatlsVerifier | None, count: int
) -> float:
    """Mean ms of one connection: handshake, verification, one byte there and back."""
    ctx = client_context(identity)
    start = time.perf_counter()
    for _ in range(count):
        with connect_attested("127.0.0.1", port, ctx, verifier, timeout=30) as conn:
            conn.send(b"x")
            if conn.recv(1) != b"x":
                raise RuntimeError("the echo did not come back")
    return (time.perf_counter() - start) * 1000 / count


def throughput(
    port: int, identity: RatlsIdentity | None, verifier: RatlsVerifier | None, total: int
) -> float:
    """Payload bytes per second through the proxy and back on one connection."""

    async def run() -> float:
        stream = await open_attested("127.0.0.1", port, client_context(identity), verifier)
        block = bytes(CHUNK)

        async def send() -> None:
            for _ in range(total // CHUNK):
                await stream.write(block)

        start = time.perf_counter()
        sender = asyncio.create_task(send())
        got = 0
        while got < total:
            chunk = await stream.read()
            if not chunk:
                raise RuntimeError("the proxy closed early")
            got += len(chunk)
        await sender
        elapsed = time.perf_counter() - start
        await stream.close()
        return total / elapsed

    return asyncio.run(run())


def verify_ms(verifier: RatlsVerifier, der: bytes, count: int) -> float:
    verifier.verify_certificate(der)
    start = time.perf_counter()
    for _ in range(count):
        verifier.verify_certificate(der)
    return (time.perf_counter() - start) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tee", choices=["sgx", "tdx", "snp"], default="sgx")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--handshakes", type=int, default=100)
    parser.add_argument("--mebibytes", type=int, default=32)
    parser.add_argument("--mutual", action="store_true")
    args = parser.parse_args()
    total = args.mebibytes * 1024 * 1024

    with tempfile.TemporaryDirectory(prefix="ratls-bench-") as tmp:
        root = Path(tmp) / "root"
        TestRoot.init(root)
        verifier = peer_verifier(trust_root=root)
        client_identity = make_identity(EmulatedQuoter(root, args.tee)) if args.mutual else None
        ours, theirs = multiprocessing.get_context("spawn").Pipe()
        child = multiprocessing.get_context("spawn").Process(
            target=serve, args=(str(root), args.tee, args.mutual, theirs), daemon=True
        )
        child.start()
        attested_port, plain_port = ours.recv()
        try:
            with connect_attested(
                "127.0.0.1", attested_port, client_context(client_identity), verifier
            ) as conn:
                assert conn.peer is not None
                proxy_der = conn.peer_certificate_der
            # warm up both sides (imports, the verifier's parsed roots, the proxy's code)
            handshakes_ms(attested_port, client_identity, verifier, 5)
            handshakes_ms(plain_port, None, None, 5)
            figures: dict[str, list[float]] = {k: [] for k in ("ah", "ph", "at", "pt", "v")}
            for _ in range(args.rounds):
                figures["ah"].append(
                    handshakes_ms(attested_port, client_identity, verifier, args.handshakes)
                )
                figures["ph"].append(handshakes_ms(plain_port, None, None, args.handshakes))
                figures["at"].append(throughput(attested_port, client_identity, verifier, total))
                figures["pt"].append(throughput(plain_port, None, None, total))
                figures["v"].append(verify_ms(verifier, proxy_der, args.handshakes))
        finally:
            ours.send("stop")
            child.join(timeout=10)
            if child.is_alive():
                child.terminate()

    med = {key: statistics.median(values) for key, values in figures.items()}
    extra_ms = med["ah"] - med["ph"]
    result = {
        "tee": args.tee,
        "mutual": args.mutual,
        "attested_handshake_ms": round(med["ah"], 3),
        "plain_handshake_ms": round(med["ph"], 3),
        "attested_handshakes_per_s": round(1000 / med["ah"], 1),
        "plain_handshakes_per_s": round(1000 / med["ph"], 1),
        "handshake_ratio": round(med["ph"] / med["ah"], 3),
        "verify_certificate_ms": round(med["v"], 3),
        "attested_extra_ms": round(extra_ms, 3),
        "extra_over_verify": round(extra_ms / med["v"], 3),
        "attested_bytes_per_s": round(med["at"]),
        "plain_bytes_per_s": round(med["pt"]),
        "throughput_ratio": round(med["at"] / med["pt"], 3),
        "rounds": args.rounds,
        "handshakes": args.handshakes,
        "mebibytes": args.mebibytes,
    }
    print(
        f"handshake  attested {med['ah']:.3f} ms ({result['attested_handshakes_per_s']}/s)  "
        f"plain {med['ph']:.3f} ms ({result['plain_handshakes_per_s']}/s)  "
        f"ratio {result['handshake_ratio']}"
    )
    print(
        f"verify     verify_certificate {med['v']:.3f} ms; the attested handshake costs "
        f"{extra_ms:.3f} ms more than plain ({result['extra_over_verify']} x the verification)"
    )
    print(
        f"throughput attested {med['at'] / 1e6:.1f} MB/s  plain {med['pt'] / 1e6:.1f} MB/s  "
        f"ratio {result['throughput_ratio']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
