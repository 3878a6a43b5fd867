"""Real signing material and real signed pushes for the image-policy tests.

Usage::

    from signing import gpg_key, push_cosign_signature, push_signed, sigstore_key
    from signing import cosign_sign, simple_signature    # signatures made without a push

    with gpg_key(tmp / "gpg") as key:               # ed25519, no passphrase, ~50 ms
        key.fingerprint, key.public                  # primary fingerprint, exported public key
    regd = write_registries_d(tmp / "registries.d", lookaside="file:///…")
    push_signed(image.layout, "v1", registry, "team/app:v1", registries_d=regd, gpg=key)
    cosign = sigstore_key(tmp / "cosign")            # cosign's encrypted ECDSA P-256 key pair
    push_cosign_signature(registry, "team/app", image.manifest_digest,
                          f"{registry.host}/team/app:v1", cosign)

``gpg_key`` makes a throwaway key in its own ``GNUPGHOME`` and stops the gpg-agent it
started when the block ends.  ``push_signed`` is ``oci_build.skopeo_push`` plus
``--sign-by`` and ``--registries.d``: skopeo (through gpgme) writes the simple signature to
the lookaside store the registries.d names.

Debian's skopeo 1.9.3 is built with sigstore signing disabled ("Debian-local change:
sigstore disabled"), so cosign signatures are made here, in the format containers/image
writes them (``docker/docker_image_dest.go``): the payload JSON, an ECDSA P-256/SHA-256
ASN.1 signature in the ``dev.cosignproject.cosign/signature`` annotation of a
``application/vnd.dev.cosign.simplesigning.v1+json`` layer, an OCI manifest tagged
``sha256-<hex>.sig`` pushed to the real registry over the distribution API.  The signing key
is stored and read back as cosign stores it: PEM ``ENCRYPTED COSIGN PRIVATE KEY`` (the type
containers/image 5.2x accepts; newer releases also take ``ENCRYPTED SIGSTORE PRIVATE
KEY``) around go-securesystemslib's ``encrypted`` JSON (scrypt N=32768, r=8, p=1 over a
32-byte salt; ``nacl/secretbox`` sealing the PKCS#8 DER).  ``RegistryAttachments`` reads
attachments back (anonymous registries only): the ``AttachmentReader`` the policy expects
from the real registry client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nacl.secret
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.image.reference import ImageReference
from veritee.image.registry_types import Descriptor, check_digest

INSTALL_HINT = "apt-get install gnupg skopeo"
COSIGN_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
COSIGN_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ANNOTATION = "dev.cosignproject.cosign/signature"


def _require(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pytest.fail(f"{binary} is not installed; the signature tests need it ({INSTALL_HINT})")
    return found


@dataclass(frozen=True)
class GpgKey:
    home: Path
    fingerprint: str
    public: bytes  # the exported public key (binary OpenPGP)

    def env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.home)}


def _gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    done = subprocess.run(
        [_require("gpg"), "--batch", "--no-tty", "--homedir", str(home), *args],
        input=data, capture_output=True, timeout=60, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gpg {args[0]} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


@contextmanager
def gpg_key(workdir: Path, name: str = "veritee test signer", *,
            signing_subkey: bool = False) -> Iterator[GpgKey]:
    """A fresh ed25519 signing key without a passphrase in ``workdir/home``; with
    ``signing_subkey`` it also has a signing subkey, which gpg then signs with."""
    home = workdir / "home"
    home.mkdir(parents=True, mode=0o700)
    try:
        _gpg(home, "--passphrase", "", "--quick-gen-key",
             f"{name} <signer@example.invalid>", "ed25519", "sign", "never")
        listing = _gpg(home, "--with-colons", "--fixed-list-mode", "--list-secret-keys")
        lines = listing.decode().splitlines()
        primary = next(i for i, line in enumerate(lines) if line.startswith("sec:"))
        fingerprint = lines[primary + 1].split(":")[9]
        if signing_subkey:
            _gpg(home, "--passphrase", "", "--quick-add-key", fingerprint, "ed25519", "sign",
                 "never")
        public = _gpg(home, "--export", fingerprint)
        yield GpgKey(home, fingerprint, public)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, timeout=30, check=False)


@dataclass(frozen=True)
class SigstoreKey:
    private_key: Path  # encrypted, cosign format
    passphrase_file: Path
    public_pem: bytes


def encrypt_cosign_key(pkcs8_der: bytes, passphrase: bytes) -> bytes:
    """go-securesystemslib ``encrypted.Encrypt`` (legacy scrypt parameters) in a PEM block."""
    salt = secrets.token_bytes(32)
    key = hashlib.scrypt(passphrase, salt=salt, n=32768, r=8, p=1, dklen=32,
                         maxmem=64 * 1024 * 1024)
    nonce = secrets.token_bytes(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = nacl.secret.SecretBox(key).encrypt(pkcs8_der, nonce).ciphertext
    document = {
        "kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    body = base64.encodebytes(json.dumps(document).encode()).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {COSIGN_PEM_TYPE}-----\n" + "\n".join(lines)
            + f"\n-----END {COSIGN_PEM_TYPE}-----\n").encode()


def sigstore_key(workdir: Path) -> SigstoreKey:
    """An ECDSA P-256 key pair; the private half encrypted as cosign writes it."""
    workdir.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    passphrase = secrets.token_hex(16).encode()
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    key_file = workdir / "cosign.key"
    key_file.write_bytes(encrypt_cosign_key(der, passphrase))
    key_file.chmod(0o600)
    passphrase_file = workdir / "passphrase"
    passphrase_file.write_bytes(passphrase)
    passphrase_file.chmod(0o600)
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    (workdir / "cosign.pub").write_bytes(public)
    return SigstoreKey(key_file, passphrase_file, public)


def write_registries_d(
    directory: Path, *, lookaside: str | None = None, sigstore_attachments: bool = False,
    scope: str | None = None,
) -> Path:
    """A registries.d directory with one ``default.yaml``: for ``scope`` under ``docker:``
    or, without one, as ``default-docker``.  Returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {}
    if lookaside is not None:
        entry["lookaside"] = lookaside
    if sigstore_attachments:
        entry["use-sigstore-attachments"] = True
    document = {"docker": {scope: entry}} if scope else {"default-docker": entry}
    # JSON is YAML: no YAML writer needed.
    (directory / "default.yaml").write_text(json.dumps(document, indent=2) + "\n")
    return directory


def push_signed(
    layout: Path, tag: str, registry: Any, destination: str, *, registries_d: Path,
    gpg: GpgKey, sign_identity: str | None = None,
) -> None:
    """``skopeo copy oci:<layout>:<tag> docker://<registry.host>/<destination>``, signed with
    ``gpg`` (the signature goes to the lookaside store ``registries_d`` names)."""
    command = [_require("skopeo"), "--insecure-policy", "--registries.d", str(registries_d),
               "copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests",
               "--sign-by", gpg.fingerprint]
    if registry.user is not None:
        command.append(f"--dest-creds={registry.user}:{registry.password}")
    if sign_identity is not None:
        command += ["--sign-identity", sign_identity]
    command += [f"oci:{layout}:{tag}", f"docker://{registry.host}/{destination}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                          env=gpg.env())
    if done.returncode != 0:
        raise RuntimeError(f"skopeo copy (signing) failed ({done.returncode}): "
                           f"{done.stderr.strip()}")


def simple_payload(manifest_digest: str, identity: str) -> bytes:
    """The payload containers/image's simple signing signs (``newUntrustedSignature``)."""
    return json.dumps({
        "critical": {"identity": {"docker-reference": identity},
                     "image": {"docker-manifest-digest": manifest_digest},
                     "type": "atomic container signature"},
        "optional": {"creator": "atomic veritee-tests", "timestamp": 1_700_000_000},
    }, separators=(",", ":")).encode()


def simple_signature(key: GpgKey, manifest_digest: str = "", identity: str = "", *,
                     payload: bytes | None = None) -> bytes:
    """An OpenPGP signed message over a simple-signing payload, made by gpg with ``key``
    (what skopeo's gpgme signing writes), for a digest/identity or a payload given whole."""
    data = payload if payload is not None else simple_payload(manifest_digest, identity)
    return _gpg(key.home, "--local-user", key.fingerprint, "--sign", data=data)


def cosign_sign(key: SigstoreKey, payload: bytes) -> str:
    """The base64 ECDSA P-256/SHA-256 signature cosign puts in the annotation."""
    private = decrypt_cosign_key(key.private_key.read_bytes(),
                                 key.passphrase_file.read_bytes())
    return base64.b64encode(private.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()


def decrypt_cosign_key(pem: bytes, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    """go-securesystemslib ``encrypted.Decrypt`` of a cosign private key file."""
    lines = pem.decode().strip().splitlines()
    if lines[0] not in (f"-----BEGIN {COSIGN_PEM_TYPE}-----",
                        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"):
        raise ValueError("not a cosign private key")
    document = json.loads(base64.b64decode("".join(lines[1:-1])))
    params = document["kdf"]["params"]
    key = hashlib.scrypt(passphrase, salt=base64.b64decode(document["kdf"]["salt"]),
                         n=params["N"], r=params["r"], p=params["p"], dklen=32,
                         maxmem=256 * 1024 * 1024)
    der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(document["ciphertext"]),
                                             base64.b64decode(document["cipher"]["nonce"]))
    private = serialization.load_der_private_key(der, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private


def cosign_payload(manifest_digest: str, identity: str) -> bytes:
    """The payload containers/image signs (``NewUntrustedSigstorePayload``)."""
    return json.dumps({
        "critical": {"identity": {"docker-reference": identity},
                     "image": {"docker-manifest-digest": manifest_digest},
                     "type": "cosign container image signature"},
        "optional": {"creator": "veritee tests", "timestamp": 1_700_000_000},
    }, separators=(",", ":")).encode()


def _upload_blob(client: httpx.Client, repository: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = client.post(f"/v2/{repository}/blobs/uploads/")
    started.raise_for_status()
    location = started.headers["location"]
    separator = "&" if "?" in location else "?"  # keep the registry's _state parameter
    done = client.put(f"{location}{separator}digest={digest}", content=data,
                      headers={"Content-Type": "application/octet-stream"})
    done.raise_for_status()
    return digest


def push_cosign_signature(
    registry: Any, repository: str, manifest_digest: str, identity: str, key: SigstoreKey,
    *, payload: bytes | None = None,
) -> bytes:
    """Sign ``identity`` at ``manifest_digest`` with ``key`` and push the attachment
    ``<repository>:sha256-<hex>.sig`` (replacing any earlier one).  Returns the payload."""
    payload = payload if payload is not None else cosign_payload(manifest_digest, identity)
    signature = cosign_sign(key, payload)
    auth = (registry.user, registry.password) if registry.user is not None else None
    with httpx.Client(base_url=registry.url, auth=auth, timeout=30) as client:
        layer_digest = _upload_blob(client, repository, payload)
        config = json.dumps({"architecture": "", "os": "", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
        config_digest = _upload_blob(client, repository, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": COSIGN_LAYER, "digest": layer_digest,
                        "size": len(payload), "annotations": {
                            COSIGN_ANNOTATION: signature}}],
        }).encode()
        tag = manifest_digest.replace(":", "-", 1) + ".sig"
        client.put(f"/v2/{repository}/manifests/{tag}", content=manifest,
                   headers={"Content-Type": OCI_MANIFEST}).raise_for_status()
    return payload


class RegistryAttachments:
    """``AttachmentReader`` over httpx for an anonymous loopback registry (test support)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def tag_manifest(self, ref: ImageReference, tag: str) -> tuple[bytes, str, str] | None:
        response = httpx.get(f"{self.base_url}/v2/{ref.repository}/manifests/{tag}",
                             headers={"Accept": OCI_MANIFEST}, timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        raw = response.content
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        return raw, response.headers["content-type"].split(";")[0].strip(), digest

    def blob_bytes(self, ref: ImageReference, descriptor: Descriptor, *, limit: int) -> bytes:
        if descriptor.size > limit:
            raise ValueError(f"blob {descriptor.digest} is larger than {limit} bytes")
        response = httpx.get(f"{self.base_url}/v2/{ref.repository}/blobs/{descriptor.digest}",
                             timeout=10, follow_redirects=True)
        response.raise_for_status()
        if len(response.content) > limit or not check_digest(response.content,
                                                             descriptor.digest):
            raise ValueError(f"blob {descriptor.digest} does not match its descriptor")
        return response.content
