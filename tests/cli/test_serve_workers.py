"""`veritee serve --workers N` from the command line: start-up, refusals, TLS, and where
sessions live for each configuration (``veritee.kbs.worker.resolve``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from spawn import free_port
from typer.testing import CliRunner
from workers_live import serve_process, wait_for_workers

from veritee.cli import app
from veritee.emulator.root import TestRoot
from veritee.errors import ConfigError
from veritee.guest.eaa_kbc import EaaKbc, ratls_connector
from veritee.guest.kbs_client import KbsClient
from veritee.kbs.worker import ServeSpec, available_cpus, resolve
from veritee.ratls.cert import make_identity
from veritee.ratls.quoter import EmulatedQuoter
from veritee.ratls.verify import RatlsVerifier
from veritee.verifier.registry import VerifierSettings

runner = CliRunner()
ALLOW = 'package policy\n\nimport rego.v1\n\nallow if data.plugin == "resource"\n'


def _local_fs(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "kbs-config.toml"
    config.write_text(
        f"{extra}\n[http_server]\ninsecure_http = true\n\n"
        f'[storage_backend]\nstorage_type = "LocalFs"\n\n'
        f'[storage_backend.backends.local_fs]\ndir_path = "{tmp_path / "fs"}"\n\n'
        '[[plugins]]\nname = "resource"\n'
    )
    return config


# --------------------------------------------------------------------------- the plan


def test_default_is_one_worker_per_cpu_with_sessions_in_the_data_dir(tmp_path: Path) -> None:
    plan = resolve(ServeSpec(data_dir=tmp_path))
    assert plan.workers == available_cpus()
    if plan.workers > 1:
        assert plan.settings.sessions == str(tmp_path / "sessions.db")
    one = resolve(ServeSpec(data_dir=tmp_path, workers=1))
    assert one.settings.sessions == "memory"  # nothing to share with one worker
    assert one.sessions_where == "in memory"
    two = resolve(ServeSpec(data_dir=tmp_path, workers=2))
    assert two.settings.sessions == str(tmp_path / "sessions.db")
    assert two.sessions_where == f"in {tmp_path / 'sessions.db'}"


def test_local_fs_sessions_are_a_sqlite_file_not_memory(tmp_path: Path) -> None:
    config = _local_fs(tmp_path)
    for workers in (1, 2):
        plan = resolve(ServeSpec(data_dir=tmp_path / "d", config=config, workers=workers))
        assert plan.settings.sessions == str(tmp_path / "fs" / "sessions.db")


def test_redis_sessions_stay_in_redis(tmp_path: Path) -> None:
    config = _local_fs(tmp_path, 'session_storage_type = "Redis"')
    plan = resolve(ServeSpec(data_dir=tmp_path / "d", config=config, workers=2))
    assert plan.settings.sessions == "redis://127.0.0.1:6379"
    assert plan.sessions_where == "in Redis"


def test_worker_count_from_the_config(tmp_path: Path) -> None:
    config = _local_fs(tmp_path)
    text = config.read_text().replace(
        "insecure_http = true", "insecure_http = true\nworker_count = 3"
    )
    config.write_text(text)
    assert resolve(ServeSpec(data_dir=tmp_path, config=config)).workers == 3
    assert resolve(ServeSpec(data_dir=tmp_path, config=config, workers=2)).workers == 2


def test_a_private_memory_store_is_served_by_one_worker(tmp_path: Path) -> None:
    config = tmp_path / "kbs-config.toml"
    config.write_text('[http_server]\ninsecure_http = true\nworker_count = 4\n')
    plan = resolve(ServeSpec(data_dir=tmp_path, config=config))
    assert plan.workers == 1
    assert "storage_type Memory" in plan.notes[0]
    with pytest.raises(ConfigError, match="--workers 2: the configured data store"):
        resolve(ServeSpec(data_dir=tmp_path, config=config, workers=2))
    result = runner.invoke(
        app, ["serve", "--config", str(config), "--data-dir", str(tmp_path), "--workers", "2"]
    )
    assert result.exit_code == 2
    assert "cannot be shared by workers" in result.output


def test_postgres_sessions_are_noted(tmp_path: Path) -> None:
    config = _local_fs(tmp_path, 'session_storage_type = "Postgres"')
    one = resolve(ServeSpec(data_dir=tmp_path / "d", config=config, workers=1))
    assert one.settings.sessions == "memory"
    assert any("session_storage_type Postgres" in w for w in one.settings.warnings)
    two = resolve(ServeSpec(data_dir=tmp_path / "d", config=config, workers=2))
    assert two.settings.sessions == str(tmp_path / "d" / "sessions.db")


def test_workers_must_be_positive(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--data-dir", str(tmp_path), "--workers", "0"])
    assert result.exit_code == 2


# --------------------------------------------------------------------------- processes


def test_a_port_in_use_fails(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            done = subprocess.run(
                [sys.executable, "-m", "veritee", "serve", "--workers", workers, "--port",
                 str(port), "--data-dir", str(tmp_path / workers)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode != 0, done.stdout + done.stderr
            assert "address already in use" in (done.stdout + done.stderr).lower()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "veritee test kbs")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "kbs.key", directory / "kbs.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_https_with_two_workers(tmp_path: Path, test_root: TestRoot) -> None:
    key, cert = _self_signed(tmp_path)
    port = free_port()
    config = _local_fs(tmp_path)
    text = config.read_text().replace(
        "insecure_http = true",
        f'insecure_http = false\nsockets = ["127.0.0.1:{port}"]\n'
        f'private_key = "{key}"\ncertificate = "{cert}"',
    )
    config.write_text(text)
    log = tmp_path / "out.txt"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "veritee", "serve", "kbs", "--workers", "2", "--config",
             str(config), "--data-dir", str(tmp_path / "state"), "--trust-root",
             str(test_root.directory)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=trust, timeout=5) as client:
            for _ in range(600):
                try:
                    if client.get(f"https://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    if proc.poll() is not None:
                        raise AssertionError(log.read_text()) from None
                    time.sleep(0.1)
            # Fresh connections reach both workers; every one speaks TLS.
            for _ in range(6):
                with httpx.Client(verify=trust, timeout=5) as fresh:
                    assert fresh.get(f"https://127.0.0.1:{port}/healthz").status_code == 200
        output = " ".join(log.read_text().split())
        assert f"KBS on https://127.0.0.1:{port}" in output
        assert f"2 workers, RCAR sessions in {tmp_path / 'fs' / 'sessions.db'}" in output
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_kbs_takes_workers_and_one_worker_runs_in_process(
    tmp_path: Path, test_root: TestRoot
) -> None:
    args = ["serve", "kbs", "--workers", "1", "--data-dir", str(tmp_path / "state"),
            "--trust-root", str(test_root.directory)]
    with serve_process(args, tmp_path / "out.txt") as served:
        assert "1 worker, RCAR sessions in memory" in served.output()
        assert wait_for_workers(served, 0) == []  # no worker processes: uvicorn in process


def test_ratls_broker_runs_in_the_parent_beside_two_workers(
    tmp_path: Path, test_root: TestRoot
) -> None:
    """The RA-TLS key broker is one listener in the serving parent; a resource stored
    through the HTTP API (served by a worker) is released by it, from the shared store."""
    address = f"127.0.0.1:{free_port()}"
    config = _local_fs(
        tmp_path,
        f'[ratls]\nattester = "emulated-sgx"\nemulated_root = "{test_root.directory}"\n',
    )
    args = ["serve", "--workers", "2", "--data-dir", str(tmp_path / "state"), "--trust-root",
            str(test_root.directory), "--config", str(config), "--ratls-listen", address]
    kek = bytes(range(32))
    with serve_process(args, tmp_path / "out.txt") as served:
        wait_for_workers(served, 2)
        token = (tmp_path / "state" / "admin.token").read_text().strip()
        with KbsClient(served.url, admin_token=token) as admin:
            admin.set_resource("default/image-kek/k1", kek)
            admin.set_resource_policy(ALLOW)
        output = " ".join(served.output().split())
        assert "RA-TLS key broker (Verdictd protocol, mutual) on 127.0.0.1:" in output
        assert "2 workers" in output
        identity = make_identity(EmulatedQuoter(test_root.directory, "sgx"))
        verifier = RatlsVerifier(VerifierSettings(trust_root=test_root.directory))
        with EaaKbc(ratls_connector(address, identity, verifier, timeout=20)) as client:
            assert client.get_resource("default/image-kek/k1") == kek


def test_serve_as_with_two_workers(tmp_path: Path, test_root: TestRoot) -> None:
    args = ["serve", "as", "--workers", "2", "--data-dir", str(tmp_path / "state"),
            "--trust-root", str(test_root.directory)]
    with serve_process(args, tmp_path / "out.txt") as served:
        first = wait_for_workers(served, 2)
        output = served.output()
        assert "Attestation Service on http://127.0.0.1:" in output
        assert "2 workers" in output
        assert output.count("token signing key created") == 1  # once, in the parent
        jwks = [httpx.get(f"{served.url}/.well-known/jwks.json", timeout=10) for _ in range(6)]
        assert all(r.status_code == 200 for r in jwks)
        assert len({r.text for r in jwks}) == 1  # one signing key, whichever worker answers
        assert set(first) == set(wait_for_workers(served, 2))
