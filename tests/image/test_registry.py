"""The registry client against a real ``docker-registry`` on loopback, images pushed with skopeo.

Four registries for the module: anonymous, htpasswd (Basic), token (Bearer: the realm is a
small token service served here, issuing ES256 JWTs whose ``x5c`` certificate the registry
trusts), and one whose storage redirects blob downloads to another loopback server (to see
what a storage host is sent).  What was fetched is read from the registry's own access log.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from joserfc import jwt
from joserfc.jwk import ECKey
from live_server import serve_app
from oci_build import (
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    build_index_layout,
    build_layout,
    canonical,
    sha256,
    skopeo_push,
)
from registry import LiveRegistry, TokenAuth, docker_registry
from spawn import free_port

from veritee.image.reference import ImageReference, parse_reference
from veritee.image.registry import RegistryClient, ResolvedImage, manifest_media_type
from veritee.image.registry_auth import AuthFile, Credentials
from veritee.image.registry_errors import (
    DigestMismatch,
    ManifestInvalid,
    PlatformNotFound,
    RegistryNotFound,
    RegistryTransportError,
    RegistryUnauthorized,
    UnsupportedMediaType,
)
from veritee.image.registry_token import BearerTokens
from veritee.image.registry_types import Descriptor, Platform

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
USER, PASSWORD = "alice", "s3cret-registry-pw"
SERVICE, ISSUER = "veritee-test-registry", "veritee-test-token-issuer"


# -- registries -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRegistry]:
    with docker_registry(tmp_path_factory.mktemp("anon-registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRegistry]:
    with docker_registry(tmp_path_factory.mktemp("basic-registry"), user=USER,
                         password=PASSWORD) as reg:
        yield reg


@dataclass
class TokenService:
    """The realm: checks Basic credentials, grants what the scopes ask (when authenticated),
    records who it issued tokens to; ``mode = "malformed"`` answers JSON without a token,
    ``"no-expiry"`` an ``access_token`` without ``expires_in``."""

    key: ECKey
    cert_der: bytes
    url: str = ""
    issued: list[tuple[str | None, list[str]]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    refused: int = 0
    mode: str = "ok"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/token")
        def token(request: Request) -> Response:
            header = request.headers.get("authorization")
            self.authorizations.append(header)
            who = None
            if header is not None:
                scheme, _, value = header.partition(" ")
                name, _, secret = base64.b64decode(value).decode().partition(":")
                if scheme.lower() != "basic" or (name, secret) != (USER, PASSWORD):
                    self.refused += 1
                    return JSONResponse({"details": "invalid credentials"}, status_code=401)
                who = name
            if self.mode == "malformed":
                return JSONResponse({"expires_in": 300})
            scopes = request.query_params.getlist("scope")
            access = []
            for scope in scopes:
                kind, name, actions = scope.split(":")
                granted = [a for a in actions.split(",") if a in ("pull", "push")]
                access.append({"type": kind, "name": name, "actions": granted if who else []})
            now = int(time.time())
            claims = {"iss": ISSUER, "sub": who or "", "aud": request.query_params["service"],
                      "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
                      "access": access}
            header_fields = {"alg": "ES256", "typ": "JWT",
                             "x5c": [base64.b64encode(self.cert_der).decode()]}
            self.issued.append((who, scopes))
            self.tokens.append(jwt.encode(header_fields, claims, self.key))
            if self.mode == "no-expiry":
                return JSONResponse({"access_token": self.tokens[-1]})
            return JSONResponse({"token": self.tokens[-1], "expires_in": 300})

        return app


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "veritee test token signer")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveRegistry, TokenService]]:
    workdir = tmp_path_factory.mktemp("token-registry")
    private = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(private)
    bundle = workdir / "token-root.pem"
    bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    service = TokenService(ECKey.import_key(pem), cert.public_bytes(serialization.Encoding.DER))
    with serve_app(service.app()) as url:
        service.url = url
        auth = TokenAuth(f"{url}/token", SERVICE, ISSUER, bundle)
        with docker_registry(workdir, user=USER, password=PASSWORD, token=auth) as reg:
            yield reg, service


@dataclass
class Storage:
    """Where the redirecting registry sends blob downloads: serves its storage directory and
    records the Authorization header each request carried."""

    root: Path
    authorizations: list[str | None] = field(default_factory=list)
    fail_with: int | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/{path:path}")
        def blob(path: str, request: Request) -> Response:
            self.authorizations.append(request.headers.get("authorization"))
            if self.fail_with is not None:
                return Response(b"storage unavailable", status_code=self.fail_with)
            target = (self.root / path).resolve()
            if not target.is_relative_to(self.root.resolve()) or not target.is_file():
                return Response(status_code=404)
            return Response(target.read_bytes(), media_type="application/octet-stream")

        return app


@pytest.fixture(scope="module")
def redirecting(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveRegistry, Storage]]:
    workdir = tmp_path_factory.mktemp("redirect-registry")
    storage = Storage(workdir / "storage")
    with serve_app(storage.app()) as url:
        extra = (f"middleware:\n  storage:\n    - name: redirect\n      options:\n"
                 f"        baseurl: {url}/\n")
        with docker_registry(workdir, user=USER, password=PASSWORD, extra_config=extra) as reg:
            yield reg, storage


# -- helpers ----------------------------------------------------------------------------------


def _image(tmp_path: Path, label: str, *, layers: int = 2) -> Image:
    """An image whose blobs no other test shares (tests corrupt blobs in place)."""
    unique = f"{label}-{uuid.uuid4().hex}".encode()
    return build_layout(tmp_path / f"layout-{label}", [
        {f"etc/{n}.txt": unique + b"\n" * n} for n in range(layers)
    ], tag="v1")


def _pushed(reg: LiveRegistry, tmp_path: Path, repo: str, *, layers: int = 2) -> Image:
    image = _image(tmp_path, repo.replace("/", "-"), layers=layers)
    skopeo_push(image.layout, "v1", reg, f"{repo}:v1")
    return image


def _client(reg: LiveRegistry, **kwargs: Any) -> RegistryClient:
    kwargs.setdefault("plain_http", [reg.host])
    return RegistryClient(**kwargs)


def _ref(reg: LiveRegistry, repo: str, tag: str = "v1") -> ImageReference:
    return parse_reference(f"{reg.host}/{repo}:{tag}")


def _put_blob(reg: LiveRegistry, repo: str, data: bytes) -> str:
    digest = sha256(data)
    started = httpx.post(f"{reg.url}/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = httpx.URL(reg.url).join(started.headers["Location"])
    done = httpx.put(location.copy_merge_params({"digest": digest}), content=data,
                     headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text
    return digest


def _put_manifest(reg: LiveRegistry, repo: str, tag: str, media_type: str, data: bytes) -> str:
    done = httpx.put(f"{reg.url}/v2/{repo}/manifests/{tag}", content=data,
                     headers={"Content-Type": media_type})
    assert done.status_code == 201, done.text
    return sha256(data)


def _layers_of(resolved: ResolvedImage) -> list[Descriptor]:
    return list(resolved.manifest.layers)


# -- pulls ------------------------------------------------------------------------------------


def test_pull_by_tag_fetches_manifest_config_and_layers_as_pushed(
    anon: LiveRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    image = _pushed(anon, tmp_path, "team/app")
    mark = anon.mark()
    out = tmp_path / "out"
    out.mkdir()
    with caplog.at_level(logging.INFO, logger="veritee.image"), _client(anon) as client:
        resolved = client.resolve(_ref(anon, "team/app"))
        for n, layer in enumerate(resolved.manifest.layers):
            client.fetch_blob(resolved.reference, layer, out / f"layer{n}")
    assert resolved.manifest_digest == image.manifest_digest
    assert resolved.index_digest is None
    assert resolved.digest == image.manifest_digest
    assert resolved.manifest_bytes == image.manifest
    assert resolved.manifest.media_type == OCI_MANIFEST
    assert resolved.config_bytes == image.config
    assert resolved.config.diff_ids == tuple(image.diff_ids)
    assert [d.digest for d in resolved.manifest.layers] == image.layer_digests
    assert [(out / f"layer{n}").read_bytes() for n in range(2)] == image.layers
    assert sorted(p.name for p in out.iterdir()) == ["layer0", "layer1"]
    rows = anon.requests(since=mark)
    assert [(r.method, r.path, r.status) for r in rows if "/manifests/" in r.path] == [
        ("GET", "/v2/team/app/manifests/v1", 200)]
    assert anon.blob_gets(since=mark) == [image.config_digest, *image.layer_digests]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "veritee.image")
    for digest in (image.manifest_digest, image.config_digest, *image.layer_digests):
        assert digest in logged


def test_pull_by_digest_asks_for_the_digest(anon: LiveRegistry, tmp_path: Path) -> None:
    image = _pushed(anon, tmp_path, "bydigest")
    ref = parse_reference(f"{anon.host}/bydigest@{image.manifest_digest}")
    mark = anon.mark()
    with _client(anon) as client:
        resolved = client.resolve(ref)
    assert resolved.manifest_digest == image.manifest_digest
    assert resolved.config_bytes == image.config
    assert [r.path for r in anon.requests(since=mark) if "/manifests/" in r.path] == [
        f"/v2/bydigest/manifests/{image.manifest_digest}"]


def test_index_resolves_to_the_requested_platform(anon: LiveRegistry, tmp_path: Path) -> None:
    unique = uuid.uuid4().hex.encode()
    index = build_index_layout(tmp_path / "index", {
        "linux/amd64": [{"arch": b"amd64 " + unique}],
        "linux/arm64": [{"arch": b"arm64 " + unique}],
    }, tag="v1")
    skopeo_push(index.layout, "v1", anon, "multi:v1", all_images=True)
    amd64, arm64 = index.images["linux/amd64"], index.images["linux/arm64"]
    mark = anon.mark()
    with _client(anon) as client:
        resolved = client.resolve(_ref(anon, "multi"))
    assert resolved.index_digest == index.index_digest
    assert resolved.digest == index.index_digest
    assert resolved.manifest_digest == amd64.manifest_digest
    assert resolved.manifest_bytes == amd64.manifest
    assert resolved.config.architecture == "amd64"
    assert [r.path for r in anon.requests(since=mark) if "/manifests/" in r.path] == [
        "/v2/multi/manifests/v1", f"/v2/multi/manifests/{amd64.manifest_digest}"]
    assert anon.blob_gets(since=mark) == [amd64.config_digest]

    with _client(anon, platform=Platform("linux", "arm64")) as client:
        resolved = client.resolve(_ref(anon, "multi"))
        pinned = client.resolve(parse_reference(f"{anon.host}/multi@{index.index_digest}"))
    assert resolved.manifest_digest == arm64.manifest_digest
    assert resolved.config_bytes == arm64.config
    assert pinned.manifest_digest == arm64.manifest_digest
    assert pinned.index_digest == index.index_digest

    with _client(anon, platform=Platform("linux", "s390x")) as client, \
            pytest.raises(PlatformNotFound) as caught:
        client.resolve(_ref(anon, "multi"))
    message = str(caught.value)
    assert "linux/s390x" in message
    assert "linux/amd64" in message
    assert "linux/arm64" in message
    assert index.index_digest in message


def test_docker_v2s2_manifest(anon: LiveRegistry, tmp_path: Path) -> None:
    image = _image(tmp_path, "docker")
    skopeo = shutil.which("skopeo")
    assert skopeo is not None
    subprocess.run([skopeo, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                    "--format", "v2s2", f"oci:{image.layout}:v1",
                    f"docker://{anon.host}/docker:v1"], check=True, capture_output=True,
                   timeout=60)
    out = tmp_path / "layer"
    with _client(anon) as client:
        resolved = client.resolve(_ref(anon, "docker"))
        client.fetch_blob(resolved.reference, resolved.manifest.layers[0], out)
    assert resolved.manifest.media_type == DOCKER_MANIFEST
    assert resolved.manifest.config.media_type == DOCKER_CONFIG
    assert json.loads(resolved.manifest_bytes)["mediaType"] == DOCKER_MANIFEST
    assert sha256(resolved.manifest_bytes) == resolved.manifest_digest
    assert resolved.config.diff_ids == tuple(image.diff_ids)
    assert out.read_bytes() == image.layers[0]


def test_a_docker_manifest_list_resolves_too(anon: LiveRegistry, tmp_path: Path) -> None:
    image = _pushed(anon, tmp_path, "dlist")
    entry = {"mediaType": OCI_MANIFEST, "digest": image.manifest_digest,
             "size": len(image.manifest), "platform": {"os": "linux", "architecture": "amd64"}}
    listing = canonical({"schemaVersion": 2,
                         "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
                         "manifests": [entry]})
    digest = _put_manifest(anon, "dlist", "list",
                           "application/vnd.docker.distribution.manifest.list.v2+json", listing)
    with _client(anon) as client:
        resolved = client.resolve(_ref(anon, "dlist", "list"))
    assert resolved.index_digest == digest
    assert resolved.manifest_digest == image.manifest_digest


def test_nested_index_and_non_image_config_are_unsupported(
    anon: LiveRegistry, tmp_path: Path,
) -> None:
    image = _pushed(anon, tmp_path, "odd")
    inner = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": image.manifest_digest,
         "size": len(image.manifest), "platform": {"os": "linux", "architecture": "amd64"}}]})
    inner_digest = _put_manifest(anon, "odd", "inner", OCI_INDEX, inner)
    outer = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": inner_digest, "size": len(inner),
         "platform": {"os": "linux", "architecture": "amd64"}}]})
    _put_manifest(anon, "odd", "nested", OCI_INDEX, outer)

    artifact_config = b'{"kind":"helm chart"}'
    config_digest = _put_blob(anon, "odd", artifact_config)
    artifact = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": config_digest,
        "size": len(artifact_config)}, "layers": []})
    _put_manifest(anon, "odd", "artifact", OCI_MANIFEST, artifact)

    mark = anon.mark()
    with _client(anon) as client:
        with pytest.raises(UnsupportedMediaType, match="nested"):
            client.resolve(_ref(anon, "odd", "nested"))
        with pytest.raises(UnsupportedMediaType, match="helm"):
            client.resolve(_ref(anon, "odd", "artifact"))
    assert anon.blob_gets(since=mark) == []


def test_manifest_media_types_without_a_registry_that_serves_them() -> None:
    # docker-registry 2.8 refuses schema 1 pushes, so the classification is checked directly.
    schema1 = b'{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}'
    for content_type in ("application/vnd.docker.distribution.manifest.v1+prettyjws",
                         "application/vnd.docker.distribution.manifest.v1+json"):
        with pytest.raises(UnsupportedMediaType, match="schema 1"):
            manifest_media_type(content_type, schema1)
    with pytest.raises(UnsupportedMediaType, match="schema 1"):
        manifest_media_type("application/json", schema1)
    with pytest.raises(UnsupportedMediaType, match=r"vnd\.example"):
        manifest_media_type("application/vnd.example+json", b"{}")
    assert manifest_media_type("application/json", b'{"mediaType":"%s"}' % OCI_INDEX.encode()) \
        == OCI_INDEX
    assert manifest_media_type("", b'{"schemaVersion":2,"manifests":[]}') == OCI_INDEX
    assert manifest_media_type("", b'{"schemaVersion":2,"config":{},"layers":[]}') \
        == OCI_MANIFEST
    assert manifest_media_type(f"{DOCKER_MANIFEST}; charset=utf-8", b"{}") == DOCKER_MANIFEST
    with pytest.raises(ManifestInvalid):
        manifest_media_type("text/plain", b"not json")


def test_tag_manifest_returns_the_tagged_manifest_or_none(
    anon: LiveRegistry, tmp_path: Path,
) -> None:
    image = _pushed(anon, tmp_path, "sigs")
    signature_tag = image.manifest_digest.replace(":", "-") + ".sig"
    with _client(anon) as client:
        found = client.tag_manifest(_ref(anon, "sigs"), "v1")
        missing = client.tag_manifest(_ref(anon, "sigs"), signature_tag)
        no_repo = client.tag_manifest(_ref(anon, "never-pushed"), signature_tag)
        with pytest.raises(ValueError, match="not a tag"):
            client.tag_manifest(_ref(anon, "sigs"), "../v1")
    assert found == (image.manifest, OCI_MANIFEST, image.manifest_digest)
    assert missing is None
    assert no_repo is None


def test_open_blob_and_blob_bytes(anon: LiveRegistry, tmp_path: Path) -> None:
    image = _pushed(anon, tmp_path, "small", layers=1)
    layer = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", image.layer_digests[0],
                       len(image.layers[0]))
    ref = _ref(anon, "small")
    spool = tmp_path / "spool"
    spool.mkdir()
    with _client(anon) as client:
        with client.open_blob(ref, layer, directory=spool) as blob:
            assert blob.read() == image.layers[0]
        assert client.blob_bytes(ref, layer, limit=len(image.layers[0])) == image.layers[0]
        mark = anon.mark()
        with pytest.raises(ManifestInvalid, match="limit"):
            client.blob_bytes(ref, layer, limit=len(image.layers[0]) - 1)
        assert anon.blob_gets(since=mark) == []
    assert list(spool.iterdir()) == []


# -- refusals ---------------------------------------------------------------------------------


def test_unknown_tag_and_repository_are_not_found(anon: LiveRegistry, tmp_path: Path) -> None:
    _pushed(anon, tmp_path, "known")
    with _client(anon) as client:
        with pytest.raises(RegistryNotFound) as caught:
            client.resolve(_ref(anon, "known", "nope"))
        assert "known" in str(caught.value)
        assert "nope" in str(caught.value)
        assert anon.host in str(caught.value)
        with pytest.raises(RegistryNotFound, match="never/pushed"):
            client.resolve(_ref(anon, "never/pushed"))
        missing = Descriptor("x", sha256(b"not there"), 9)
        with pytest.raises(RegistryNotFound, match=missing.digest):
            client.fetch_blob(_ref(anon, "known"), missing, tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    assert not list(tmp_path.glob(".missing*"))


def test_corrupted_blob_is_refused_and_nothing_is_left(anon: LiveRegistry, tmp_path: Path) -> None:
    image = _pushed(anon, tmp_path, "corrupt")
    with _client(anon) as client:
        resolved = client.resolve(_ref(anon, "corrupt"))
    flipped, longer = _layers_of(resolved)
    stored = anon.blob_file(flipped.digest)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    anon.blob_file(longer.digest).write_bytes(image.layers[1] + b"trailing bytes")
    out = tmp_path / "out"
    out.mkdir()
    with _client(anon) as client:
        with pytest.raises(DigestMismatch) as caught:
            client.fetch_blob(resolved.reference, flipped, out / "layer0")
        assert flipped.digest in str(caught.value)
        assert "corrupt" in str(caught.value)
        # refused on the announced length, before the extra bytes are read
        with pytest.raises(DigestMismatch, match="where the descriptor says"):
            client.fetch_blob(resolved.reference, longer, out / "layer1")
        with pytest.raises(DigestMismatch), client.open_blob(resolved.reference, flipped):
            pytest.fail("a corrupted blob was handed out")
    assert list(out.iterdir()) == []


def test_tampered_manifest_does_not_match_its_digest(anon: LiveRegistry, tmp_path: Path) -> None:
    image = _pushed(anon, tmp_path, "tampered")
    stored = anon.blob_file(image.manifest_digest)
    stored.write_bytes(image.manifest.replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    pinned = parse_reference(f"{anon.host}/tampered@{image.manifest_digest}")
    with _client(anon) as client:
        with pytest.raises(DigestMismatch) as caught:
            client.resolve(pinned)
        assert image.manifest_digest in str(caught.value)
        # by tag, the registry still announces the digest it stored: that must agree too
        with pytest.raises(DigestMismatch, match="Docker-Content-Digest"):
            client.resolve(_ref(anon, "tampered"))


def test_a_reference_digest_the_manifest_does_not_hash_to(
    anon: LiveRegistry, tmp_path: Path,
) -> None:
    image = _pushed(anon, tmp_path, "pinned")
    with _client(anon) as client:
        resolved = client.resolve(_ref(anon, "pinned"))
    # the registry keeps manifests under their digest: swap in another manifest's bytes
    other = _pushed(anon, tmp_path, "pinned-other")
    anon.blob_file(image.manifest_digest).write_bytes(other.manifest)
    with _client(anon) as client, pytest.raises(DigestMismatch):
        client.resolve(resolved.reference.with_digest(image.manifest_digest))


def test_manifest_over_the_limit(anon: LiveRegistry, tmp_path: Path) -> None:
    image = _pushed(anon, tmp_path, "limited")
    with _client(anon, max_manifest_bytes=len(image.manifest) - 1) as client, \
            pytest.raises(ManifestInvalid, match="limit"):
        client.resolve(_ref(anon, "limited"))
    with _client(anon, max_manifest_bytes=len(image.manifest)) as client:
        assert client.resolve(_ref(anon, "limited")).manifest_digest == image.manifest_digest


def test_registry_down_is_a_transport_error() -> None:
    host = f"127.0.0.1:{free_port()}"
    with RegistryClient(plain_http=[host], timeout_s=5) as client, \
            pytest.raises(RegistryTransportError) as caught:
        client.resolve(parse_reference(f"{host}/app:v1"))
    assert host in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_https_is_the_default(anon: LiveRegistry, tmp_path: Path) -> None:
    _pushed(anon, tmp_path, "tls")
    with RegistryClient(timeout_s=5) as client, pytest.raises(RegistryTransportError):
        client.resolve(_ref(anon, "tls"))


# -- basic auth -------------------------------------------------------------------------------


def test_basic_auth_from_auth_json(
    basic: LiveRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    image = _pushed(basic, tmp_path, "private")
    auth = AuthFile.load(basic.write_auth_json(tmp_path / "auth.json"))
    mark = basic.mark()
    out = tmp_path / "layer"
    with caplog.at_level(logging.DEBUG), _client(basic, auth=auth) as client:
        resolved = client.resolve(_ref(basic, "private"))
        client.fetch_blob(resolved.reference, resolved.manifest.layers[0], out)
    assert resolved.manifest_digest == image.manifest_digest
    assert out.read_bytes() == image.layers[0]
    statuses = [(r.path, r.status) for r in basic.requests(since=mark)]
    # one challenge, then the credentials go with every request
    assert statuses[:2] == [("/v2/private/manifests/v1", 401), ("/v2/private/manifests/v1", 200)]
    assert [s for _, s in statuses[2:]] == [200, 200]
    assert PASSWORD not in caplog.text
    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in caplog.text


def test_basic_auth_refusals(basic: LiveRegistry, tmp_path: Path) -> None:
    _pushed(basic, tmp_path, "locked")
    wrong = AuthFile.load(basic.write_auth_json(tmp_path / "wrong.json",
                                                password="wrong-password-xyz"))
    with _client(basic, auth=wrong) as client, pytest.raises(RegistryUnauthorized) as caught:
        client.resolve(_ref(basic, "locked"))
    assert "wrong-password-xyz" not in str(caught.value)
    assert "wrong-password-xyz" not in repr(caught.value)
    assert "wrong-password-xyz" not in repr(client)
    assert basic.host in str(caught.value)
    with _client(basic) as client, pytest.raises(RegistryUnauthorized, match="none"):
        client.resolve(_ref(basic, "locked"))
    elsewhere = AuthFile.parse({"auths": {"other.example:5000": {"auth": base64.b64encode(
        f"{USER}:{PASSWORD}".encode()).decode()}}})
    with _client(basic, auth=elsewhere) as client, pytest.raises(RegistryUnauthorized):
        client.resolve(_ref(basic, "locked"))


# -- bearer tokens ----------------------------------------------------------------------------


def test_bearer_token_pull(
    token_registry: tuple[LiveRegistry, TokenService], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reg, service = token_registry
    image = _pushed(reg, tmp_path, "tokened")  # skopeo does the token dance itself
    auth = AuthFile.load(reg.write_auth_json(tmp_path / "auth.json"))
    token_host = httpx.URL(service.url).netloc.decode()
    issued_before = len(service.issued)
    mark = reg.mark()
    out = tmp_path / "layer"
    with caplog.at_level(logging.DEBUG), \
            _client(reg, auth=auth, plain_http=[reg.host, token_host]) as client:
        resolved = client.resolve(_ref(reg, "tokened"))
        client.fetch_blob(resolved.reference, resolved.manifest.layers[1], out)
        again = client.resolve(_ref(reg, "tokened"))
        fetches = client.tokens.fetches
        shown = repr(client.tokens) + repr(client)
    assert resolved.manifest_digest == again.manifest_digest == image.manifest_digest
    assert out.read_bytes() == image.layers[1]
    assert fetches == 1  # cached for the second resolve and the blobs
    assert service.issued[issued_before:] == [(USER, ["repository:tokened:pull"])]
    assert service.authorizations[-1] == "Basic " + base64.b64encode(
        f"{USER}:{PASSWORD}".encode()).decode()
    rows = reg.requests(since=mark)
    assert [r.status for r in rows] == [401] + [200] * (len(rows) - 1)
    assert reg.blob_gets(since=mark) == [image.config_digest, image.layer_digests[1],
                                         image.config_digest]
    assert PASSWORD not in caplog.text
    assert service.tokens[-1] not in caplog.text
    assert service.tokens[-1] not in shown


def test_bearer_token_refusals(
    token_registry: tuple[LiveRegistry, TokenService], tmp_path: Path,
) -> None:
    reg, service = token_registry
    _pushed(reg, tmp_path, "guarded")
    token_host = httpx.URL(service.url).netloc.decode()
    plain = [reg.host, token_host]
    wrong = AuthFile.load(reg.write_auth_json(tmp_path / "wrong.json", password="not-it-123"))
    refused = service.refused
    with _client(reg, auth=wrong, plain_http=plain) as client, \
            pytest.raises(RegistryUnauthorized) as caught:
        client.resolve(_ref(reg, "guarded"))
    assert service.refused == refused + 1
    assert "not-it-123" not in str(caught.value)
    assert token_host in str(caught.value)

    # anonymous: the service issues a token granting nothing, the registry refuses it
    with _client(reg, plain_http=plain) as client, pytest.raises(RegistryUnauthorized):
        client.resolve(_ref(reg, "guarded"))
    assert service.authorizations[-1] is None

    # a realm on plain http is not used unless its host is configured for plain http
    auth = AuthFile.load(reg.write_auth_json(tmp_path / "auth.json"))
    asked = len(service.authorizations)
    with _client(reg, auth=auth) as client, pytest.raises(RegistryTransportError,
                                                          match="plain http"):
        client.resolve(_ref(reg, "guarded"))
    assert len(service.authorizations) == asked

    service.mode = "malformed"
    try:
        with _client(reg, auth=auth, plain_http=plain) as client, \
                pytest.raises(RegistryTransportError, match="no token"):
            client.resolve(_ref(reg, "guarded"))
    finally:
        service.mode = "ok"


# -- redirects --------------------------------------------------------------------------------


def test_blob_redirects_are_followed_without_the_registry_credentials(
    redirecting: tuple[LiveRegistry, Storage], tmp_path: Path,
) -> None:
    reg, storage = redirecting
    image = _pushed(reg, tmp_path, "redirected")
    auth = AuthFile.load(reg.write_auth_json(tmp_path / "auth.json"))
    seen = len(storage.authorizations)
    mark = reg.mark()
    out = tmp_path / "layer"
    with _client(reg, auth=auth) as client:
        resolved = client.resolve(_ref(reg, "redirected"))
        client.fetch_blob(resolved.reference, resolved.manifest.layers[0], out)
    assert resolved.config_bytes == image.config
    assert out.read_bytes() == image.layers[0]
    blob_rows = [r for r in reg.requests(since=mark) if "/blobs/" in r.path]
    assert [r.status for r in blob_rows] == [307, 307]
    assert storage.authorizations[seen:] == [None, None]

    for status in (503, 429):
        storage.fail_with = status
        try:
            with _client(reg, auth=auth) as client, \
                    pytest.raises(RegistryTransportError, match=f"HTTP {status}") as caught:
                client.fetch_blob(resolved.reference, resolved.manifest.layers[0], out)
        finally:
            storage.fail_with = None
        assert resolved.manifest.layers[0].digest in str(caught.value)
        assert out.read_bytes() == image.layers[0]  # the earlier download is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".layer")) == []



def test_bearer_tokens_are_cached_per_scope_until_they_expire(
    token_registry: tuple[LiveRegistry, TokenService],
) -> None:
    reg, service = token_registry
    now = [1000.0]
    params = {"realm": f"{service.url}/token", "service": SERVICE}
    token_host = httpx.URL(service.url).netloc.decode()
    with httpx.Client() as http:
        tokens = BearerTokens(http, plain_http=[token_host], timeout_s=5, clock=lambda: now[0])
        value = tokens.fetch(reg.host, params, "repository:x:pull", Credentials(USER, PASSWORD),
                             "test")
        assert service.issued[-1] == (USER, ["repository:x:pull"])
        assert value not in repr(tokens)
        assert tokens.cached(reg.host, "repository:x:pull") == value
        assert tokens.cached(reg.host, "repository:y:pull") is None
        assert tokens.cached("elsewhere:5000", "repository:x:pull") is None
        now[0] += 299  # the service says expires_in 300
        assert tokens.cached(reg.host, "repository:x:pull") == value
        now[0] += 1
        assert tokens.cached(reg.host, "repository:x:pull") is None

        service.mode = "no-expiry"  # no expires_in: 60 s
        try:
            value = tokens.fetch(reg.host, params, "repository:x:pull", None, "test")
        finally:
            service.mode = "ok"
        now[0] += 59
        assert tokens.cached(reg.host, "repository:x:pull") == value
        now[0] += 1
        assert tokens.cached(reg.host, "repository:x:pull") is None
    assert tokens.fetches == 2
