"""The KBS client: guest-components' ``kbs_protocol`` (RCAR) and ``kbs-client``'s admin calls.

One :class:`KbsClient` talks to one KBS (Trustee or ``veritee serve``) over the
``/kbs/v0`` API:

* :meth:`KbsClient.attest` runs the RCAR handshake byte for byte as
  guest-components 0.4.0 does it: ``POST /kbs/v0/auth`` with the Request
  ``{"version":"0.4.0","tee":…,"extra-params":{"supported-hash-algorithms":[…]}}``,
  a Challenge back (and the ``kbs-session-id`` cookie), then the runtime data
  ``{"nonce","tee-pubkey"}`` bound into the evidence through
  ``H(JCS({"tee-pubkey","nonce","additional-evidence"}))`` and
  ``POST /kbs/v0/attest`` with the Attestation message; the answer is the token.
* :meth:`KbsClient.get_resource` fetches ``/kbs/v0/resource/<repo>/<type>/<tag>``
  with the session cookie (or ``Authorization: Bearer``) and decrypts the JWE
  with the TEE private key.
* The admin calls send ``Authorization: Bearer <admin token>``.

The pure pieces (:func:`build_request`, :func:`tee_pubkey_jwk`,
:func:`compose_attestation`, :func:`decrypt_response`, …) are public so that
they can be checked against Trustee's vectors without a server.

Every non-2xx answer raises :class:`KbsRequestError` with Trustee's error
``type`` and ``detail``; local failures raise :class:`KbsClientError`.  Neither
ever carries a token or key material in its message.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable
from urllib.parse import quote

import httpx
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from veritee.errors import VeriteeError

if TYPE_CHECKING:
    from veritee.emulator.root import TestRoot

__all__ = [
    "ADMIN_TOKEN_LIFETIME_S",
    "KBS_PREFIX",
    "PROTOCOL_VERSION",
    "SESSION_COOKIE",
    "SUPPORTED_HASH_ALGORITHMS",
    "AdditionalEvidenceProvider",
    "EmulatedEvidenceProvider",
    "EvidenceProvider",
    "KbsClient",
    "KbsClientError",
    "KbsRequestError",
    "PreparedAttestation",
    "TeeKey",
    "build_request",
    "compose_attestation",
    "decrypt_response",
    "digest",
    "encode_additional_evidence",
    "generate_tee_key",
    "jcs",
    "load_tee_key",
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
ADMIN_TOKEN_LIFETIME_S = 2 * 3600  # kbs-client's Claims::create(Duration::from_hours(2))
USER_AGENT = "veritee-kbs-client/0.1.0"
TIMEOUT_S = 60.0  # kbs_protocol's per-request timeout
RESOURCE_ATTEMPTS = 2  # one GET after the handshake, one more after a fresh handshake

TeeKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
KeyAlg = Literal["EC", "RSA"]

_EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "secp256r1": (ec.SECP256R1, 32),
    "secp521r1": (ec.SECP521R1, 66),
}
_CRV_NAMES = {"secp256r1": "P-256", "secp521r1": "P-521"}
_JWE_ALGORITHMS = ["ECDH-ES+A256KW", "RSA-OAEP-256", "RSA1_5", "A256GCM"]
_SEGMENT = re.compile(r"^[a-zA-Z0-9_\-]+[a-zA-Z0-9_\-.]*$")


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The system trust store, loaded once (it costs ~20 ms) and shared by every client."""
    return ssl.create_default_context()


class KbsClientError(VeriteeError):
    """A client-side failure: a bad argument, an unusable answer, a JWE that does not open."""


class KbsRequestError(VeriteeError):
    """A non-2xx answer from the KBS, with Trustee's error ``type`` and ``detail``.

    ``type`` is the full URL (``https://github.com/confidential-containers/kbs/errors/PolicyDeny``)
    or ``""`` when the body was not a Trustee error; ``name`` is its last segment.
    """

    def __init__(self, method: str, path: str, status: int, type_: str, detail: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.type = type_
        self.detail = detail
        what = f"{self.name}: {detail}" if self.name else detail
        super().__init__(f"{method} {path}: HTTP {status}: {what}")

    @property
    def name(self) -> str:
        return self.type.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] if self.type else ""

    @classmethod
    def from_response(cls, response: httpx.Response) -> KbsRequestError:
        request = response.request
        type_, detail = "", ""
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("type"), str):
            type_ = body["type"]
            found = body.get("detail")
            detail = found if isinstance(found, str) else ""
        else:
            text = response.content[:200].decode("utf-8", "replace").strip()
            detail = text or response.reason_phrase
        return cls(request.method, request.url.path, response.status_code, type_, detail)


# --- evidence providers ------------------------------------------------------------------------


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


class EmulatedEvidenceProvider:
    """Evidence from the emulator under the test root in ``root_dir`` (tdx, sgx, snp, sample).

    ``devices`` adds composite evidence; ``sampledevice`` is the one emulated device
    (Trustee's sample GPU: ``{"svn":"2","report_data":"<b64>"}``).
    """

    DEVICES: tuple[str, ...] = ("sampledevice",)

    def __init__(
        self,
        root_dir: Path,
        *,
        devices: Sequence[str] = (),
        settings: Mapping[str, bytes] | None = None,
    ) -> None:
        unknown = [d for d in devices if d not in self.DEVICES]
        if unknown:
            raise KbsClientError(
                f"no emulated device {', '.join(unknown)}; expected {', '.join(self.DEVICES)}"
            )
        self.root_dir = root_dir
        self.devices = tuple(devices)
        self.settings = dict(settings or {})
        self._root: TestRoot | None = None

    def _test_root(self) -> TestRoot:
        if self._root is None:
            from veritee.emulator.root import TestRoot

            self._root = TestRoot.load(self.root_dir)
        return self._root

    def evidence(self, tee: str, report_data: bytes) -> bytes:
        from veritee.emulator.evidence import EMULATED_TEES, EvidenceRequest, emulate

        kind = next((t for t in EMULATED_TEES if t == tee), None)
        if kind is None:
            raise KbsClientError(
                f"the emulator has no {tee!r} TEE; expected one of {', '.join(EMULATED_TEES)}"
            )
        request = EvidenceRequest(kind, report_data=report_data, settings=self.settings)
        try:
            return emulate(self._test_root(), request).wire_bytes()
        except ValueError as exc:
            raise KbsClientError(f"emulated {tee} evidence: {exc}") from exc

    def additional_evidence(self, report_data: bytes) -> Mapping[str, Any]:
        return {
            device: {"svn": "2", "report_data": base64.b64encode(report_data).decode()}
            for device in self.devices
        }


# --- pure protocol pieces ----------------------------------------------------------------------


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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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
        size = curve[1]
        numbers = public.public_numbers()
        return {
            "kty": "EC",
            "crv": _CRV_NAMES[public.curve.name],
            "alg": "ECDH-ES+A256KW",
            "x": _b64url(numbers.x.to_bytes(size, "big")),
            "y": _b64url(numbers.y.to_bytes(size, "big")),
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
            "n": _b64url(rsa_numbers.n.to_bytes(n_len, "big")),
            "e": _b64url(rsa_numbers.e.to_bytes(e_len, "big")),
        }
    raise KbsClientError("the TEE key must be EC (P-256, P-521) or RSA")


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


def token_is_valid(token: str, *, now: float | None = None) -> bool:
    """kbs_protocol ``check_valid``: not ``exp < now`` and not ``nbf > now``."""
    try:
        claims = token_claims(token)
    except KbsClientError:
        return False
    at = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, int | float) and exp < at:
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


def load_tee_key(pem: bytes) -> TeeKey:
    """A TEE private key from PEM (PKCS#1 RSA, PKCS#8 or SEC1 EC)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KbsClientError("the TEE key file is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise KbsClientError("the TEE key must be an EC (P-256, P-521) or RSA private key")
    tee_pubkey_jwk(key)  # rejects other curves and short RSA keys
    return key


def tee_key_pem(key: TeeKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


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


def rust_debug_error_information(error: KbsRequestError, *, pretty: bool = True) -> str:
    """kbs-types ``ErrorInformation`` as kbs_protocol logs it (``{:#?}``, or ``{:?}``)."""
    kind, detail = rust_debug_str(error.type), rust_debug_str(error.detail)
    if pretty:
        return f"ErrorInformation {{\n    error_type: {kind},\n    detail: {detail},\n}}"
    return f"ErrorInformation {{ error_type: {kind}, detail: {detail} }}"


# --- the client --------------------------------------------------------------------------------


def _session_cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        morsel = jar.get(SESSION_COOKIE)
        if morsel is not None and morsel.value:
            return morsel.value
    return None


class KbsClient:
    """A KBS client with one ephemeral TEE key pair (as a ``KbsClient`` in kbs_protocol).

    ``evidence_provider`` is needed only for :meth:`attest` (and a cookie
    :meth:`get_resource`); ``admin_token`` only for the admin calls.  ``tee_key``
    reuses a key pair (kbs-client ``--tee-key-file``) instead of generating one.
    """

    def __init__(
        self,
        url: str,
        *,
        evidence_provider: EvidenceProvider | None = None,
        tee: str = "sample",
        key_alg: KeyAlg = "EC",
        http: httpx.Client | None = None,
        cert_file: Path | None = None,
        tee_key: TeeKey | None = None,
        admin_token: str | None = None,
        init_data: str | None = None,
    ) -> None:
        if http is not None and cert_file is not None:
            raise KbsClientError("pass either http or cert_file, not both")
        self.url = url.rstrip("/")
        self.evidence_provider = evidence_provider
        self.tee = tee
        self.tee_key: TeeKey = tee_key if tee_key is not None else generate_tee_key(key_alg)
        self.tee_pubkey = tee_pubkey_jwk(self.tee_key)
        self.admin_token = admin_token
        self.init_data = init_data
        self.token: str | None = None
        self.session_id: str | None = None
        self.last_attestation: PreparedAttestation | None = None
        self._owns_http = http is None
        if http is None:
            verify: ssl.SSLContext | bool = _default_tls()
            if cert_file is not None:
                try:
                    verify = ssl.create_default_context(cafile=str(cert_file))
                except (OSError, ssl.SSLError) as exc:
                    raise KbsClientError(f"cannot use {cert_file} as the KBS root: {exc}") from exc
            # TCP_NODELAY: a request's headers and body go out in separate writes, and
            # without it Nagle's algorithm holds the body for the server's delayed ACK
            # (about 40 ms on Linux) on every request.
            transport = httpx.HTTPTransport(
                verify=verify, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            )
            http = httpx.Client(
                transport=transport, timeout=TIMEOUT_S, headers={"User-Agent": USER_AGENT}
            )
        self.http = http

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> KbsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing --

    def _send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        url = f"{self.url}{KBS_PREFIX}/{path}"
        try:
            response = self.http.request(method, url, content=content, headers=dict(headers or {}))
        except httpx.HTTPError as exc:
            raise KbsClientError(
                f"{method} {KBS_PREFIX}/{path}: {type(exc).__name__}: {exc}"
            ) from exc
        if not response.is_success:
            raise KbsRequestError.from_response(response)
        return response

    @staticmethod
    def _json(response: httpx.Response, what: str) -> Any:
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise KbsClientError(f"the KBS {what} answer is not JSON") from exc

    def _admin_headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {}
        if self.admin_token:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    @staticmethod
    def _body(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    # -- RCAR --

    def attest(self, *, init_data: str | None = None) -> str:
        """One RCAR handshake; returns (and keeps) the attestation token."""
        if self.evidence_provider is None:
            raise KbsClientError("attestation needs an evidence provider")
        json_ct = {"Content-Type": "application/json"}
        auth = self._send(
            "POST", "auth", content=self._body(build_request(self.tee)), headers=json_ct
        )
        challenge = self._json(auth, "auth")
        if not isinstance(challenge, dict) or not isinstance(challenge.get("nonce"), str):
            raise KbsClientError("the KBS Challenge has no nonce")
        session = _session_cookie(auth)
        if session is None:
            raise KbsClientError(f"the KBS set no {SESSION_COOKIE} cookie")
        algorithm = select_hash_algorithm(challenge.get("extra-params"), self.tee)
        prepared = compose_attestation(
            self.evidence_provider,
            self.tee,
            challenge["nonce"],
            self.tee_pubkey,
            hash_algorithm=algorithm,
            init_data=init_data if init_data is not None else self.init_data,
        )
        self.last_attestation = prepared
        attest = self._send(
            "POST",
            "attest",
            content=self._body(prepared.message),
            headers={**json_ct, "Cookie": f"{SESSION_COOKIE}={session}"},
        )
        answer = self._json(attest, "attest")
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise KbsClientError("the KBS attest answer has no token")
        self.session_id = _session_cookie(attest) or session
        self.token = token
        return token

    def get_resource(
        self,
        path: str,
        *,
        use_bearer: bool = False,
        attempts: int = RESOURCE_ATTEMPTS,
        on_unauthorized: Callable[[KbsRequestError], None] | None = None,
    ) -> bytes:
        """GET ``/kbs/v0/resource/<repo>/<type>/<tag>`` and decrypt the JWE.

        Attests first when there is no valid token.  With the cookie, a 401 is
        reported to ``on_unauthorized`` and answered with a fresh handshake, up to
        ``attempts`` GETs in all (kbs_protocol's loop); the last 401 is raised.
        ``use_bearer`` sends ``Authorization: Bearer <token>`` and no cookie, once.
        """
        target = f"resource/{resource_path(path)}"
        if (
            self.token is None
            or not token_is_valid(self.token)
            or (not use_bearer and self.session_id is None)
        ):
            self.attest()
        for attempt in range(1, max(1, attempts) + 1):
            if use_bearer:
                headers = {"Authorization": f"Bearer {self.token}"}
            else:
                headers = {"Cookie": f"{SESSION_COOKIE}={self.session_id}"}
            try:
                response = self._send("GET", target, headers=headers)
            except KbsRequestError as exc:
                if use_bearer or exc.status != 401 or attempt >= attempts:
                    raise
                if on_unauthorized is not None:
                    on_unauthorized(exc)
                self.attest()
                continue
            body = self._json(response, "resource")
            if not isinstance(body, dict):
                raise KbsClientError("the resource answer is not a JWE object")
            return decrypt_response(body, self.tee_key)
        raise KbsClientError("unreachable")  # pragma: no cover

    # -- admin --

    def set_resource(self, path: str, data: bytes) -> None:
        target = f"resource/{resource_path(path)}"
        self._send(
            "POST", target, content=data, headers=self._admin_headers("application/octet-stream")
        )

    def delete_resource(self, path: str) -> None:
        self._send("DELETE", f"resource/{resource_path(path)}", headers=self._admin_headers())

    def set_resource_policy(self, text: str) -> None:
        body = {"policy": _b64url(text.encode())}
        self._send(
            "POST",
            "resource-policy",
            content=self._body(body),
            headers=self._admin_headers("application/json"),
        )

    def get_resource_policy(self) -> str:
        """The body of ``GET /kbs/v0/resource-policy`` (Trustee: a JSON list of policy ids)."""
        return self._send("GET", "resource-policy", headers=self._admin_headers()).text

    def set_attestation_policy(
        self, text: str, policy_id: str = "default_cpu", *, policy_type: str = "rego"
    ) -> None:
        body = {"type": policy_type, "policy_id": policy_id, "policy": _b64url(text.encode())}
        self._send(
            "POST",
            "attestation-policy",
            content=self._body(body),
            headers=self._admin_headers("application/json"),
        )

    def set_reference_value(self, message: Mapping[str, Any]) -> None:
        self._send(
            "POST",
            "reference-value",
            content=self._body(dict(message)),
            headers=self._admin_headers("application/json"),
        )

    def get_reference_value(self, id: str) -> Any:
        response = self._send(
            "GET", f"reference-value/{quote(id, safe='/:')}", headers=self._admin_headers()
        )
        text = response.text
        try:
            return json.loads(text)
        except ValueError:
            return text
