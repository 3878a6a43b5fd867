"""The Key Broker Service core: attestation through the in-process AS, resource release
under the resource policy, and the admin operations.  No web imports here.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from veritee.as_.errors import UnknownPolicy
from veritee.as_.service import AttestationService
from veritee.errors import ServiceError, VeriteeError
from veritee.kbs import metrics
from veritee.kbs.errors import (
    JweError,
    ParsePolicyError,
    PluginInternalError,
    PluginNotFound,
    PolicyDeny,
    PolicyEngineError,
    RvpsError,
    TokenVerifierError,
)
from veritee.kbs.jwe import encrypt_for
from veritee.kbs.rcar import InitData, as_verify
from veritee.kbs.resources import ResourceBackend, validate_resource_path
from veritee.policy.engine import PolicyError
from veritee.policy.resource import ResourcePolicy
from veritee.rvps.store import ReferenceValueStore
from veritee.store.kv import KeyValueStore
from veritee.token.verify import PublicKey, TokenError, trusted_keys, verify_token

# Our default: release nothing until an operator says otherwise (default deny).
DEFAULT_RESOURCE_POLICY = """package policy

import rego.v1

# veritee's built-in resource policy: deny every request until an operator sets one.
default allow := false
"""
RESOURCE_POLICY_NAMESPACE = "kbs"
RESOURCE_POLICY_KEY = "resource-policy"

# Where a token carries the TEE public key (Trustee's JSON pointers, in order).
TEE_PUBKEY_POINTERS = (
    "/tdx/attester_runtime_data/tee-pubkey",
    "/tdx/attester_user_data/tee-pubkey",
    "/customized_claims/runtime_data/tee-pubkey",
    "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey",
    "/tee-pubkey",
)


def json_pointer(doc: Any, pointer: str) -> Any:
    """RFC 6901 lookup; None when any step is missing."""
    node = doc
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


class KbsService:
    """Everything the KBS does, behind plain method calls."""

    def __init__(
        self,
        *,
        attestation: AttestationService,
        rvps: ReferenceValueStore,
        resources: ResourceBackend | None,
        store: KeyValueStore,
        trusted_token_keys: Sequence[Any] = (),
        extra_teekey_paths: Sequence[str] = (),
        legacy_policy_data: bool = False,
        initial_resource_policy: str | None = None,
    ) -> None:
        self.attestation = attestation
        self._as_verify = as_verify(attestation.attest)
        self.rvps = rvps
        self.resources = resources
        self._store = store
        self._extra_keys = tuple(trusted_token_keys)
        # The token keys, imported once: (the signer, its kid = thumbprint, the keys).
        self._keys: tuple[object, str, list[PublicKey]] | None = None
        self._keys_lock = threading.Lock()
        self._pointers = (*extra_teekey_paths, *TEE_PUBKEY_POINTERS)
        self._policy_lock = threading.Lock()
        self._policy: tuple[str, ResourcePolicy] | None = None
        self._legacy_data = legacy_policy_data
        if initial_resource_policy is not None:
            try:
                ResourcePolicy(initial_resource_policy, legacy_data=legacy_policy_data)
            except PolicyError as exc:
                raise PolicyEngineError(str(exc)) from exc
            store.put(
                RESOURCE_POLICY_NAMESPACE, RESOURCE_POLICY_KEY, initial_resource_policy.encode()
            )
        elif store.get(RESOURCE_POLICY_NAMESPACE, RESOURCE_POLICY_KEY) is None:
            store.put(
                RESOURCE_POLICY_NAMESPACE, RESOURCE_POLICY_KEY, DEFAULT_RESOURCE_POLICY.encode()
            )

    # ------------------------------------------------------------- attestation

    def verify_evidence(
        self,
        evidences: list[tuple[str, bytes]],
        runtime: dict[str, Any],
        hash_alg: str,
        /,
        *,
        init_data: InitData | None = None,
    ) -> str:
        """Attest through the in-process AS, as Trustee's built-in AS does: the primary
        evidence carries the init data, each extra device its own runtime data."""
        tee = evidences[0][0] if evidences else "unknown"
        try:
            token = self._as_verify(evidences, runtime, hash_alg, init_data=init_data)
        except ServiceError:
            metrics.attestation_failure(tee)
            raise
        metrics.attestation_success(tee)
        return token

    # ------------------------------------------------------------- tokens

    def token_keys(self) -> list[Any]:
        keys: list[Any] = list(self.attestation.signer.jwks()["keys"])
        keys.extend(self._extra_keys)
        return keys

    def _imported_keys(self) -> list[PublicKey]:
        """:meth:`token_keys` imported as joserfc keys, once per signing key: re-imported
        when the AS has another signer or its key's thumbprint (kid) differs."""
        signer = self.attestation.signer
        cached = self._keys
        if cached is not None and cached[0] is signer and cached[1] == signer.kid:
            return cached[2]
        with self._keys_lock:
            keys = trusted_keys(self.token_keys())
            self._keys = (signer, signer.kid, keys)
        return keys

    def verify_token(self, token: str) -> dict[str, Any]:
        try:
            return verify_token(token, self._imported_keys(), profile=self.attestation.ear.profile)
        except TokenError as exc:
            raise TokenVerifierError() from exc

    def tee_pubkey(self, claims: Mapping[str, Any]) -> dict[str, Any]:
        for pointer in self._pointers:
            found = json_pointer(claims, pointer)
            if isinstance(found, dict):
                return found
        raise TokenVerifierError()

    # ------------------------------------------------------------- resources

    def resource_policy(self) -> ResourcePolicy:
        entry = self._store.get(RESOURCE_POLICY_NAMESPACE, RESOURCE_POLICY_KEY)
        text = entry.value.decode() if entry is not None else DEFAULT_RESOURCE_POLICY
        with self._policy_lock:
            if self._policy is None or self._policy[0] != text:
                try:
                    self._policy = (text, ResourcePolicy(text, legacy_data=self._legacy_data))
                except PolicyError as exc:
                    raise PolicyEngineError(str(exc)) from exc
            return self._policy[1]

    def release(self, token: str, path: Sequence[str], query: Mapping[str, str]) -> dict[str, Any]:
        """Verify the token, ask the resource policy, and return the JWE of the resource."""
        claims = self.verify_token(token)
        repo, type_, tag = validate_resource_path(path)
        try:
            allowed = self.resource_policy().allows(
                claims, repository=repo, type_=type_, tag=tag, query=dict(query)
            )
        except PolicyError as exc:
            metrics.policy_error()
            raise PolicyEngineError(str(exc)) from exc
        metrics.policy_evaluation(allowed)
        if not allowed:
            raise PolicyDeny()
        pubkey = self.tee_pubkey(claims)
        data = self._backend().get(repo, type_, tag)
        if data is None:
            raise PluginInternalError()
        metrics.resource_read(f"{repo}/{type_}/{tag}")
        try:
            return encrypt_for(pubkey, data)
        except JweError:
            raise
        except (ValueError, TypeError, VeriteeError) as exc:
            raise JweError() from exc

    def _backend(self) -> ResourceBackend:
        if self.resources is None:
            raise PluginNotFound("resource")
        return self.resources

    def set_resource(self, path: Sequence[str], data: bytes) -> None:
        repo, type_, tag = validate_resource_path(path)
        self._backend().put(repo, type_, tag, data)
        metrics.resource_write(f"{repo}/{type_}/{tag}")

    def delete_resource(self, path: Sequence[str]) -> None:
        repo, type_, tag = validate_resource_path(path)
        if not self._backend().delete(repo, type_, tag):
            raise PluginInternalError()
        metrics.resource_delete(f"{repo}/{type_}/{tag}")

    # ------------------------------------------------------------- admin

    def set_resource_policy(self, body: bytes) -> None:
        text = _b64_policy(body, ParsePolicyError)
        try:
            ResourcePolicy(text, legacy_data=self._legacy_data)
        except PolicyError as exc:
            raise PolicyEngineError(str(exc)) from exc
        self._store.put(RESOURCE_POLICY_NAMESPACE, RESOURCE_POLICY_KEY, text.encode())

    def resource_policy_ids(self) -> list[str]:
        return [RESOURCE_POLICY_KEY]

    def set_attestation_policy(self, body: bytes) -> None:
        try:
            doc = json.loads(body)
            policy_id = doc["policy_id"]
            if not isinstance(policy_id, str) or not policy_id:
                raise TypeError("policy_id")
        except (ValueError, KeyError, TypeError) as exc:
            raise ParsePolicyError('expected {"policy_id", "policy"}') from exc
        text = _b64_policy(body, ParsePolicyError)
        try:
            self.attestation.policies.set_policy(policy_id, text)
        except PolicyError as exc:
            raise PolicyEngineError(str(exc)) from exc

    def register_reference_values(self, body: bytes) -> None:
        try:
            self.rvps.register_message(body)
        except VeriteeError as exc:
            raise RvpsError(f"Failed to register reference values: {exc}") from exc

    def reference_value(self, name: str) -> Any:
        value = self.rvps.get(name)
        if value is None:
            raise RvpsError(
                f"Failed to get reference_values: No reference value found for the given id: {name}"
            )
        return value


def _b64_policy(body: bytes, error: type[ParsePolicyError]) -> str:
    try:
        doc = json.loads(body)
        encoded = doc["policy"]
        text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (ValueError, KeyError, TypeError) as exc:
        raise error('the body must be {"policy": "<base64url Rego>"}') from exc
    return text


__all__ = ["DEFAULT_RESOURCE_POLICY", "KbsService", "UnknownPolicy", "json_pointer"]
