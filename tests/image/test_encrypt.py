"""``veritee image encrypt``: layers encrypted as ocicrypt writes them, keys wrapped by the
``veritee keyprovider`` command run the way ocicrypt runs it, KEKs kept in a real KBS.

What is checked comes from the artefacts: skopeo (a tool we did not write) reads and
copies the encrypted layout, the config's diff_ids are untouched, and every layer opens
to its original bytes only with the KEK the KBS releases after an emulated TDX attests.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kbs_live import Kbs, live_kbs
from keyprovider_cmd import keyprovider_config
from typer.testing import CliRunner

from veritee.cli import app
from veritee.guest.emulated import EmulatedEvidenceProvider
from veritee.guest.kbs_client import KbsClient
from veritee.guest.resource_uri import parse_resource_uri
from veritee.image.encrypt import ImageEncryptError, command_key_wrapper, encrypt_image
from veritee.image.keyprovider import key_unwrapper
from veritee.image.layout import LayoutError, OciLayout, build_image
from veritee.image.ocicrypt import PUBOPTS_ANNOTATION, decrypt_layer, provider_annotation

FILES = {"etc/motd": b"encrypted hello\n", "app/run.sh": b"#!/bin/sh\necho hi\n"}
POLICY = """package policy

import rego.v1

default allow := false

allow if {
    data.plugin == "resource"
    data["resource-path"][1] != "denied"
}
"""


@pytest.fixture(scope="module")
def kbs(test_root: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kbs]:
    with live_kbs(test_root.directory, tmp_path_factory.mktemp("kbs")) as server:
        server.set_policy(POLICY)
        yield server


@pytest.fixture(scope="module")
def provider(kbs: Kbs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("ocicrypt")
    token = kbs.parts.attestation.admin.token_path
    return keyprovider_config(work / "ocicrypt.json", "--kbs-url", kbs.url,
                              "--admin-token-file", str(token), "--kek-dir", str(work / "keks"))


@pytest.fixture(scope="module")
def attested(kbs: Kbs, test_root: Any) -> Iterator[Callable[[str], bytes]]:
    evidence = EmulatedEvidenceProvider(test_root.directory)
    with KbsClient(kbs.url, evidence_provider=evidence, tee="tdx") as client:
        client.attest()
        yield lambda uri: client.get_resource(parse_resource_uri(uri).resource_path)


def manifest(layout: Path, tag: str) -> dict[str, Any]:
    return OciLayout(layout).manifest(tag).document


def encrypt(plain: Path, out: Path, provider: Path, kid: str) -> Any:
    return CliRunner().invoke(app, [
        "image", "encrypt", f"oci:{plain}:v1", f"oci:{out}:enc",
        "--encryption-key", f"provider:attestation-agent:{kid}",
        "--keyprovider-config", str(provider),
    ])


def test_layers_are_encrypted_and_open_only_with_the_released_kek(
    provider: Path, attested: Callable[[str], bytes], tmp_path: Path
) -> None:
    plain = OciLayout.create(tmp_path / "plain")
    build_image(plain, FILES, tag="v1")
    done = encrypt(plain.root, tmp_path / "enc", provider, "kbs:///default/image-key/one")
    assert done.exit_code == 0, done.output
    before, after = manifest(plain.root, "v1"), manifest(tmp_path / "enc", "enc")
    assert after["config"] == before["config"]  # diff_ids untouched
    [layer] = after["layers"]
    assert layer["mediaType"] == before["layers"][0]["mediaType"] + "+encrypted"
    assert set(layer["annotations"]) == {provider_annotation(), PUBOPTS_ANNOTATION}
    packet = json.loads(base64.b64decode(layer["annotations"][provider_annotation()]))
    assert packet["kid"] == "kbs:///default/image-key/one"
    assert packet["wrap_type"] == "A256GCM"
    sealed = OciLayout(tmp_path / "enc").read_blob(layer["digest"])
    original = OciLayout(plain.root).read_blob(before["layers"][0]["digest"])
    assert original not in sealed
    opened = decrypt_layer(io.BytesIO(sealed), media_type=layer["mediaType"],
                           annotations=layer["annotations"], unwrap=key_unwrapper(attested),
                           dest=tmp_path / "layer")
    assert opened.path.read_bytes() == original
    assert opened.digest == before["layers"][0]["digest"]


def test_skopeo_reads_and_copies_the_encrypted_layout_unchanged(
    provider: Path, tmp_path: Path
) -> None:
    plain = OciLayout.create(tmp_path / "plain")
    build_image(plain, FILES, tag="v1")
    assert encrypt(plain.root, tmp_path / "enc", provider,
                   "kbs:///default/image-key/two").exit_code == 0
    skopeo = shutil.which("skopeo")
    assert skopeo is not None, "apt-get install skopeo"
    done = subprocess.run([skopeo, "--insecure-policy", "copy", "--quiet", "--preserve-digests",
                           f"oci:{tmp_path / 'enc'}:enc", f"oci:{tmp_path / 'copy'}:enc"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert manifest(tmp_path / "copy", "enc") == manifest(tmp_path / "enc", "enc")


def test_a_key_id_the_kbs_policy_denies_is_still_wrapped_but_never_released(
    provider: Path, attested: Callable[[str], bytes], tmp_path: Path
) -> None:
    plain = OciLayout.create(tmp_path / "plain")
    build_image(plain, FILES, tag="v1")
    assert encrypt(plain.root, tmp_path / "enc", provider,
                   "kbs:///default/denied/k").exit_code == 0
    [layer] = manifest(tmp_path / "enc", "enc")["layers"]
    with pytest.raises(Exception, match=r"was not released.*PolicyDeny"):
        decrypt_layer(io.BytesIO(b""), media_type=layer["mediaType"],
                      annotations=layer["annotations"], unwrap=key_unwrapper(attested),
                      dest=tmp_path / "layer")
    assert not (tmp_path / "layer").exists()


def test_a_provider_that_refuses_stops_the_encryption_with_its_reason(tmp_path: Path) -> None:
    plain = OciLayout.create(tmp_path / "plain")
    build_image(plain, FILES, tag="v1")
    config = keyprovider_config(tmp_path / "ocicrypt.json")  # no KBS to keep the KEK
    wrap = command_key_wrapper("attestation-agent", "kbs:///default/image-key/x",
                               config_path=config)
    with pytest.raises(ImageEncryptError, match=r"refused.*no KBS to keep a new KEK"):
        encrypt_image(plain, "v1", OciLayout.create(tmp_path / "enc"), "enc", wrap)
    with pytest.raises(LayoutError):
        OciLayout(tmp_path / "enc").manifest("enc")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "not set"),
        ('{"key-providers": {}}', "no key-providers.attestation-agent.cmd.path"),
        ('{"key-providers": {"attestation-agent": {"grpc": "127.0.0.1:1"}}}', "cmd.path"),
        ("not json", "is not JSON"),
    ],
)
def test_a_missing_or_unusable_provider_config_is_named(
    config: str | None, message: str, tmp_path: Path
) -> None:
    path = None
    if config is not None:
        path = tmp_path / "ocicrypt.json"
        path.write_text(config)
    with pytest.raises(ImageEncryptError, match=message):
        command_key_wrapper("attestation-agent", "", config_path=path, env={})


def test_an_already_encrypted_image_and_a_missing_tag_are_refused(
    provider: Path, tmp_path: Path
) -> None:
    plain = OciLayout.create(tmp_path / "plain")
    build_image(plain, FILES, tag="v1")
    assert encrypt(plain.root, tmp_path / "enc", provider,
                   "kbs:///default/image-key/three").exit_code == 0
    again = CliRunner().invoke(app, [
        "image", "encrypt", f"oci:{tmp_path / 'enc'}:enc", f"oci:{tmp_path / 'twice'}:x",
        "--encryption-key", "provider:attestation-agent:kbs:///default/image-key/three",
        "--keyprovider-config", str(provider),
    ])
    assert again.exit_code == 1
    assert "already encrypted" in again.output
    missing = encrypt(plain.root.parent / "nowhere", tmp_path / "x", provider, "")
    assert missing.exit_code == 1
    assert "not an OCI layout" in missing.output
    assert "Traceback" not in again.output + missing.output
