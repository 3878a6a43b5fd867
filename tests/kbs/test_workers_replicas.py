"""Two `veritee serve --workers 2` replicas configured (kbs-config.toml) with PostgreSQL
for data and Redis for sessions, as on two machines: no shared data directory.

Each request of a flow goes to the other replica; a replayed /attest and a raced
challenge are refused on both.  (test_kbs_replicas.py covers the same with in-process
replicas.)
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from workers_live import HoldAttest, Routed, Served, resend, serve_process

from veritee.emulator.root import TestRoot
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_protocol import KbsClientError

ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
SECRET = os.urandom(500)
RESOURCE = "default/key/replicas"


def _config(path: Path, redis_url: str) -> Path:
    path.write_text(
        'session_storage_type = "Redis"\n\n'
        "[http_server]\ninsecure_http = true\n\n"
        '[storage_backend]\nstorage_type = "Postgres"\n\n'
        f'[storage_backend.backends.redis]\nurl = "{redis_url}"\n\n'
        '[[plugins]]\nname = "resource"\n'
    )
    return path


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    test_root: TestRoot,
    postgres_dsn: str,
    redis_url: str,
) -> Iterator[tuple[Served, Served, str]]:
    base = tmp_path_factory.mktemp("replicas")
    schema = f"workers_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(schema)))
    # Trustee's POSTGRES_URL overrides [storage_backend.backends.postgres]: a private schema.
    env = {"POSTGRES_URL": f"{postgres_dsn}?options=-csearch_path%3D{schema}"}
    config = _config(base / "kbs-config.toml", redis_url)
    machines = []
    for name in ("a", "b"):
        # Separate data directories, as on separate machines; B gets A's signing key and
        # admin key (an operator would provision both replicas with the same ones).
        machines.append(
            ["serve", "--workers", "2", "--config", str(config), "--data-dir",
             str(base / name), "--trust-root", str(test_root.directory)]
        )
    try:
        with serve_process(machines[0], base / "a.txt", env=env) as a:
            (base / "b").mkdir()
            for item in ("token", "admin.key", "admin.pub", "admin.token"):
                source, target = base / "a" / item, base / "b" / item
                if source.is_dir():
                    target.mkdir()
                    for file in source.iterdir():
                        (target / file.name).write_bytes(file.read_bytes())
                else:
                    target.write_bytes(source.read_bytes())
            with serve_process(machines[1], base / "b.txt", env=env) as b:
                token = (base / "a" / "admin.token").read_text().strip()
                with KbsClient(b.url, admin_token=token) as admin:
                    admin.set_resource(RESOURCE, SECRET)
                    admin.set_resource_policy(ALLOW)
                yield a, b, token
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(schema))
            )


def test_sessions_are_in_redis(replicas: tuple[Served, Served, str]) -> None:
    for served in replicas[:2]:
        assert "2 workers, RCAR sessions in Redis" in " ".join(served.output().split())


def test_flow_across_replicas_and_replays_refused(
    replicas: tuple[Served, Served, str], test_root: TestRoot
) -> None:
    a, b, _ = replicas
    provider = EmulatedEvidenceProvider(test_root.directory)
    balancer = Routed([a.url, b.url])
    with httpx.Client(transport=balancer, timeout=30) as http:
        guest = KbsClient(a.url, evidence_provider=provider, tee="tdx", http=http)
        assert guest.get_resource(RESOURCE) == SECRET
    assert [(name, url) for name, url in balancer.seen] == [
        ("auth", a.url),
        ("attest", b.url),
        ("resource", a.url),
    ]
    attest = next(r for r in balancer.sent if r.url.path.endswith("/attest"))
    for url in (a.url, b.url) * 3:
        replay = resend(attest, url)
        assert replay.status_code == 401, replay.text
        assert replay.json()["type"].endswith("AttestationError")


def test_a_challenge_is_claimed_once_across_replicas(
    replicas: tuple[Served, Served, str], test_root: TestRoot
) -> None:
    a, b, _ = replicas
    hold = HoldAttest(a.url)
    with httpx.Client(transport=hold, timeout=30) as http:
        guest = KbsClient(
            a.url, evidence_provider=EmulatedEvidenceProvider(test_root.directory), tee="tdx",
            http=http,
        )
        with pytest.raises(KbsClientError, match="held by the test"):
            guest.attest()
    held = hold.held
    assert held is not None
    barrier = threading.Barrier(4)
    answers: list[int] = []
    lock = threading.Lock()

    def race(url: str) -> None:
        barrier.wait()
        status = resend(held, url).status_code
        with lock:
            answers.append(status)

    threads = [threading.Thread(target=race, args=(u,)) for u in (a.url, b.url) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 401, 401, 401]
