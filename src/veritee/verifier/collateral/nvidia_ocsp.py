"""OCSP status of NVIDIA certificate chains (:class:`OcspChecker`): from NVIDIA's OCSP
responder or a local directory of DER responses.

Facts from NVIDIA's local GPU verifier (nvtrust), stated here, not copied: the responder is
:data:`OCSP_URL` (``NV_OCSP_URL`` there); a request is DER, POSTed as
``application/ocsp-request``, for one certificate with a SHA-384 CertID and a 32-byte nonce;
every certificate of a chain but the root is asked about, with the next one as its issuer,
except a GPU's device leaf (nvtrust starts the device chain at its second certificate).

Like the other collateral sources it goes through
:func:`~veritee.verifier.collateral.cache.obtain` for cache-or-fetch (kind ``nvidia-ocsp``),
each response filed under the root its chain ends in; offline mode answers from the cache
only (a miss is :class:`~veritee.errors.CollateralMissing` naming the certificate); every
failure is a :class:`~veritee.errors.CollateralError` naming the certificate and, for HTTP,
the URL.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from veritee.errors import CollateralError
from veritee.verifier.collateral.anchor import Anchor
from veritee.verifier.collateral.cache import CollateralCache, Fetched, obtain
from veritee.verifier.collateral.http import DEFAULT_TIMEOUT, MAX_BODY, safe_url

__all__ = ["OCSP_URL", "OcspChecker", "OcspStatus"]

OCSP_URL: Final = "https://ocsp.ndis.nvidia.com/"
#: How long a response without nextUpdate is taken as current after its thisUpdate.
OCSP_MAX_AGE: Final = dt.timedelta(days=7)
OcspStatus = Literal["good", "revoked", "unknown"]
_RANK: Final = {"good": 0, "unknown": 1, "revoked": 2}


def _now(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


class OcspChecker:
    """Revocation status of certificate chains, from an OCSP responder (POST to ``url``) or a
    ``directory`` of DER responses named ``<serial, lower-case hex>.der``.

    With a ``directory`` and no ``url`` nothing is fetched, and a certificate without a file
    is "unknown"; with neither, ``url`` is :data:`OCSP_URL`.  Every response must be
    successful, be about that certificate (serial and issuer hashes), be signed by the issuer
    or by an OCSP-signing responder certificate the issuer signed (valid at ``at``), and be
    current at ``at`` (thisUpdate ≤ at < nextUpdate, or :data:`OCSP_MAX_AGE` without
    nextUpdate).  A fresh response must echo the request's nonce if it carries one.
    Anything else is a :class:`CollateralError` naming the certificate."""

    def __init__(
        self,
        *,
        url: str | None = None,
        directory: Path | None = None,
        cache: CollateralCache | None = None,
        offline: bool = False,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = url if url is not None or directory is not None else OCSP_URL
        self.directory = directory
        self.cache = cache
        self.offline = offline
        self._client = client

    def status(self, chain: Sequence[x509.Certificate], *, at: dt.datetime) -> OcspStatus:
        """The worst status ("revoked" > "unknown" > "good") of the chain's certificates, each
        asked about with the next one as its issuer; the root is not asked about, nor a leaf
        that neither it nor its issuer gives an OCSP location for (a GPU's per-boot leaf)."""
        when = _now(at)
        if len(chain) < 2:
            return "unknown"
        root = Anchor.of(chain[-1])
        start = 1 if not (_has_ocsp(chain[0]) or _has_ocsp(chain[1])) else 0
        worst: OcspStatus = "good"
        for cert, issuer in zip(chain[start:-1], chain[start + 1 :], strict=True):
            found = self.cert_status(cert, issuer, at=when, root=root)
            if _RANK[found] > _RANK[worst]:
                worst = found
        return worst

    def cert_status(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        *,
        at: dt.datetime,
        root: Anchor | None = None,
    ) -> OcspStatus:
        """The status of one certificate (``root``: where its chain ends, for the cache)."""
        when = _now(at)
        what = f"OCSP status of '{_cn(cert)}' (serial {cert.serial_number:x})"
        if self.directory is not None:
            path = self.directory / f"{cert.serial_number:x}.der"
            if path.is_file():
                return _check(_load(path.read_bytes(), what), cert, issuer, when, what, None)
            if self.url is None:
                return "unknown"
        anchor = root or Anchor.of(issuer)
        url = self.url or OCSP_URL
        der = obtain(
            self.cache,
            kind="nvidia-ocsp",
            key=f"{_key_hash(issuer)}/{cert.serial_number:x}",
            what=what,
            at=when,
            offline=self.offline,
            fetch=lambda: self._fetch(url, cert, issuer, when, what, anchor),
            roots=(anchor,),
        ).value
        return _check(_load(der, what), cert, issuer, when, what, None)

    def _fetch(
        self,
        url: str,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        at: dt.datetime,
        what: str,
        anchor: Anchor,
    ) -> Fetched:
        nonce = secrets.token_bytes(32)
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(cert, issuer, hashes.SHA384())
            .add_extension(x509.OCSPNonce(nonce), critical=False)
            .build()
        )
        body = _post(self._client, url, request.public_bytes(Encoding.DER), what)
        response = _load(body, what)
        _check(response, cert, issuer, at, what, nonce)
        single = _single(response, cert, issuer, what)
        expires = single.next_update_utc or single.this_update_utc + OCSP_MAX_AGE
        return Fetched(body, expires, single.this_update_utc, anchor, safe_url(url))


def _has_ocsp(cert: x509.Certificate) -> bool:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return False
    return any(d.access_method == AuthorityInformationAccessOID.OCSP for d in aia)


def _post(client: httpx.Client | None, url: str, body: bytes, what: str) -> bytes:
    shown = safe_url(url)
    headers = {"Content-Type": "application/ocsp-request", "Accept": "application/ocsp-response"}
    own = client is None
    http = client if client is not None else httpx.Client(timeout=DEFAULT_TIMEOUT)
    try:
        response = http.post(url, content=body, headers=headers, follow_redirects=True)
    except httpx.TimeoutException as exc:
        raise CollateralError(what, f"POST {shown} timed out") from exc
    except httpx.HTTPError as exc:
        raise CollateralError(what, f"POST {shown} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if own:
            http.close()
    if response.status_code != httpx.codes.OK:
        raise CollateralError(what, f"POST {shown} returned HTTP {response.status_code}")
    if len(response.content) > MAX_BODY:
        raise CollateralError(what, f"POST {shown}: body exceeds {MAX_BODY} bytes")
    return response.content


def _load(der: bytes, what: str) -> ocsp.OCSPResponse:
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise CollateralError(what, f"not a DER OCSP response: {exc}") from None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise CollateralError(what, f"the responder answered {response.response_status.name}")
    return response


def _single(
    response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate, what: str
) -> ocsp.OCSPSingleResponse:
    for single in response.responses:
        probe = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, single.hash_algorithm)
        built = probe.build()
        if (
            single.serial_number == cert.serial_number
            and single.issuer_key_hash == built.issuer_key_hash
            and single.issuer_name_hash == built.issuer_name_hash
        ):
            return single
    raise CollateralError(what, "the response is about another certificate")


def _check(
    response: ocsp.OCSPResponse,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    at: dt.datetime,
    what: str,
    nonce: bytes | None,
) -> OcspStatus:
    single = _single(response, cert, issuer, what)
    _check_signer(response, issuer, at, what)
    if single.this_update_utc > at:
        raise CollateralError(
            what, f"the response is from {_iso(single.this_update_utc)}, after {_iso(at)}"
        )
    until = single.next_update_utc or single.this_update_utc + OCSP_MAX_AGE
    if at >= until:
        raise CollateralError(
            what, f"the response was current until {_iso(until)}, not at {_iso(at)}"
        )
    if nonce is not None:
        try:
            echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            echoed = None  # the responder does not support nonces
        if echoed is not None and echoed != nonce:
            raise CollateralError(what, "the response's nonce is not the request's")
    if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
        return "good"
    if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
        return "revoked"
    return "unknown"


def _check_signer(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, at: dt.datetime, what: str
) -> None:
    """The responder is the issuer itself, or an OCSP-signing certificate the issuer signed."""
    candidates = [issuer, *response.certificates]
    signer = next((c for c in candidates if _is_responder(response, c)), None)
    if signer is None:
        raise CollateralError(what, "the response names a responder that came with no certificate")
    if signer is not issuer:
        try:
            signer.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError):
            raise CollateralError(
                what, f"the responder '{_cn(signer)}' was not issued by '{_cn(issuer)}'"
            ) from None
        try:
            usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usage = x509.ExtendedKeyUsage([])
        if ExtendedKeyUsageOID.OCSP_SIGNING not in usage:
            raise CollateralError(what, f"the responder '{_cn(signer)}' may not sign OCSP")
        if not signer.not_valid_before_utc <= at <= signer.not_valid_after_utc:
            raise CollateralError(what, f"the responder '{_cn(signer)}' is not valid at {_iso(at)}")
    if not _signature_ok(response, signer):
        raise CollateralError(
            what, f"the response's signature does not verify with '{_cn(signer)}'"
        )


def _is_responder(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_key_hash is not None:
        return response.responder_key_hash == bytes.fromhex(_key_hash(cert))
    return response.responder_name == cert.subject


def _signature_ok(response: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    key, data, signature = signer.public_key(), response.tbs_response_bytes, response.signature
    algorithm = response.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True


def _key_hash(cert: x509.Certificate) -> str:
    """SHA-1 of the certificate's subjectPublicKey (OCSP's ResponderID byKey, RFC 6960)."""
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex()


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
