"""Resource URIs (guest-components' docs/RESOURCE_URI.md): refusals first, then the mapping
to the KBS path ``/kbs/v0/<plugin>/<segments>[?query]`` with the host ignored."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.errors import ParseError
from veritee.guest.resource_uri import MAX_URI_LENGTH, ResourceUri, parse_resource_uri


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("", "no '://'"),
        ("default/key/1", "no '://'"),
        ("kbs:/default/key/1", "no '://'"),
        ("http://kbs/default/key/1", "scheme must be 'kbs'"),
        ("kbsx:///a/b/c", "scheme must be 'kbs'"),
        ("kbs+:///a/b/c", "scheme must be 'kbs'"),
        ("kbs+a/b:///c", "scheme must be 'kbs'"),
        ("kbs+..:///a/b/c", "scheme must be 'kbs'"),
        ("kbs://", "no path"),
        ("kbs:///", "no path"),
        ("kbs://host", "no path"),
        ("kbs:///a/../b", "segment 2 is '..'"),
        ("kbs:///../a/b", "segment 1 is '..'"),
        ("kbs:///a/./b", "segment 2 is '.'"),
        ("kbs:///a/%2e%2E/b", "segment 2 is '..'"),
        ("kbs:///a/%2E/b", "segment 2 is '.'"),
        ("kbs:///a//b", "segment 2 is empty"),
        ("kbs:////a/b", "segment 1 is empty"),
        ("kbs:///a/b/", "ends with '/'"),
        ("kbs:///a%2Fb/c", "encodes a slash"),
        ("kbs:///a%2fb/c", "encodes a slash"),
        ("kbs:///a%5Cb/c", "encodes a slash or a backslash"),
        ("kbs:///a\\b/c", "characters a URI path does not allow"),
        ("kbs:///a/b c", "characters a URI path does not allow"),
        ("kbs:///a/%zz", "characters a URI path does not allow"),
        ("kbs:///a/%ff", "not UTF-8"),
        ("kbs:///a/%00b", "encodes a control character"),
        ("kbs:///a/%0A", "encodes a control character"),
        ("kbs:///a/b\x00", "control character"),
        ("kbs:///a/b\n", "control character"),
        ("kbs:///a\x7f/b", "control character"),
        ("kbs:///a/b#frag", "no fragment"),
        ("kbs:///a/b?x=<y>", "query has characters"),
        ("kbs://user@host/a/b/c", "malformed host"),
        ("kbs://ho st/a/b/c", "malformed host"),
        ("kbs://host:99999999/a/b/c", "malformed host"),
        ("kbs:///" + "a" * MAX_URI_LENGTH, "longer than"),
    ],
)
def test_malformed_uris_are_refused(uri: str, reason: str) -> None:
    with pytest.raises(ParseError, match="resource uri") as refused:
        parse_resource_uri(uri)
    assert reason in str(refused.value)
    assert refused.value.what == "resource uri"


@pytest.mark.parametrize(
    ("uri", "plugin", "path", "kbs_path", "canonical"),
    [
        (
            "kbs:///default/key/1",
            "resource",
            "default/key/1",
            "/kbs/v0/resource/default/key/1",
            "kbs:///default/key/1",
        ),
        (  # the host and port are ignored: the KBS is the configured one
            "kbs://kbs.example:8080/default/key/1",
            "resource",
            "default/key/1",
            "/kbs/v0/resource/default/key/1",
            "kbs:///default/key/1",
        ),
        (
            "kbs://[::1]:8080/one/2/trois",
            "resource",
            "one/2/trois",
            "/kbs/v0/resource/one/2/trois",
            "kbs:///one/2/trois",
        ),
        (  # another plugin, more than three segments, a query kept as written
            "kbs+pkcs11:///a/b/c/d?label=x&id=%20y",
            "pkcs11",
            "a/b/c/d",
            "/kbs/v0/pkcs11/a/b/c/d?label=x&id=%20y",
            "kbs+pkcs11:///a/b/c/d?label=x&id=%20y",
        ),
        (  # one segment is enough; the scheme is case-insensitive
            "KBS+Nebula-CA:///credential",
            "nebula-ca",
            "credential",
            "/kbs/v0/nebula-ca/credential",
            "kbs+nebula-ca:///credential",
        ),
        (  # an empty query is no query; dots inside a segment are fine
            "kbs:///default/image-policy/policy.v1.json?",
            "resource",
            "default/image-policy/policy.v1.json",
            "/kbs/v0/resource/default/image-policy/policy.v1.json",
            "kbs:///default/image-policy/policy.v1.json",
        ),
        (  # percent-encoding that is not a slash or a dot segment is kept as written
            "kbs:///default/key/a%20b",
            "resource",
            "default/key/a%20b",
            "/kbs/v0/resource/default/key/a%20b",
            "kbs:///default/key/a%20b",
        ),
    ],
)
def test_mapping_to_the_kbs_path(
    uri: str, plugin: str, path: str, kbs_path: str, canonical: str
) -> None:
    parsed = parse_resource_uri(uri)
    assert parsed.plugin == plugin
    assert parsed.resource_path == path
    assert parsed.kbs_path == kbs_path
    assert parsed.uri == canonical
    assert str(parsed) == canonical
    assert parse_resource_uri(parsed.uri) == parsed


def test_the_usual_form_is_three_segments() -> None:
    assert parse_resource_uri("kbs:///repo/type/tag") == ResourceUri(
        "resource", ("repo", "type", "tag"), None
    )


_TEXT = st.text(alphabet=st.sampled_from(list("abz09._-~%2eEfF/\\?#:@+ \x00\n")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(scheme=st.sampled_from(["kbs://", "kbs+p://", "kbs://h", "kbs:/", "x://"]), rest=_TEXT)
def test_whatever_parses_stays_below_the_plugin(scheme: str, rest: str) -> None:
    """Any input is either refused with a ParseError or maps to a path with no way up."""
    try:
        parsed = parse_resource_uri(scheme + rest)
    except ParseError:
        return
    segments = parsed.kbs_path.split("?", 1)[0].split("/")
    assert segments[:4] == ["", "kbs", "v0", parsed.plugin]
    for segment in segments[4:]:
        assert segment
        assert segment.lower() not in (".", "..", "%2e", "%2e%2e", ".%2e", "%2e.")
        assert "%2f" not in segment.lower()
        assert "\\" not in segment
    assert parse_resource_uri(parsed.uri) == parsed
