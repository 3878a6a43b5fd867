"""Two KBS replicas sharing Redis (sessions) and PostgreSQL (resources, policies, values).

A load balancer may send each request anywhere: here /auth goes to replica A and
/attest and the resource request to replica B.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from live_server import serve_app

from veritee.as_.config import AsSettings
from veritee.emulator.root import TestRoot
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_http import KbsRequestError
from veritee.kbs.bootstrap import KbsSettings, build_kbs

ALLOW_ALL = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'


class SplitTransport(httpx.BaseTransport):
    """A load balancer: /kbs/v0/auth to replica A, everything else to replica B."""

    def __init__(self, a: str, b: str) -> None:
        self.a, self.b = httpx.URL(a), httpx.URL(b)
        self.inner = httpx.HTTPTransport()
        self.seen: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = self.a if request.url.path.endswith("/kbs/v0/auth") else self.b
        self.seen.append((request.url.path, "A" if target is self.a else "B"))
        request.url = request.url.copy_with(host=target.host, port=target.port)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    name = f"kbs_replicas_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(name)))
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(name)))


def test_handshake_across_replicas(
    test_root: TestRoot, tmp_path: Path, schema: str, postgres_dsn: str, redis_url: str
) -> None:
    store = f"{postgres_dsn}?options=-csearch_path%3D{schema}"
    settings = KbsSettings(
        attestation=AsSettings(data_dir=tmp_path, store=store, trust_root=test_root.directory),
        sessions=redis_url,
    )
    replica_a, replica_b = build_kbs(settings), build_kbs(settings)
    admin_token = replica_a.attestation.admin.token_path.read_text().strip()
    with serve_app(replica_a.app) as url_a, serve_app(replica_b.app) as url_b:
        with KbsClient(url_a, admin_token=admin_token) as admin:
            admin.set_resource("default/key/shared", b"one secret, two replicas")
        balancer = SplitTransport(url_a, url_b)
        provider = EmulatedEvidenceProvider(test_root.directory)
        with httpx.Client(transport=balancer) as http:
            guest = KbsClient(url_a, evidence_provider=provider, tee="tdx", http=http)
            guest.attest()
            with pytest.raises(KbsRequestError) as denied:
                guest.get_resource("default/key/shared")
            assert denied.value.type.endswith("PolicyDeny")
            with KbsClient(url_b, admin_token=admin_token) as admin:
                admin.set_resource_policy(ALLOW_ALL)  # written on B, read by both
            assert guest.get_resource("default/key/shared") == b"one secret, two replicas"
        routes = {path.rsplit("/kbs/v0/", 1)[1].split("/")[0]: side for path, side in balancer.seen}
        assert routes["auth"] == "A"
        assert routes["attest"] == "B"
        assert routes["resource"] == "B"
