"""Encrypted layers against real skopeo, and the key through the KBS after attestation.

The installed skopeo (Debian's 1.9.3, built with ocicrypt 1.0.3) encrypts layers but has
no key-provider wrapper: ``provider:`` is refused as "Provided protocol not recognized".
So the layer format is checked both ways with its JWE recipient (an RSA test key made
here): layers skopeo encrypted decrypt with our code, and layers our writer encrypted
decrypt with skopeo.  The key-provider path runs the way ocicrypt runs a provider command
(``OCICRYPT_KEYPROVIDER_CONFIG``, one process per layer, the request JSON ocicrypt's Go
structs marshal): skopeo's own layer options are re-wrapped by ``veritee keyprovider``,
whose KEK goes to a real KBS on loopback through the admin API, and the layers are
decrypted with the KEK released to an emulated TDX after attestation.  (The whole image
through a key provider, encrypted by veritee's writer and pulled in the guest, is in
``test_pull.py``.)
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kbs_live import Kbs, live_kbs
from keyprovider_cmd import keyprovider_config
from oci_build import Dir, Image, build_layout, canonical, sha256

from veritee.errors import VeriteeError
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient
from veritee.guest.kbs_http import KbsRequestError
from veritee.guest.resource_uri import parse_resource_uri
from veritee.image.keyprovider import key_unwrapper
from veritee.image.ocicrypt import (
    KEYS_ANNOTATION_PREFIX,
    PUBOPTS_ANNOTATION,
    LayerAnnotationError,
    LayerIntegrityError,
    LayerKeyError,
    PrivateOptions,
    decrypt_layer,
    decrypted_media_type,
    encrypt_stream,
    is_encrypted,
    parse_private_options,
    provider_annotation,
)

JWE_KEYS = KEYS_ANNOTATION_PREFIX + "jwe"
PROVIDER_KEYS = provider_annotation()
BIG = hashlib.shake_256(b"veritee layer").digest(300_000)  # several chunks, incompressible
LAYERS = [
    {"etc/": Dir(), "etc/motd": b"hello from an encrypted layer\n"},
    {"data/": Dir(), "data/big.bin": BIG},
]
POLICY = """package policy

import rego.v1

default allow := false

allow if {
    data.plugin == "resource"
    data["resource-path"][0] != "denied"
}
"""


# --- helpers -------------------------------------------------------------------------------------


def skopeo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("skopeo")
    if tool is None:
        pytest.fail("skopeo is not installed (apt-get install skopeo)")
    return subprocess.run(
        [tool, "--insecure-policy", "copy", "--quiet", *args],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )


def manifest(layout: Path, tag: str = "v1") -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_bytes())
    entry = next(
        m for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    )
    document: dict[str, Any] = json.loads(blob(layout, entry["digest"]).read_bytes())
    return document


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Recipient:
    """An RSA test key pair as ocicrypt's JWE recipient (go-jose: RSA-OAEP, A256GCM)."""

    key: rsa.RSAPrivateKey
    public_pem: Path
    private_pem: Path

    def unwrap(self, packet: bytes) -> bytes:
        jwe = json.loads(packet)
        oaep = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
        cek = self.key.decrypt(unb64url(jwe["encrypted_key"]), oaep)
        sealed = unb64url(jwe["ciphertext"]) + unb64url(jwe["tag"])
        return AESGCM(cek).decrypt(unb64url(jwe["iv"]), sealed, jwe["protected"].encode())

    def wrap(self, optsdata: bytes) -> bytes:
        protected = b64url(b'{"alg":"RSA-OAEP","enc":"A256GCM"}')
        cek, iv = AESGCM.generate_key(256), hashlib.sha256(optsdata).digest()[:12]
        oaep = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
        sealed = AESGCM(cek).encrypt(iv, optsdata, protected.encode())
        return json.dumps({
            "protected": protected,
            "encrypted_key": b64url(self.key.public_key().encrypt(cek, oaep)),
            "iv": b64url(iv), "ciphertext": b64url(sealed[:-16]), "tag": b64url(sealed[-16:]),
        }).encode()


def write_image(layout: Path, source: Image, layers: list[tuple[bytes, dict[str, Any]]]) -> None:
    """An OCI layout with ``source``'s config and the given (blob, descriptor) layers."""
    for data in [source.config, *(data for data, _ in layers)]:
        path = blob(layout, sha256(data))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    document = json.loads(source.manifest)
    document["layers"] = [descriptor for _, descriptor in layers]
    raw = canonical(document)
    blob(layout, sha256(raw)).write_bytes(raw)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    entry = {"mediaType": document["mediaType"], "digest": sha256(raw), "size": len(raw),
             "annotations": {"org.opencontainers.image.ref.name": "v1"}}
    (layout / "index.json").write_bytes(canonical({"schemaVersion": 2, "manifests": [entry]}))


def ocicrypt_keywrap(config: Path, params: str, optsdata: bytes) -> bytes:
    """What ocicrypt does to wrap with a command provider: one run, its Go structs as JSON;
    returns the annotation (what becomes the layer's base64 annotation)."""
    request = {
        "op": "keywrap",
        "keywrapparams": {
            "ec": {"Parameters": {
                "attestation-agent": [base64.b64encode(params.encode()).decode()]},
                   "DecryptConfig": {"Parameters": {}}},
            "optsdata": base64.b64encode(optsdata).decode(),
        },
        "keyunwrapparams": {"dc": None, "annotation": None},
    }
    command = json.loads(config.read_text())["key-providers"]["attestation-agent"]["cmd"]
    done = subprocess.run(
        [command["path"], *command["args"]], input=json.dumps(request).encode(),
        capture_output=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return base64.b64decode(json.loads(done.stdout)["keywrapresults"]["annotation"])


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recipient(tmp_path_factory: pytest.TempPathFactory) -> Recipient:
    work = tmp_path_factory.mktemp("jwe")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public, private = work / "pub.pem", work / "priv.pem"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    private.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return Recipient(key, public, private)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return build_layout(tmp_path_factory.mktemp("plain") / "oci", LAYERS, tag="v1")


@pytest.fixture(scope="module")
def encrypted(plain: Image, recipient: Recipient, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain image as real skopeo encrypts it for the JWE recipient."""
    layout = tmp_path_factory.mktemp("enc") / "oci"
    done = skopeo("--encryption-key", f"jwe:{recipient.public_pem}",
                  f"oci:{plain.layout}:v1", f"oci:{layout}:v1")
    assert done.returncode == 0, done.stderr
    return layout


@pytest.fixture(scope="module")
def kbs(test_root: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    with live_kbs(test_root.directory, tmp_path_factory.mktemp("kbs")) as server:
        server.set_policy(POLICY)
        yield server


@pytest.fixture(scope="module")
def attested(kbs: Kbs, test_root: Any) -> Iterator[Callable[[str], bytes]]:
    """A resource getter over one KBS session attested with emulated TDX evidence."""
    provider = EmulatedEvidenceProvider(test_root.directory)
    with KbsClient(kbs.url, evidence_provider=provider, tee="tdx") as client:
        client.attest()
        yield lambda uri: client.get_resource(parse_resource_uri(uri).resource_path)


@pytest.fixture(scope="module")
def provider_config(kbs: Kbs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("ocicrypt")
    token = kbs.parts.attestation.admin.token_path
    return keyprovider_config(
        work / "ocicrypt.json", "--kbs-url", kbs.url, "--admin-token-file", str(token),
        "--kek-dir", str(work / "keks"),
    )


def layers_of(layout: Path) -> list[tuple[bytes, dict[str, Any]]]:
    return [(blob(layout, d["digest"]).read_bytes(), d) for d in manifest(layout)["layers"]]


def decrypt(data: bytes, descriptor: dict[str, Any], unwrap: Callable[[bytes], bytes],
            dest: Path, **kwargs: Any) -> bytes:
    result = decrypt_layer(io.BytesIO(data), media_type=descriptor["mediaType"],
                           annotations=descriptor["annotations"], unwrap=unwrap, dest=dest,
                           **kwargs)
    assert result.path == dest
    assert result.media_type == decrypted_media_type(descriptor["mediaType"])
    return dest.read_bytes()


# --- refusals ------------------------------------------------------------------------------------


def test_a_tampered_ciphertext_byte_fails_the_hmac_and_nothing_is_kept(
    encrypted: Path, recipient: Recipient, tmp_path: Path
) -> None:
    for data, descriptor in layers_of(encrypted):
        tampered = bytearray(data)
        tampered[len(tampered) // 2] ^= 0x01
        with pytest.raises(LayerIntegrityError, match="HMAC does not match"):
            decrypt(bytes(tampered), descriptor, recipient.unwrap, tmp_path / "layer",
                    key_annotation=JWE_KEYS)
        assert list(tmp_path.iterdir()) == []  # neither the layer nor a temporary file


def test_options_that_do_not_fit_the_ciphertext_fail_the_digest(
    encrypted: Path, recipient: Recipient, tmp_path: Path
) -> None:
    data, descriptor = layers_of(encrypted)[0]
    real = parse_private_options(recipient.unwrap(
        base64.b64decode(descriptor["annotations"][JWE_KEYS])))
    wrong_digest = PrivateOptions(real.symkey, real.nonce, sha256(b"something else"))
    wrong_nonce = PrivateOptions(real.symkey, bytes(16), real.digest)  # the HMAC skips the nonce
    for options in (wrong_digest, wrong_nonce):
        with pytest.raises(LayerIntegrityError, match="digest"):
            decrypt(data, descriptor, lambda _packet, o=options: o.to_json(),
                    tmp_path / "layer", key_annotation=JWE_KEYS)
        assert list(tmp_path.iterdir()) == []
    assert "symkey" not in repr(real)
    assert real.symkey.hex() not in repr(real)


def test_a_refused_key_means_no_layer_and_the_blob_is_not_read(
    encrypted: Path, tmp_path: Path
) -> None:
    data, descriptor = layers_of(encrypted)[0]
    source = io.BytesIO(data)

    def refuse(_packet: bytes) -> bytes:
        raise VeriteeError("PolicyDeny: the resource policy said no")

    with pytest.raises(LayerKeyError, match=r"no key for the layer.*PolicyDeny"):
        decrypt_layer(source, media_type=descriptor["mediaType"],
                      annotations=descriptor["annotations"], unwrap=refuse,
                      dest=tmp_path / "layer", key_annotation=JWE_KEYS)
    assert source.tell() == 0
    assert list(tmp_path.iterdir()) == []


def test_a_layer_without_our_provider_annotation_names_what_it_has(
    encrypted: Path, tmp_path: Path
) -> None:
    data, descriptor = layers_of(encrypted)[0]
    calls: list[bytes] = []
    with pytest.raises(LayerKeyError, match=r"no .*provider\.attestation-agent.*jwe only"):
        decrypt(data, descriptor, lambda p: calls.append(p) or b"", tmp_path / "layer")
    assert calls == []


def _pubopts(**changes: Any) -> str:
    doc = {"cipher": "AES_256_CTR_HMAC_SHA256", "hmac": base64.b64encode(bytes(32)).decode(),
           "cipheroptions": {}, **changes}
    return base64.b64encode(json.dumps(doc).encode()).decode()


@pytest.mark.parametrize(
    ("media_type", "annotations", "message"),
    [
        ("application/vnd.oci.image.layer.v1.tar+gzip", {}, "not an encrypted layer type"),
        ("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", {}, "no .*pubopts"),
        ("application/vnd.oci.image.layer.v1.tar+encrypted", {PUBOPTS_ANNOTATION: "%%"},
         "not standard base64"),
        ("application/vnd.oci.image.layer.v1.tar+encrypted",
         {PUBOPTS_ANNOTATION: base64.b64encode(b"[1]").decode()}, "not a JSON object"),
        ("application/vnd.oci.image.layer.v1.tar+encrypted",
         {PUBOPTS_ANNOTATION: _pubopts(cipher="AES_128_GCM")}, "cipher 'AES_128_GCM'"),
        ("application/vnd.oci.image.layer.v1.tar+encrypted",
         {PUBOPTS_ANNOTATION: _pubopts(hmac="AAAA")}, "hmac has 3 bytes"),
        ("application/vnd.oci.image.layer.v1.tar+encrypted",
         {PUBOPTS_ANNOTATION: _pubopts(cipheroptions={"nonce": "AAAA"})}, "nonce among the public"),
        ("application/vnd.oci.image.layer.v1.tar+encrypted",
         {PUBOPTS_ANNOTATION: _pubopts(), PROVIDER_KEYS: "@@"}, r"\[1\] .*not standard base64"),
    ],
)
def test_malformed_annotations_are_refused_before_the_key_is_asked_for(
    media_type: str, annotations: dict[str, str], message: str, tmp_path: Path
) -> None:
    calls: list[bytes] = []
    with pytest.raises((LayerAnnotationError, LayerKeyError), match=message):
        decrypt_layer(io.BytesIO(b"x"), media_type=media_type, annotations=annotations,
                      unwrap=lambda p: calls.append(p) or b"", dest=tmp_path / "l")
    assert calls == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"symkey":"AAAA","digest":"sha256:00","cipheroptions":{"nonce":"AAAA"}}', "symkey"),
        (json.dumps({"symkey": base64.b64encode(bytes(32)).decode(), "digest": sha256(b""),
                     "cipheroptions": {}}).encode(), "nonce must be 16 bytes"),
        (json.dumps({"symkey": base64.b64encode(bytes(32)).decode(), "digest": "md5:00",
                     "cipheroptions": {"nonce": base64.b64encode(bytes(16)).decode()}}).encode(),
         "digest 'md5:00'"),
    ],
)
def test_unusable_private_options_are_a_refused_key(options: bytes, message: str) -> None:
    annotations = {PUBOPTS_ANNOTATION: _pubopts(), PROVIDER_KEYS: "e30="}
    with pytest.raises(LayerKeyError, match=message):
        decrypt_layer(io.BytesIO(b""),
                      media_type="application/vnd.oci.image.layer.v1.tar+encrypted",
                      annotations=annotations, unwrap=lambda _p: options,
                      dest=Path("/nonexistent/l"))


def test_the_kbs_policy_denies_the_kek_no_plaintext_and_nothing_written(
    encrypted: Path, recipient: Recipient, provider_config: Path,
    attested: Callable[[str], bytes], tmp_path: Path,
) -> None:
    data, descriptor = layers_of(encrypted)[0]
    options = recipient.unwrap(base64.b64decode(descriptor["annotations"][JWE_KEYS]))
    packet = ocicrypt_keywrap(provider_config, "kbs:///denied/image-key/1", options)
    annotations = {PUBOPTS_ANNOTATION: descriptor["annotations"][PUBOPTS_ANNOTATION],
                   PROVIDER_KEYS: base64.b64encode(packet).decode()}
    source = io.BytesIO(data)
    with pytest.raises(LayerKeyError, match=r"was not released.*PolicyDeny") as refused:
        decrypt_layer(source, media_type=descriptor["mediaType"], annotations=annotations,
                      unwrap=key_unwrapper(attested), dest=tmp_path / "layer")
    cause = refused.value.__cause__
    assert cause is not None
    assert isinstance(cause.__cause__, KbsRequestError)
    assert source.tell() == 0
    assert list(tmp_path.iterdir()) == []


# --- the format, both ways, with real skopeo -----------------------------------------------------


def test_layers_skopeo_encrypted_decrypt_to_the_original_blobs(
    plain: Image, encrypted: Path, recipient: Recipient, tmp_path: Path
) -> None:
    layers = layers_of(encrypted)
    assert [d["mediaType"] for _, d in layers] == [
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"] * 2
    assert all(is_encrypted(d["mediaType"]) for _, d in layers)
    for index, (data, descriptor) in enumerate(layers):
        assert set(descriptor["annotations"]) == {JWE_KEYS, PUBOPTS_ANNOTATION}
        dest = tmp_path / f"layer{index}"
        out = decrypt(data, descriptor, recipient.unwrap, dest, key_annotation=JWE_KEYS)
        assert out == plain.layers[index]
        assert sha256(out) == plain.layer_digests[index]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer0", "layer1"]


def test_skopeo_compresses_an_uncompressed_layer_before_it_encrypts(
    recipient: Recipient, tmp_path: Path
) -> None:
    image = build_layout(tmp_path / "plain", LAYERS[:1], tag="v1", compress=False)
    done = skopeo("--encryption-key", f"jwe:{recipient.public_pem}",
                  f"oci:{image.layout}:v1", f"oci:{tmp_path / 'enc'}:v1")
    assert done.returncode == 0, done.stderr
    [(data, descriptor)] = layers_of(tmp_path / "enc")
    assert descriptor["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    out = decrypt(data, descriptor, recipient.unwrap, tmp_path / "layer", key_annotation=JWE_KEYS)
    assert gzip.decompress(out) == image.layers[0]


@pytest.mark.parametrize("compress", [True, False], ids=["tar+gzip", "tar"])
def test_layers_our_writer_encrypted_are_decrypted_by_skopeo(
    compress: bool, recipient: Recipient, tmp_path: Path
) -> None:
    plain = build_layout(tmp_path / "plain", LAYERS, tag="v1", compress=compress)
    media_type = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
    layers = []
    for data, digest in zip(plain.layers, plain.layer_digests, strict=True):
        out = io.BytesIO()
        private, public = encrypt_stream(io.BytesIO(data), out, digest=digest)
        sealed = out.getvalue()
        assert len(sealed) == len(data)
        assert sealed != data
        annotations = {JWE_KEYS: base64.b64encode(recipient.wrap(private.to_json())).decode(),
                       PUBOPTS_ANNOTATION: public.annotation()}
        layers.append((sealed, {"mediaType": f"{media_type}+encrypted", "digest": sha256(sealed),
                                "size": len(sealed), "annotations": annotations}))
        # and our reader agrees with our writer
        dest = tmp_path / f"ours-{digest[7:19]}"
        opened = decrypt(sealed, layers[-1][1], recipient.unwrap, dest, key_annotation=JWE_KEYS)
        assert opened == data
    write_image(tmp_path / "ours", plain, layers)
    done = skopeo("--decryption-key", str(recipient.private_pem),
                  f"oci:{tmp_path / 'ours'}:v1", f"oci:{tmp_path / 'out'}:v1")
    assert done.returncode == 0, done.stderr
    out = layers_of(tmp_path / "out")
    assert [d["mediaType"] for _, d in out] == [media_type] * 2
    assert [data for data, _ in out] == plain.layers
    assert all("annotations" not in d for _, d in out)


# --- the key provider end to end -----------------------------------------------------------------


def test_skopeo_layers_rewrapped_by_the_key_provider_decrypt_after_attestation(
    plain: Image, encrypted: Path, recipient: Recipient, provider_config: Path,
    attested: Callable[[str], bytes], kbs: Kbs, tmp_path: Path,
) -> None:
    rewrapped = []
    for data, descriptor in layers_of(encrypted):
        options = recipient.unwrap(base64.b64decode(descriptor["annotations"][JWE_KEYS]))
        packet = ocicrypt_keywrap(provider_config, "kbs:///default/image-key/e2e", options)
        assert json.loads(packet)["kid"] == "kbs:///default/image-key/e2e"
        annotations = {PUBOPTS_ANNOTATION: descriptor["annotations"][PUBOPTS_ANNOTATION],
                       PROVIDER_KEYS: base64.b64encode(packet).decode()}
        rewrapped.append((data, {**descriptor, "annotations": annotations}))
    kek = attested("kbs:///default/image-key/e2e")  # one KEK for both layers, in the KBS
    assert len(kek) == 32
    for index, (data, descriptor) in enumerate(rewrapped):
        out = decrypt(data, descriptor, key_unwrapper(attested), tmp_path / f"layer{index}")
        assert out == plain.layers[index]
