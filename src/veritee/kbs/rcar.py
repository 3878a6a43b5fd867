"""Trustee's RCAR handshake, server side: Request -> Challenge -> Attestation -> token.

Pure protocol logic (no web imports).  Wire forms are kbs-types 0.18 as Trustee's KBS
uses them (protocol version ``0.4.0``):

* Request ``{"version", "tee", "extra-params"}`` -> Challenge ``{"nonce": base64 of 32
  random bytes (standard alphabet, padded: 44 chars), "extra-params": ""}``.
* Attestation ``{"init-data": {"format", "body"} | null, "runtime-data": {"nonce",
  "tee-pubkey"}, "tee-evidence": {"primary_evidence": <JSON>, "additional_evidence":
  "" | "<JSON text of {tee: evidence}>"}}``.
* The guest binds ``HASH(JCS(runtime data))`` into its evidence: the primary attester
  ``{"tee-pubkey", "nonce", "additional-evidence"}``, every additional device
  ``{"tee-pubkey", "nonce"}``; HASH is SHA-512 for ``se`` and SHA-384 otherwise.

Every failure is an :class:`~veritee.kbs.errors.AttestationError` with Trustee's detail:
``Attestation error: RCAR handshake Auth failed: <reason>`` for ``/auth`` and
``Attestation error: RCAR handshake Attest failed`` for ``/attest``; the precise cause
of an ``/attest`` failure is kept on the exception as ``.cause`` (never in the body).
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import rfc8785

from veritee.as_.errors import MalformedRequest, UnknownTee
from veritee.as_.request import TEES as AS_TEES
from veritee.as_.request import AttestationRequest, RuntimeData, VerificationRequest
from veritee.as_.request import InitData as AsInitData
from veritee.errors import ParseError, VeriteeError
from veritee.initdata import parse_initdata
from veritee.kbs.errors import AttestationError
from veritee.kbs.session import Session, new_session_id

KBS_PROTOCOL_VERSION = "0.4.0"
VERSION_REQ = "=" + KBS_PROTOCOL_VERSION  # Trustee's semver requirement, as it prints it
NONCE_SIZE_BYTES = 32

# kbs-types 0.18 `Tee` names (serde).  The NVIDIA DPU variant is left out: its wire name
# could not be confirmed.  Accepting a name here only lets /auth proceed; the AS decides
# at /attest whether it can verify that TEE.
KBS_TEES = frozenset(
    {
        "az-snp-vtpm",
        "az-tdx-vtpm",
        "nvidia",
        "sgx",
        "snp",
        "tdx",
        "cca",
        "csv",
        "se",
        "hygondcu",
        "tpm",
        "sample",
        "sampledevice",
    }
)

HASHES: dict[str, Callable[[bytes], Any]] = {
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}

ATTEST_FAILED = "RCAR handshake Attest failed"

# Semantic Versioning 2.0.0, as the Rust `semver` crate parses it (no leading zeros, no
# "v" prefix, no whitespace).
_NUM = r"0|[1-9]\d*"
_IDENT = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    rf"(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)


class RcarAuthFailed(AttestationError):
    """``/auth`` failed; Trustee shows the reason in the detail."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"RCAR handshake Auth failed: {reason}")
        self.cause = reason


class RcarAttestFailed(AttestationError):
    """``/attest`` failed; the detail is Trustee's fixed text, ``cause`` says why."""

    def __init__(self, cause: str) -> None:
        super().__init__(ATTEST_FAILED)
        self.cause = cause


# The Attestation Service boundary: ``verify(evidences, runtime_data, hash_alg) -> token``.
#
# ``evidences`` is ``[(tee, evidence JSON bytes)]``, the primary evidence first, then each
# additional device.  ``runtime_data`` is the primary's structured runtime data
# ``{"tee-pubkey", "nonce", "additional-evidence"}``; an additional device's runtime data
# is the same without ``"additional-evidence"`` (:func:`device_runtime_data`), and its
# hash algorithm is :func:`hash_algorithm` of its tee (``hash_alg`` is the primary's).
# Raises a VeriteeError (normally a ServiceError) when the evidence is refused.
Verify = Callable[[list[tuple[str, bytes]], dict[str, Any], str], str]


class InitDataVerify(Protocol):
    """A :data:`Verify` that also takes the Attestation's init data (for the primary
    evidence) as the keyword ``init_data``; :func:`as_verify` builds one."""

    def __call__(
        self,
        evidences: list[tuple[str, bytes]],
        runtime_data: dict[str, Any],
        hash_alg: str,
        /,
        *,
        init_data: InitData | None = None,
    ) -> str: ...


def accepts_init_data(verify: Verify) -> bool:
    """Whether ``verify`` takes the ``init_data`` keyword."""
    try:
        parameters = inspect.signature(verify).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (p.name == "init_data" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        or p.kind is p.VAR_KEYWORD
        for p in parameters
    )


# --------------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"duplicate field {key!r}")
        doc[key] = value
    return doc


def _loads(data: bytes | str) -> Any:
    """Strict JSON as serde_json reads it: UTF-8, no NaN/Infinity, no duplicate keys."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- /auth


@dataclass(frozen=True)
class Request:
    version: str
    tee: str
    extra_params: Any


def check_version(version: str) -> None:
    """Trustee's check: the version must parse as semver and match ``=0.4.0`` exactly
    (a pre-release does not match; build metadata is ignored, as the semver crate does)."""
    match = _SEMVER.fullmatch(version)
    if match is None:
        raise RcarAuthFailed("failed to parse KBS version")
    core = (match["major"], match["minor"], match["patch"])
    if core != tuple(KBS_PROTOCOL_VERSION.split(".")) or match["pre"] is not None:
        raise RcarAuthFailed(
            f"KBS Client Protocol Version Mismatch: expect {VERSION_REQ} "
            f"while the request is {version}"
        )


def parse_request(body: bytes) -> Request:
    """kbs-types ``Request``; any structural problem is Trustee's ``deserialize Request``."""
    try:
        doc = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RcarAuthFailed("deserialize Request") from exc
    if not isinstance(doc, dict):
        raise RcarAuthFailed("deserialize Request")
    version, tee = doc.get("version"), doc.get("tee")
    if not isinstance(version, str) or not isinstance(tee, str) or tee not in KBS_TEES:
        raise RcarAuthFailed("deserialize Request")
    return Request(version=version, tee=tee, extra_params=doc.get("extra-params"))


def make_nonce() -> str:
    """32 random bytes, standard base64 with padding (44 characters), as Trustee."""
    return base64.b64encode(secrets.token_bytes(NONCE_SIZE_BYTES)).decode("ascii")


def challenge_extra_params(tee: str, extra_params: Any) -> Any:
    """The Challenge's ``extra-params``: ``""``, except that ``se`` selects SHA-512 when
    the Request lists it in ``supported-hash-algorithms`` (and fails when it does not)."""
    if (
        tee != "se"
        or not isinstance(extra_params, dict)
        or "supported-hash-algorithms" not in extra_params
    ):
        return ""
    algorithms = extra_params["supported-hash-algorithms"]
    if not isinstance(algorithms, list):
        raise RcarAuthFailed("Attestation Service generate challenge failed")
    supported = {a.lower() for a in algorithms if isinstance(a, str)}
    if "sha512" not in supported:
        raise RcarAuthFailed("Attestation Service generate challenge failed")
    return {"selected-hash-algorithm": "sha512"}


def new_session(
    request_body: bytes, *, timeout_s: int, now: float
) -> tuple[Session, dict[str, Any]]:
    """Handle an RCAR Request: return the new session and the Challenge JSON."""
    request = parse_request(request_body)
    check_version(request.version)
    challenge = {
        "nonce": make_nonce(),
        "extra-params": challenge_extra_params(request.tee, request.extra_params),
    }
    session = Session(
        id=new_session_id(),
        nonce=challenge["nonce"],
        tee=request.tee,
        extra_params=request.extra_params if isinstance(request.extra_params, dict) else {},
        expires_at=now + timeout_s,
    )
    return session, challenge


# --------------------------------------------------------------------------- /attest


@dataclass(frozen=True)
class InitData:
    format: str
    body: str


@dataclass(frozen=True)
class Attestation:
    """kbs-types ``Attestation``: the runtime data, the composite evidence, the init data."""

    nonce: str
    tee_pubkey: dict[str, Any]  # normalized: only the fields kbs-types' TeePubKey keeps
    primary_evidence: Any
    additional_evidence: str  # "" or the JSON text of {tee: evidence}, verbatim
    init_data: InitData | None = None

    def additional(self) -> list[tuple[str, Any]]:
        """The additional devices' evidence, in the order the client sent them."""
        if not self.additional_evidence:
            return []
        try:
            doc = _loads(self.additional_evidence)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RcarAttestFailed("additional_evidence is not JSON") from exc
        if not isinstance(doc, dict):
            raise RcarAttestFailed("additional_evidence is not a map of tee to evidence")
        unknown = [tee for tee in doc if tee not in KBS_TEES]
        if unknown:
            raise RcarAttestFailed(f"additional_evidence names an unknown tee {unknown[0]!r}")
        return list(doc.items())


# kty -> the fields kbs-types' TeePubKey requires (and keeps) for it.
_PUBKEY_FIELDS = {"EC": ("crv", "alg", "x", "y"), "RSA": ("alg", "n", "e")}


def normalize_tee_pubkey(value: Any) -> dict[str, Any]:
    """kbs-types ``TeePubKey``: tagged by ``kty`` (``EC``: crv, alg, x, y; ``RSA``: alg, n,
    e), every listed field a string; other fields are dropped, as serde drops them (they
    are not part of what the guest hashes either)."""
    if not isinstance(value, dict):
        raise RcarAttestFailed("tee-pubkey is not a JSON object")
    kty = value.get("kty")
    if kty not in _PUBKEY_FIELDS:
        raise RcarAttestFailed("tee-pubkey has an unsupported kty")
    key: dict[str, Any] = {"kty": kty}
    for name in _PUBKEY_FIELDS[kty]:
        field_value = value.get(name)
        if not isinstance(field_value, str):
            raise RcarAttestFailed(f"tee-pubkey lacks the string field {name!r}")
        key[name] = field_value
    return key


def parse_attestation(body: bytes) -> Attestation:
    """kbs-types ``Attestation`` (protocol 0.4.0).  The pre-0.4 forms (a bare evidence
    value or string under ``tee-evidence``, ``tee-pubkey`` at the top level) are
    refused, as Trustee refuses them."""
    try:
        doc = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RcarAttestFailed("deserialize Attestation: not JSON") from exc
    if not isinstance(doc, dict):
        raise RcarAttestFailed("deserialize Attestation: not a JSON object")
    runtime = doc.get("runtime-data")
    if not isinstance(runtime, dict) or not isinstance(runtime.get("nonce"), str):
        raise RcarAttestFailed("deserialize Attestation: runtime-data.nonce missing")
    tee_pubkey = normalize_tee_pubkey(runtime.get("tee-pubkey"))
    evidence = doc.get("tee-evidence")
    if not isinstance(evidence, dict) or "primary_evidence" not in evidence:
        raise RcarAttestFailed(
            "deserialize Attestation: tee-evidence is not composite "
            "evidence {primary_evidence, additional_evidence}"
        )
    additional = evidence.get("additional_evidence")
    if not isinstance(additional, str):
        raise RcarAttestFailed("deserialize Attestation: additional_evidence must be a string")
    init_data = None
    raw_init = doc.get("init-data")
    if raw_init is not None:
        if (
            not isinstance(raw_init, dict)
            or not isinstance(raw_init.get("format"), str)
            or not isinstance(raw_init.get("body"), str)
        ):
            raise RcarAttestFailed("deserialize Attestation: init-data must be {format, body}")
        init_data = InitData(format=raw_init["format"], body=raw_init["body"])
    return Attestation(
        nonce=runtime["nonce"],
        tee_pubkey=tee_pubkey,
        primary_evidence=evidence["primary_evidence"],
        additional_evidence=additional,
        init_data=init_data,
    )


def runtime_data(
    nonce: str, tee_pubkey: dict[str, Any], additional_evidence: str | None = ""
) -> dict[str, Any]:
    """What the guest hashes into its report data.

    The primary attester's ``{"tee-pubkey", "nonce", "additional-evidence"}`` (the
    additional evidence string verbatim, ``""`` when there is none); pass
    ``additional_evidence=None`` for an additional device's ``{"tee-pubkey", "nonce"}``.
    """
    data: dict[str, Any] = {"tee-pubkey": tee_pubkey, "nonce": nonce}
    if additional_evidence is not None:
        data["additional-evidence"] = additional_evidence
    return data


def device_runtime_data(primary_runtime: dict[str, Any]) -> dict[str, Any]:
    """An additional device's runtime data, from the primary's."""
    return {k: v for k, v in primary_runtime.items() if k != "additional-evidence"}


def hash_algorithm(tee: str) -> str:
    """Trustee's built-in AS: SHA-512 for ``se``, SHA-384 for every other tee."""
    return "sha512" if tee == "se" else "sha384"


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON."""
    return rfc8785.dumps(value)


def expected_report_data(tee: str, runtime: dict[str, Any]) -> bytes:
    """``HASH(JCS(runtime))`` with the tee's hash algorithm (48 bytes, or 64 for ``se``)."""
    digest: bytes = HASHES[hash_algorithm(tee)](jcs(runtime)).digest()
    return digest


def verification_inputs(
    session: Session, attestation: Attestation
) -> tuple[list[tuple[str, bytes]], dict[str, Any], str]:
    """The ``verify`` arguments for an attestation in a session (nonce already checked)."""
    evidences = [(session.tee, _dumps(attestation.primary_evidence))]
    evidences += [(tee, _dumps(value)) for tee, value in attestation.additional()]
    runtime = runtime_data(session.nonce, attestation.tee_pubkey, attestation.additional_evidence)
    return evidences, runtime, hash_algorithm(session.tee)


def attest(session: Session, attestation: Attestation, *, verify: Verify) -> str:
    """Check the Attestation against the session's challenge and have it verified.

    Returns the token.  The nonce must equal the challenge's verbatim; init data must be
    TOML (the only format Trustee's built-in AS takes).  Errors from ``verify`` become
    :class:`RcarAttestFailed` with the AS's message as ``cause``.
    """
    if session.attested:
        raise RcarAttestFailed("the session is already attested")
    if not secrets.compare_digest(attestation.nonce.encode(), session.nonce.encode()):
        raise RcarAttestFailed(
            "the nonce in the handshake session is different from the "
            "client side in KBS protocol's Attestation message"
        )
    init_data = attestation.init_data
    if init_data is not None and init_data.format != "toml":
        raise RcarAttestFailed(f"Unsupported initdata format: {init_data.format[:32]!r}")
    if init_data is not None and not accepts_init_data(verify):
        # Fail closed rather than drop the init data the guest asked to have bound.
        raise RcarAttestFailed(
            "init-data was given but the attestation service adapter does not take init_data"
        )
    evidences, runtime, hash_alg = verification_inputs(session, attestation)
    try:
        if init_data is None:
            return verify(evidences, runtime, hash_alg)
        with_init = cast(InitDataVerify, verify)
        return with_init(evidences, runtime, hash_alg, init_data=init_data)
    except VeriteeError as exc:
        raise RcarAttestFailed(f"verify TEE evidence failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # a bug behind the boundary: name it, never echo its text
        raise RcarAttestFailed(
            f"verify TEE evidence failed: unexpected {type(exc).__name__}"
        ) from exc


# --------------------------------------------------------------------------- AS adapter


def attestation_request(
    evidences: list[tuple[str, bytes]],
    runtime: dict[str, Any],
    hash_alg: str,
    *,
    init_data: InitData | None = None,
    policy_ids: tuple[str, ...] = ("default",),
) -> AttestationRequest:
    """The AS request Trustee's built-in AS would build: the primary evidence with the
    primary runtime data, hash ``hash_alg`` and the init data; each additional device
    with :func:`device_runtime_data` and its own :func:`hash_algorithm`.

    Built directly, not as the REST body (base64url evidence) the AS would parse back:
    the evidence bytes are the JSON this module serialised, and the checks that body
    parsing makes on what is not already known good are made here (a tee the AS
    verifies, init data TOML that parses)."""
    requests: list[VerificationRequest] = []
    for index, (tee, evidence) in enumerate(evidences):
        primary = index == 0
        if tee not in AS_TEES:
            raise UnknownTee(
                f"unknown or unsupported tee {tee!r}; this service verifies {', '.join(AS_TEES)}"
            )
        init = None
        if primary and init_data is not None:
            try:
                document = parse_initdata(init_data.body)
            except ParseError as exc:
                raise MalformedRequest(str(exc)) from exc
            init = AsInitData(digest=document.digest, document=document)
        structured = runtime if primary else device_runtime_data(runtime)
        requests.append(
            VerificationRequest(
                tee=tee,
                evidence=evidence,
                runtime_data=RuntimeData(structured=structured),
                init_data=init,
                hash_algorithm=hash_alg if primary else hash_algorithm(tee),
            )
        )
    return AttestationRequest(verification_requests=requests, policy_ids=list(policy_ids))


def as_verify(attest_fn: Callable[[AttestationRequest], str]) -> InitDataVerify:
    """An :class:`InitDataVerify` over an Attestation Service's ``attest`` method, e.g.
    ``as_verify(service.attest)``."""

    def verify(
        evidences: list[tuple[str, bytes]],
        runtime: dict[str, Any],
        hash_alg: str,
        /,
        *,
        init_data: InitData | None = None,
    ) -> str:
        return attest_fn(attestation_request(evidences, runtime, hash_alg, init_data=init_data))

    return verify


__all__ = [
    "ATTEST_FAILED",
    "KBS_PROTOCOL_VERSION",
    "KBS_TEES",
    "NONCE_SIZE_BYTES",
    "VERSION_REQ",
    "Attestation",
    "InitData",
    "InitDataVerify",
    "RcarAttestFailed",
    "RcarAuthFailed",
    "Request",
    "Verify",
    "accepts_init_data",
    "as_verify",
    "attest",
    "attestation_request",
    "challenge_extra_params",
    "check_version",
    "device_runtime_data",
    "expected_report_data",
    "hash_algorithm",
    "jcs",
    "make_nonce",
    "new_session",
    "normalize_tee_pubkey",
    "parse_attestation",
    "parse_request",
    "runtime_data",
    "verification_inputs",
]
