"""The Attestation Service over HTTP (Trustee's restful-as routes): a thin adapter.

- ``POST /attestation``: Trustee's AttestationRequest; the body of a 200 is the raw JWT.
- ``POST /policy`` ``{"policy_id", "policy" (base64url Rego)}``, ``GET /policy``,
  ``GET /policy/{id}``, ``DELETE /policy/{id}``: admin only.
- ``GET /.well-known/jwks.json`` and ``GET /.well-known/token-cert-chain.pem``: public.
- ``/rvps/...``: the RVPS routes (admin for changes).
- ``POST /challenge`` (Trustee compatibility; empty for every tee here), ``GET /healthz``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from veritee.as_.errors import MalformedRequest, NotFound, PolicyCompileError
from veritee.as_.request import b64url, parse_attestation_request
from veritee.as_.service import AttestationService
from veritee.auth.admin import AdminAuth, AdminAuthError
from veritee.errors import ServiceError
from veritee.policy.attestation import UnknownPolicy as PolicyNotFound
from veritee.policy.engine import PolicyError
from veritee.rvps.api import rvps_router
from veritee.rvps.store import ReferenceValueStore
from veritee.web import DEFAULT_BODY_LIMIT, BodyLimit, install_error_handlers


class _AdminDenied(ServiceError):
    name, status = "AdminAuthAccess", 401


def _admin(auth: AdminAuth, request: Request) -> None:
    try:
        auth.authorize(request.headers.get("authorization"), path=request.url.path)
    except AdminAuthError as exc:
        raise _AdminDenied(f"admin access denied for endpoint {request.url.path}: {exc}") \
            from exc


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise MalformedRequest("the body is not JSON") from exc


def create_app(service: AttestationService, *, admin: AdminAuth, rvps: ReferenceValueStore,
               body_limit: int = DEFAULT_BODY_LIMIT) -> FastAPI:
    app = FastAPI(title="veritee Attestation Service", version="1")
    install_error_handlers(app)

    @app.post("/attestation", response_class=PlainTextResponse,
              responses={200: {"description": "the EAR token (a JWT)"}})
    async def attestation(request: Request) -> Response:
        parsed = parse_attestation_request(await _json(request))
        token = await run_in_threadpool(service.attest, parsed)
        return PlainTextResponse(token, media_type="application/jwt")

    @app.post("/policy")
    async def set_policy(request: Request) -> Response:
        _admin(admin, request)
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("policy_id"), str) \
                or not body["policy_id"]:
            raise MalformedRequest('expected {"policy_id": str, "policy": base64url Rego}')
        text = b64url(body.get("policy"), "policy").decode("utf-8", errors="strict")
        try:
            service.policies.set_policy(body["policy_id"], text)
        except PolicyError as exc:
            raise PolicyCompileError(
                f"policy {body['policy_id']!r} does not compile: line {exc.line}, "
                f"column {exc.column}: {exc.message}") from exc
        return Response(status_code=200)

    @app.get("/policy")
    async def list_policies(request: Request) -> JSONResponse:
        _admin(admin, request)
        return JSONResponse([{"policy-id": p} for p in service.policies.list_policies()])

    @app.get("/policy/{policy_id}", response_class=PlainTextResponse)
    async def get_policy(policy_id: str, request: Request) -> Response:
        _admin(admin, request)
        try:
            return PlainTextResponse(service.policies.get_policy(policy_id))
        except PolicyNotFound as exc:
            raise NotFound(str(exc)) from exc

    @app.delete("/policy/{policy_id}")
    async def delete_policy(policy_id: str, request: Request) -> Response:
        _admin(admin, request)
        try:
            service.policies.delete_policy(policy_id)
        except PolicyNotFound as exc:
            raise NotFound(str(exc)) from exc
        return Response(status_code=200)

    @app.get("/.well-known/jwks.json")
    async def jwks() -> JSONResponse:
        return JSONResponse(service.signer.jwks())

    @app.get("/.well-known/token-cert-chain.pem", response_class=PlainTextResponse)
    async def cert_chain() -> Response:
        return Response(service.signer.cert_chain_pem(), media_type="application/x-pem-file")

    @app.post("/challenge", response_class=PlainTextResponse)
    async def challenge() -> Response:
        return PlainTextResponse("")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(rvps_router(rvps, authorize=lambda request: _admin(admin, request)))
    app.add_middleware(BodyLimit, limit=body_limit)
    return app
