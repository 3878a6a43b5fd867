"""The guest's KBS client: guest-components' ``kbs_protocol`` over HTTP, and ``kbs-client``'s
admin calls.

One :class:`KbsClient` talks to one KBS (Trustee or ``veritee serve``) over the
``/kbs/v0`` API with one TEE key pair, in one of two modes:

* **background check** (an ``evidence_provider``): :meth:`KbsClient.attest` runs
  one RCAR handshake (``POST /kbs/v0/auth``, the Challenge and the
  ``kbs-session-id`` cookie, then ``POST /kbs/v0/attest`` with evidence bound to
  the runtime data; the messages are :mod:`veritee.guest.kbs_protocol`'s).
  :meth:`KbsClient.token` keeps the token and runs a fresh handshake (up to 5
  tries, 1 s apart) only when there is none or it expires within a margin.
  :meth:`KbsClient.get_resource` sends the session cookie; a 401 gets one fresh
  handshake and another try, 3 tries in all, as kbs_protocol does.
* **passport** (a ``token_provider``, e.g. the Attestation Agent through
  :class:`AaTokenProvider`): :meth:`KbsClient.get_resource` sends
  ``Authorization: Bearer <token>`` and decrypts with the key that came with the token;
  a 401 asks the provider for another token.

The admin calls send ``Authorization: Bearer <admin token>``.  Every non-2xx answer
raises :class:`~veritee.guest.kbs_http.KbsRequestError` with Trustee's error ``type`` and
``detail`` (a 404 for a resource: ``KbsResourceNotFound``); local failures raise
:class:`~veritee.guest.kbs_protocol.KbsClientError`.  Neither ever carries a token or
key material in its message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from veritee.errors import VeriteeError
from veritee.guest.kbs_http import (
    KbsRequestError,
    json_body,
    open_http,
    read_json,
    send,
    session_cookie,
)
from veritee.guest.kbs_protocol import (
    SESSION_COOKIE,
    EvidenceProvider,
    KbsClientError,
    KeyAlg,
    PreparedAttestation,
    TeeKey,
    b64url,
    build_request,
    compose_attestation,
    decrypt_response,
    generate_tee_key,
    parse_aa_token,
    resource_path,
    select_hash_algorithm,
    tee_pubkey_jwk,
    token_is_valid,
)

__all__ = [
    "ADMIN_TOKEN_LIFETIME_S",
    "RCAR_ATTEMPTS",
    "RESOURCE_ATTEMPTS",
    "TOKEN_MARGIN_S",
    "AaTokenProvider",
    "KbsClient",
    "StaticTokenProvider",
    "TokenProvider",
]

ADMIN_TOKEN_LIFETIME_S = 2 * 3600  # kbs-client's Claims::create(Duration::from_hours(2))
RESOURCE_ATTEMPTS = 3  # kbs_protocol's resource GETs
RCAR_ATTEMPTS = 5  # kbs_protocol's repeat_rcar_handshake …
RCAR_RETRY_DELAY_S = 1.0  # … one second apart
TOKEN_MARGIN_S = 10.0  # a token this close to its exp is renewed before use


# --- token providers -------------------------------------------------------------------------


class TokenProvider(Protocol):
    def get_token(self) -> tuple[str, TeeKey]:
        """An attestation token and the TEE key pair it was issued for (kbs_protocol's
        ``TokenProvider``); asked again after a 401, when it may hand out a new one."""
        ...


@dataclass(frozen=True)
class StaticTokenProvider:
    """One token obtained elsewhere (``kbs-client get-resource --attestation-token``)."""

    token: str = field(repr=False)
    tee_key: TeeKey = field(repr=False)

    def get_token(self) -> tuple[str, TeeKey]:
        return self.token, self.tee_key


class AaTokenProvider:
    """Tokens from an Attestation Agent (what the Confidential Data Hub uses).

    ``get_token`` is the agent's GetToken: a token type in, the answer's bytes out, e.g.
    ``AttestationAgent.get_token`` in process, or a GET of ``/aa/token?token_type=kbs``.
    """

    def __init__(self, get_token: Callable[[str], bytes]) -> None:
        self._get_token = get_token

    def get_token(self) -> tuple[str, TeeKey]:
        return parse_aa_token(self._get_token("kbs"))


# --- the client --------------------------------------------------------------------------------


class KbsClient:
    """A KBS client with one ephemeral TEE key pair (as a ``KbsClient`` in kbs_protocol).

    ``evidence_provider`` makes it a background-check client, ``token_provider`` a
    passport client (not both); the admin calls need neither, only ``admin_token``.
    ``tee_key`` reuses a key pair (kbs-client ``--tee-key-file``) instead of generating
    one; ``cert_pem`` is the one root the KBS's HTTPS certificate must chain to.
    ``clock`` and ``sleep`` are :func:`time.time` and :func:`time.sleep` unless a test
    passes others.
    """

    def __init__(
        self,
        url: str,
        *,
        evidence_provider: EvidenceProvider | None = None,
        token_provider: TokenProvider | None = None,
        tee: str = "sample",
        key_alg: KeyAlg = "EC",
        http: httpx.Client | None = None,
        cert_pem: bytes | None = None,
        tee_key: TeeKey | None = None,
        admin_token: str | None = None,
        init_data: str | None = None,
        token_margin_s: float = TOKEN_MARGIN_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if http is not None and cert_pem is not None:
            raise KbsClientError("pass either http or cert_pem, not both")
        if evidence_provider is not None and token_provider is not None:
            raise KbsClientError("pass either an evidence provider or a token provider, not both")
        self.url = url.rstrip("/")
        self.evidence_provider = evidence_provider
        self.token_provider = token_provider
        self.tee = tee
        self.tee_key: TeeKey = tee_key if tee_key is not None else generate_tee_key(key_alg)
        self.tee_pubkey = tee_pubkey_jwk(self.tee_key)
        self.admin_token = admin_token
        self.init_data = init_data
        self.token_margin_s = token_margin_s
        self.session_id: str | None = None
        self.last_attestation: PreparedAttestation | None = None
        self._token: str | None = None
        self._clock = clock
        self._sleep = sleep
        self._owns_http = http is None
        if http is None:
            http = open_http(cert_pem)
        self.http = http

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> KbsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        return send(self.http, self.url, method, path, content=content, headers=headers)

    # -- RCAR --

    def attest(self, *, init_data: str | None = None) -> str:
        """One RCAR handshake; returns (and keeps) the attestation token."""
        if self.evidence_provider is None:
            raise KbsClientError("attestation needs an evidence provider")
        json_ct = {"Content-Type": "application/json"}
        request = json_body(build_request(self.tee))
        auth = self._send("POST", "auth", content=request, headers=json_ct)
        challenge = read_json(auth, "auth")
        if not isinstance(challenge, dict) or not isinstance(challenge.get("nonce"), str):
            raise KbsClientError("the KBS Challenge has no nonce")
        session = session_cookie(auth)
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
            content=json_body(prepared.message),
            headers={**json_ct, "Cookie": f"{SESSION_COOKIE}={session}"},
        )
        answer = read_json(attest, "attest")
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise KbsClientError("the KBS attest answer has no token")
        self.session_id = session_cookie(attest) or session
        self._token = token
        return token

    def _fresh(self) -> str | None:
        """The kept token, unless there is none or it expires within the margin."""
        token = self._token
        if token is None or not token_is_valid(
            token, now=self._clock(), margin_s=self.token_margin_s
        ):
            return None
        return token

    def token(self) -> str:
        """A valid attestation token: the kept one, else a fresh handshake.

        kbs_protocol's ``get_token``: up to 5 handshakes one second apart; the last
        failure is raised.  A passport client asks its token provider.
        """
        if self.token_provider is not None:
            return self.token_provider.get_token()[0]
        if self.evidence_provider is None:
            raise KbsClientError("a token needs an evidence provider or a token provider")
        kept = self._fresh()
        if kept is not None:
            return kept
        for attempt in range(1, RCAR_ATTEMPTS + 1):
            try:
                return self.attest()
            except VeriteeError:
                if attempt == RCAR_ATTEMPTS:
                    raise
                self._sleep(RCAR_RETRY_DELAY_S)
        raise KbsClientError("unreachable")  # pragma: no cover

    # -- resources --

    def get_resource(
        self,
        path: str,
        *,
        attempts: int = RESOURCE_ATTEMPTS,
        on_unauthorized: Callable[[KbsRequestError], None] | None = None,
    ) -> bytes:
        """GET ``/kbs/v0/resource/<repo>/<type>/<tag>`` and decrypt the JWE.

        Up to ``attempts`` tries; a 401 is reported to ``on_unauthorized`` and answered
        with a fresh handshake (background check) or a new token from the provider
        (passport) before the next try.  The last 401 is raised, as is any other
        refusal at once (a 404: ``KbsResourceNotFound``).
        """
        target = f"resource/{resource_path(path)}"
        if self.token_provider is not None:
            return self._passport_get(target, attempts, on_unauthorized)
        if self.evidence_provider is None:
            raise KbsClientError("a resource needs an evidence provider or a token provider")
        tried = 0
        if self.session_id is None or self._fresh() is None:
            # kbs_protocol's first GET, sent without a session, is always refused with a
            # 401 that only asks for a handshake: run the handshake in its place.
            self.attest()
            tried = 1
        while True:
            tried += 1
            try:
                response = self._send(
                    "GET", target, headers={"Cookie": f"{SESSION_COOKIE}={self.session_id}"}
                )
            except KbsRequestError as exc:
                if exc.status != 401 or tried >= attempts:
                    raise
                if on_unauthorized is not None:
                    on_unauthorized(exc)
                self.attest()
                continue
            return self._decrypt(response, self.tee_key)

    def _passport_get(
        self,
        target: str,
        attempts: int,
        on_unauthorized: Callable[[KbsRequestError], None] | None,
    ) -> bytes:
        assert self.token_provider is not None
        token, key = self.token_provider.get_token()
        for attempt in range(1, max(1, attempts) + 1):
            try:
                response = self._send("GET", target, headers={"Authorization": f"Bearer {token}"})
            except KbsRequestError as exc:
                if exc.status != 401 or attempt >= attempts:
                    raise
                renewed, key = self.token_provider.get_token()
                if renewed == token:  # the same token would only be refused again
                    raise
                if on_unauthorized is not None:
                    on_unauthorized(exc)
                token = renewed
                continue
            return self._decrypt(response, key)
        raise KbsClientError("unreachable")  # pragma: no cover

    @staticmethod
    def _decrypt(response: httpx.Response, key: TeeKey) -> bytes:
        body = read_json(response, "resource")
        if not isinstance(body, dict):
            raise KbsClientError("the resource answer is not a JWE object")
        return decrypt_response(body, key)

    # -- admin --

    def _admin_headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {}
        if self.admin_token:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def set_resource(self, path: str, data: bytes) -> None:
        target = f"resource/{resource_path(path)}"
        self._send(
            "POST", target, content=data, headers=self._admin_headers("application/octet-stream")
        )

    def delete_resource(self, path: str) -> None:
        self._send("DELETE", f"resource/{resource_path(path)}", headers=self._admin_headers())

    def set_resource_policy(self, text: str) -> None:
        body = {"policy": b64url(text.encode())}
        self._send(
            "POST",
            "resource-policy",
            content=json_body(body),
            headers=self._admin_headers("application/json"),
        )

    def get_resource_policy(self) -> str:
        """The body of ``GET /kbs/v0/resource-policy`` (Trustee: a JSON list of policy ids)."""
        return self._send("GET", "resource-policy", headers=self._admin_headers()).text

    def set_attestation_policy(
        self, text: str, policy_id: str = "default_cpu", *, policy_type: str = "rego"
    ) -> None:
        body = {"type": policy_type, "policy_id": policy_id, "policy": b64url(text.encode())}
        self._send(
            "POST",
            "attestation-policy",
            content=json_body(body),
            headers=self._admin_headers("application/json"),
        )

    def set_reference_value(self, message: Mapping[str, Any]) -> None:
        self._send(
            "POST",
            "reference-value",
            content=json_body(dict(message)),
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
