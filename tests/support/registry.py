"""A real OCI registry (CNCF distribution's ``docker-registry``) on 127.0.0.1 for tests.

Usage, one registry per test module (a start takes about half a second)::

    from registry import docker_registry

    @pytest.fixture(scope="module")
    def reg(tmp_path_factory):
        with docker_registry(tmp_path_factory.mktemp("reg"), user="alice", password="s3cret") as r:
            yield r

    def test_pull(reg):
        mark = reg.mark()
        ...                                   # talk to reg.url / reg.host
        assert reg.blob_gets(since=mark) == ["sha256:…"]

``user``/``password`` turn on htpasswd (bcrypt) auth: the registry then answers
``401`` with ``WWW-Authenticate: Basic realm="veritee-test"``.  Without them it is
anonymous.  ``requests()`` parses the registry's access log into ``Access(method, path,
status)`` rows (the log is flushed by a sentinel request first, so rows for requests the
test already saw answered are there); ``mark()``/``since=`` keep one test's rows apart.
``blob_file(digest)`` is where the filesystem driver stores a blob (corrupt it there to
test digest checks); ``write_auth_json(path)`` writes a containers ``auth.json`` for it.
Push images with ``oci_build.skopeo_push``.

``token=TokenAuth(realm, service, issuer, rootcertbundle)`` turns on the distribution token
protocol instead: the registry answers ``401`` with ``WWW-Authenticate: Bearer realm=…`` and
accepts JWTs whose ``x5c`` chain ends in ``rootcertbundle`` (serve the realm yourself, e.g.
with ``live_server.serve_app``); ``user``/``password`` are then only recorded, for
``skopeo_push`` and ``write_auth_json``.  ``extra_config`` is appended to the registry's
config.yml as is (e.g. a ``middleware: storage: - name: redirect`` section).

A missing binary fails the test (the image tests are meant to run) with an install hint.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from spawn import free_port

INSTALL_HINT = "apt-get install docker-registry apache2-utils skopeo"

# 127.0.0.1 - - [04/Dec/2026:20:55:52 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "curl/7.88.1"
_ACCESS = re.compile(
    r'^\S+ \S+ \S+ \[[^]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) '
)
_BLOB = re.compile(r"^/v2/.+/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_SENTINEL = "/v2/_veritee_log_sentinel"


@dataclass(frozen=True)
class TokenAuth:
    """The registry's ``auth: token:`` settings."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


@dataclass(frozen=True)
class Access:
    """One request as the registry's access log recorded it."""

    method: str
    path: str
    status: int


@dataclass
class LiveRegistry:
    url: str
    host: str
    storage: Path
    log: Path
    user: str | None
    password: str | None

    def requests(self, *, since: int = 0) -> list[Access]:
        """Every request logged so far (after ``since`` = an earlier ``mark()``)."""
        return self._flush()[since:]

    def mark(self) -> int:
        """A position in the log: pass it as ``since=`` to see only later requests."""
        return len(self._flush())

    def blob_gets(self, *, since: int = 0) -> list[str]:
        """The digests of blobs the registry was asked for with GET and served (200)."""
        out = []
        for row in self.requests(since=since):
            match = _BLOB.match(row.path.split("?", 1)[0])
            if match and row.method == "GET" and row.status == 200:
                out.append(match["digest"])
        return out

    def blob_file(self, digest: str) -> Path:
        """The file the filesystem storage driver serves ``digest`` from."""
        algorithm, hexdigest = digest.split(":", 1)
        blobs = self.storage / "docker" / "registry" / "v2" / "blobs"
        return blobs / algorithm / hexdigest[:2] / hexdigest / "data"

    def write_auth_json(self, path: Path, *, user: str | None = None,
                        password: str | None = None) -> Path:
        """A containers auth.json with this registry's (or the given) credentials."""
        pair = f"{user or self.user}:{password or self.password}".encode()
        auths = {self.host: {"auth": base64.b64encode(pair).decode()}}
        path.write_text(json.dumps({"auths": auths}))
        return path

    def _flush(self) -> list[Access]:
        token = uuid.uuid4().hex
        httpx.get(f"{self.url}{_SENTINEL}/{token}", timeout=5)
        deadline = time.monotonic() + 5
        while token not in self.log.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError(f"registry access log never showed {token}")
            time.sleep(0.005)
        rows = []
        for line in self.log.read_text().splitlines():
            match = _ACCESS.match(line)
            if match and not match["path"].startswith(_SENTINEL):
                rows.append(Access(match["method"], match["path"], int(match["status"])))
        return rows


def _require(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pytest.fail(f"{binary} is not installed; the image tests need it ({INSTALL_HINT})")
    return found


@contextmanager
def docker_registry(
    workdir: Path, *, user: str | None = None, password: str | None = None,
    timeout_s: float = 20, token: TokenAuth | None = None, extra_config: str = "",
) -> Iterator[LiveRegistry]:
    """Run ``docker-registry serve`` on a free loopback port with storage under ``workdir``."""
    binary = _require("docker-registry")
    port = free_port()
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    auth = ""
    if token is not None:
        auth = (f"auth:\n  token:\n    realm: {token.realm}\n    service: {token.service}\n"
                f"    issuer: {token.issuer}\n    rootcertbundle: {token.rootcertbundle}\n")
    elif user is not None:
        htpasswd = _require("htpasswd")
        line = subprocess.run(
            [htpasswd, "-Bbn", user, password or ""], check=True, capture_output=True, text=True
        ).stdout.strip()
        (workdir / "htpasswd").write_text(line + "\n")
        auth = f"auth:\n  htpasswd:\n    realm: veritee-test\n    path: {workdir / 'htpasswd'}\n"
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: veritee-test-{uuid.uuid4().hex}\n"
        + auth + extra_config
    )
    log = workdir / "registry.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{url}/v2/", timeout=1).status_code in (200, 401):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"docker-registry did not start:\n{log.read_text()}")
            time.sleep(0.02)
        yield LiveRegistry(url, f"127.0.0.1:{port}", storage, log, user, password)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
