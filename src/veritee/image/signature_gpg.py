"""Simple signing (``signedBy`` with ``keyType: GPGKeys``), verified by gpg itself.

Each evaluation imports the policy's keys into a fresh keyring in a temporary ``--homedir``
(mode 0700, removed afterwards; ``--no-autostart`` so no gpg-agent is left behind) and
hands gpg one signature blob at a time on stdin (``--decrypt``: the blob is an OpenPGP
signed message whose literal data is the JSON payload).  Status lines go to a file in the
temporary directory, never mixed with gpg's human output.  A signature is accepted only
with exactly one ``NEWSIG``, a ``GOODSIG`` and a ``VALIDSIG`` whose primary-key
fingerprint (the last field; a subkey's signature names its primary there) is one of the
keys imported for the requirement, and gpg's exit status 0.  The payload must then be an
``atomic container signature`` (``policy_identity.parse_claims``) for the manifest's
digest, computed here from the manifest bytes, and an identity the requirement accepts.

Lookaside blobs may carry containers/image's newer framing (``\\x00simple-signing\\n``
before the OpenPGP message); it is removed.  ``gpg`` missing or timing out is
``GpgUnavailable`` (install Debian's ``gnupg``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from veritee.image.policy_identity import IdentityMatch, check_claims, parse_claims
from veritee.image.reference import ImageReference
from veritee.image.signature_errors import GpgUnavailable, KeyLoadError, SignatureInvalid

__all__ = [
    "GPG_TIMEOUT_S",
    "SIMPLE_SIGNING_TYPE",
    "GpgKeyring",
    "verify_simple_signature",
]

GPG_TIMEOUT_S = 30.0
SIMPLE_SIGNING_TYPE = "atomic container signature"
MAX_PAYLOAD = 4 * 1024 * 1024
_FRAMED = b"\x00simple-signing\n"
_SIGSTORE_FRAMED = b"\x00sigstore-json\n"
_INSTALL = "install GnuPG (Debian/Ubuntu: apt-get install gnupg)"


class GpgKeyring:
    """A throwaway gpg home holding only ``keys`` (OpenPGP public keys, binary or armored,
    concatenated as containers/image does).  Use as a context manager."""

    def __init__(self, keys: Sequence[bytes], *, what: str, timeout: float = GPG_TIMEOUT_S,
                 ) -> None:
        binary = shutil.which("gpg")
        if binary is None:
            raise GpgUnavailable(f"gpg is not installed; simple-signing verification needs it "
                                 f"({_INSTALL})")
        self._gpg = binary
        self._timeout = timeout
        self._count = 0
        self._home = Path(tempfile.mkdtemp(prefix="veritee-gpg-"))
        try:
            self._run(["--import"], b"".join(keys), "import the keys")
            self.fingerprints = self._primary_fingerprints()
        except BaseException:
            self.close()
            raise
        if not self.fingerprints:
            self.close()
            raise KeyLoadError(f"{what}: no OpenPGP public key could be imported")

    def __enter__(self) -> GpgKeyring:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self._home, ignore_errors=True)

    def _run(self, args: list[str], data: bytes, step: str,
             status: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        command = [self._gpg, "--batch", "--no-tty", "--no-options", "--no-autostart",
                   "--no-auto-key-retrieve", "--trust-model", "always",
                   "--max-output", str(MAX_PAYLOAD), "--homedir", str(self._home)]
        if status is not None:
            command += ["--status-file", str(status)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
               "HOME": str(self._home), "GNUPGHOME": str(self._home)}
        try:
            return subprocess.run(  # noqa: S603 - gpg from PATH, fixed arguments
                command + args, input=data, capture_output=True,
                                  timeout=self._timeout, check=False, env=env)
        except subprocess.TimeoutExpired:
            raise GpgUnavailable(f"gpg did not {step} within {self._timeout:g} s") from None
        except OSError as exc:
            raise GpgUnavailable(f"gpg could not be run to {step}: {exc.strerror} "
                                 f"({_INSTALL})") from None

    def _primary_fingerprints(self) -> frozenset[str]:
        done = self._run(["--with-colons", "--fixed-list-mode", "--list-keys"], b"",
                         "list the imported keys")
        out: set[str] = set()
        previous = ""
        for line in done.stdout.decode("utf-8", "replace").splitlines():
            fields = line.split(":")
            if fields[0] == "fpr" and previous == "pub" and len(fields) > 9:
                out.add(fields[9].upper())
            previous = fields[0]
        return frozenset(out)

    def verify(self, blob: bytes) -> tuple[bytes, str]:
        """The signed payload of ``blob`` and its signer's primary fingerprint;
        ``SignatureInvalid`` when gpg does not vouch for it with one of the keys."""
        if blob.startswith(_SIGSTORE_FRAMED):
            raise SignatureInvalid("malformed", "a sigstore signature, not simple signing")
        if blob.startswith(_FRAMED):
            blob = blob[len(_FRAMED):]
        if not blob:
            raise SignatureInvalid("malformed", "the signature is empty")
        self._count += 1
        status_file = self._home / f"status-{self._count}"
        try:
            done = self._run(["--decrypt"], blob, "verify a signature", status_file)
            try:
                status = status_file.read_text("utf-8", "replace").splitlines()
            except OSError:  # gpg stopped before writing any status
                status = []
        finally:
            status_file.unlink(missing_ok=True)
        return done.stdout, self._judge(status, done.returncode)

    def _judge(self, lines: list[str], returncode: int) -> str:
        records = [line.split(" ")[1:] for line in lines if line.startswith("[GNUPG:] ")]
        names = [record[0] for record in records if record]
        if names.count("NEWSIG") > 1:
            raise SignatureInvalid("malformed", "the blob holds more than one signature")
        for record in records:
            if record[0] == "ERRSIG" and len(record) > 6 and record[6] == "9":
                raise SignatureInvalid("unknown key", f"signed by key {record[1]}, which is "
                                       "not one of the requirement's keys")
            if record[0] in ("BADSIG", "ERRSIG"):
                raise SignatureInvalid("bad signature", "gpg reports the signature does not "
                                       "verify")
            if record[0] in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
                raise SignatureInvalid("bad signature", f"gpg reports {record[0]} (expired or "
                                       "revoked key or signature)")
        valid = [record for record in records if record[0] == "VALIDSIG" and len(record) > 1]
        if returncode != 0 or "GOODSIG" not in names or len(valid) != 1:
            raise SignatureInvalid("bad signature", "gpg could not verify it as a signed "
                                   "OpenPGP message")
        primary = valid[0][-1].upper()
        if primary not in self.fingerprints:
            raise SignatureInvalid("unknown key", f"signed by key {primary}, which is not one "
                                   "of the requirement's keys")
        return primary


def verify_simple_signature(keyring: GpgKeyring, blob: bytes, *, image: ImageReference,
                            match: IdentityMatch, documents: Sequence[bytes]) -> str:
    """Check one simple signature for ``image``; returns the signer's fingerprint."""
    payload, fingerprint = keyring.verify(blob)
    claims = parse_claims(payload, SIMPLE_SIGNING_TYPE)
    check_claims(claims, image=image, match=match, documents=documents)
    return fingerprint
