"""The attestation-token signing key, its certificate chain and its JWKS.

Tokens look like Trustee's: a JWT whose header is ``{"typ": "JWT", "alg": ..., "jwk": {...}}``
where the ``jwk`` is the public signing key with ``alg`` and ``x5c`` (the certificate chain,
standard base64 DER, leaf first, in file order).  KBS verifies such a token by checking
``x5c`` to its trusted certificates, so veritee always has a chain: without one it makes a
self-signed certificate for the key (CN "veritee attestation token signer").

veritee adds a ``kid`` (the RFC 7638 SHA-256 thumbprint of the public key) to the header,
to the header ``jwk`` and to every JWKS entry, so JWKS look-ups by ``kid`` work.  Trustee
publishes no ``kid``; ``jwks(include_kid=False)`` is byte-for-byte Trustee's JWKS (its
fixture ``expected-jwks.json`` is compared with exact equality upstream).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from veritee.errors import ParseError
from veritee.pem import load_certificates
from veritee.token.verify import TokenError, TokenRegistry

SignerAlg = Literal["ES256", "RS256"]
SIGNER_CN = "veritee attestation token signer"
KEY_FILE = "token.key"
CHAIN_FILE = "token-cert-chain.pem"
MIN_RSA_BITS = 2048
SELF_SIGNED_YEARS = 10

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class _StrictJSON(json.JSONEncoder):
    """Claims as strict JSON (RFC 8259): NaN and infinities are refused, not written."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["allow_nan"] = False
        super().__init__(**kwargs)


class SignerError(TokenError):
    """A signing key or certificate chain that cannot be used."""

    kind = "signer"


def _alg_for(key: PrivateKey) -> SignerAlg:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise SignerError(f"EC signing keys must be P-256, not {key.curve.name}")
        return "ES256"
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise SignerError(f"RSA signing keys need at least {MIN_RSA_BITS} bits")
        return "RS256"
    raise SignerError(f"unsupported signing key type {type(key).__name__}")


def _public_der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def self_signed_certificate(key: PrivateKey, *, now: dt.datetime | None = None) -> x509.Certificate:
    """A self-signed end-entity certificate for ``key``, valid for ten years."""
    start = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0) - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SIGNER_CN)])
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365 * SELF_SIGNED_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


class TokenSigner:
    """Signs EAR claims as JWTs and publishes the verification key."""

    def __init__(self, key: PrivateKey, chain: list[x509.Certificate]) -> None:
        self.alg: SignerAlg = _alg_for(key)
        if not chain:
            raise SignerError("the certificate chain is empty")
        if _public_der(chain[0].public_key()) != _public_der(key.public_key()):
            raise SignerError("the first certificate of the chain is not for the signing key")
        self._key = key
        self._chain = list(chain)
        self._jose_key: ECKey | RSAKey = (
            ECKey.import_key(key)
            if isinstance(key, ec.EllipticCurvePrivateKey)
            else RSAKey.import_key(key)
        )
        self.kid: str = str(self._jose_key.thumbprint())
        # The header and registry are the same for every token this signer makes.
        self._header: dict[str, Any] = {
            "typ": "JWT", "alg": self.alg, "kid": self.kid, "jwk": self.public_jwk()
        }
        self._registry = TokenRegistry(algorithms=[self.alg])

    @classmethod
    def generate(cls, alg: str = "ES256", *, rsa_bits: int = 3072) -> TokenSigner:
        """A new key (P-256 for ES256, RSA for RS256) with a self-signed certificate."""
        key: PrivateKey
        if alg == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            if rsa_bits < MIN_RSA_BITS:
                raise SignerError(f"RSA signing keys need at least {MIN_RSA_BITS} bits")
            key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        else:
            raise SignerError(f"cannot generate a signer for {alg!r} (ES256 or RS256)")
        return cls(key, [self_signed_certificate(key)])

    @classmethod
    def load(cls, key_pem: bytes, cert_chain_pem: bytes | None = None) -> TokenSigner:
        """A signer from a PEM private key and, optionally, its PEM certificate chain.

        Without a chain a self-signed certificate is made (a new one per call: ``save``
        the signer to keep it).
        """
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SignerError(f"cannot load the signing key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise SignerError(f"unsupported signing key type {type(key).__name__}")
        if cert_chain_pem is None:
            return cls(key, [self_signed_certificate(key)])
        if b"-----BEGIN CERTIFICATE-----" not in cert_chain_pem:
            raise SignerError("the certificate chain is not PEM")
        try:
            chain = load_certificates(cert_chain_pem)
        except ParseError as exc:
            raise SignerError(f"cannot load the certificate chain: {exc}") from exc
        return cls(key, chain)

    @classmethod
    def from_directory(cls, directory: Path) -> TokenSigner:
        """A signer saved by :meth:`save` (``token.key`` and ``token-cert-chain.pem``)."""
        try:
            key_pem = (directory / KEY_FILE).read_bytes()
        except OSError as exc:
            raise SignerError(f"cannot read {directory / KEY_FILE}: {exc.strerror}") from exc
        chain_path = directory / CHAIN_FILE
        try:
            chain_pem = chain_path.read_bytes() if chain_path.exists() else None
        except OSError as exc:
            raise SignerError(f"cannot read {chain_path}: {exc.strerror}") from exc
        return cls.load(key_pem, chain_pem)

    def save(self, directory: Path) -> tuple[Path, Path]:
        """Write ``token.key`` (PEM PKCS#8, mode 0600) and ``token-cert-chain.pem``."""
        directory.mkdir(parents=True, exist_ok=True)
        key_path, chain_path = directory / KEY_FILE, directory / CHAIN_FILE
        key_pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        os.chmod(key_path, 0o600)
        chain_path.write_bytes(self.cert_chain_pem())
        return key_path, chain_path

    @property
    def certificates(self) -> list[x509.Certificate]:
        return list(self._chain)

    def cert_chain_pem(self) -> bytes:
        return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in self._chain)

    def x5c(self) -> list[str]:
        """The chain as JWK ``x5c``: standard base64 DER, leaf first."""
        return [
            base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
            for cert in self._chain
        ]

    def public_jwk(self, *, include_kid: bool = True) -> dict[str, Any]:
        """The public key as a JWK with ``alg``, ``x5c`` and (by default) ``kid``."""
        public: Mapping[str, Any] = self._jose_key.as_dict(private=False)
        jwk: dict[str, Any] = {"kty": public["kty"]}
        if public["kty"] == "EC":
            jwk.update(crv=public["crv"], alg=self.alg, x=public["x"], y=public["y"])
        else:
            jwk.update(alg=self.alg, n=public["n"], e=public["e"])
        jwk["x5c"] = self.x5c()
        if include_kid:
            jwk["kid"] = self.kid
        return jwk

    def jwks(self, *, include_kid: bool = True) -> dict[str, Any]:
        """The JWKS to publish (``/.well-known/jwks.json``)."""
        return {"keys": [self.public_jwk(include_kid=include_kid)]}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """``claims`` as a compact JWT with Trustee's header (plus ``kid``)."""
        try:
            return jwt.encode(
                copy.deepcopy(self._header),
                dict(claims),
                self._jose_key,
                algorithms=[self.alg],
                registry=self._registry,
                encoder_cls=_StrictJSON,
            )
        except (JoseError, TypeError, ValueError) as exc:
            raise SignerError(f"cannot sign the token: {exc}") from exc


__all__ = [
    "CHAIN_FILE",
    "KEY_FILE",
    "SIGNER_CN",
    "SignerAlg",
    "SignerError",
    "TokenSigner",
    "self_signed_certificate",
]
