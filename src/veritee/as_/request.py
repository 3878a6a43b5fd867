"""Trustee's AttestationRequest (REST form), parsed into typed values.

Body: ``{"verification_requests": [{"tee", "evidence" (base64url of the evidence
JSON text), "runtime_data" ({"raw": b64url} | {"structured": JSON}),
"init_data" ({"init_data_digest": b64url} | {"init_data_toml": TOML}),
"runtime_data_hash_algorithm"}], "policy_ids": [...]}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from veritee.as_.errors import MalformedEvidence, MalformedRequest, UnknownTee
from veritee.errors import ParseError
from veritee.initdata import Initdata, parse_initdata

# The tees the AS verifies; Trustee's names.
TEES = ("tdx", "sgx", "snp", "sample", "nvidia")
HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


@dataclass(frozen=True)
class RuntimeData:
    """Either raw bytes, or a structured JSON value whose JCS form is hashed."""

    raw: bytes | None = None
    structured: Any = None

    def expected_report_data(self, algorithm: str) -> bytes:
        if self.raw is not None:
            return self.raw
        return HASHES[algorithm](rfc8785.dumps(self.structured)).digest()

    def claims(self) -> Any:
        return None if self.raw is not None else self.structured


@dataclass(frozen=True)
class InitData:
    """Either a bare digest, or the initdata document it is the digest of."""

    digest: bytes
    document: Initdata | None = None

    def claims(self) -> Any:
        return None if self.document is None else self.document.claims()


@dataclass(frozen=True)
class VerificationRequest:
    tee: str
    evidence: bytes
    runtime_data: RuntimeData | None = None
    init_data: InitData | None = None
    hash_algorithm: str = "sha384"


@dataclass(frozen=True)
class AttestationRequest:
    verification_requests: list[VerificationRequest]
    policy_ids: list[str] = field(default_factory=lambda: ["default"])


def b64url(text: object, what: str) -> bytes:
    """Decode base64url, padded or not (standard alphabet accepted too)."""
    if not isinstance(text, str):
        raise MalformedRequest(f"{what} must be a base64url string")
    try:
        normal = text.strip().replace("-", "+").replace("_", "/")
        return base64.b64decode(normal + "=" * (-len(normal) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedRequest(f"{what} is not base64url: {exc}") from exc


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedRequest(f"{what} must be a JSON object")
    return value


def _one_of(doc: Mapping[str, Any], keys: tuple[str, ...], what: str) -> tuple[str, Any]:
    present = [k for k in keys if k in doc]
    if len(present) != 1 or len(doc) != 1:
        raise MalformedRequest(f"{what} must have exactly one of {', '.join(keys)}")
    return present[0], doc[present[0]]


def _runtime_data(value: object) -> RuntimeData:
    kind, inner = _one_of(_object(value, "runtime_data"), ("raw", "structured"), "runtime_data")
    if kind == "raw":
        return RuntimeData(raw=b64url(inner, "runtime_data.raw"))
    return RuntimeData(structured=inner)


def _init_data(value: object) -> InitData:
    kind, inner = _one_of(_object(value, "init_data"), ("init_data_digest", "init_data_toml"),
                          "init_data")
    if kind == "init_data_digest":
        return InitData(digest=b64url(inner, "init_data.init_data_digest"))
    if not isinstance(inner, str):
        raise MalformedRequest("init_data.init_data_toml must be a string")
    try:
        document = parse_initdata(inner)
    except ParseError as exc:
        raise MalformedRequest(str(exc)) from exc
    return InitData(digest=document.digest, document=document)


def _verification_request(value: object, index: int) -> VerificationRequest:
    doc = _object(value, f"verification_requests[{index}]")
    tee = doc.get("tee")
    if not isinstance(tee, str):
        raise MalformedRequest(f"verification_requests[{index}].tee must be a string")
    if tee not in TEES:
        raise UnknownTee(f"unknown or unsupported tee {tee!r}; this service verifies "
                         f"{', '.join(TEES)}")
    try:
        evidence = b64url(doc.get("evidence"), f"verification_requests[{index}].evidence")
    except MalformedRequest as exc:
        raise MalformedEvidence(str(exc)) from exc
    try:
        json.loads(evidence)
    except ValueError as exc:
        raise MalformedEvidence(f"verification_requests[{index}].evidence does not decode to "
                                "JSON evidence") from exc
    algorithm = doc.get("runtime_data_hash_algorithm", "sha384")
    if algorithm not in HASHES:
        raise MalformedRequest(f"runtime_data_hash_algorithm must be one of {', '.join(HASHES)}")
    return VerificationRequest(
        tee=tee,
        evidence=evidence,
        runtime_data=_runtime_data(doc["runtime_data"]) if doc.get("runtime_data") else None,
        init_data=_init_data(doc["init_data"]) if doc.get("init_data") else None,
        hash_algorithm=algorithm,
    )


def parse_attestation_request(doc: object) -> AttestationRequest:
    """Validate Trustee's AttestationRequest; every problem is a precise ServiceError."""
    body = _object(doc, "the request")
    requests = body.get("verification_requests")
    if not isinstance(requests, list) or not requests:
        raise MalformedRequest("verification_requests must be a non-empty list")
    policy_ids = body.get("policy_ids") or ["default"]
    if not isinstance(policy_ids, list) or not all(isinstance(p, str) and p for p in policy_ids):
        raise MalformedRequest("policy_ids must be a list of non-empty strings")
    return AttestationRequest(
        verification_requests=[_verification_request(r, i) for i, r in enumerate(requests)],
        policy_ids=list(policy_ids),
    )
