"""Signatures as a pull meets them: skopeo-signed images on a real registry with the simple
signatures in a lookaside store (a file:// directory, and the same tree served over HTTP
from loopback), cosign signatures attached in the registry, registries.d configuration, and
one signature made by cosign itself (containers/image's test fixture)."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import serve_app
from oci_build import Image, build_layout, skopeo_push
from registry import LiveRegistry, docker_registry
from signing import (
    GpgKey,
    RegistryAttachments,
    SigstoreKey,
    gpg_key,
    push_cosign_signature,
    push_signed,
    sigstore_key,
    write_registries_d,
)
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from veritee.image.policy import (
    ImagePolicy,
    LookasideSignatures,
    PolicyDecision,
    RegistriesD,
    RegistrySignatures,
    SigstoreSignature,
    evaluate,
    file_key_loader,
)
from veritee.image.reference import ImageReference, parse_reference
from veritee.image.registry_types import Descriptor
from veritee.image.signature_errors import (
    SignatureConfigError,
    SignatureFetchError,
    SignatureRejected,
)
from veritee.image.signature_source import AttachmentSignatures, attachment_tag, lookaside_url


@dataclass
class World:
    reg: LiveRegistry
    image: Image
    signer: GpgKey
    stranger: GpgKey
    cosign: SigstoreKey
    other_cosign: SigstoreKey
    lookaside: Path
    registries_d: Path

    def ref(self, name: str) -> ImageReference:
        return parse_reference(f"{self.reg.host}/{name}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("signatures")
    with docker_registry(tmp / "registry") as reg, gpg_key(tmp / "a") as signer, \
            gpg_key(tmp / "b", name="not trusted") as stranger:
        image = build_layout(tmp / "layout", [{"hello.txt": b"signed content\n"}], tag="v1")
        lookaside = tmp / "lookaside"
        registries_d = write_registries_d(tmp / "registries.d", lookaside=f"file://{lookaside}")
        push_signed(image.layout, "v1", reg, "team/app:v1", registries_d=registries_d,
                    gpg=signer)
        skopeo_push(image.layout, "v1", reg, "team/app:v2")  # same digest, signed as :v1
        skopeo_push(image.layout, "v1", reg, "team/unsigned:v1")
        push_signed(image.layout, "v1", reg, "team/moved:v1", registries_d=registries_d,
                    gpg=signer, sign_identity=f"{reg.host}/team/elsewhere:v1")
        cosign = sigstore_key(tmp / "cosign")
        skopeo_push(image.layout, "v1", reg, "team/cos:v1")
        push_cosign_signature(reg, "team/cos", image.manifest_digest,
                              f"{reg.host}/team/cos:v1", cosign)
        skopeo_push(image.layout, "v1", reg, "team/cosname:v1")
        push_cosign_signature(reg, "team/cosname", image.manifest_digest,
                              f"{reg.host}/team/cosname", cosign)  # what cosign itself signs
        yield World(reg, image, signer, stranger, cosign, sigstore_key(tmp / "other"),
                    lookaside, registries_d)


def static(directory: Path) -> Starlette:
    """The lookaside tree as a web server publishes it (404 for a missing signature)."""
    return Starlette(routes=[Mount("/", app=StaticFiles(directory=directory))])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def gpg_policy(key: GpgKey, identity: dict[str, str] | None = None) -> ImagePolicy:
    requirement: dict[str, Any] = {"type": "signedBy", "keyType": "GPGKeys",
                                   "keyData": b64(key.public)}
    if identity is not None:
        requirement["signedIdentity"] = identity
    document = {"default": [{"type": "reject"}],
                "transports": {"docker": {"127.0.0.1": [{"type": "reject"}],
                                          "": [requirement]}}}
    return ImagePolicy.parse(json.dumps(document).encode(), source="test")


def cosign_policy(key: SigstoreKey, identity: dict[str, str] | None = None) -> ImagePolicy:
    requirement: dict[str, Any] = {"type": "sigstoreSigned", "keyData": b64(key.public_pem)}
    if identity is not None:
        requirement["signedIdentity"] = identity
    return ImagePolicy.parse(json.dumps({"default": [requirement]}).encode(), source="test")


def check(world: World, policy: ImagePolicy, name: str, source: Any) -> PolicyDecision:
    return evaluate(policy, world.ref(name), manifest_bytes=world.image.manifest,
                    manifest_digest=world.image.manifest_digest, signatures=source,
                    key_loader=file_key_loader)


def lookaside_source(world: World, base: str | None = None,
                     http: httpx.Client | None = None) -> RegistrySignatures:
    config = RegistriesD.parse((world.registries_d / "default.yaml").read_bytes())
    if base is not None:
        config = RegistriesD.parse(f"default-docker:\n  lookaside: {base}\n".encode())
    return RegistrySignatures(None, config, http=http)


# ------------------------------------------------------------------ simple signing

def test_skopeo_wrote_where_the_lookaside_url_points(world: World) -> None:
    url = lookaside_url(f"file://{world.lookaside}", world.ref("team/app:v1"),
                        world.image.manifest_digest, 1)
    hexdigest = world.image.manifest_digest.split(":")[1]
    assert url == f"file://{world.lookaside}/team/app@sha256={hexdigest}/signature-1"
    assert Path(url.removeprefix("file://")).is_file()
    assert not Path(url.removeprefix("file://").replace("signature-1", "signature-2")).exists()


def test_gpg_signed_image_is_accepted(world: World) -> None:
    decision = check(world, gpg_policy(world.signer), "team/app:v1", lookaside_source(world))
    assert decision.scope == 'transports.docker[""]'
    assert decision.satisfied == (f"signedBy: signature 1 for {world.image.manifest_digest} "
                                  f"by key {world.signer.fingerprint}",)


def test_rejected_with_another_key(world: World) -> None:
    with pytest.raises(SignatureRejected) as caught:
        check(world, gpg_policy(world.stranger), "team/app:v1", lookaside_source(world))
    assert caught.value.reasons[0].startswith(
        f"signature 1 for {world.image.manifest_digest}: unknown key: signed by key "
        f"{world.signer.fingerprint[-16:]}")
    assert f"{world.reg.host}/team/app:v1" in str(caught.value)


def test_rejected_without_a_signature(world: World) -> None:
    with pytest.raises(SignatureRejected) as caught:
        check(world, gpg_policy(world.signer), "team/unsigned:v1", lookaside_source(world))
    assert caught.value.reasons == (
        f"none found: no simple signature for {world.image.manifest_digest}",)


def test_rejected_when_the_signed_identity_differs(world: World) -> None:
    with pytest.raises(SignatureRejected, match="identity mismatch") as caught:
        check(world, gpg_policy(world.signer), "team/app:v2", lookaside_source(world))
    assert f"'{world.reg.host}/team/app:v1'" in str(caught.value)
    with pytest.raises(SignatureRejected, match="identity mismatch") as caught:
        check(world, gpg_policy(world.signer), "team/moved:v1", lookaside_source(world))
    assert f"'{world.reg.host}/team/elsewhere:v1'" in str(caught.value)
    exact = {"type": "exactReference", "dockerReference": f"{world.reg.host}/team/elsewhere:v1"}
    assert check(world, gpg_policy(world.signer, exact), "team/moved:v1",
                 lookaside_source(world)).satisfied
    repository = {"type": "matchRepository"}
    assert check(world, gpg_policy(world.signer, repository), "team/app:v2",
                 lookaside_source(world)).satisfied


def test_pinned_by_digest_accepts_the_repositorys_signature(world: World) -> None:
    name = f"team/app@{world.image.manifest_digest}"
    assert check(world, gpg_policy(world.signer), name, lookaside_source(world)).satisfied
    with pytest.raises(SignatureRejected, match="identity mismatch"):
        check(world, gpg_policy(world.signer, {"type": "matchExact"}), name,
              lookaside_source(world))


def test_tampered_signature_is_rejected(world: World, tmp_path: Path) -> None:
    copy = tmp_path / "lookaside"
    shutil.copytree(world.lookaside, copy)
    signature = next(copy.rglob("team/app@*/signature-1"))
    blob = bytearray(signature.read_bytes())
    blob[-10] ^= 0x01
    signature.write_bytes(bytes(blob))
    with pytest.raises(SignatureRejected) as caught:
        check(world, gpg_policy(world.signer), "team/app:v1",
              lookaside_source(world, f"file://{copy}"))
    assert caught.value.reasons[0].startswith(
        f"signature 1 for {world.image.manifest_digest}: bad signature")


def test_lookaside_over_http(world: World) -> None:
    with serve_app(static(world.lookaside)) as url, httpx.Client() as client:
        source = lookaside_source(world, f"{url}/", http=client)
        decision = check(world, gpg_policy(world.signer), "team/app:v1", source)
        assert decision.satisfied[0].endswith(world.signer.fingerprint)
        with pytest.raises(SignatureRejected, match="none found"):
            check(world, gpg_policy(world.signer), "team/unsigned:v1", source)
        with pytest.raises(SignatureRejected, match="unknown key"):
            check(world, gpg_policy(world.stranger), "team/app:v1",
                  lookaside_source(world, url))  # a client of its own per read


async def _status_500(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b"broken"})


def test_lookaside_failures_are_errors_not_absences(world: World) -> None:
    with serve_app(_status_500) as url, pytest.raises(SignatureFetchError, match="HTTP 500"):
        check(world, gpg_policy(world.signer), "team/app:v1", lookaside_source(world, url))
    ref = world.ref("team/app:v1")
    config = RegistriesD.parse((world.registries_d / "default.yaml").read_bytes())
    with pytest.raises(SignatureFetchError, match="larger than 16 bytes"):
        LookasideSignatures(config, max_size=16).simple_signatures(
            ref, world.image.manifest_digest)
    with serve_app(static(world.lookaside)) as url:
        http_config = RegistriesD.parse(f"default-docker: {{lookaside: '{url}'}}".encode())
        with pytest.raises(SignatureFetchError, match="larger than 16 bytes"):
            LookasideSignatures(http_config, max_size=16).simple_signatures(
                ref, world.image.manifest_digest)


def test_signatures_are_fetched_only_when_needed(world: World) -> None:
    accept = ImagePolicy.parse(b'{"default": [{"type": "insecureAcceptAnything"}]}',
                               source="test")
    reader = RegistryAttachments(world.reg.url)
    mark = world.reg.mark()
    check(world, accept, "team/cos:v1", RegistrySignatures(reader, RegistriesD()))
    assert world.reg.requests(since=mark) == []
    check(world, cosign_policy(world.cosign), "team/cos:v1",
          RegistrySignatures(reader, RegistriesD()))
    tag = attachment_tag(world.image.manifest_digest)
    assert next(row.path for row in world.reg.requests(since=mark)) == (
        f"/v2/team/cos/manifests/{tag}")


# ------------------------------------------------------------------ sigstore

def attachments(world: World, config: RegistriesD | None = None) -> RegistrySignatures:
    return RegistrySignatures(RegistryAttachments(world.reg.url), config)


def test_sigstore_signed_image_is_accepted(world: World) -> None:
    decision = check(world, cosign_policy(world.cosign), "team/cos:v1", attachments(world))
    assert decision.satisfied == (f"sigstoreSigned: signature 1 for "
                                  f"{world.image.manifest_digest} by public key 1 of 1",)


def test_sigstore_rejected_with_another_key(world: World) -> None:
    with pytest.raises(SignatureRejected) as caught:
        check(world, cosign_policy(world.other_cosign), "team/cos:v1", attachments(world))
    assert "does not verify with any of the 1 accepted public key(s)" in caught.value.reasons[0]


def test_sigstore_rejected_when_unsigned(world: World) -> None:
    with pytest.raises(SignatureRejected) as caught:
        check(world, cosign_policy(world.cosign), "team/unsigned:v1", attachments(world))
    assert caught.value.reasons == (
        f"none found: no sigstore signature for {world.image.manifest_digest}",)


def test_cosign_style_identity_needs_match_repository(world: World) -> None:
    with pytest.raises(SignatureRejected, match="identity mismatch"):
        check(world, cosign_policy(world.cosign), "team/cosname:v1", attachments(world))
    assert check(world, cosign_policy(world.cosign, {"type": "matchRepository"}),
                 "team/cosname:v1", attachments(world)).satisfied


def test_sigstore_attachments_can_be_switched_off(world: World) -> None:
    off = RegistriesD.parse(
        f"docker:\n  '{world.reg.host}/team':\n    use-sigstore-attachments: false\n".encode())
    assert off.use_sigstore_attachments(world.ref("team/cos:v1")) is False
    with pytest.raises(SignatureRejected, match="none found"):
        check(world, cosign_policy(world.cosign), "team/cos:v1", attachments(world, off))
    with pytest.raises(SignatureRejected, match="none found"):
        check(world, cosign_policy(world.cosign), "team/cos:v1",
              RegistrySignatures(None, RegistriesD()))


@dataclass
class DockerManifestReader:
    """An AttachmentReader whose attachment tag holds a Docker manifest."""

    def tag_manifest(self, ref: ImageReference, tag: str) -> tuple[bytes, str, str] | None:
        return b"{}", "application/vnd.docker.distribution.manifest.v2+json", "sha256:" + "0" * 64

    def blob_bytes(self, ref: ImageReference, descriptor: Descriptor, *, limit: int) -> bytes:
        raise AssertionError("not reached")


def test_an_attachment_that_is_not_an_oci_manifest_is_an_error(world: World) -> None:
    source = AttachmentSignatures(DockerManifestReader())
    with pytest.raises(SignatureFetchError, match="not an OCI image manifest"):
        source.sigstore_signatures(world.ref("team/cos:v1"), world.image.manifest_digest)


# A signature made by cosign itself, from containers/image (Apache-2.0)
# signature/fixtures/dir-img-cosign-valid/{manifest.json,signature-1} and cosign.pub.
COSIGN_PUB = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFNLqFhf4fiN6o/glAuYnq2jYUeL0
vRuLu/z39pmbVwS9ff5AYnlwaP9sxREajdLY9ynM6G1sy6AAmb7Z63TsLg==
-----END PUBLIC KEY-----
"""
COSIGN_MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
    b'"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1512,'
    b'"digest":"sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4"},'
    b'"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip",'
    b'"size":2896510,'
    b'"digest":"sha256:9d16cba9fb961d1aafec9542f2bf7cb64acfc55245f9e4eb5abecd4cdc38d749"}]}'
)
COSIGN_DIGEST = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
COSIGN_PAYLOAD = (
    b'{"critical":{"identity":{"docker-reference":"192.168.64.2:5000/cosign-signed-single-'
    b'sample"},"image":{"docker-manifest-digest":"sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb'
    b'786fca12f6831de8ddc45e5986a00"},"type":"cosign container image signature"},'
    b'"optional":null}'
)
COSIGN_SIGNATURE = ("MEYCIQDmtamqYPjMg81nqeBhptrPls44aA/r7PwLmspINJY4MwIhANKRpqe2E9UCBtGFdPoz"
                    "/8jAbaQm4uP4h+IpwKTE6ClR")


@dataclass
class OneSignature:
    signature: SigstoreSignature

    def simple_signatures(self, ref: ImageReference, manifest_digest: str) -> list[bytes]:
        return []

    def sigstore_signatures(self, ref: ImageReference,
                            manifest_digest: str) -> list[SigstoreSignature]:
        return [self.signature] if manifest_digest == COSIGN_DIGEST else []


@pytest.mark.parametrize(("image", "identity", "accepted"), [
    ("192.168.64.2:5000/cosign-signed-single-sample:latest", "matchRepository", True),
    (f"192.168.64.2:5000/cosign-signed-single-sample@{COSIGN_DIGEST}", "matchRepository", True),
    ("192.168.64.2:5000/cosign-signed-single-sample:latest", "matchRepoDigestOrExact", False),
    ("192.168.64.2:5000/other:latest", "matchRepository", False),
])
def test_a_signature_made_by_cosign(image: str, identity: str, accepted: bool) -> None:
    policy = ImagePolicy.parse(json.dumps({"default": [{
        "type": "sigstoreSigned", "keyData": b64(COSIGN_PUB),
        "signedIdentity": {"type": identity}}]}).encode(), source="test")
    source = OneSignature(SigstoreSignature(COSIGN_PAYLOAD, COSIGN_SIGNATURE))

    def run() -> PolicyDecision:
        return evaluate(policy, parse_reference(image), manifest_bytes=COSIGN_MANIFEST,
                        manifest_digest=COSIGN_DIGEST, signatures=source,
                        key_loader=file_key_loader)

    if accepted:
        assert run().satisfied
    else:
        with pytest.raises(SignatureRejected, match="identity mismatch"):
            run()
    tampered = OneSignature(SigstoreSignature(COSIGN_PAYLOAD.replace(b"single", b"double"),
                                              COSIGN_SIGNATURE))
    with pytest.raises(SignatureRejected, match="does not verify"):
        evaluate(policy, parse_reference(image), manifest_bytes=COSIGN_MANIFEST,
                 manifest_digest=COSIGN_DIGEST, signatures=tampered, key_loader=file_key_loader)


# ------------------------------------------------------------------ registries.d

REGISTRIES_D = b"""
default-docker:
  lookaside: https://sigs.example.com/default
  use-sigstore-attachments: false
docker:
  r.io:
    lookaside: file:///sigs/registry
  r.io/team:
    use-sigstore-attachments: true
  r.io/team/app:
    sigstore: http://legacy.example.com/app
  r.io/team/app:v1:
    lookaside: https://sigs.example.com/exact
  "*.example.org":
    lookaside: https://wild.example.org/
"""


@pytest.mark.parametrize(("image", "lookaside", "attachments"), [
    ("r.io/team/app:v1", "https://sigs.example.com/exact", True),
    ("r.io/team/app:v2", "http://legacy.example.com/app", True),
    ("r.io/team/other:v1", "file:///sigs/registry", True),
    ("r.io/solo:v1", "file:///sigs/registry", False),
    ("q.example.org/x:v1", "https://wild.example.org/", False),
    ("quay.io/x:v1", "https://sigs.example.com/default", False),
])
def test_registries_d_most_specific_scope_wins(image: str, lookaside: str,
                                               attachments: bool) -> None:
    config = RegistriesD.parse(REGISTRIES_D, source="sigstore_config")
    ref = parse_reference(image)
    assert config.lookaside_for(ref) == lookaside
    assert config.use_sigstore_attachments(ref) is attachments


def test_registries_d_empty_and_merged() -> None:
    empty = RegistriesD.parse(b"")
    assert empty.lookaside_for(parse_reference("r.io/a:v1")) is None
    assert empty.use_sigstore_attachments(parse_reference("r.io/a:v1")) is None
    one = RegistriesD.parse(b"docker: {r.io/a: {lookaside: 'file:///a'}}")
    two = RegistriesD.parse(b"default-docker: {lookaside: 'file:///d'}")
    merged = one.merge(two, source="two.yaml")
    assert merged.lookaside_for(parse_reference("r.io/a:v1")) == "file:///a"
    assert merged.lookaside_for(parse_reference("r.io/b:v1")) == "file:///d"
    with pytest.raises(SignatureConfigError, match=r"\$\.docker\['r\.io/a'\]: defined twice"):
        merged.merge(one, source="three.yaml")
    with pytest.raises(SignatureConfigError, match=r"\$\.default-docker: defined twice"):
        merged.merge(two, source="three.yaml")


@pytest.mark.parametrize(("document", "phrase"), [
    (b"docker: [", "$: not YAML (line"),
    (b"- a\n- b\n", "$: the document is not a mapping"),
    (b"dockers: {}", "$.dockers: unknown key"),
    (b"docker: [a]", "$.docker: docker is a mapping of scopes"),
    (b"docker: {r.io: 3}", "$.docker['r.io']: a scope's settings are a mapping"),
    (b"docker: {r.io: {lookside: 'file:///x'}}", "$.docker['r.io'].lookside: unknown key"),
    (b"docker: {r.io: {lookaside: 'ftp://x/y'}}", "only file://, http:// and https://"),
    (b"docker: {r.io: {lookaside: 'file://host/y'}}", "a file:// URL has no host"),
    (b"docker: {r.io: {lookaside: 7}}", "$.docker['r.io'].lookaside: must be a URL string"),
    (b"default-docker: {use-sigstore-attachments: 'yes'}",
     "$.default-docker.use-sigstore-attachments: must be true or false"),
])
def test_registries_d_errors_name_the_path(document: bytes, phrase: str) -> None:
    with pytest.raises(SignatureConfigError) as caught:
        RegistriesD.parse(document, source="kbs:///default/sigstore-config/test")
    assert "kbs:///default/sigstore-config/test" in str(caught.value)
    assert phrase in str(caught.value)
