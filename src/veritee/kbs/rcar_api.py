"""The RCAR routes of the KBS: ``POST /kbs/v0/auth`` and ``POST /kbs/v0/attest``.

A thin adapter over :mod:`veritee.kbs.rcar` and a :class:`SessionStore`.  Errors are
raised as :mod:`veritee.kbs.errors` exceptions; the application installs the handlers
(:func:`veritee.web.install_error_handlers`) that turn them into Trustee's bodies.

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

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from veritee.kbs import rcar
from veritee.kbs.session import Session, SessionStore

SESSION_COOKIE = "kbs-session-id"

log = logging.getLogger("veritee.kbs.rcar")


def session_cookie(session: Session) -> str:
    """The ``Set-Cookie`` value for a session, exactly as Trustee (actix) writes it."""
    return f"{SESSION_COOKIE}={session.id}; Expires={formatdate(session.expires_at, usegmt=True)}"


def _with_cookie(body: dict[str, Any], session: Session) -> JSONResponse:
    response = JSONResponse(body)
    response.headers.append("set-cookie", session_cookie(session))
    return response


def _cookie(request: Request) -> str | None:
    value = request.cookies.get(SESSION_COOKIE)
    return value or None


def session_token(request: Request, sessions: SessionStore, now: float) -> str | None:
    """The token of the request's cookie session, when it is attested and unexpired."""
    session_id = _cookie(request)
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


def rcar_router(
    *,
    sessions: SessionStore,
    verify: rcar.Verify,
    timeout_s: int = 300,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """``POST /kbs/v0/auth`` and ``POST /kbs/v0/attest`` over ``sessions`` and ``verify``.

    ``verify`` may be a plain :data:`rcar.Verify` or, to bind init data, an
    :class:`rcar.InitDataVerify` such as ``rcar.as_verify(attestation_service.attest)``.
    """
    router = APIRouter()

    @router.post("/kbs/v0/auth")
    async def kbs_auth(request: Request) -> JSONResponse:
        body = await request.body()
        session, challenge = await run_in_threadpool(
            auth, body, sessions=sessions, timeout_s=timeout_s, now=clock()
        )
        return _with_cookie(challenge, session)

    @router.post("/kbs/v0/attest")
    async def kbs_attest(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            session, token = await run_in_threadpool(
                attest, body, _cookie(request), sessions=sessions, verify=verify, now=clock()
            )
        except rcar.RcarAttestFailed as exc:
            log.warning("RCAR attest failed: %s", exc.cause)
            raise
        return _with_cookie({"token": token}, session)

    return router


__all__ = ["SESSION_COOKIE", "attest", "auth", "rcar_router", "session_cookie", "session_token"]
