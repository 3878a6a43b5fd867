"""registries.conf as the pull applies it (containers-registries.conf(5): the longest
matching ``prefix``, whole path components; ``blocked``, ``insecure``, ``location``)."""

from __future__ import annotations

import pytest

from veritee.errors import ConfigError
from veritee.image.reference import parse_reference
from veritee.image.registries_conf import RegistryBlocked, parse_registries_conf, route

CONF = b"""
unqualified-search-registries = ["docker.io"]

[[registry]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
prefix = "example.com/team"
location = "mirror.example.net/team-images"

[[registry]]
prefix = "example.com/team/secret"
location = "example.com/team/secret"
blocked = true

[[registry]]
location = "quay.io"
"""


@pytest.mark.parametrize(
    ("image", "pulled", "plain_http", "entry"),
    [
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1", True, "127.0.0.1:5000"),
        ("example.com/team/app:2", "mirror.example.net/team-images/app:2", False,
         "example.com/team"),
        ("example.com/teamwork/app:2", "example.com/teamwork/app:2", False, None),
        ("quay.io/org/x@sha256:" + "a" * 64, "quay.io/org/x@sha256:" + "a" * 64, False,
         "quay.io"),
        ("busybox", "docker.io/library/busybox:latest", False, None),
    ],
)
def test_the_longest_matching_entry_routes_the_pull(
    image: str, pulled: str, plain_http: bool, entry: str | None
) -> None:
    config = parse_registries_conf(CONF, source="registries.conf")
    routed = route(config, parse_reference(image))
    assert routed.reference.whole() == pulled
    assert routed.plain_http is plain_http
    assert routed.entry == entry


def test_a_blocked_namespace_is_refused_naming_it() -> None:
    config = parse_registries_conf(CONF, source="registries.conf")
    with pytest.raises(RegistryBlocked, match=r"blocks example\.com/team/secret"):
        route(config, parse_reference("example.com/team/secret/db:1"))


def test_no_config_leaves_the_reference_on_https() -> None:
    routed = route(None, parse_reference("127.0.0.1:5000/app:1"))
    assert routed.reference.whole() == "127.0.0.1:5000/app:1"
    assert routed.plain_http is False


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"[[registry]\n", "not TOML"),
        (b'[[registry]]\ninsecure = "yes"\n', "registry.0.insecure"),
        (b"\xff", "not TOML"),
    ],
)
def test_a_malformed_document_is_a_config_error_naming_the_key(
    document: bytes, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_registries_conf(document, source="kbs:///default/registry-configuration/x")
