"""The image security policy: containers-policy.json parsing, scope lookup, signedIdentity
matching and evaluation with real gpg signatures and real ECDSA keys (signatures handed over
by a dict-backed SignatureSource; the registry-backed sources are in test_signatures.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from signing import (
    GpgKey,
    SigstoreKey,
    cosign_payload,
    cosign_sign,
    gpg_key,
    sigstore_key,
    simple_payload,
    simple_signature,
)

from veritee.errors import ConfigError, VeriteeError
from veritee.image.policy import (
    ImagePolicy,
    InsecureAcceptAnything,
    Reject,
    SignedBy,
    SigstoreSignature,
    SigstoreSigned,
    evaluate,
    file_key_loader,
)
from veritee.image.policy_identity import (
    ExactReference,
    ExactRepository,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
    parse_claims,
    scope_candidates,
)
from veritee.image.reference import parse_reference
from veritee.image.registry_errors import DigestMismatch
from veritee.image.signature_errors import (
    GpgUnavailable,
    KeyLoadError,
    PolicyDocumentError,
    PolicyRejected,
    SignatureInvalid,
    SignatureRejected,
)

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
OTHER_MANIFEST = MANIFEST + b" "
OTHER_DIGEST = "sha256:" + hashlib.sha256(OTHER_MANIFEST).hexdigest()
INDEX = b'{"schemaVersion":2,"manifests":[]}'
INDEX_DIGEST = "sha256:" + hashlib.sha256(INDEX).hexdigest()
D1 = "sha256:" + "1" * 64
ACCEPT = [{"type": "insecureAcceptAnything"}]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgKey]:
    with gpg_key(tmp_path_factory.mktemp("gpg-a")) as key:
        yield key


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgKey]:
    with gpg_key(tmp_path_factory.mktemp("gpg-b"), name="someone else") as key:
        yield key


@pytest.fixture(scope="module")
def cosign(tmp_path_factory: pytest.TempPathFactory) -> SigstoreKey:
    return sigstore_key(tmp_path_factory.mktemp("cosign"))


@dataclass
class Signatures:
    """A SignatureSource over dicts: digest -> signatures; records what was asked."""

    simple: dict[str, list[bytes]] = field(default_factory=dict)
    sigstore: dict[str, list[SigstoreSignature]] = field(default_factory=dict)
    asked: list[tuple[str, str, str]] = field(default_factory=list)

    def simple_signatures(self, ref: Any, manifest_digest: str) -> list[bytes]:
        self.asked.append(("simple", str(ref), manifest_digest))
        return self.simple.get(manifest_digest, [])

    def sigstore_signatures(self, ref: Any, manifest_digest: str) -> list[SigstoreSignature]:
        self.asked.append(("sigstore", str(ref), manifest_digest))
        return self.sigstore.get(manifest_digest, [])


def policy(default: Any = None, scopes: dict[str, Any] | None = None,
           source: str = "test-policy.json") -> ImagePolicy:
    document: dict[str, Any] = {"default": default if default is not None else ACCEPT}
    if scopes is not None:
        document["transports"] = {"docker": scopes}
    return ImagePolicy.parse(json.dumps(document).encode(), source=source)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def signed_by(key: GpgKey, identity: dict[str, str] | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"type": "signedBy", "keyType": "GPGKeys", "keyData": b64(key.public)}
    if identity is not None:
        req["signedIdentity"] = identity
    return req


def run(pol: ImagePolicy, image: str, source: Signatures, *, manifest: bytes = MANIFEST,
        digest: str = DIGEST, loader: Any = file_key_loader, **extra: Any) -> Any:
    return evaluate(pol, parse_reference(image), manifest_bytes=manifest, manifest_digest=digest,
                    signatures=source, key_loader=loader, **extra)


# ---------------------------------------------------------------- document parsing

GOOD_KEY = b64(b"not parsed until evaluation")


@pytest.mark.parametrize(("document", "path", "phrase"), [
    (b"{", "$", "not JSON"),
    (b"{\"default\": \"\xc3\x28\"}", "$", "not UTF-8"),
    (b"[]", "$", "the policy must be a JSON object"),
    (b"{}", "$.default", "default requirement list is missing"),
    (b'{"default": []}', "$.default", "must not be empty"),
    (b'{"default": {}}', "$.default", "must be a JSON array"),
    (b'{"default": [{"type": "reject"}], "extra": 1}', "$.extra", "unknown key for the policy"),
    (b'{"default": [{"type": "reject"}], "default": []}', "$", "'default' appears twice"),
    (b'{"default": [{"type": "acceptEverything"}]}', "$.default[0].type",
     "unknown requirement type 'acceptEverything'"),
    (b'{"default": [{}]}', "$.default[0].type", "type is required"),
    (b'{"default": ["reject"]}', "$.default[0]", "a requirement must be a JSON object"),
    (b'{"default": [{"type": "reject", "keyPath": "/k"}]}', "$.default[0].keyPath",
     "unknown key for reject"),
    (b'{"default": [{"type": "signedBaseLayer"}]}', "$.default[0].type", "not supported"),
    (b'{"default": [{"type": "reject"}], "transports": []}', "$.transports",
     "transports must be a JSON object"),
    (b'{"default": [{"type": "reject"}], "transports": {"docker": []}}', "$.transports.docker",
     "a transport's scopes must be a JSON object"),
    (b'{"default": [{"type": "reject"}], "transports": {"docker": {"r.io/a": []}}}',
     '$.transports.docker["r.io/a"]', "must not be empty"),
])
def test_malformed_documents_name_the_source_and_path(document: bytes, path: str,
                                                      phrase: str) -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        ImagePolicy.parse(document, source="kbs:///default/security-policy/test")
    message = str(caught.value)
    assert "kbs:///default/security-policy/test" in message
    assert f"{path}:" in message
    assert phrase in message
    assert caught.value.path == path
    assert isinstance(caught.value, ConfigError)


@pytest.mark.parametrize(("requirement", "path", "phrase"), [
    ({"type": "signedBy", "keyData": GOOD_KEY}, ".keyType", "keyType is required"),
    ({"type": "signedBy", "keyType": "X509Certificates", "keyData": GOOD_KEY}, ".keyType",
     "'X509Certificates' is not supported"),
    ({"type": "signedBy", "keyType": "PGP", "keyData": GOOD_KEY}, ".keyType",
     "'PGP' is not a known keyType"),
    ({"type": "signedBy", "keyType": "GPGKeys"}, "", "none present"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k", "keyData": GOOD_KEY}, "",
     "more than one present"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyDatas": [GOOD_KEY]}, ".keyDatas",
     "unknown key for signedBy"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyData": "not base64!"}, ".keyData",
     "not valid base64"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyPath": ""}, ".keyPath",
     "keyPath must be a non-empty string"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyPaths": []}, ".keyPaths",
     "keyPaths must be a non-empty array"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/a", 3]}, ".keyPaths",
     "non-empty strings"),
    ({"type": "sigstoreSigned", "fulcio": {"caPath": "/ca"}}, ".fulcio",
     "fulcio is not supported"),
    ({"type": "sigstoreSigned", "keyData": GOOD_KEY, "rekorPublicKeyPath": "/r"},
     ".rekorPublicKeyPath", "rekorPublicKeyPath is not supported"),
    ({"type": "sigstoreSigned", "pki": {}}, ".pki", "pki is not supported"),
    ({"type": "sigstoreSigned", "keyType": "GPGKeys", "keyData": GOOD_KEY}, ".keyType",
     "unknown key for sigstoreSigned"),
    ({"type": "sigstoreSigned", "keyDatas": ["%%"]}, ".keyDatas[0]", "not valid base64"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k", "signedIdentity": "exact"},
     ".signedIdentity", "signedIdentity must be an object"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k",
      "signedIdentity": {"type": "matchAnything"}}, ".signedIdentity.type",
     "unknown signedIdentity type 'matchAnything'"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k",
      "signedIdentity": {"type": "matchExact", "dockerReference": "a:b"}},
     ".signedIdentity.dockerReference", "unknown key for signedIdentity type 'matchExact'"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k",
      "signedIdentity": {"type": "exactReference"}}, ".signedIdentity.dockerReference",
     "dockerReference is required"),
    ({"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k",
      "signedIdentity": {"type": "exactReference", "dockerReference": "r.io/a"}},
     ".signedIdentity.dockerReference", "with a tag or digest"),
    ({"type": "sigstoreSigned", "keyPath": "/k",
      "signedIdentity": {"type": "exactRepository", "dockerRepository": "Bad/Name"}},
     ".signedIdentity.dockerRepository", "is not a docker repository"),
    ({"type": "sigstoreSigned", "keyPath": "/k",
      "signedIdentity": {"type": "remapIdentity", "prefix": "r.io/ns",
                         "signedPrefix": "not a prefix"}},
     ".signedIdentity.signedPrefix", "is not a host[:port] or host[:port]/namespace prefix"),
])
def test_malformed_requirements_say_what_is_wrong(requirement: dict[str, Any], path: str,
                                                  phrase: str) -> None:
    document = {"default": [{"type": "reject"}],
                "transports": {"docker": {"r.io/a": [{"type": "reject"}, requirement]}}}
    with pytest.raises(PolicyDocumentError) as caught:
        ImagePolicy.parse(json.dumps(document).encode(), source="p.json")
    assert caught.value.path == '$.transports.docker["r.io/a"][1]' + path
    assert phrase in str(caught.value)


def test_requirements_parse_with_their_defaults() -> None:
    pol = ImagePolicy.parse(json.dumps({
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {"r.io/a": [
                {"type": "insecureAcceptAnything"},
                {"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/a", "kbs:///d/k/b"]},
                {"type": "sigstoreSigned", "keyData": b64(b"PEM"),
                 "signedIdentity": {"type": "remapIdentity", "prefix": "r.io",
                                    "signedPrefix": "mirror.r.io:5000/ns"}},
            ]},
            "atomic": {"anything": [{"type": "reject"}]},
        },
    }).encode(), source="p.json")
    assert pol.default == (Reject(),)
    accept, gpg, cosign_req = pol.transports["docker"]["r.io/a"]
    assert accept == InsecureAcceptAnything()
    assert isinstance(gpg, SignedBy)
    assert gpg.keys.paths == ("/a", "kbs:///d/k/b")
    assert gpg.signed_identity == MatchRepoDigestOrExact()  # containers/image's default
    assert isinstance(cosign_req, SigstoreSigned)
    assert cosign_req.keys.data == (b"PEM",)
    assert cosign_req.signed_identity == RemapIdentity("r.io", "mirror.r.io:5000/ns")
    assert "PEM" not in str(cosign_req)  # key material never in descriptions


# ---------------------------------------------------------------- scope lookup

ALL_SCOPES = [
    "reg.example.com:5000/ns/sub/app:v1",
    f"reg.example.com:5000/ns/sub/app@{D1}",
    "reg.example.com:5000/ns/sub/app",
    "reg.example.com:5000/ns/sub",
    "reg.example.com:5000/ns",
    "reg.example.com:5000",
    "*.example.com",
    "*.com",
    "",
]


@pytest.mark.parametrize(("image", "present", "chosen"), [
    ("reg.example.com:5000/ns/sub/app:v1", ALL_SCOPES, ALL_SCOPES[0]),
    (f"reg.example.com:5000/ns/sub/app@{D1}", ALL_SCOPES, ALL_SCOPES[1]),
    ("reg.example.com:5000/ns/sub/app:v2", ALL_SCOPES, "reg.example.com:5000/ns/sub/app"),
    ("reg.example.com:5000/ns/sub/other:v1", ALL_SCOPES, "reg.example.com:5000/ns/sub"),
    ("reg.example.com:5000/ns/x:v1", ALL_SCOPES, "reg.example.com:5000/ns"),
    ("reg.example.com:5000/top:v1", ALL_SCOPES, "reg.example.com:5000"),
    ("other.example.com/ns/app:v1", ALL_SCOPES, "*.example.com"),
    ("reg.example.com/ns/sub/app:v1", ALL_SCOPES, "*.example.com"),  # no port: other registry
    ("quay.com/a:v1", ALL_SCOPES, "*.com"),
    ("quay.io/a:v1", ALL_SCOPES, ""),
    ("quay.io/a:v1", ALL_SCOPES[:-1], None),
    ("busybox", ["docker.io/library/busybox", "docker.io"], "docker.io/library/busybox"),
    ("library/busybox:1", ["docker.io/library", "busybox", "library"], "docker.io/library"),
    (f"r.io/a:v1@{D1}", ["r.io/a:v1", f"r.io/a@{D1}", "r.io/a"], f"r.io/a@{D1}"),
    (f"r.io/a:v1@{D1}", [f"r.io/a:v1@{D1}", f"r.io/a@{D1}"], f"r.io/a:v1@{D1}"),
    (f"r.io/a:v1@{D1}", ["r.io/a:v1", "r.io/a"], "r.io/a:v1"),
    ("localhost:5000/a:v1", ["localhost", "*.localhost"], None),
])
def test_scope_lookup_takes_the_most_specific(image: str, present: list[str],
                                              chosen: str | None) -> None:
    scopes = {scope: ACCEPT for scope in present}
    label, _ = policy([{"type": "reject"}], scopes).requirements_for(parse_reference(image))
    assert label == ("default" if chosen is None else f"transports.docker[{json.dumps(chosen)}]")


def test_scope_candidates_order() -> None:
    assert scope_candidates(parse_reference("a.b.example.com:443/x/y:t")) == [
        "a.b.example.com:443/x/y:t", "a.b.example.com:443/x/y", "a.b.example.com:443/x",
        "a.b.example.com:443", "*.b.example.com", "*.example.com", "*.com"]


def test_only_the_docker_transport_applies() -> None:
    document = {"default": [{"type": "reject"}],
                "transports": {"atomic": {"": ACCEPT}, "docker-daemon": {"": ACCEPT}}}
    pol = ImagePolicy.parse(json.dumps(document).encode(), source="p")
    with pytest.raises(PolicyRejected):
        run(pol, "r.io/a:v1", Signatures())


# ---------------------------------------------------------------- signedIdentity

TAGGED = parse_reference("r.io/ns/app:v1")
DIGESTED = parse_reference(f"r.io/ns/app@{D1}")
BOTH = parse_reference(f"r.io/ns/app:v1@{D1}")


@pytest.mark.parametrize(("match", "image", "signed", "ok"), [
    (MatchExact(), TAGGED, "r.io/ns/app:v1", True),
    (MatchExact(), TAGGED, "r.io/ns/app:v2", False),
    (MatchExact(), TAGGED, "r.io/ns/app", False),  # name only never matches exactly
    (MatchExact(), TAGGED, "r.io/ns/other:v1", False),
    (MatchExact(), DIGESTED, f"r.io/ns/app@{D1}", True),
    (MatchExact(), DIGESTED, "r.io/ns/app:v1", False),
    (MatchExact(), parse_reference("busybox:1"), "docker.io/library/busybox:1", True),
    (MatchExact(), parse_reference("docker.io/library/busybox:1"), "busybox:1", True),
    (MatchExact(), TAGGED, "not a reference!", False),
    (MatchRepoDigestOrExact(), TAGGED, "r.io/ns/app:v1", True),
    (MatchRepoDigestOrExact(), TAGGED, "r.io/ns/app:v2", False),
    (MatchRepoDigestOrExact(), DIGESTED, "r.io/ns/app:anything", True),
    (MatchRepoDigestOrExact(), DIGESTED, "r.io/ns/other:anything", False),
    (MatchRepoDigestOrExact(), DIGESTED, "r.io/ns/app", False),
    (MatchRepoDigestOrExact(), BOTH, f"r.io/ns/app:v1@{D1}", True),
    (MatchRepoDigestOrExact(), BOTH, "r.io/ns/app:v1", False),
    (MatchRepository(), TAGGED, "r.io/ns/app:v9", True),
    (MatchRepository(), TAGGED, "r.io/ns/app", True),  # what cosign signs
    (MatchRepository(), TAGGED, "r.io/ns/app2:v1", False),
    (MatchRepository(), TAGGED, "other.io/ns/app:v1", False),
    (ExactReference("r.io/ns/signed:prod"), TAGGED, "r.io/ns/signed:prod", True),
    (ExactReference("r.io/ns/signed:prod"), TAGGED, "r.io/ns/app:v1", False),
    (ExactReference("r.io/ns/signed:prod"), TAGGED, "r.io/ns/signed:dev", False),
    (ExactRepository("r.io/ns/signed"), TAGGED, "r.io/ns/signed:whatever", True),
    (ExactRepository("r.io/ns/signed"), TAGGED, "r.io/ns/signed", True),
    (ExactRepository("r.io/ns/signed"), TAGGED, "r.io/ns/app:v1", False),
    (RemapIdentity("mirror.io/team", "r.io/ns"), parse_reference("mirror.io/team/app:v1"),
     "r.io/ns/app:v1", True),
    (RemapIdentity("mirror.io/team", "r.io/ns"), parse_reference("mirror.io/team/app:v1"),
     "mirror.io/team/app:v1", False),
    (RemapIdentity("mirror.io/team", "r.io/ns"), parse_reference("mirror.io/teamx/app:v1"),
     "r.iox/app:v1", False),  # the prefix must end at a '/' boundary
    (RemapIdentity("mirror.io/team", "r.io/ns"), parse_reference("mirror.io/teamx/app:v1"),
     "mirror.io/teamx/app:v1", True),  # not under the prefix: compared unchanged
    (RemapIdentity("mirror.io", "r.io"), parse_reference(f"mirror.io/a/b@{D1}"),
     "r.io/a/b:any", True),
    (RemapIdentity("mirror.io", "r.io"), parse_reference("mirror.io/a/b:v1"), "r.io/a/b:v2",
     False),
])
def test_signed_identity_matchers(match: Any, image: Any, signed: str, ok: bool) -> None:
    assert match.matches(image, signed) is ok


# ---------------------------------------------------------------- payload claims

def _payload(**changes: Any) -> bytes:
    document: dict[str, Any] = json.loads(simple_payload(DIGEST, "r.io/a:v1"))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = document
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(("payload", "phrase"), [
    (b"not json", "not JSON"),
    (b"[]", "the payload is not a JSON object"),
    (_payload(critical__extra="x"), "critical: unknown key 'extra'"),
    (_payload(critical__identity=None), "critical: missing key 'identity'"),
    (_payload(critical__type="cosign container image signature"), "critical.type is"),
    (_payload(critical__image__size=3), "critical.image: unknown key 'size'"),
    (_payload(critical__image={}), "critical.image: missing key 'docker-manifest-digest'"),
    (_payload(critical__image={"docker-manifest-digest": "md5:abc"}), "not a sha256"),
    (_payload(optional__timestamp=1.5), "optional.timestamp is not an integer"),
    (_payload(optional=[]), "optional is not a JSON object"),
    (_payload(optional=None), "the payload: missing key 'optional'"),
    (_payload(other=1), "the payload: unknown key 'other'"),
    (b'{"critical": {}, "critical": {}, "optional": {}}', "repeats the key 'critical'"),
])
def test_payloads_are_parsed_strictly(payload: bytes, phrase: str) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        parse_claims(payload, "atomic container signature")
    assert caught.value.kind == "malformed"
    assert phrase in str(caught.value)


def test_payload_claims_and_unknown_optional_keys() -> None:
    claims = parse_claims(_payload(optional__extension={"x": 1}), "atomic container signature")
    assert (claims.manifest_digest, claims.docker_reference) == (DIGEST, "r.io/a:v1")
    cosign_style = cosign_payload(DIGEST, "r.io/a").replace(
        b'"optional":{"creator":"veritee tests","timestamp":1700000000}', b'"optional":null')
    assert b'"optional":null' in cosign_style
    assert parse_claims(cosign_style, "cosign container image signature",
                        optional_may_be_null=True).docker_reference == "r.io/a"


# ---------------------------------------------------------------- evaluation

def test_insecure_accept_anything_fetches_nothing() -> None:
    source = Signatures()
    decision = run(policy(ACCEPT), "r.io/a:v1", source)
    assert decision.scope == "default"
    assert decision.requirements == ("insecureAcceptAnything",)
    assert source.asked == []
    assert "r.io/a:v1" in decision.log_line()


def test_reject_names_image_and_scope() -> None:
    source = Signatures()
    with pytest.raises(PolicyRejected) as caught:
        run(policy(ACCEPT, {"r.io/blocked": [{"type": "reject"}]}), "r.io/blocked:v1", source)
    assert "r.io/blocked:v1" in str(caught.value)
    assert 'transports.docker["r.io/blocked"]' in str(caught.value)
    assert "reject" in str(caught.value)
    assert source.asked == []


def test_all_requirements_must_pass(signer: GpgKey) -> None:
    source = Signatures()
    with pytest.raises(PolicyRejected):
        run(policy([{"type": "insecureAcceptAnything"}, {"type": "reject"}]), "r.io/a:v1", source)
    with pytest.raises(SignatureRejected) as caught:
        run(policy([{"type": "insecureAcceptAnything"}, signed_by(signer)]), "r.io/a:v1", source)
    assert f"none found: no simple signature for {DIGEST}" in str(caught.value)
    assert source.asked == [("simple", "r.io/a:v1", DIGEST)]


def test_signed_by_accepts_a_good_signature_and_names_the_key(signer: GpgKey) -> None:
    source = Signatures({DIGEST: [simple_signature(signer, DIGEST, "r.io/a:v1")]})
    decision = run(policy([{"type": "reject"}], {"r.io/a": [signed_by(signer)]}), "r.io/a:v1",
                   source)
    assert decision.scope == 'transports.docker["r.io/a"]'
    assert decision.satisfied == (f"signedBy: signature 1 for {DIGEST} by key "
                                  f"{signer.fingerprint}",)


def test_a_signature_by_a_subkey_counts_for_its_primary_key(tmp_path: Path) -> None:
    with gpg_key(tmp_path / "gpg", signing_subkey=True) as key:
        blob = simple_signature(key, DIGEST, "r.io/a:v1")
        listing = subprocess.run(["gpg", "--homedir", str(key.home), "--list-packets"],
                                 input=blob, capture_output=True, check=True).stdout.decode()
        assert ":signature packet: algo 22, keyid " in listing
        assert f"keyid {key.fingerprint[-16:]}" not in listing  # made by the subkey
        decision = run(policy([signed_by(key)]), "r.io/a:v1", Signatures({DIGEST: [blob]}))
    assert decision.satisfied[0].endswith(f"by key {key.fingerprint}")


def test_every_failing_signature_is_explained(signer: GpgKey, stranger: GpgKey) -> None:
    source = Signatures({DIGEST: [
        simple_signature(stranger, DIGEST, "r.io/a:v1"),
        simple_signature(signer, OTHER_DIGEST, "r.io/a:v1"),
        simple_signature(signer, DIGEST, "r.io/a:v2"),
        b"\x89garbage",
        simple_signature(signer, payload=_payload(critical__extra="x")),
    ]})
    with pytest.raises(SignatureRejected) as caught:
        run(policy([signed_by(signer)]), "r.io/a:v1", source)
    reasons = caught.value.reasons
    assert len(reasons) == 5
    assert reasons[0].startswith(f"signature 1 for {DIGEST}: unknown key")
    assert "digest mismatch" in reasons[1]
    assert OTHER_DIGEST in reasons[1]
    assert "identity mismatch" in reasons[2]
    assert "'r.io/a:v2'" in reasons[2]
    assert "bad signature" in reasons[3]
    assert "malformed: critical: unknown key 'extra'" in reasons[4]
    message = str(caught.value)
    assert "r.io/a:v1" in message
    assert "signedBy(GPGKeys, keyData (inline)" in message


def test_a_later_good_signature_is_enough(signer: GpgKey, stranger: GpgKey) -> None:
    source = Signatures({DIGEST: [simple_signature(stranger, DIGEST, "r.io/a:v1"),
                                  simple_signature(signer, DIGEST, "r.io/a:v1")]})
    decision = run(policy([signed_by(signer)]), "r.io/a:v1", source)
    assert decision.satisfied[0].startswith(f"signedBy: signature 2 for {DIGEST}")


def test_signed_identity_kinds_end_to_end(signer: GpgKey) -> None:
    source = Signatures({DIGEST: [simple_signature(signer, DIGEST, "r.io/ns/signed:prod")]})
    cases = [
        ({"type": "matchExact"}, "r.io/ns/signed:prod", True),
        ({"type": "matchExact"}, "r.io/ns/signed:dev", False),
        ({"type": "matchRepoDigestOrExact"}, f"r.io/ns/signed@{DIGEST}", True),
        ({"type": "matchRepoDigestOrExact"}, f"r.io/ns/other@{DIGEST}", False),
        ({"type": "matchRepository"}, "r.io/ns/signed:dev", True),
        ({"type": "matchRepository"}, "r.io/ns/other:prod", False),
        ({"type": "exactReference", "dockerReference": "r.io/ns/signed:prod"}, "q.io/x:y", True),
        ({"type": "exactReference", "dockerReference": "r.io/ns/signed:dev"}, "q.io/x:y", False),
        ({"type": "exactRepository", "dockerRepository": "r.io/ns/signed"}, "q.io/x:y", True),
        ({"type": "exactRepository", "dockerRepository": "r.io/ns/other"}, "q.io/x:y", False),
        ({"type": "remapIdentity", "prefix": "mirror.io", "signedPrefix": "r.io"},
         "mirror.io/ns/signed:prod", True),
        ({"type": "remapIdentity", "prefix": "mirror.io", "signedPrefix": "q.io"},
         "mirror.io/ns/signed:prod", False),
    ]
    for identity, image, ok in cases:
        pol = policy([signed_by(signer, identity)])
        if ok:
            assert run(pol, image, source).satisfied, (identity, image)
        else:
            with pytest.raises(SignatureRejected, match="identity mismatch"):
                run(pol, image, source)


def test_manifest_bytes_are_checked_not_the_stated_digest(signer: GpgKey) -> None:
    source = Signatures({DIGEST: [simple_signature(signer, DIGEST, "r.io/a:v1")]})
    with pytest.raises(DigestMismatch):
        run(policy([signed_by(signer)]), "r.io/a:v1", source, manifest=OTHER_MANIFEST)
    with pytest.raises(DigestMismatch, match="not the one the digest names"):
        run(policy(ACCEPT), f"r.io/a@{OTHER_DIGEST}", source)


def test_a_signature_over_the_manifest_list(signer: GpgKey) -> None:
    source = Signatures({INDEX_DIGEST: [simple_signature(signer, INDEX_DIGEST, "r.io/a:v1")]})
    pol = policy([signed_by(signer)])
    decision = run(pol, "r.io/a:v1", source, manifest_list_bytes=INDEX,
                   manifest_list_digest=INDEX_DIGEST)
    assert INDEX_DIGEST in decision.satisfied[0]
    assert [a[2] for a in source.asked] == [DIGEST, INDEX_DIGEST]
    with pytest.raises(SignatureRejected, match="none found"):
        run(pol, "r.io/a:v1", source)


def test_kbs_key_path_goes_through_the_key_loader(signer: GpgKey, cosign: SigstoreKey) -> None:
    keys = {"kbs:///default/image-keys/gpg": signer.public,
            "kbs:///default/image-keys/cosign": cosign.public_pem}
    asked: list[str] = []

    def loader(uri: str) -> bytes:
        asked.append(uri)
        return keys[uri]

    payload = cosign_payload(DIGEST, "r.io/a")
    source = Signatures({DIGEST: [simple_signature(signer, DIGEST, "r.io/a:v1")]},
                        {DIGEST: [SigstoreSignature(payload, cosign_sign(cosign, payload))]})
    pol = policy([
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "kbs:///default/image-keys/gpg"},
        {"type": "sigstoreSigned", "keyPath": "kbs:///default/image-keys/cosign",
         "signedIdentity": {"type": "matchRepository"}},
    ])
    decision = run(pol, "r.io/a:v1", source, loader=loader)
    assert asked == ["kbs:///default/image-keys/gpg", "kbs:///default/image-keys/cosign"]
    assert len(decision.satisfied) == 2
    assert decision.satisfied[1] == f"sigstoreSigned: signature 1 for {DIGEST} by public key 1 of 1"


def test_a_key_loader_failure_is_a_clear_error(signer: GpgKey) -> None:
    def loader(uri: str) -> bytes:
        raise RuntimeError(f"KBS refused {uri}: attestation failed")

    source = Signatures()
    pol = policy([{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "kbs:///d/keys/k"}])
    with pytest.raises(KeyLoadError) as caught:
        run(pol, "r.io/a:v1", source, loader=loader)
    message = str(caught.value)
    assert "kbs:///d/keys/k" in message
    assert "RuntimeError: KBS refused" in message
    assert "signedBy(GPGKeys, keyPath=kbs:///d/keys/k" in message
    assert source.asked == []  # keys first: no signature fetched for a requirement without them


def test_file_key_loader(tmp_path: Path, signer: GpgKey) -> None:
    (tmp_path / "key.gpg").write_bytes(signer.public)
    assert file_key_loader(str(tmp_path / "key.gpg")) == signer.public
    assert file_key_loader(f"file://{tmp_path / 'key.gpg'}") == signer.public
    with pytest.raises(KeyLoadError, match=r"cannot read key file .*missing\.gpg"):
        file_key_loader(str(tmp_path / "missing.gpg"))
    with pytest.raises(KeyLoadError, match="KBS resource"):
        file_key_loader("kbs:///default/keys/k")
    source = Signatures({DIGEST: [simple_signature(signer, DIGEST, "r.io/a:v1")]})
    pol = policy([{"type": "signedBy", "keyType": "GPGKeys",
                   "keyPaths": [str(tmp_path / "key.gpg")]}])
    assert run(pol, "r.io/a:v1", source).satisfied


def test_keys_that_are_not_keys(signer: GpgKey, cosign: SigstoreKey) -> None:
    source = Signatures({DIGEST: [simple_signature(signer, DIGEST, "r.io/a:v1")]})
    garbage = {"type": "signedBy", "keyType": "GPGKeys", "keyData": b64(b"no key here")}
    with pytest.raises(KeyLoadError, match="no OpenPGP public key could be imported"):
        run(policy([garbage]), "r.io/a:v1", source)
    for data, phrase in [(b"no pem", "no PEM public key"),
                         (b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
                          "'PRIVATE KEY' block"),
                         (b"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n",
                          "does not load")]:
        with pytest.raises(KeyLoadError, match=phrase) as caught:
            run(policy([{"type": "sigstoreSigned", "keyData": b64(data)}]), "r.io/a:v1", source)
        assert "AA==" not in str(caught.value)


def test_sigstore_signatures(cosign: SigstoreKey, tmp_path: Path) -> None:
    other = sigstore_key(tmp_path / "other")
    good = cosign_payload(DIGEST, "r.io/a:v1")
    source = Signatures(sigstore={DIGEST: [
        SigstoreSignature(good, cosign_sign(other, good)),
        SigstoreSignature(good, ""),
        SigstoreSignature(good, "***"),
        SigstoreSignature(good, cosign_sign(cosign, good), "application/vnd.in-toto+json"),
        SigstoreSignature(cosign_payload(OTHER_DIGEST, "r.io/a:v1"),
                          cosign_sign(cosign, cosign_payload(OTHER_DIGEST, "r.io/a:v1"))),
    ]})
    req = {"type": "sigstoreSigned", "keyData": b64(cosign.public_pem)}
    with pytest.raises(SignatureRejected) as caught:
        run(policy([req]), "r.io/a:v1", source)
    reasons = caught.value.reasons
    assert "does not verify with any of the 1 accepted public key(s)" in reasons[0]
    assert "no dev.cosignproject.cosign/signature annotation" in reasons[1]
    assert "not base64" in reasons[2]
    assert "not a cosign signature" in reasons[3]
    assert "digest mismatch" in reasons[4]
    source.sigstore[DIGEST].append(SigstoreSignature(good, cosign_sign(cosign, good)))
    third = sigstore_key(tmp_path / "third")
    two_keys = {"type": "sigstoreSigned",
                "keyDatas": [b64(third.public_pem), b64(cosign.public_pem)]}
    decision = run(policy([two_keys]), "r.io/a:v1", source)
    assert decision.satisfied == (f"sigstoreSigned: signature 6 for {DIGEST} by public key 2 "
                                  "of 2",)
    assert [a[0] for a in source.asked] == ["sigstore", "sigstore"]


def test_gpg_missing_is_named(signer: GpgKey, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    source = Signatures({DIGEST: [b"x"]})
    with pytest.raises(GpgUnavailable, match="apt-get install gnupg") as caught:
        run(policy([signed_by(signer)]), "r.io/a:v1", source)
    assert isinstance(caught.value, VeriteeError)
