"""The RCAR routes of the KBS: ``POST /kbs/v0/auth`` and ``POST /kbs/v0/attest``.

A thin adapter over :mod:`veritee.kbs.rcar` and a :class:`SessionStore`, written as a
plain ASGI layer (:class:`RcarRoutes`) in front of the application: the two requests
of every flow skip FastAPI's routing, dependency and response machinery.  Errors are
:mod:`veritee.kbs.errors` exceptions rendered with Trustee's bodies, exactly as the
application's handlers (:func:`veritee.web.install_error_handlers`) render them.

The session cookie is Trustee's: ``Set-Cookie: kbs-session-id=<id>; Expires=<HTTP date>``
with no other attribute (no Path, Max-Age, HttpOnly, Secure or SameSite), sent by
``/auth`` and again by a successful ``/attest`` with the same id and expiry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import cookie_parser

from veritee.errors import ServiceError
from veritee.kbs import rcar
from veritee.kbs.session import Session, SessionStore
from veritee.web import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    header,
    json_bytes,
    read_body,
    send_error,
    send_json,
)

SESSION_COOKIE = "kbs-session-id"
AUTH_PATH = "/kbs/v0/auth"
ATTEST_PATH = "/kbs/v0/attest"

log = logging.getLogger("veritee.kbs.rcar")


def session_cookie(session: Session) -> str:
    """The ``Set-Cookie`` value for a session, exactly as Trustee (actix) writes it."""
    return f"{SESSION_COOKIE}={session.id}; Expires={formatdate(session.expires_at, usegmt=True)}"


def cookie_session_id(cookie_header: str | None) -> str | None:
    """The ``kbs-session-id`` of a ``Cookie`` header (parsed as Starlette parses it)."""
    if not cookie_header or SESSION_COOKIE not in cookie_header:
        return None
    return cookie_parser(cookie_header).get(SESSION_COOKIE) or None


def request_session_id(scope: Scope) -> str | None:
    """The session id of a request's (first) ``Cookie`` header."""
    return cookie_session_id(header(scope, b"cookie"))


def session_token(session_id: str | None, sessions: SessionStore, now: float) -> str | None:
    """The token of the cookie's session, when it is attested and unexpired."""
    if session_id is None:
        return None
    session = sessions.get(session_id, now=now)
    if session is None or not session.attested:
        return None
    return session.token


def auth(
    body: bytes, *, sessions: SessionStore, timeout_s: int, now: float
) -> tuple[Session, dict[str, Any]]:
    """RCAR step 1: the new session (stored) and its Challenge."""
    session, challenge = rcar.new_session(body, timeout_s=timeout_s, now=now)
    sessions.create(session)
    return session, challenge


def attest(
    body: bytes, session_id: str | None, *, sessions: SessionStore, verify: rcar.Verify, now: float
) -> tuple[Session, str]:
    """RCAR step 3: check and verify the Attestation; return the attested session."""
    if session_id is None:
        raise rcar.RcarAttestFailed("cookie not found")
    attestation = rcar.parse_attestation(body)
    session = sessions.get(session_id, now=now)
    if session is None:
        raise rcar.RcarAttestFailed("session not found or expired")
    if session.attested:
        raise rcar.RcarAttestFailed("the session is already attested (replayed Attestation)")
    if attestation.nonce != session.nonce:
        # Checked before the claim, so a wrong nonce does not burn the challenge.
        raise rcar.RcarAttestFailed(
            "the nonce in the handshake session is different from "
            "the client side in KBS protocol's Attestation message"
        )
    claimed = sessions.claim_challenge(session_id, now=now)
    if claimed is None:
        raise rcar.RcarAttestFailed("the session's challenge was already used")
    try:
        token = rcar.attest(claimed, attestation, verify=verify)
    except BaseException:
        sessions.delete(session_id)  # the challenge is spent: the client starts again
        raise
    sessions.save_attested(
        session_id, token=token, tee_pubkey=attestation.tee_pubkey, expires_at=claimed.expires_at
    )
    attested = Session(
        id=claimed.id,
        nonce=claimed.nonce,
        tee=claimed.tee,
        extra_params=claimed.extra_params,
        expires_at=claimed.expires_at,
        attested=True,
        token=token,
        tee_pubkey=attestation.tee_pubkey,
    )
    return attested, token


class RcarRoutes:
    """``POST /kbs/v0/auth`` and ``POST /kbs/v0/attest`` over ``sessions`` and ``verify``,
    in front of ``app`` (every other request goes to it): plain ASGI, for
    ``app.add_middleware(RcarRoutes, sessions=..., verify=...)``.

    ``verify`` may be a plain :data:`rcar.Verify` or, to bind init data, an
    :class:`rcar.InitDataVerify` such as ``rcar.as_verify(attestation_service.attest)``.
    Both run on the event loop, as CPU work (a nonce and a session write; verification
    and policy): in the thread pool the hand-off and GIL contention cost more CPU than
    the work they would overlap.  ``offload_attest`` runs ``/attest`` in the thread pool,
    for verifiers that wait on the network (collateral not cached yet).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: SessionStore,
        verify: rcar.Verify,
        timeout_s: int = 300,
        clock: Callable[[], float] = time.time,
        offload_attest: bool = False,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.verify = verify
        self.timeout_s = timeout_s
        self.clock = clock
        self.offload_attest = offload_attest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            if scope["path"] == AUTH_PATH:
                await self._auth(receive, send)
                return
            if scope["path"] == ATTEST_PATH:
                await self._attest(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _auth(self, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        try:
            session, challenge = auth(
                body, sessions=self.sessions, timeout_s=self.timeout_s, now=self.clock()
            )
        except ServiceError as exc:
            await send_error(send, exc)
            return
        await send_json(send, 200, json_bytes(challenge), set_cookie=session_cookie(session))

    async def _attest(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        session_id = request_session_id(scope)
        try:
            if self.offload_attest:
                session, token = await run_in_threadpool(
                    attest,
                    body,
                    session_id,
                    sessions=self.sessions,
                    verify=self.verify,
                    now=self.clock(),
                )
            else:
                session, token = attest(
                    body, session_id, sessions=self.sessions, verify=self.verify, now=self.clock()
                )
        except ServiceError as exc:
            if isinstance(exc, rcar.RcarAttestFailed):
                log.warning("RCAR attest failed: %s", exc.cause)
            await send_error(send, exc)
            return
        await send_json(send, 200, json_bytes({"token": token}), set_cookie=session_cookie(session))


__all__ = [
    "ATTEST_PATH",
    "AUTH_PATH",
    "SESSION_COOKIE",
    "RcarRoutes",
    "attest",
    "auth",
    "cookie_session_id",
    "request_session_id",
    "session_cookie",
    "session_token",
]
