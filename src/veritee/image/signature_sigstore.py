"""Sigstore (cosign) signatures with a public key (``sigstoreSigned`` with ``keyPath`` /
``keyData``), verified with ``cryptography``.

A signature is an OCI attachment layer: the blob is the payload, the
``dev.cosignproject.cosign/signature`` annotation the base64 signature over the payload
bytes.  As containers/image (sigstore's ``LoadVerifier`` with SHA-256): ECDSA keys verify
an ASN.1 signature with SHA-256 whatever the curve, RSA keys PKCS#1 v1.5 with SHA-256,
Ed25519 keys the payload itself.  The payload must be a ``cosign container image
signature`` (``optional`` may be ``null``, as cosign writes it) for the manifest's digest
and an identity the requirement accepts.  Keys come as PEM ``PUBLIC KEY`` blocks, any
number per file; a file with a block that does not load is refused (as containers/image
refuses to go on with a broken fallback key).  Fulcio and Rekor are not supported.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from veritee.image.policy_identity import IdentityMatch, check_claims, parse_claims
from veritee.image.reference import ImageReference
from veritee.image.signature_errors import KeyLoadError, SignatureInvalid
from veritee.image.signature_source import COSIGN_SIGNATURE_MEDIA_TYPE, SigstoreSignature

__all__ = [
    "SIGSTORE_SIGNATURE_TYPE",
    "SigstorePublicKey",
    "load_sigstore_keys",
    "verify_sigstore_signature",
]

SIGSTORE_SIGNATURE_TYPE = "cosign container image signature"
SigstorePublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)


def load_sigstore_keys(sources: Sequence[bytes], *, what: str) -> list[SigstorePublicKey]:
    """Every public key in ``sources`` (PEM text, several blocks allowed)."""
    keys: list[SigstorePublicKey] = []
    for data in sources:
        blocks = list(_PEM_BLOCK.finditer(data))
        if not blocks:
            raise KeyLoadError(f"{what}: no PEM public key found")
        for block in blocks:
            if block.group(1) != b"PUBLIC KEY":
                raise KeyLoadError(f"{what}: a PEM {block.group(1).decode()!r} block where a "
                                   "PUBLIC KEY was expected")
            try:
                key = serialization.load_pem_public_key(block.group(0))
            except (ValueError, UnsupportedAlgorithm):
                raise KeyLoadError(f"{what}: a PUBLIC KEY block that does not load") from None
            if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey
                              | ed25519.Ed25519PublicKey):
                raise KeyLoadError(f"{what}: unsupported key type {type(key).__name__} "
                                   "(ECDSA, RSA or Ed25519 keys only)")
            keys.append(key)
    if not keys:
        raise KeyLoadError(f"{what}: no public key")
    return keys


def _verifies(key: SigstorePublicKey, signature: bytes, payload: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True


def verify_sigstore_signature(keys: Sequence[SigstorePublicKey], signature: SigstoreSignature,
                              *, image: ImageReference, match: IdentityMatch,
                              documents: Sequence[bytes]) -> int:
    """Check one cosign signature for ``image``; returns the index of the key that
    verified it.  ``SignatureInvalid`` says why it is not accepted."""
    if signature.media_type != COSIGN_SIGNATURE_MEDIA_TYPE:
        raise SignatureInvalid("malformed", f"an attachment of media type "
                               f"{signature.media_type[:100]!r}, not a cosign signature")
    if not signature.signature:
        raise SignatureInvalid("malformed", "the layer has no "
                               "dev.cosignproject.cosign/signature annotation")
    try:
        raw = base64.b64decode(signature.signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid("malformed", "the signature annotation is not base64") from None
    for index, key in enumerate(keys):
        if _verifies(key, raw, signature.payload):
            claims = parse_claims(signature.payload, SIGSTORE_SIGNATURE_TYPE,
                                  optional_may_be_null=True)
            check_claims(claims, image=image, match=match, documents=documents)
            return index
    raise SignatureInvalid("bad signature or unknown key", f"it does not verify with any of "
                           f"the {len(keys)} accepted public key(s)")
