"""The session bookkeeping of one RCAR flow, per store: memory, SQLite (WAL) and Redis.

A flow touches its session five times: ``create`` (/auth), ``get`` + ``claim_challenge``
+ ``save_attested`` (/attest) and ``get`` (the resource request).  This times those five
operations on :class:`MemorySessionStore`, :class:`SqliteSessionStore` (a file in a
temporary directory) and :class:`RedisSessionStore` (a throwaway redis-server, when the
binary is there), side by side in one run, and reports microseconds per flow and the
ratio of each to memory.  The flow's floor (crypto and policy) is about 3.7 ms: see
benchmarks/kbs.py.

    python benchmarks/sessions.py [--flows N] [--rounds R]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from veritee.kbs.session import (  # noqa: E402
    MemorySessionStore,
    RedisSessionStore,
    Session,
    SessionStore,
    new_session_id,
)
from veritee.kbs.session_sqlite import SqliteSessionStore  # noqa: E402

PUBKEY = {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "A" * 43, "y": "B" * 43}
TOKEN = "e" * 900  # an EAR token is about this long


def _flows(store: SessionStore, count: int) -> float:
    """Microseconds per flow of the five session operations, over ``count`` flows."""
    start = time.perf_counter()
    for _ in range(count):
        now = time.time()
        session = Session(new_session_id(), "bm9uY2U" * 6, "tdx", {}, now + 300)
        store.create(session)
        store.get(session.id, now=now)
        claimed = store.claim_challenge(session.id, now=now)
        assert claimed is not None
        store.save_attested(session.id, token=TOKEN, tee_pubkey=PUBKEY, expires_at=now + 300)
        got = store.get(session.id, now=now)
        assert got is not None
        assert got.attested
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="best of R rounds per store")
    args = parser.parse_args()
    figures: dict[str, float | None] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stores: dict[str, SessionStore] = {
            "memory": MemorySessionStore(),
            "sqlite": SqliteSessionStore(tmp / "sessions.db"),
        }
        if shutil.which("redis-server"):
            from services import running, start_redis

            redis_server = stack.enter_context(running(start_redis))
            stores["redis"] = RedisSessionStore(redis_server.url)
        else:
            print("redis: no redis-server binary, not measured")
            figures["redis_us_per_flow"] = None
        for name, store in stores.items():
            _flows(store, 200)  # warm up: connections, statement caches
            best = min(_flows(store, args.flows) for _ in range(args.rounds))
            figures[f"{name}_us_per_flow"] = round(best, 1)
            print(f"{name}: {best:.1f} us per flow (5 operations), best of {args.rounds}")
        memory = figures["memory_us_per_flow"]
        for name in ("sqlite", "redis"):
            value = figures.get(f"{name}_us_per_flow")
            figures[f"{name}_to_memory"] = (
                round(value / memory, 1) if value is not None and memory else None
            )
        for store in stores.values():
            close = getattr(store, "close", None)
            if close is not None:
                close()
    figures["flows"] = args.flows
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
