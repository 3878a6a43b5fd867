"""Image references: containers/image's normalisation, and clear errors for malformed ones."""

from __future__ import annotations

import pytest

from veritee.errors import ParseError
from veritee.image.reference import ImageReference, ReferenceParseError, parse_reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        (" busybox", "whitespace"),
        ("busy box", "whitespace"),
        ("https://ghcr.io/a/b", "scheme"),
        ("Busybox", "lowercase"),
        ("ghcr.io/Org/app", "lowercase"),
        ("busybox:", "tag"),
        ("busybox:-x", "tag"),
        ("busybox:" + "t" * 129, "tag"),
        ("busybox@sha256:abc", "64 lowercase hex"),
        ("busybox@sha256:" + "AB" * 32, "64 lowercase hex"),
        ("busybox@md5:" + "ab" * 16, "unsupported digest algorithm"),
        ("busybox@" + "ab" * 32, "<algorithm>:<hex>"),
        ("ab" * 32, "image ID"),
        ("a//b", "repository"),
        ("ghcr.io/", "repository"),
        ("ghcr.io/a/../b", "repository"),
        ("-bad.example/a", "registry host"),
        ("ghcr.io:port/a", "registry host"),
        (":latest", "empty"),
        ("ghcr.io/" + "a" * 250, "longer than 255"),
    ],
)
def test_malformed_references_are_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(ReferenceParseError, match=why) as caught:
        parse_reference(text)
    assert isinstance(caught.value, ParseError)
    assert str(caught.value).startswith("image reference: ")


@pytest.mark.parametrize(
    ("text", "whole"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
        ("myorg/app", "docker.io/myorg/app:latest"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
        ("[::1]:5000/a", "[::1]:5000/a:latest"),
        ("quay.io/a/b-c__d.e:V1.2_x", "quay.io/a/b-c__d.e:V1.2_x"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
        (f"ghcr.io/a/b:v1@{D}", f"ghcr.io/a/b:v1@{D}"),
        ("localhost:5000", "docker.io/library/localhost:5000"),
    ],
)
def test_references_normalise_like_containers_image(text: str, whole: str) -> None:
    ref = parse_reference(text)
    assert ref.whole() == whole == str(ref)
    assert parse_reference(whole) == ref


def test_parts_and_the_api_host() -> None:
    hub = parse_reference("busybox")
    assert (hub.registry, hub.repository, hub.tag, hub.digest) == (
        "docker.io", "library/busybox", "latest", None,
    )
    assert hub.api_host == "registry-1.docker.io"
    assert hub.manifest_ref == "latest"
    local = parse_reference(f"localhost:5000/a/b:t@{D}")
    assert local.api_host == "localhost:5000"
    assert local.hostname == "localhost"
    assert local.manifest_ref == D
    assert parse_reference("[::1]:5000/a").hostname == "::1"
    assert parse_reference("ghcr.io/a").hostname == "ghcr.io"


def test_with_digest_pins_and_checks() -> None:
    ref = parse_reference("ghcr.io/a/b:v1").with_digest(D)
    assert ref == ImageReference("ghcr.io", "a/b", "v1", D)
    with pytest.raises(ReferenceParseError):
        ref.with_digest("sha256:nothex")
