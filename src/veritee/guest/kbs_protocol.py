"""The pure pieces of guest-components' ``kbs_protocol`` (RCAR), without any I/O.

What :class:`~veritee.guest.kbs_client.KbsClient` sends and how it reads the
answers, as functions that can be checked against Trustee's vectors without a
server:

* the Request to ``/kbs/v0/auth`` (:func:`build_request`) and the hash the
  Challenge selects (:func:`select_hash_algorithm`, default sha384);
* the TEE key pair (:func:`generate_tee_key`, its ``tee-pubkey`` JWK
  :func:`tee_pubkey_jwk`, and the PEM forms the Attestation Agent hands out:
  :func:`tee_key_pem`, :func:`load_tee_key`, :func:`parse_aa_token`);
* the runtime data bound into the evidence, ``H(JCS({"tee-pubkey","nonce",
  "additional-evidence"}))``, and the Attestation message
  (:func:`compose_attestation`);
* the resource JWE (:func:`decrypt_response`), the token's unverified claims
  (:func:`token_claims`, :func:`token_is_valid`) and resource paths;
* Trustee's ErrorInformation printed the way kbs_protocol logs it.

Local failures raise :class:`KbsClientError`; no message carries a token or key bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from veritee.errors import VeriteeError

__all__ = [
    "DEFAULT_HASH_ALGORITHM",
    "KBS_PREFIX",
    "PROTOCOL_VERSION",
    "SESSION_COOKIE",
    "SUPPORTED_HASH_ALGORITHMS",
    "AdditionalEvidenceProvider",
    "ErrorInformation",
    "EvidenceProvider",
    "KbsClientError",
    "KeyAlg",
    "PreparedAttestation",
    "TeeKey",
    "b64url",
    "build_request",
    "compose_attestation",
    "decrypt_response",
    "digest",
    "encode_additional_evidence",
    "generate_tee_key",
    "jcs",
    "load_tee_key",
    "parse_aa_token",
    "resource_path",
    "rust_debug_error_information",
    "rust_debug_str",
    "select_hash_algorithm",
    "tee_key_pem",
    "tee_pubkey_jwk",
    "token_claims",
    "token_is_valid",
]

PROTOCOL_VERSION = "0.4.0"
KBS_PREFIX = "/kbs/v0"
SESSION_COOKIE = "kbs-session-id"
SUPPORTED_HASH_ALGORITHMS: tuple[str, ...] = ("sha256", "sha384", "sha512", "sm3")
DEFAULT_HASH_ALGORITHM = "sha384"

TeeKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
KeyAlg = Literal["EC", "RSA"]

_EC_CURVES: dict[str, tuple[str, int]] = {"secp256r1": ("P-256", 32), "secp521r1": ("P-521", 66)}
_JWE_ALGORITHMS = ["ECDH-ES+A256KW", "RSA-OAEP-256", "RSA1_5", "A256GCM"]
_SEGMENT = re.compile(r"^[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-.]*$")


class KbsClientError(VeriteeError):
    """A client-side failure: a bad argument, an unusable answer, a JWE that does not open."""


class ErrorInformation(Protocol):
    """kbs-types ``ErrorInformation``: the ``type`` URL and ``detail`` of a KBS refusal."""

    @property
    def type(self) -> str: ...

    @property
    def detail(self) -> str: ...


class EvidenceProvider(Protocol):
    def evidence(self, tee: str, report_data: bytes) -> bytes:
        """Evidence JSON bytes in Trustee's wire form for ``tee``, bound to ``report_data``
        (the raw digest: 48 bytes for sha384; the attester pads or truncates it)."""
        ...


@runtime_checkable
class AdditionalEvidenceProvider(Protocol):
    """A provider that also has devices (composite evidence): ``{tee: evidence JSON}``,
    each bound to ``report_data`` = ``H(JCS({"nonce","tee-pubkey"}))``; empty when none."""

    def additional_evidence(self, report_data: bytes) -> Mapping[str, Any]: ...


# --- the handshake's messages ------------------------------------------------------------------


def build_request(tee: str) -> dict[str, Any]:
    """The kbs-types Request guest-components sends to ``/kbs/v0/auth``."""
    return {
        "version": PROTOCOL_VERSION,
        "tee": tee,
        "extra-params": {"supported-hash-algorithms": list(SUPPORTED_HASH_ALGORITHMS)},
    }


def select_hash_algorithm(extra_params: Any, tee: str) -> str:
    """The Challenge's ``selected-hash-algorithm`` (lowercased), else sha384 (sha512 for se,
    which Trustee's AS always uses for se)."""
    if isinstance(extra_params, Mapping) and "selected-hash-algorithm" in extra_params:
        selected = extra_params["selected-hash-algorithm"]
        if not isinstance(selected, str):
            raise KbsClientError("the Challenge's selected-hash-algorithm is not a string")
        name = selected.lower()
        if name not in SUPPORTED_HASH_ALGORITHMS:
            raise KbsClientError(f"the KBS selected an unknown hash algorithm {selected!r}")
        return name
    return "sha512" if tee == "se" else DEFAULT_HASH_ALGORITHM


def digest(algorithm: str, data: bytes) -> bytes:
    if algorithm not in SUPPORTED_HASH_ALGORITHMS:
        raise KbsClientError(f"unknown hash algorithm {algorithm!r}")
    try:
        return hashlib.new(algorithm, data).digest()
    except ValueError as exc:  # sm3 needs an OpenSSL that has it
        raise KbsClientError(f"hash algorithm {algorithm} is not available here") from exc


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON, as serde_json_canonicalizer writes it."""
    return rfc8785.dumps(value)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_additional_evidence(devices: Mapping[str, Any]) -> str:
    """``tee-evidence.additional_evidence``: compact JSON of ``{tee: evidence}``, or ``""``."""
    if not devices:
        return ""
    return json.dumps(dict(devices), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class PreparedAttestation:
    """What one handshake binds: ``message`` is the body of ``POST /kbs/v0/attest``."""

    message: dict[str, Any]
    hash_algorithm: str
    report_data: bytes
    device_report_data: bytes | None


def compose_attestation(
    provider: EvidenceProvider,
    tee: str,
    nonce: str,
    tee_pubkey: Mapping[str, Any],
    *,
    hash_algorithm: str = DEFAULT_HASH_ALGORITHM,
    init_data: str | None = None,
) -> PreparedAttestation:
    """guest-components ``get_composite_evidence`` and the kbs-types Attestation message.

    Devices get ``H(JCS({"nonce","tee-pubkey"}))``; the primary attester gets
    ``H(JCS({"tee-pubkey","nonce","additional-evidence"}))`` where
    ``additional-evidence`` is the very string sent (``""`` without devices).
    """
    runtime_data: dict[str, Any] = {"nonce": nonce, "tee-pubkey": dict(tee_pubkey)}
    device_rd: bytes | None = None
    additional = ""
    if isinstance(provider, AdditionalEvidenceProvider):
        device_rd = digest(hash_algorithm, jcs(runtime_data))
        additional = encode_additional_evidence(provider.additional_evidence(device_rd))
        if not additional:
            device_rd = None
    primary = {"tee-pubkey": dict(tee_pubkey), "nonce": nonce, "additional-evidence": additional}
    report_data = digest(hash_algorithm, jcs(primary))
    raw = provider.evidence(tee, report_data)
    try:
        evidence = json.loads(raw)
    except ValueError as exc:
        raise KbsClientError(f"the {tee} evidence is not JSON") from exc
    message = {
        "init-data": None if init_data is None else {"format": "toml", "body": init_data},
        "runtime-data": runtime_data,
        "tee-evidence": {"primary_evidence": evidence, "additional_evidence": additional},
    }
    return PreparedAttestation(message, hash_algorithm, report_data, device_rd)


# --- the TEE key pair --------------------------------------------------------------------------


def generate_tee_key(key_alg: KeyAlg = "EC") -> TeeKey:
    """The ephemeral TEE key pair: EC P-256 (ECDH-ES+A256KW) or RSA-2048 (RSA-OAEP-256)."""
    if key_alg == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    if key_alg == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise KbsClientError(f"unknown key algorithm {key_alg!r}; expected EC or RSA")


def tee_pubkey_jwk(key: TeeKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> dict[str, str]:
    """kbs-types ``TeePubKey``: EC P-256/P-521 with ECDH-ES+A256KW or RSA with RSA-OAEP-256."""
    public = (
        key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else key
    )
    if isinstance(public, ec.EllipticCurvePublicKey):
        curve = _EC_CURVES.get(public.curve.name)
        if curve is None:
            raise KbsClientError(f"TEE key curve {public.curve.name} is not P-256 or P-521")
        name, size = curve
        numbers = public.public_numbers()
        return {
            "kty": "EC",
            "crv": name,
            "alg": "ECDH-ES+A256KW",
            "x": b64url(numbers.x.to_bytes(size, "big")),
            "y": b64url(numbers.y.to_bytes(size, "big")),
        }
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < 2048:
            raise KbsClientError("an RSA TEE key must have at least 2048 bits")
        rsa_numbers = public.public_numbers()
        n_len = (rsa_numbers.n.bit_length() + 7) // 8
        e_len = (rsa_numbers.e.bit_length() + 7) // 8
        return {
            "kty": "RSA",
            "alg": "RSA-OAEP-256",
            "n": b64url(rsa_numbers.n.to_bytes(n_len, "big")),
            "e": b64url(rsa_numbers.e.to_bytes(e_len, "big")),
        }
    raise KbsClientError("the TEE key must be EC (P-256, P-521) or RSA")


def tee_key_pem(key: TeeKey) -> bytes:
    """The private key as the Attestation Agent hands it out with a ``kbs`` token:
    PKCS#8 (``BEGIN PRIVATE KEY``) for EC, PKCS#1 (``BEGIN RSA PRIVATE KEY``) for RSA."""
    form = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if isinstance(key, rsa.RSAPrivateKey)
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def load_tee_key(pem: bytes) -> TeeKey:
    """A TEE private key from unencrypted PEM.

    The Attestation Agent's two forms first, in the order guest-components tries them
    (PKCS#1 RSA, then PKCS#8 EC P-256/P-521); PKCS#8 RSA and SEC1 EC (``openssl
    ecparam -genkey``) key files are read too.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KbsClientError("the TEE key is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KbsClientError("the TEE key must be an EC (P-256, P-521) or RSA private key")
    tee_pubkey_jwk(key)  # rejects other curves and short RSA keys
    return key


def parse_aa_token(body: bytes) -> tuple[str, TeeKey]:
    """The Attestation Agent's answer to GetToken("kbs"): ``{"token", "tee_keypair"}``."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise KbsClientError("the Attestation Agent's kbs token answer is not JSON") from exc
    token = doc.get("token") if isinstance(doc, dict) else None
    pem = doc.get("tee_keypair") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not isinstance(pem, str):
        raise KbsClientError(
            'the Attestation Agent\'s kbs token answer is not {"token", "tee_keypair"}'
        )
    return token, load_tee_key(pem.encode())


# --- answers -----------------------------------------------------------------------------------


def decrypt_response(body: Mapping[str, Any], key: TeeKey) -> bytes:
    """Open kbs-types ``Response`` (flattened JWE JSON) with the TEE private key.

    As kbs_protocol does: AAD is the received ``protected`` string, ``aad`` is ignored.
    """
    fields = ("protected", "encrypted_key", "iv", "ciphertext", "tag")
    parts = [body.get(name) for name in fields]
    if not all(isinstance(part, str) for part in parts):
        raise KbsClientError("the resource response is not a JWE (protected, encrypted_key, …)")
    compact = ".".join(str(part) for part in parts)
    jwk: ECKey | RSAKey = (
        ECKey.import_key(key)
        if isinstance(key, ec.EllipticCurvePrivateKey)
        else RSAKey.import_key(key)
    )
    try:
        with warnings.catch_warnings():
            # Trustee still answers RSA1_5 keys; kbs_protocol decrypts them, so do we.
            warnings.filterwarnings("ignore", message='JWE algorithm "RSA1_5" is deprecated')
            return jwe.decrypt_compact(compact, jwk, algorithms=_JWE_ALGORITHMS).plaintext or b""
    except (JoseError, ValueError) as exc:
        raise KbsClientError(
            f"the resource JWE does not decrypt with the TEE key ({type(exc).__name__})"
        ) from exc


def token_claims(token: str) -> dict[str, Any]:
    """The JWT claims, unverified (kbs_protocol's ``Token::new`` reads only exp/nbf)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise KbsClientError("the attestation token is not a JWT")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError as exc:
        raise KbsClientError("the attestation token's claims are not JSON") from exc
    if not isinstance(claims, dict):
        raise KbsClientError("the attestation token's claims are not an object")
    return claims


def token_is_valid(token: str, *, now: float | None = None, margin_s: float = 0.0) -> bool:
    """kbs_protocol ``check_valid``: not ``exp < now`` and not ``nbf > now``.

    ``margin_s`` counts a token that expires within that many seconds as expired
    already, so that it is not sent just to be refused on arrival.
    """
    try:
        claims = token_claims(token)
    except KbsClientError:
        return False
    at = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, int | float) and exp < at + margin_s:
        return False
    return not (isinstance(nbf, int | float) and nbf > at)


def resource_path(path: str) -> str:
    """``repo/type/tag`` as Trustee's resource plugin accepts it (a leading ``/`` is dropped)."""
    segments = path.strip("/").split("/")
    if len(segments) != 3 or not all(_SEGMENT.match(s) for s in segments):
        raise KbsClientError(
            f"resource path {path!r} is not <repository>/<type>/<tag> "
            "(letters, digits, '_', '-', '.'; no leading dot)"
        )
    return "/".join(segments)


# --- kbs-client's printing ---------------------------------------------------------------------


def rust_debug_str(text: str) -> str:
    """Rust's ``{:?}`` of a string."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def rust_debug_error_information(error: ErrorInformation, *, pretty: bool = True) -> str:
    """kbs-types ``ErrorInformation`` as kbs_protocol logs it (``{:#?}``, or ``{:?}``)."""
    kind, detail = rust_debug_str(error.type), rust_debug_str(error.detail)
    if pretty:
        return f"ErrorInformation {{\n    error_type: {kind},\n    detail: {detail},\n}}"
    return f"ErrorInformation {{ error_type: {kind}, detail: {detail} }}"
