"""The KBS over HTTP: Trustee's ``/kbs/v0/`` routes, ``/healthz`` and ``/metrics``.

A thin adapter: every decision is in :class:`veritee.kbs.service.KbsService`.
Dispatch follows Trustee: ``auth``/``attest`` (RCAR), ``attestation-policy``,
``resource-policy``, ``reference-value`` (admin), and the ``resource`` plugin
(GET releases under the resource policy; POST/DELETE are admin).  Any other
first segment is ``PluginNotFound`` (404).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from veritee.auth.admin import AdminAuth, AdminAuthError
from veritee.kbs import metrics
from veritee.kbs.errors import AdminAuthAccess, PluginInternalError, PluginNotFound, TokenNotFound
from veritee.kbs.rcar_api import rcar_router, session_token
from veritee.kbs.service import KbsService
from veritee.kbs.session import SessionStore
from veritee.web import DEFAULT_BODY_LIMIT, BodyLimit, install_error_handlers


def create_kbs_app(
    service: KbsService,
    *,
    sessions: SessionStore,
    admin: AdminAuth,
    timeout_s: int = 300,
    body_limit: int = DEFAULT_BODY_LIMIT,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    app = FastAPI(title="veritee Key Broker Service", version="0")
    install_error_handlers(app)

    def check_admin(request: Request) -> None:
        try:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            admin.authorize(request.headers.get("authorization"), path=target)
        except AdminAuthError as exc:
            raise AdminAuthAccess(request.url.path, str(exc)) from exc

    app.include_router(
        rcar_router(
            sessions=sessions, verify=service.verify_evidence, timeout_s=timeout_s, clock=clock
        )
    )

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(status_code=200)

    @app.get("/metrics")
    async def metrics_text() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    def token_for(request: Request) -> str:
        token = session_token(request, sessions, clock())
        if token is not None:
            return token
        scheme, _, bearer = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and bearer.strip():
            return bearer.strip()
        raise TokenNotFound()

    @app.api_route("/kbs/v0/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def dispatch(path: str, request: Request) -> Response:
        parts = path.split("/")
        plugin, rest, method = parts[0], parts[1:], request.method
        if plugin == "attestation-policy" and method == "POST":
            check_admin(request)
            service.set_attestation_policy(await request.body())
            return Response(status_code=200)
        if plugin == "resource-policy" and method in ("POST", "GET"):
            check_admin(request)
            if method == "GET":
                return JSONResponse(service.resource_policy_ids())
            service.set_resource_policy(await request.body())
            return Response(status_code=200)
        if plugin == "reference-value" and method in ("POST", "GET"):
            check_admin(request)
            if method == "GET":
                return JSONResponse(service.reference_value("/".join(rest)))
            service.register_reference_values(await request.body())
            return Response(status_code=200, media_type="application/json")
        if plugin != "resource" or service.resources is None:
            raise PluginNotFound(plugin)
        if method in ("POST", "DELETE"):
            check_admin(request)
            if method == "POST":
                service.set_resource(rest, await request.body())
            else:
                service.delete_resource(rest)
            return Response(status_code=200)
        token = token_for(request)
        if method == "PUT":
            service.verify_token(token)
            raise PluginInternalError()
        jwe = await run_in_threadpool(service.release, token, rest, dict(request.query_params))
        return JSONResponse(jwe)

    app.add_middleware(BodyLimit, limit=body_limit)
    return app
