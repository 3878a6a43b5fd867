"""The guest's image pull end to end, against the real tools: a real KBS (AS and RVPS in
process) on loopback, the real ``docker-registry`` with htpasswd auth, images pushed by
real ``skopeo``, and the guest (AA + CDH) on an emulated TDX under the session's test
root.  The expected outcomes come from the artefacts: the rootfs must hold the bytes
that went into the image, and the registry's own access log says which blobs were
served, so "no layer was fetched" is the registry's word, not ours.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kbs_live import Kbs, live_kbs
from keyprovider_cmd import keyprovider_config
from oci_build import skopeo_push
from registry import LiveRegistry, docker_registry
from signing import (
    gpg_key,
    push_cosign_signature,
    push_signed,
    sigstore_key,
    write_registries_d,
)
from typer.testing import CliRunner

from veritee.cli import app as cli
from veritee.emulator.root import TestRoot
from veritee.errors import VeriteeError
from veritee.guest.bootstrap import AgentParts, AgentSettings, build_agent
from veritee.guest.eventlog import cc_eventlog
from veritee.image.encrypt import command_key_wrapper, encrypt_image
from veritee.image.layout import OciLayout, build_image
from veritee.image.ocicrypt import LayerKeyError
from veritee.image.pull import ImagePuller, ImagePullError, PullSetupError, pull_event_content
from veritee.image.registry_errors import RegistryUnauthorized
from veritee.image.signature_errors import SignatureRejected
from veritee.verifier.ccel import parse_ccel

FILES = {"etc/motd": b"pulled behind attestation\n", "app/data.bin": bytes(range(256)) * 64}
RESOURCE_POLICY = """package policy

import rego.v1

default allow := false

allow if {
    data.plugin == "resource"
    data["resource-path"][1] != "denied"
}
"""
ACCEPT = {"default": [{"type": "insecureAcceptAnything"}]}
REJECT = {"default": [{"type": "reject"}]}
SIGNED = {"default": [{"type": "signedBy", "keyType": "GPGKeys",
                       "keyPath": "kbs:///default/image-keys/gpg"}]}
COSIGNED = {"default": [{"type": "sigstoreSigned",
                         "keyPath": "kbs:///default/image-keys/cosign"}]}


@dataclass
class World:
    kbs: Kbs
    registry: LiveRegistry
    root: Path
    digests: dict[str, str]

    def image(self, name: str) -> str:
        return f"{self.registry.host}/{name}"


@pytest.fixture(scope="module")
def world(test_root: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("pull")
    with live_kbs(test_root.directory, work / "kbs") as kbs, \
            docker_registry(work / "registry", user="alice", password="s3cret") as registry, \
            gpg_key(work / "gpg") as signer, gpg_key(work / "gpg2", name="stranger") as other:
        kbs.set_policy(RESOURCE_POLICY)
        layout = OciLayout.create(work / "oci")
        digests = {"plain": build_image(layout, FILES, tag="plain")}
        config = keyprovider_config(
            work / "ocicrypt.json", "--kbs-url", kbs.url, "--kek-dir", str(work / "keks"),
            "--admin-token-file", str(kbs.parts.attestation.admin.token_path),
        )
        for tag, kid in (("enc", "kbs:///default/image-kek/app"),
                         ("enc-denied", "kbs:///default/denied/kek")):
            wrap = command_key_wrapper("attestation-agent", kid, config_path=config)
            digests[tag] = encrypt_image(layout, "plain", layout, tag, wrap)
        for tag in ("plain", "enc", "enc-denied"):
            skopeo_push(layout.root, tag, registry, f"app/{tag}:1")
        # Signed copies of the plain image: GPG by skopeo into a file:// lookaside, and a
        # cosign signature attachment (Debian's skopeo cannot write those; tests/support).
        lookaside = work / "lookaside"
        registries_d = write_registries_d(work / "registries.d", lookaside=f"file://{lookaside}")
        push_signed(layout.root, "plain", registry, "app/signed:1", registries_d=registries_d,
                    gpg=signer)
        push_signed(layout.root, "plain", registry, "app/stranger:1",
                    registries_d=registries_d, gpg=other)
        push_signed(layout.root, "plain", registry, "app/moved:1", registries_d=registries_d,
                    gpg=signer, sign_identity=f"{registry.host}/app/elsewhere:1")
        cosign = sigstore_key(work / "cosign")
        skopeo_push(layout.root, "plain", registry, "app/cosigned:1")
        push_cosign_signature(registry, "app/cosigned", digests["plain"],
                              f"{registry.host}/app/cosigned:1", cosign)
        with kbs.admin() as admin:
            admin.set_resource("default/credential/registry",
                               registry.write_auth_json(work / "auth.json").read_bytes())
            admin.set_resource("default/credential/wrong", registry.write_auth_json(
                work / "wrong.json", password="not-the-password").read_bytes())
            admin.set_resource("default/security-policy/accept", json.dumps(ACCEPT).encode())
            admin.set_resource("default/security-policy/reject", json.dumps(REJECT).encode())
            admin.set_resource("default/image-keys/gpg", signer.public)
            admin.set_resource("default/image-keys/cosign", cosign.public_pem)
            admin.set_resource("default/security-policy/signed", json.dumps(SIGNED).encode())
            admin.set_resource("default/security-policy/cosigned",
                               json.dumps(COSIGNED).encode())
            admin.set_resource("default/sigstore-config/test", (
                f"default-docker:\n  lookaside: file://{lookaside}\n"
                "  use-sigstore-attachments: true\n").encode())
            admin.set_resource("default/registry-configuration/test", (
                f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n').encode())
        yield World(kbs, registry, test_root.directory, digests)


@dataclass
class Guest:
    parts: AgentParts
    puller: ImagePuller
    eventlog: Path


def write_configs(world: World, work: Path, *, policy: str = "accept",
                  credentials: str = "registry") -> tuple[Path, Path]:
    """aa.toml and cdh.toml for a guest of ``world``'s KBS, the image resources named."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "aa.toml").write_text(f'[token_configs.kbs]\nurl = "{world.kbs.url}"\n'
                                  "[eventlog_config]\nenable_eventlog = true\n")
    (work / "cdh.toml").write_text(
        f'[kbc]\nname = "cc_kbc"\nurl = "{world.kbs.url}"\n[image]\n'
        f'image_security_policy_uri = "kbs:///default/security-policy/{policy}"\n'
        f'authenticated_registry_credentials_uri = "kbs:///default/credential/{credentials}"\n'
        'registry_configuration_uri = "kbs:///default/registry-configuration/test"\n'
        'sigstore_config_uri = "kbs:///default/sigstore-config/test"\n'
    )
    return work / "aa.toml", work / "cdh.toml"


def guest(world: World, work: Path, *, policy: str = "accept", credentials: str = "registry",
          root: Path | None = None) -> Guest:
    """An emulated TDX guest whose cdh.toml names the image resources in the KBS."""
    write_configs(world, work, policy=policy, credentials=credentials)
    parts = build_agent(AgentSettings(
        aa_config=work / "aa.toml", cdh_config=work / "cdh.toml",
        emulated_root=root or world.root, eventlog=work / "eventlog",
        credentials_root=work / "creds", env={},
    ))
    puller = ImagePuller(parts.cdh.config.image, parts.cdh.get_resource,
                         measure=parts.aa.extend_runtime_measurement, work_dir=work)
    return Guest(parts, puller, work / "eventlog")


def pulled_files(rootfs: Path) -> dict[str, bytes]:
    return {str(p.relative_to(rootfs)): p.read_bytes()
            for p in sorted(rootfs.rglob("*")) if p.is_file()}


def aael_events(path: Path) -> list[str]:
    """The AAEL's event texts, read back with the verifier's CCEL parser (the AS's view)."""
    log = cc_eventlog(None, path.read_bytes())
    assert log is not None
    return [entry["details"]["string"] for entry in parse_ccel(log)
            if entry["details"].get("unicode_name") == "AAEL"]


def test_insecure_accept_all_pulls_the_original_bytes_and_records_the_pull(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    me = guest(world, tmp_path / "guest")
    mark = world.registry.mark()
    caplog.set_level(logging.INFO, logger="veritee")
    result = me.puller.pull(world.image("app/plain:1"), tmp_path / "bundle")
    steps = [(r.name, r.getMessage()) for r in caplog.records]
    attested = steps.index(("veritee.as", "Tdx Verifier/endorsement check passed."))
    policy = next(i for i, (name, text) in enumerate(steps)
                  if name == "veritee.image" and "image security policy from" in text)
    assert attested < policy  # the first pull attested to get the policy
    assert pulled_files(result.rootfs) == FILES
    assert result.manifest_digest == world.digests["plain"]
    assert result.decrypted == 0
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/sh"]
    assert config["root"]["path"] == "rootfs"
    assert len(world.registry.blob_gets(since=mark)) == 2  # the config and the one layer
    content = pull_event_content(world.image("app/plain:1"), world.digests["plain"])
    assert result.measured == "OK"
    assert aael_events(me.eventlog) == [
        f"github.com/confidential-containers PullImage {content}"
    ]
    assert content == ('{"image":"' + world.image("app/plain:1") + '", "digest":"'
                       + world.digests["plain"] + '"}')
    me.parts.aa.close()


def test_an_encrypted_image_is_decrypted_with_the_key_the_kbs_releases(
    world: World, tmp_path: Path
) -> None:
    me = guest(world, tmp_path / "guest")
    result = me.puller.pull(world.image("app/enc:1"), tmp_path / "bundle")
    assert pulled_files(result.rootfs) == FILES
    assert result.decrypted == 1
    assert result.manifest_digest == world.digests["enc"]
    me.parts.aa.close()


def _refused(world: World, me: Guest, image: str, bundle: Path) -> tuple[VeriteeError, int]:
    mark = world.registry.mark()
    with pytest.raises(VeriteeError) as refused:
        me.puller.pull(world.image(image), bundle)
    me.parts.aa.close()
    assert not (bundle / "rootfs").exists() or not any((bundle / "rootfs").iterdir())
    assert "Traceback" not in str(refused.value)
    return refused.value, mark


def test_a_key_the_resource_policy_withholds_means_no_layer_is_fetched(
    world: World, tmp_path: Path
) -> None:
    error, mark = _refused(world, guest(world, tmp_path / "g"), "app/enc-denied:1",
                           tmp_path / "bundle")
    assert isinstance(error, LayerKeyError)
    assert "kbs:///default/denied/kek" in str(error)
    assert "PolicyDeny" in str(error)
    assert world.registry.blob_gets(since=mark) == [_config_digest(world, "enc-denied")]


def test_a_reject_policy_fetches_no_layer(world: World, tmp_path: Path) -> None:
    error, mark = _refused(world, guest(world, tmp_path / "g", policy="reject"),
                           "app/plain:1", tmp_path / "bundle")
    assert "reject" in str(error)
    assert world.registry.blob_gets(since=mark) == [_config_digest(world, "plain")]


def test_wrong_registry_credentials_are_refused_with_no_password_shown(
    world: World, tmp_path: Path
) -> None:
    error, mark = _refused(world, guest(world, tmp_path / "g", credentials="wrong"),
                           "app/plain:1", tmp_path / "bundle")
    assert isinstance(error, RegistryUnauthorized)
    assert "not-the-password" not in str(error)
    assert world.registry.blob_gets(since=mark) == []


def test_a_policy_the_kbs_withholds_stops_the_pull_before_the_registry(
    world: World, tmp_path: Path
) -> None:
    error, mark = _refused(world, guest(world, tmp_path / "g", policy="missing"),
                           "app/plain:1", tmp_path / "bundle")
    assert isinstance(error, PullSetupError)
    assert "kbs:///default/security-policy/missing" in str(error)
    assert world.registry.requests(since=mark) == []


def test_a_tee_the_kbs_does_not_trust_gets_no_policy_and_no_registry_request(
    world: World, tmp_path: Path
) -> None:
    stranger = TestRoot.init(tmp_path / "other-root").directory
    error, mark = _refused(world, guest(world, tmp_path / "g", root=stranger), "app/plain:1",
                           tmp_path / "bundle")
    assert isinstance(error, PullSetupError)
    assert world.registry.requests(since=mark) == []


@pytest.mark.parametrize(("policy", "image"), [("signed", "app/signed:1"),
                                               ("cosigned", "app/cosigned:1")])
def test_a_signed_image_is_accepted_with_the_key_from_the_kbs(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, policy: str, image: str
) -> None:
    me = guest(world, tmp_path / "g", policy=policy)
    caplog.set_level(logging.INFO, logger="veritee.image")
    result = me.puller.pull(world.image(image), tmp_path / "bundle")
    me.parts.aa.close()
    assert pulled_files(result.rootfs) == FILES
    kind = "signedBy" if policy == "signed" else "sigstoreSigned"
    assert kind in result.policy
    assert any("fetched the policy key from kbs:///default/image-keys/" in r.getMessage()
               for r in caplog.records)


# Which refusal each image gets comes from how it was signed in the fixture: not at all,
# by another key, or by the right key for another name (skopeo --sign-identity).
@pytest.mark.parametrize(("policy", "image", "phrase"), [
    ("signed", "app/plain:1", "none found"),
    ("signed", "app/stranger:1", "not one of the requirement's keys"),
    ("signed", "app/moved:1", "app/elsewhere:1"),
    ("signed", "app/cosigned:1", "none found"),
    ("cosigned", "app/signed:1", "none found"),
    ("cosigned", "app/plain:1", "none found"),
])
def test_an_image_the_signature_policy_refuses_gets_no_layer_fetched(
    world: World, tmp_path: Path, policy: str, image: str, phrase: str
) -> None:
    error, mark = _refused(world, guest(world, tmp_path / "g", policy=policy), image,
                           tmp_path / "bundle")
    assert isinstance(error, SignatureRejected)
    assert phrase in str(error)
    blobs = world.registry.blob_gets(since=mark)
    assert blobs == [_config_digest(world, "plain")]


@pytest.mark.parametrize("occupied", ["file", "dir", "symlink"])
def test_a_bundle_that_is_not_empty_is_refused_before_anything_is_fetched(
    world: World, tmp_path: Path, occupied: str
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    if occupied == "file":
        (bundle / "rootfs").write_bytes(b"x")
    elif occupied == "dir":
        (bundle / "rootfs").mkdir()
        (bundle / "rootfs" / "keep").write_bytes(b"x")
    else:
        (bundle / "rootfs").symlink_to(tmp_path)
    mark = world.registry.mark()
    me = guest(world, tmp_path / "g")
    with pytest.raises(ImagePullError, match="is not an empty directory"):
        me.puller.pull(world.image("app/plain:1"), bundle)
    me.parts.aa.close()
    assert world.registry.requests(since=mark) == []
    if occupied == "dir":
        assert (bundle / "rootfs" / "keep").read_bytes() == b"x"


def _config_digest(world: World, tag: str) -> str:
    manifest = json.loads(world.registry.blob_file(world.digests[tag]).read_bytes())
    return str(manifest["config"]["digest"])


def test_the_cli_pulls_and_reports_a_refusal_as_one_error_line(
    world: World, tmp_path: Path
) -> None:
    aa, cdh = write_configs(world, tmp_path / "ok", policy="signed")
    # Each run is a fresh emulated TEE (its RTMRs start at zero), so each has its own AAEL.
    common = ["--emulated", str(world.root), "-q"]
    done = CliRunner().invoke(cli, ["image", "pull", world.image("app/signed:1"), "--dest",
                                    str(tmp_path / "bundle"), "--config", str(aa),
                                    "--cdh-config", str(cdh), "--eventlog",
                                    str(tmp_path / "eventlog"), *common])
    assert done.exit_code == 0, done.output
    assert world.digests["plain"] in done.stdout
    assert "signedBy" in done.stdout
    assert pulled_files(tmp_path / "bundle" / "rootfs") == FILES
    assert aael_events(tmp_path / "eventlog") == [f"github.com/confidential-containers "
        f"PullImage {pull_event_content(world.image('app/signed:1'), world.digests['plain'])}"]

    aa, cdh = write_configs(world, tmp_path / "no", policy="signed")
    refused = CliRunner().invoke(cli, ["image", "pull", world.image("app/plain:1"), "--dest",
                                       str(tmp_path / "other"), "--config", str(aa),
                                       "--cdh-config", str(cdh), "--emulated", str(world.root)])
    assert refused.exit_code == 1
    assert refused.stdout == ""
    *steps, last = refused.stderr.splitlines()  # without -q: the steps, then one error line
    assert any(line.startswith("INFO veritee.image: fetched the image security policy from "
                               "kbs:///default/security-policy/signed") for line in steps)
    assert last.startswith("error: image ")
    assert "rejected by the image security policy" in last
    assert "Traceback" not in refused.output
    assert not (tmp_path / "other" / "rootfs").exists()
