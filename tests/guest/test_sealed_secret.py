"""Sealed secrets (guest-components' docs/SEALED_SECRET.md): refusals first, then upstream's
payloads sealed with upstream's test keys and unsealed by the CDH over a getter on a dict.

Upstream's test-key.json and test-key-2.json are private P-256 JWKs; vault-1 (provider
aliyun), vault-2 (kbs, ``kbs:///one/2/trois``) and envelope-1 (aliyun) are its payloads
(tests/data/SOURCES.md).  Signatures we make are also checked independently with
``cryptography`` (raw r||s per RFC 7518 §3.4), not only by joserfc.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from datadir import GUEST_COMPONENTS
from joserfc import jws
from joserfc.jwk import ECKey, OctKey, RSAKey
from resource_store import Store

from veritee.errors import VeriteeError
from veritee.guest.cdh import (
    ConfidentialDataHub,
)
from veritee.guest.cdh_config import CdhConfig
from veritee.guest.cdh_errors import (
    ResourceNotFound,
    SealedSecretError,
    SealedSecretFormatError,
    SealedSecretKeyError,
    SealedSecretSignatureError,
    SealedSecretVersionError,
    UnsupportedSecretProvider,
    UnsupportedSecretType,
)
from veritee.guest.sealed_secret import (
    EnvelopeSecret,
    VaultSecret,
    load_verifying_jwk,
    open_sealed_secret,
    parse_secret_payload,
    seal_secret,
)

TESTS = GUEST_COMPONENTS / "confidential-data-hub" / "hub" / "src" / "secret" / "tests"
KEY = json.loads((TESTS / "test-key.json").read_text())
KEY_2 = json.loads((TESTS / "test-key-2.json").read_text())
VAULT_1 = json.loads((TESTS / "vault-1.json").read_text())
VAULT_2 = json.loads((TESTS / "vault-2.json").read_text())
ENVELOPE_1 = json.loads((TESTS / "envelope-1.json").read_text())
PUBLIC = {k: v for k, v in KEY.items() if k != "d"}
PUBLIC_2 = {k: v for k, v in KEY_2.items() if k != "d"}
KEY_URI = "kbs:///default/sealed-secret-key/1"
TROIS = b"the value of one/2/trois"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws_with(header: dict[str, Any], payload: dict[str, Any], key: Any, alg: str) -> str:
    """A JWS that joserfc signs for real with ``alg`` (refused by the CDH all the same)."""
    body = json.dumps(payload).encode()
    return "sealed." + jws.serialize_compact(header, body, key, algorithms=[alg])


def unsigned(payload: dict[str, Any] | bytes, header: dict[str, Any] | None = None) -> str:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    head = b64url(json.dumps(header or {"alg": "ES256", "kid": KEY_URI}).encode())
    return f"sealed.{head}.{b64url(body)}.{b64url(bytes(64))}"


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "sealed-secret"
    (directory / "team").mkdir(parents=True)
    (directory / "test-key.pub.json").write_text(json.dumps(PUBLIC))
    (directory / "team" / "key-2.json").write_text(json.dumps(PUBLIC_2))
    (tmp_path / "outside.json").write_text(json.dumps(PUBLIC))
    (directory / "escape.json").symlink_to(tmp_path / "outside.json")
    (directory / "p384.json").write_text(json.dumps(ECKey.generate_key("P-384").as_dict()))
    (directory / "garbage.json").write_text("not a key")
    return directory


@pytest.fixture
def store() -> Store:
    return Store({"kbs:///one/2/trois": TROIS, KEY_URI: json.dumps(PUBLIC).encode()})


Hub = Callable[..., ConfidentialDataHub]


@pytest.fixture
def hub(store: Store, key_dir: Path) -> Hub:
    def make(*, skip: bool = False) -> ConfidentialDataHub:
        top = "skip_sealed_secret_verification = true\n" if skip else ""
        config = CdhConfig.from_text(top + '[kbc]\nname = "cc_kbc"\nurl = "http://kbs"\n', "t")
        return ConfidentialDataHub(config, store, sealed_key_dir=key_dir)

    return make


def refused(hub: ConfidentialDataHub, secret: str | bytes, kind: type[SealedSecretError]) -> str:
    with pytest.raises(kind) as error:
        hub.unseal_secret(secret)
    message = str(error.value)
    for private in (KEY["d"], KEY_2["d"]):
        assert private not in message
    assert TROIS.decode() not in message
    return message


# --- refusals ------------------------------------------------------------------------------------


def test_bad_signature(hub: Hub, store: Store) -> None:
    sealed = seal_secret(VAULT_2, KEY, KEY_URI)
    head, payload, signature = sealed.removeprefix("sealed.").split(".")
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=="))
    flipped[10] ^= 1
    bad = f"sealed.{head}.{payload}.{b64url(bytes(flipped))}"
    message = refused(hub(), bad, SealedSecretSignatureError)
    assert message == f"the signature does not verify with the key {KEY_URI!r}"
    assert store.asked == [KEY_URI]  # the key was fetched; the secret's value never was


def test_signed_by_another_key(hub: Hub, store: Store) -> None:
    refused(hub(), seal_secret(VAULT_2, KEY_2, KEY_URI), SealedSecretSignatureError)
    refused(hub(), seal_secret(VAULT_2, KEY_2, "test-key.pub.json"), SealedSecretSignatureError)
    refused(hub(), seal_secret(VAULT_2, KEY, "team/key-2.json"), SealedSecretSignatureError)
    assert "kbs:///one/2/trois" not in store.asked


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES384", "none", "", None])
def test_only_es256_is_accepted(hub: Hub, store: Store, alg: str | None) -> None:
    header: dict[str, Any] = {"kid": KEY_URI}
    if alg is not None:
        header["alg"] = alg
    if alg == "HS256":
        sealed = jws_with(header, VAULT_2, OctKey.generate_key(256), alg)
    elif alg == "RS256":
        sealed = jws_with(header, VAULT_2, RSAKey.generate_key(2048), alg)
    elif alg == "ES384":
        sealed = jws_with(header, VAULT_2, ECKey.generate_key("P-384"), alg)
    else:
        sealed = unsigned(VAULT_2, header)[: -len(b64url(bytes(64)))]  # "alg":"none": no sig
    message = refused(hub(), sealed, SealedSecretSignatureError)
    assert "ES256" in message
    assert store.asked == []  # refused before any key is looked up


def test_tampered_payload(hub: Hub, store: Store) -> None:
    sealed = seal_secret(VAULT_2, KEY, KEY_URI)
    head, _, signature = sealed.removeprefix("sealed.").split(".")
    other = dict(VAULT_2, name="kbs:///default/key/other")
    tampered = f"sealed.{head}.{b64url(json.dumps(other).encode())}.{signature}"
    refused(hub(), tampered, SealedSecretSignatureError)
    assert store.asked == [KEY_URI]


def test_tampered_header(hub: Hub) -> None:
    sealed = seal_secret(VAULT_2, KEY, KEY_URI)
    _, payload, signature = sealed.removeprefix("sealed.").split(".")
    head = b64url(json.dumps({"alg": "ES256", "kid": "test-key.pub.json"}).encode())
    refused(hub(), f"sealed.{head}.{payload}.{signature}", SealedSecretSignatureError)


@pytest.mark.parametrize(
    "kid",
    [
        "../outside.json",
        "../../../../etc/passwd",
        "/etc/passwd",
        "team/../test-key.pub.json",
        "./test-key.pub.json",
        "team//key-2.json",
        "..",
        "team\\..\\x",
        "a\nb",
    ],
)
def test_kid_with_traversal(hub: Hub, kid: str) -> None:
    if "\n" in kid:  # seal_secret refuses control characters itself
        with pytest.raises(SealedSecretKeyError):
            seal_secret(VAULT_2, KEY, kid)
        return
    message = refused(hub(), seal_secret(VAULT_2, KEY, kid), SealedSecretKeyError)
    assert "neither a resource URI nor a file name" in message


def test_a_symlink_out_of_the_key_directory_is_refused(hub: Hub) -> None:
    message = refused(hub(), seal_secret(VAULT_2, KEY, "escape.json"), SealedSecretKeyError)
    assert "leads out of" in message


def test_unknown_kid(hub: Hub, store: Store, key_dir: Path) -> None:
    message = refused(hub(), seal_secret(VAULT_2, KEY, "missing.json"), SealedSecretKeyError)
    assert message == f"unknown key 'missing.json': no such file in {key_dir}"
    missing = "kbs:///default/sealed-secret-key/missing"
    message = refused(hub(), seal_secret(VAULT_2, KEY, missing), SealedSecretKeyError)
    assert message.startswith(f"cannot fetch the key {missing!r}: ")
    assert store.asked == [missing]
    message = refused(hub(), seal_secret(VAULT_2, KEY, "kbs:///a/../b"), SealedSecretKeyError)
    assert "kid is not a valid resource URI" in message
    no_kid = jws_with({"alg": "ES256"}, VAULT_2, ECKey.import_key(KEY), "ES256")
    assert refused(hub(), no_kid, SealedSecretKeyError) == "the header names no key ('kid')"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("p384.json", "is not an EC P-256 JWK"),
        ("garbage.json", "is not JWK JSON"),
    ],
)
def test_a_kid_that_is_not_a_p256_public_key(hub: Hub, name: str, reason: str) -> None:
    message = refused(hub(), seal_secret(VAULT_2, KEY, name), SealedSecretKeyError)
    assert reason in message


def test_wrong_payload_version(hub: Hub) -> None:
    signer = ECKey.import_key(KEY)
    for version in ("0.2.0", "0.1", 1, None):
        payload = dict(VAULT_2, version=version)
        sealed = jws_with({"alg": "ES256", "kid": KEY_URI}, payload, signer, "ES256")
        message = refused(hub(), sealed, SealedSecretVersionError)
        assert f"payload version {version!r} is not supported (expected '0.1.0')" == message
    with pytest.raises(SealedSecretVersionError):
        seal_secret(dict(VAULT_2, version="0.2.0"), KEY, KEY_URI)
    with pytest.raises(SealedSecretVersionError):
        seal_secret(VaultSecret(version="9", name="kbs:///a/b/c"), KEY, KEY_URI)


def test_unsupported_type_and_providers(hub: Hub, store: Store) -> None:
    signer = ECKey.import_key(KEY)
    header = {"alg": "ES256", "kid": KEY_URI}
    for kind in ("plain", 3):
        sealed = jws_with(header, dict(VAULT_2, type=kind), signer, "ES256")
        message = refused(hub(), sealed, UnsupportedSecretType)
        assert message == f"secret type {kind!r} is not supported (vault or envelope)"
    message = refused(hub(), seal_secret(VAULT_1, KEY, KEY_URI), UnsupportedSecretProvider)
    assert message == "vault provider 'aliyun' is not available here (only 'kbs')"
    message = refused(hub(), seal_secret(ENVELOPE_1, KEY, KEY_URI), UnsupportedSecretProvider)
    assert "envelope secrets need the 'aliyun' KMS" in message
    for provider in ("aws", "ehsm"):
        sealed = seal_secret(dict(ENVELOPE_1, provider=provider), KEY, KEY_URI)
        assert f"{provider!r} KMS" in refused(hub(), sealed, UnsupportedSecretProvider)
    assert "kbs:///one/2/trois" not in store.asked


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("", "starts with 'sealed.'"),
        ("eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "starts with 'sealed.'"),
        ("SEALED.a.b.c", "starts with 'sealed.'"),
        ("sealed.", "expected sealed.<header>.<payload>.<signature>"),
        ("sealed.a.b", "expected sealed.<header>.<payload>.<signature>"),
        ("sealed.a.b.c.d", "expected sealed.<header>.<payload>.<signature>"),
        ("sealed.!!!.e30.AAAA", "not a compact JWS"),
        ("sealed.bm90IGpzb24.e30.AAAA", "not a compact JWS"),  # header "not json"
        ("sealed.fakejwsheader.e30.fakesignature", "not a compact JWS"),
        ("sealed.é.b.c", "ASCII"),
        (b"sealed.\xff.b.c", "ASCII"),
        ("sealed." + "A" * (1 << 20), "longer than"),
    ],
)
def test_bad_format(hub: Hub, secret: str | bytes, reason: str) -> None:
    assert reason in refused(hub(), secret, SealedSecretFormatError)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "the payload is not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"version": "0.1.0"}).encode(), "the payload has no 'type'"),
        (json.dumps({"version": "0.1.0", "type": "vault"}).encode(), "vault payload: name"),
        (json.dumps(dict(VAULT_2, name=3)).encode(), "vault payload: name"),
        (json.dumps(dict(ENVELOPE_1, wrap_type="A128CBC")).encode(), "envelope payload: wrap"),
        (json.dumps(dict(VAULT_2, annotations=[])).encode(), "vault payload: annotations"),
    ],
)
def test_bad_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(SealedSecretFormatError, match=reason):
        parse_secret_payload(payload)


def test_a_vault_name_that_is_not_a_resource_uri(hub: Hub, store: Store) -> None:
    sealed = seal_secret(dict(VAULT_2, name="/etc/passwd"), KEY, KEY_URI)
    message = refused(hub(), sealed, SealedSecretFormatError)
    assert message.startswith("the vault name is not a resource URI")
    assert store.asked == [KEY_URI]


def test_unsigned_secrets_need_skip(hub: Hub, store: Store) -> None:
    """Before v0.18 secrets were 'sealed.fakejwsheader.<payload>.fakesignature'."""
    old = f"sealed.fakejwsheader.{b64url(json.dumps(VAULT_2).encode())}.fakesignature"
    refused(hub(), old, SealedSecretFormatError)
    refused(hub(), unsigned(VAULT_2), SealedSecretSignatureError)
    assert hub(skip=True).unseal_secret(old) == TROIS
    assert hub(skip=True).unseal_secret(unsigned(VAULT_2)) == TROIS
    assert hub(skip=True).unseal_secret(seal_secret(VAULT_2, KEY_2, KEY_URI)) == TROIS
    # the key is fetched for the checked zero signature only, never when skipping
    assert store.asked == [KEY_URI] + ["kbs:///one/2/trois"] * 3
    # skipping the signature skips nothing else
    refused(hub(skip=True), "sealed.a.b", SealedSecretFormatError)
    refused(hub(skip=True), "sealed.a.!!.c", SealedSecretFormatError)
    refused(hub(skip=True), unsigned(dict(VAULT_2, version="0.2.0")), SealedSecretVersionError)
    refused(hub(skip=True), unsigned(VAULT_1), UnsupportedSecretProvider)


def test_seal_refuses_public_and_foreign_keys() -> None:
    with pytest.raises(SealedSecretKeyError, match="is a public key"):
        seal_secret(VAULT_2, PUBLIC, KEY_URI)
    with pytest.raises(SealedSecretKeyError, match="not an EC P-256 JWK"):
        seal_secret(VAULT_2, ECKey.generate_key("P-384").as_dict(), KEY_URI)
    with pytest.raises(SealedSecretKeyError, match="private EC P-256 key"):
        seal_secret(VAULT_2, ECKey.import_key(PUBLIC), KEY_URI)
    with pytest.raises(SealedSecretKeyError, match="not a valid EC P-256 JWK"):
        seal_secret(VAULT_2, dict(KEY, x=b64url(bytes(32))), KEY_URI)
    with pytest.raises(SealedSecretKeyError, match="non-empty"):
        seal_secret(VAULT_2, KEY, "")


def test_every_refusal_is_a_veritee_error() -> None:
    for kind in (
        SealedSecretFormatError,
        SealedSecretVersionError,
        SealedSecretSignatureError,
        SealedSecretKeyError,
        UnsupportedSecretType,
        UnsupportedSecretProvider,
    ):
        assert issubclass(kind, SealedSecretError)
        assert issubclass(kind, VeriteeError)


# --- upstream's payloads, sealed and unsealed ---------------------------------------------------


def es256_verifies(sealed: str, jwk: dict[str, str]) -> bool:
    """RFC 7515/7518 ES256 checked with cryptography alone (not joserfc)."""
    head, payload, signature = sealed.removeprefix("sealed.").split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
    x, y = (int.from_bytes(base64.urlsafe_b64decode(jwk[c] + "=")) for c in "xy")
    public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    try:
        public.verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize(
    ("signer", "public", "kid"), [(KEY, PUBLIC, KEY_URI), (KEY_2, PUBLIC_2, "k2")]
)
def test_the_sealed_form(signer: dict[str, str], public: dict[str, str], kid: str) -> None:
    sealed = seal_secret(VAULT_2, signer, kid)
    assert sealed.startswith("sealed.")
    head, payload, signature = sealed.removeprefix("sealed.").split(".")
    for part in (head, payload, signature):
        assert "=" not in part
    assert json.loads(base64.urlsafe_b64decode(head + "==")) == {"alg": "ES256", "kid": kid}
    assert json.loads(base64.urlsafe_b64decode(payload + "==")) == VAULT_2
    assert es256_verifies(sealed, public)
    assert not es256_verifies(sealed, PUBLIC_2 if public is PUBLIC else PUBLIC)


@pytest.mark.parametrize("kid", [KEY_URI, "test-key.pub.json"])
def test_upstream_vault_secret_through_the_hub(hub: Hub, store: Store, kid: str) -> None:
    sealed = seal_secret(VAULT_2, KEY, kid)
    assert hub().unseal_secret(sealed) == TROIS
    assert hub().unseal_secret(sealed.encode() + b"\n") == TROIS  # as read from a file
    fetched = [KEY_URI] if kid == KEY_URI else []
    assert store.asked == [*fetched, "kbs:///one/2/trois"] * 2


def test_second_upstream_key_in_a_subdirectory(hub: Hub) -> None:
    assert hub().unseal_secret(seal_secret(VAULT_2, KEY_2, "team/key-2.json")) == TROIS


def test_open_gives_the_payload_back() -> None:
    key = load_verifying_jwk(PUBLIC)
    for doc, kind in ((VAULT_1, VaultSecret), (VAULT_2, VaultSecret), (ENVELOPE_1, EnvelopeSecret)):
        opened = open_sealed_secret(seal_secret(doc, KEY, "k"), lambda _kid: key)
        assert isinstance(opened, kind)
        assert json.loads(opened.model_dump_json()) == doc
    private_half_dropped = load_verifying_jwk(KEY)
    assert not private_half_dropped.is_private


def test_a_value_the_getter_cannot_find(hub: Hub) -> None:
    sealed = seal_secret(dict(VAULT_2, name="kbs:///one/2/quatre"), KEY, KEY_URI)
    with pytest.raises(ResourceNotFound, match="one/2/quatre"):
        hub().unseal_secret(sealed)
