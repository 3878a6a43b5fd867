"""``veritee demo``, use case 1 (seed 000): image pulls in the guest wait for attestation.

A real registry (Debian's ``docker-registry``) is started on a free loopback port and
``skopeo`` pushes three images to it.  The guest (AA and CDH over an emulated TDX)
pulls each as the CDH does: its first step fetches the image security policy from the
KBS, which attests the TEE (the AS logs "Tdx Verifier/endorsement check passed.").

1. ``insecure-accept-all`` (the seed's resource): a plain image is pulled and unpacked.
2. ``signedBy`` with a GPG key that itself comes from the KBS: a skopeo-signed image is
   accepted, an unsigned one refused before any layer is fetched.
3. An image encrypted through the ``veritee keyprovider`` command (its KEK kept in the
   KBS): refused while the resource policy withholds the KEK, pulled and decrypted once
   it releases it.

Without ``docker-registry``, ``skopeo`` or ``gpg`` the use case is skipped, and the demo
says which tool is missing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape

from veritee.cli.demo_logs import show_logs
from veritee.errors import VeriteeError

__all__ = ["REQUIRED_TOOLS", "run_image_demo"]

REQUIRED_TOOLS = ("docker-registry", "skopeo", "gpg")
INSECURE_ACCEPT_ALL = "kbs:///default/container-policy/insecure-accept-all"
HELLO = b"hello from an image pulled behind attestation\n"
DENY_IMAGE_KEYS = """package policy

import rego.v1

default allow := false

allow if {
    data.plugin == "resource"
    data["resource-path"][1] != "image-kek"
}
"""


def _pull_steps(record: logging.LogRecord) -> bool:
    # The pull's own steps; the registry client's and the unpacker's per-blob lines stay out
    # of the demo (``veritee image pull`` shows them).
    return record.name != "veritee.image" or record.module == "pull"


@contextmanager
def _registry(work: Path) -> Iterator[str]:
    """docker-registry on a free 127.0.0.1 port; yields its host:port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {uuid.uuid4().hex}\n"
    )
    with (work / "registry.log").open("wb") as out:
        process = subprocess.Popen(  # noqa: S603
            [str(shutil.which("docker-registry")), "serve", str(config)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise VeriteeError("docker-registry did not start (see registry.log)")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _run(command: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,  # noqa: S603
                          env=env, check=False)
    if done.returncode != 0:
        raise VeriteeError(f"{Path(command[0]).name} failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def _push(layout: Path, tag: str, host: str, name: str, *, sign: tuple[str, ...] = (),
          env: dict[str, str] | None = None) -> None:
    """skopeo copy oci:LAYOUT:TAG docker://HOST/NAME (plain HTTP), ``sign``: its
    ``--registries.d DIR`` and ``--sign-by FPR``."""
    registries_d, sign_by = (sign[:2], sign[2:]) if sign else ((), ())
    _run([str(shutil.which("skopeo")), "--insecure-policy", *registries_d, "copy", "--quiet",
          "--dest-tls-verify=false", *sign_by, f"oci:{layout}:{tag}",
          f"docker://{host}/{name}"], env=env)


def _gpg_key(home: Path) -> tuple[str, bytes, dict[str, str]]:
    """A throwaway signing key: fingerprint, exported public key, the env to use it."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    gpg = str(shutil.which("gpg"))
    _run([gpg, "--batch", "--passphrase", "", "--quick-gen-key",
          "veritee demo <demo@veritee.invalid>", "ed25519", "sign", "never"], env)
    listing = _run([gpg, "--batch", "--with-colons", "--list-secret-keys"], env)
    fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                       if line.startswith("fpr:"))
    public = _run([gpg, "--batch", "--armor", "--export", fingerprint], env).encode()
    return fingerprint, public, env


def run_image_demo(
    console: Console, base: Path, root_dir: Path, kbs_url: str, admin_token: str
) -> bool:
    """Use case 1; True when every step behaved as expected (or it was skipped)."""
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    console.rule("seed 000, use case 1: image pulls wait for attestation")
    if missing:
        console.print(
            f"[yellow]skipped: {', '.join(missing)} not installed (Debian: apt-get install "
            "docker-registry skopeo gnupg); the rest of the demo does not need them[/yellow]"
        )
        return True
    work = base / "use-case-1"  # fresh each run, also under a kept --data-dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    logs = show_logs(console, ("veritee.image", "veritee.as"), _pull_steps)
    with _registry(work / "registry") as host, logs:
        return _flows(console, work, root_dir, kbs_url, admin_token, host)


def _flows(
    console: Console, base: Path, root_dir: Path, kbs_url: str, admin_token: str, host: str
) -> bool:
    from veritee.guest.kbs_client import KbsClient
    from veritee.image.encrypt import command_key_wrapper, encrypt_image
    from veritee.image.layout import OciLayout, build_image

    console.print(f"registry (docker-registry) on {host}")
    layout = OciLayout.create(base / "images")
    build_image(layout, {"hello.txt": HELLO}, tag="hello")
    _push(layout.root, "hello", host, "demo/hello:1")
    _push(layout.root, "hello", host, "demo/unsigned:1")
    fingerprint, public_key, gpg_env = _gpg_key(base / "gnupg")
    lookaside = base / "signatures"
    registries_d = base / "registries.d"
    registries_d.mkdir(exist_ok=True)
    (registries_d / "demo.yaml").write_text(
        f"docker:\n  {host}:\n    lookaside: file://{lookaside}\n"
        f"    lookaside-staging: file://{lookaside}\n"
    )
    _push(layout.root, "hello", host, "demo/signed:1", env=gpg_env,
          sign=("--registries.d", str(registries_d), f"--sign-by={fingerprint}"))
    provider_config = base / "ocicrypt.json"
    token_file = base / "admin-token"
    token_file.write_text(admin_token)
    token_file.chmod(0o600)
    provider_config.write_text(json.dumps({"key-providers": {"attestation-agent": {"cmd": {
        "path": sys.executable,
        "args": ["-m", "veritee", "keyprovider", "--kbs-url", kbs_url,
                 "--admin-token-file", str(token_file), "--kek-dir", str(base / "keks")],
    }}}}))
    wrap = command_key_wrapper("attestation-agent", "kbs:///default/image-kek/demo",
                               config_path=provider_config)
    encrypt_image(layout, "hello", layout, "encrypted", wrap)
    _push(layout.root, "encrypted", host, "demo/encrypted:1")
    console.print("pushed demo/hello:1, demo/signed:1 (GPG, skopeo --sign-by), "
                  "demo/unsigned:1, demo/encrypted:1 (layer key in the KBS) with skopeo")
    signed_policy = {
        "default": [{"type": "reject"}],
        "transports": {"docker": {f"{host}/demo": [{
            "type": "signedBy", "keyType": "GPGKeys",
            "keyPath": "kbs:///default/image-keys/demo-gpg"}]}},
    }
    with KbsClient(kbs_url, admin_token=admin_token) as admin:
        admin.set_resource("default/registry-configuration/demo",
                           f'[[registry]]\nlocation = "{host}"\ninsecure = true\n'.encode())
        admin.set_resource("default/image-keys/demo-gpg", public_key)
        admin.set_resource("default/security-policy/signed", json.dumps(signed_policy).encode())
        admin.set_resource("default/sigstore-config/demo", (
            f"docker:\n  {host}:\n    lookaside: file://{lookaside}\n").encode())
    guest = _Guest(base, root_dir, kbs_url)
    good = True
    console.print("[bold]1. insecure-accept-all[/bold] (the seed's resource)")
    good &= guest.expect_pull(console, INSECURE_ACCEPT_ALL, f"{host}/demo/hello:1", "hello")
    console.print("[bold]2. signedBy[/bold]: the GPG key and the policy come from the KBS")
    good &= guest.expect_pull(console, "kbs:///default/security-policy/signed",
                              f"{host}/demo/signed:1", "signed")
    good &= guest.expect_refusal(console, "kbs:///default/security-policy/signed",
                                 f"{host}/demo/unsigned:1", "unsigned")
    console.print("[bold]3. an encrypted image[/bold]: its layer key is a KBS resource")
    with KbsClient(kbs_url, admin_token=admin_token) as admin:
        admin.set_resource_policy(DENY_IMAGE_KEYS)
    good &= guest.expect_refusal(console, INSECURE_ACCEPT_ALL, f"{host}/demo/encrypted:1",
                                 "encrypted-denied")
    with KbsClient(kbs_url, admin_token=admin_token) as admin:
        admin.set_resource_policy('package policy\n\nimport rego.v1\n\n'
                                  'allow if data.plugin == "resource"\n')
    good &= guest.expect_pull(console, INSECURE_ACCEPT_ALL, f"{host}/demo/encrypted:1",
                              "encrypted")
    return good


class _Guest:
    """An emulated TDX guest (AA + CDH) per pull, configured like a pod's initdata."""

    def __init__(self, base: Path, root_dir: Path, kbs_url: str) -> None:
        self.base, self.root_dir, self.kbs_url = base / "guest", root_dir, kbs_url
        self.base.mkdir(exist_ok=True)

    def _pull(self, policy_uri: str, image: str, name: str) -> tuple[Path, str]:
        from veritee.guest.bootstrap import AgentSettings, build_agent
        from veritee.image.pull import ImagePuller

        aa = self.base / "aa.toml"
        aa.write_text(f'[token_configs.kbs]\nurl = "{self.kbs_url}"\n'
                      "[eventlog_config]\nenable_eventlog = true\n")
        cdh = self.base / "cdh.toml"
        cdh.write_text(
            f'[kbc]\nname = "cc_kbc"\nurl = "{self.kbs_url}"\n[image]\n'
            f'image_security_policy_uri = "{policy_uri}"\n'
            'sigstore_config_uri = "kbs:///default/sigstore-config/demo"\n'
            'registry_configuration_uri = "kbs:///default/registry-configuration/demo"\n'
        )
        parts = build_agent(AgentSettings(
            aa_config=aa, cdh_config=cdh, emulated_root=self.root_dir,
            eventlog=self.base / f"{name}.eventlog", credentials_root=self.base / "creds",
            env={},
        ))
        try:
            puller = ImagePuller(parts.cdh.config.image, parts.cdh.get_resource,
                                 measure=parts.aa.extend_runtime_measurement,
                                 work_dir=self.base)
            result = puller.pull(image, self.base / "bundles" / name)
        finally:
            parts.aa.close()
        return result.rootfs, result.measured

    def expect_pull(self, console: Console, policy_uri: str, image: str, name: str) -> bool:
        try:
            rootfs, measured = self._pull(policy_uri, image, name)
        except VeriteeError as exc:
            console.print(f"  [red]refused: {escape(str(exc))}[/red]")
            return False
        content = (rootfs / "hello.txt").read_bytes()
        console.print(f"  [green]pulled[/green] {escape(image)}: rootfs/hello.txt = "
                      f"{escape(content.decode().strip())!r}; AAEL PullImage {measured}")
        return content == HELLO and measured == "OK"

    def expect_refusal(self, console: Console, policy_uri: str, image: str, name: str) -> bool:
        try:
            self._pull(policy_uri, image, name)
        except VeriteeError as exc:
            console.print(f"  [green]refused as expected[/green] ({type(exc).__name__}): "
                          f"{escape(str(exc))}")
            return not (self.base / "bundles" / name / "rootfs" / "hello.txt").exists()
        console.print(f"  [red]{escape(image)} was pulled, but should not have been[/red]")
        return False
