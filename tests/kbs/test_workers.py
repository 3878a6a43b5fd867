"""`veritee serve --workers N`: flows whose requests land on different worker processes.

Two `veritee serve --workers 2` processes share one data directory, which is what the
workers of one server do (one SQLite store, one sessions.db, one set of keys): a
transport that sends each request of a flow to the other process makes "auth, attest
and the resource on different workers" certain rather than likely.  Then a replayed
/attest and a raced challenge are refused on every process, many flows on fresh
connections all succeed, and a worker killed with SIGKILL loses nothing and is
replaced by the supervisor while its clients retry.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from workers_live import (
    HoldAttest,
    KillAfterAuth,
    Routed,
    Served,
    resend,
    serve_process,
    wait_for_workers,
)

from veritee.emulator.root import TestRoot
from veritee.errors import VeriteeError
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_protocol import KbsClientError

ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'
SECRET = os.urandom(3000)
KEPT_POLICY = "package policy\n\nimport rego.v1\n\n# kept across a worker's death\n"
RESOURCE = "default/key/workers"


@dataclass
class Pair:
    a: Served
    b: Served
    token: str
    provider: EmulatedEvidenceProvider


def _serve_args(data: Path, root: TestRoot) -> list[str]:
    return ["serve", "--workers", "2", "--data-dir", str(data), "--trust-root",
            str(root.directory)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, test_root: TestRoot) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("workers")
    data = base / "state"
    # B starts on A's data directory once A is up: it finds A's keys and admin token.
    with (
        serve_process(_serve_args(data, test_root), base / "a.txt") as a,
        serve_process(_serve_args(data, test_root), base / "b.txt") as b,
    ):
        token = (data / "admin.token").read_text().strip()
        with KbsClient(a.url, admin_token=token) as admin:
            admin.set_resource(RESOURCE, SECRET)
            admin.set_resource_policy(ALLOW)
        yield Pair(a, b, token, EmulatedEvidenceProvider(test_root.directory))


def test_both_processes_say_workers_and_where_sessions_live(pair: Pair) -> None:
    for served in (pair.a, pair.b):
        text = " ".join(served.output().split())
        assert "2 workers, RCAR sessions in" in text
        assert "sessions.db" in text
    assert "admin token" in pair.a.output()
    assert "admin token" not in pair.b.output()  # the first start happened once, in A


def test_auth_attest_and_resource_on_different_processes(pair: Pair) -> None:
    balancer = Routed([pair.a.url, pair.b.url])
    with httpx.Client(transport=balancer, timeout=30) as http:
        guest = KbsClient(pair.a.url, evidence_provider=pair.provider, tee="tdx", http=http)
        assert guest.get_resource(RESOURCE) == SECRET
    assert balancer.seen == [
        ("auth", pair.a.url),
        ("attest", pair.b.url),
        ("resource", pair.a.url),
    ]


def test_a_replayed_attest_is_refused_on_every_process(pair: Pair) -> None:
    balancer = Routed([pair.a.url, pair.b.url])
    with httpx.Client(transport=balancer, timeout=30) as http:
        guest = KbsClient(pair.a.url, evidence_provider=pair.provider, tee="tdx", http=http)
        guest.attest()
    attest = next(r for r in balancer.sent if r.url.path.endswith("/attest"))
    # Fresh connections: within each process the kernel hands them to either worker.
    for url in (pair.a.url, pair.b.url) * 4:
        replay = resend(attest, url)
        assert replay.status_code == 401, replay.text
        assert replay.json()["type"].endswith("AttestationError")
    # The replays did not spoil the attested session: its resource request still works.
    cookie = {"Cookie": f"kbs-session-id={guest.session_id}"}
    for url in (pair.a.url, pair.b.url):
        answer = httpx.get(f"{url}/kbs/v0/resource/{RESOURCE}", headers=cookie, timeout=30)
        assert answer.status_code == 200, answer.text


def test_a_challenge_is_claimed_once_across_processes(pair: Pair) -> None:
    hold = HoldAttest(pair.a.url)
    with httpx.Client(transport=hold, timeout=30) as http:
        guest = KbsClient(pair.a.url, evidence_provider=pair.provider, tee="tdx", http=http)
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

    threads = [
        threading.Thread(target=race, args=(url,))
        for url in (pair.a.url, pair.b.url, pair.a.url, pair.b.url)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 401, 401, 401]
    for url in (pair.a.url, pair.b.url):  # and once more, after the race
        assert resend(held, url).status_code == 401


def _flow(url: str, provider: EmulatedEvidenceProvider) -> bytes:
    """One full flow on a client of its own (a fresh connection)."""
    with KbsClient(url, evidence_provider=provider, tee="tdx") as guest:
        return guest.get_resource(RESOURCE, attempts=1)


def test_many_flows_on_fresh_connections(pair: Pair) -> None:
    results: list[bytes] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        url = (pair.a.url, pair.b.url)[index % 2]
        for _ in range(5):
            try:
                got = _flow(url, pair.provider)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                results.append(got)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [SECRET] * 20


# --------------------------------------------------------------------------- a worker dies


def _flow_with_retries(url: str, provider: EmulatedEvidenceProvider) -> tuple[bytes, int]:
    """A flow, started again on a transport error or a refusal (as a guest would);
    returns the resource and how many tries failed first."""
    failed = 0
    while True:
        try:
            return _flow(url, provider), failed
        except VeriteeError:  # KbsClientError (transport) or KbsRequestError (refusal)
            failed += 1
            if failed >= 10:
                raise
            time.sleep(0.2)


def test_a_killed_worker_loses_nothing_and_is_replaced(
    tmp_path: Path, test_root: TestRoot
) -> None:
    data = tmp_path / "state"
    provider = EmulatedEvidenceProvider(test_root.directory)
    with serve_process(_serve_args(data, test_root), tmp_path / "out.txt") as served:
        before = wait_for_workers(served, 2)
        token = (data / "admin.token").read_text().strip()
        with KbsClient(served.url, admin_token=token) as admin:
            admin.set_resource(RESOURCE, SECRET)
            admin.set_resource_policy(ALLOW)
            admin.set_attestation_policy(KEPT_POLICY, "kept")
        # Mid-flow: the worker that answered /auth dies (SIGKILL) before /attest.
        killer = KillAfterAuth(served)
        with httpx.Client(transport=killer, timeout=30) as http:
            guest = KbsClient(served.url, evidence_provider=provider, tee="tdx", http=http)
            assert guest.get_resource(RESOURCE, attempts=1) == SECRET  # on the other one
        first = killer.killed
        assert first in before
        # Flows in the air when the other original worker dies: their clients retry.
        results: list[tuple[bytes, int]] = []
        lock = threading.Lock()

        def client() -> None:
            for _ in range(4):
                got = _flow_with_retries(served.url, provider)
                with lock:
                    results.append(got)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        second = next(pid for pid in before if pid != first)
        os.kill(second, signal.SIGKILL)
        for thread in threads:
            thread.join()
        assert [got for got, _ in results] == [SECRET] * 12
        after = wait_for_workers(served, 2, exclude=before)  # both replaced
        assert not set(after) & set(before)
        # Nothing stored was lost: the resource and the policy read back byte for byte.
        assert _flow(served.url, provider) == SECRET
        policy = httpx.get(
            f"{served.url}/policy/kept", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert policy.status_code == 200
        assert policy.text == KEPT_POLICY
        assert served.proc.poll() is None
